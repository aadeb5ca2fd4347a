"""Online, single-pass ANP: no clean twin, the perturbation is read against a baseline.

A brain cannot run a noise-free copy of itself. Here one noisy network runs alone and
each unit compares its state with a slow running average of it, the loss group its loss
with a running average of the loss (time constant τ_avg)::

    δ_{i,t} = h_{i,t} − h̄_{i,t},     τ_avg dh̄/dt = h − h̄    (‖δ‖² → ‖δ_t‖² + its average)
    M_t     = c/M · (L_t − L̄_t),    τ_avg dL̄/dt = L − L̄
    g_ij    = Σ_t M_t · elig_ij,t,   elig ← λ elig + δ_{i,t} x̄_{j,t−1} / ‖δ_t‖²

The presynaptic factor x̄ is the running average r̄ of the rate (up to the previous step),
not the noisy rate itself: r carries the same noise as δ, and with one readout unit the
ratio ε_j/(V·ε) of a noisy presynaptic factor and a normalised δ has a mean that, times
the task-driven part of L − L̄, biased the readout update to the *opposite* sign of the
gradient (cosine −1.0 with TD-ANP at τ_avg = 5–50 ms before this choice). Inputs carry no
noise and are used as they are.

The readout compares y with its running average ȳ the same way. The averages carry over
from trial to trial (a brain does not reset them); ``reset_each_trial`` restarts them.

Bias (documented, measured in docs/rules/online_anp.md): h − h̄ contains, besides the
noise-driven deviation, the task-driven change of h within τ_avg, and L − L̄ the
task-driven change of the loss; both move with the input, so their product has a
non-zero mean that is not the gradient. A short τ_avg shrinks this leak but also
removes the slow part of the noise response; the estimate is unbiased only when the
driven trajectory is slow compared with τ_avg.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from brian2 import Equations, Synapses, second

from bioperturb.rules.perturbation import MATRICES, PerturbationRule, trace_params_check
from bioperturb.schema import param

__all__ = ["OnlineANP"]


@dataclass(frozen=True)
class OnlineANPParams:
    tau_avg: float = param(
        0.01, unit="second", positive=True, doc="time constant τ_avg of the running baselines"
    )
    scale: str = param(
        "sqrt_total", choices=("sqrt_total", "sqrt_layer", "one"), doc="c multiplying the estimate"
    )
    train: tuple[str, ...] = param(list(MATRICES), doc="plastic weight matrices")
    tau_e: float = param(
        0.0, unit="second", nonnegative=True, doc="eligibility time constant (0: current step)"
    )
    eps: float = param(1e-30, positive=True, doc="ε guarding 0/0")
    reset_each_trial: bool = param(
        False, doc="restart the running averages at every trial (default: they carry over)"
    )

    def check(self) -> None:
        trace_params_check(self)


class OnlineANP(PerturbationRule):
    name = "online_anp"
    Params = OnlineANPParams
    twin = False
    LOSSES = ("L", "Lbar")
    meta = {
        "description": "single-pass ANP: perturbation = state minus its running average",
        "reference": (
            "Dalm et al. (2024) arXiv:2310.00965; Fiete & Seung (2006) Phys. Rev. Lett. "
            "97:048104 (running reward baseline)"
        ),
    }
    PRODUCTS = {
        "W_rec": "nrm_post * (h_post - hbar_post) * rbar_pre",
        "W_in": "nrm_post * (h_post - hbar_post) * u_prev_pre",
        "W_out": "nrm_y_post * (y_post - ybar_post) * rbar_pre",
    }

    def normalisers(self) -> dict[str, str]:
        # ‖δ_t‖² plus its running average: with one readout unit 1/‖δ_t‖² alone makes the
        # update (L − L̄)/ε with ε the unit's noise, a Cauchy-like ratio whose sample mean
        # never settles (its sign flipped between runs); the average keeps it finite.
        return {
            "hidden": "1 / (dd_h + dd_h_bar + eps_anp)",
            "readout": "1 / (dd_y + dd_y_bar + eps_anp)",
        }

    def group_equations(self, group: str) -> Equations:
        eqs = super().group_equations(group)
        extra = {
            "hidden": "hbar : 1\nrbar : 1",
            "readout": "ybar : 1",
            "loss": "Lbar : 1\ndd_h : 1\ndd_y : 1\ndd_h_bar : 1\ndd_y_bar : 1",
        }
        return eqs + Equations(extra.get(group, ""))

    def namespace(self, n_in: int, n_hidden: int, n_out: int) -> dict[str, Any]:
        ns = super().namespace(n_in, n_hidden, n_out)
        ns["eps_anp"] = self.params.eps
        ns["tau_avg"] = self.params.tau_avg * second
        return ns

    def install_sums(self, network: Any) -> list[Any]:
        out = []
        specs = [
            (network.hidden, "dd_h_post = (h_pre - hbar_pre)**2 : 1 (summed)", "oanp_sum_hidden"),
            (network.readout, "dd_y_post = (y_pre - ybar_pre)**2 : 1 (summed)", "oanp_sum_readout"),
        ]
        for pre, model, name in specs:
            syn = Synapses(pre, network.loss, model, clock=network.clock, name=name)
            syn.connect()
            network.schedule_summed(syn, model.split("_post")[0], order=2)
            out.append(syn)
        # running averages move after the step's products were accumulated (order 4)
        a = "dt / tau_avg"
        for group, code in (
            (network.hidden, f"hbar += (h - hbar) * {a}\nrbar += (r - rbar) * {a}"),
            (network.readout, f"ybar += (y - ybar) * {a}"),
            (
                network.loss,
                f"Lbar += (L - Lbar) * {a}\ndd_h_bar += (dd_h - dd_h_bar) * {a}\n"
                f"dd_y_bar += (dd_y - dd_y_bar) * {a}",
            ),
        ):
            out.append(
                group.run_regularly(code, when="start", order=6, name=f"oanp_avg_{group.name}")
            )
        if self.params.reset_each_trial:
            for group, var in (
                (network.hidden, "hbar = 0\nrbar"),
                (network.readout, "ybar"),
                (network.loss, "Lbar"),
            ):
                out.append(
                    group.run_regularly(
                        f"{var} = 0",
                        clock=network.trial_clock,
                        when="end",
                        order=1,
                        name=f"oanp_reset_{group.name}",
                    )
                )
        return out
