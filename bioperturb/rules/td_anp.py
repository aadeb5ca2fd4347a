"""Time-discretised activity-based node perturbation (TD-ANP).

Two passes of the same network run side by side: a clean twin ``h`` and a noisy twin
``h_n`` driven by the same input.  Their *activity* difference δ_t = h̃_t − h_t (not the
injected noise) and the difference of the global losses L̃_t − L_t give, per time step, a
directional-derivative estimate of the gradient (Dalm et al. 2024; García Fernández, Keemink
& van Gerven 2024)::

    g_ij = c/M · Σ_t (L̃_t − L_t) δ_{i,t} x_{j,t−1} / ‖δ_t‖²        ΔW_ij = −η g_ij

with x the clean presynaptic rate r (recurrent weights), the input u (input weights), and
for the readout δ = ỹ_t − y_t paired with r_t.  M = Σ_t m_t is the number of loss-carrying
steps of the trial, so η does not depend on the trial length, and c is the scale
(``"sqrt_total"``: √(n_in + N + n_out) as in the RNN paper's code; ``"sqrt_layer"``:
√N; ``"one"``).  ‖δ_t‖² is taken per layer and per time step
(``normalise = "per_layer"``) or left out (``"none"``; then g carries a factor σ² and η
must absorb 1/σ²).

In Brian2 (all per step, all local; the trace and signal machinery is shared with the
other perturbation rules, see :mod:`bioperturb.rules.perturbation`)::

    loss group:   dd_h = Σ_i (h_n,i − h_i)²           (summed from hidden)
                  dd_y = Σ_k (y_n,k − y_k)²           (summed from readout)
                  nrm_hidden = 1 / (dd_h + ε),  signal = c · M⁻¹ · (L_n − L)
    hidden:       nrm = nrm_hidden, gate = signal     (summed broadcasts of scalars)
    W_rec syn.:   elig = λ elig + nrm_post · (h_n_post − h_post) · r_prev_pre
                  acc += gate_post · elig
    W_in  syn.:   … · u_prev_pre;     W_out syn.: nrm_y_post · (y_n_post − y_post) · r_pre

λ = 0 (``tau_e = 0``, the default) is TD-ANP as published; ``tau_e`` > 0 adds an
eligibility trace in time, ``signal = "trial_end"`` one loss difference per trial.

With σ = 0 the twins coincide, δ = 0 and L_n = L, so ``acc`` stays exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from brian2 import Synapses

from bioperturb.rules.perturbation import PerturbationRule, TraceParams
from bioperturb.schema import param

__all__ = ["TDANP", "TDANPParams"]


@dataclass(frozen=True)
class TDANPParams(TraceParams):
    normalise: str = param(
        "per_layer", choices=("per_layer", "none"), doc="divide by ‖δ_t‖² of the layer, or not"
    )


class TDANP(PerturbationRule):
    """TD-ANP; with ``tau_e`` > 0 the products pass through an eligibility trace."""

    name = "td_anp"
    Params = TDANPParams
    twin = True
    meta = {
        "description": "time-discretised activity-based node perturbation (clean + noisy twin)",
        "reference": (
            "Dalm, van Gerven, Ahmad (2024) Effective learning with node perturbation in "
            "deep neural networks, arXiv:2310.00965; García Fernández, Keemink, van Gerven "
            "(2024) Gradient-free training of recurrent neural networks using random "
            "perturbations, Front. Neurosci. 18:1439155"
        ),
    }
    #: the presynaptic factor is the clean activity; δ is the twins' activity difference
    PRODUCTS = {
        "W_rec": "nrm_post * (h_n_post - h_post) * r_prev_pre",
        "W_in": "nrm_post * (h_n_post - h_post) * u_prev_pre",
        "W_out": "nrm_y_post * (y_n_post - y_post) * r_pre",
    }

    def normalisers(self) -> dict[str, str]:
        if self.params.normalise == "none":
            return {"hidden": "1", "readout": "1"}
        return {"hidden": "1 / (dd_h + eps_anp)", "readout": "1 / (dd_y + eps_anp)"}

    def group_equations(self, group: str):
        eqs = super().group_equations(group)
        if group == "loss":
            from brian2 import Equations

            eqs += Equations("dd_h : 1\ndd_y : 1")
        return eqs

    def namespace(self, n_in: int, n_hidden: int, n_out: int) -> dict[str, Any]:
        ns = super().namespace(n_in, n_hidden, n_out)
        ns["eps_anp"] = self.params.eps
        return ns

    def install_sums(self, network: Any) -> list[Any]:
        """‖δ_t‖² of the hidden and the readout layer, summed into the loss group."""
        specs = [
            (network.hidden, "dd_h_post = (h_n_pre - h_pre)**2 : 1 (summed)", "anp_sum_hidden"),
            (network.readout, "dd_y_post = (y_n_pre - y_pre)**2 : 1 (summed)", "anp_sum_readout"),
        ]
        out = []
        for pre, model, name in specs:
            syn = Synapses(pre, network.loss, model, clock=network.clock, name=name)
            network.connect_global(syn)
            network.schedule_summed(syn, model.split("_post")[0], order=2)
            out.append(syn)
        return out
