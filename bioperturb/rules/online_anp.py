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

``baseline = "trial"`` (Fiete & Seung 2006) replaces the running averages in time by
per-time-point averages across trials: for every step s of the trial, h̄_{i,s}, L̄_s (and
ȳ_s, the presynaptic factors r̄_s, and the ‖δ‖² average) are exponential averages over
earlier *training* trials of the same quantity at the same step::

    δ_{i,s} = h_{i,s} − h̄_{i,s},   M_s = c/M · (L_s − L̄_s),
    h̄_{i,s} ← (1 − α) h̄_{i,s} + α h_{i,s}    after use, training trials only

The task-driven trajectory repeats from trial to trial, so it cancels in δ and in L − L̄;
at frozen weights E[(L_s − L̄_s) δ_s] = Cov(L_s, h_s)·(1 + α/(2 − α)) in the steady
state — TD-ANP's direction to first order in σ. What remains biased: the averages lag weight changes
by about (1 − α)/α trials, and one baseline serves all trial conditions (exact only for
tasks whose training trials repeat one condition, such as the pattern task).

``signal = "trial_end"`` drives the rule by ONE broadcast scalar at the trial's end (the
trace, τ_e of the order of the trial, carries the products over it)::

    M_T = c (L_trial − L̄_trial),   L̄_trial = Σ_s m_s L̄_s / M,   g_ij = M_T · elig_ij(T)

With ``baseline = "trial"`` L̄_trial is, by linearity, the exponential average (rate α)
of the trial losses of earlier training trials — a baseline independent of this trial's
noise, as are h̄_s and r̄_s: the REINFORCE estimator with a running reward baseline
(Williams 1992), single pass, unbiased at frozen weights up to the averages' lag. With
``baseline = "temporal"`` L̄_trial is the trial mean of the running average in time, so
L_trial − L̄_trial = Σ_s m_s (L_s − L̄_s)/M is a high-passed loss that carries this
trial's own noise and the task-driven leak: single pass but biased (measured in
docs/rules/online_anp.md; prefer the per-time-point baseline).

Brian2 has no per-neuron arrays indexed by time, so the per-step values live on storage
Synapses from a group of n_steps "step" neurons to the hidden (readout, loss) units:
synapse (s, i) holds unit i's averages for step s. The step neuron s emits a custom event
when the step in the trial equals s, and two event-driven pathways touch only that
column: ``load`` (start of the step: copy the column into the unit) and ``store`` (after
the products: move the averages towards this step's values). Cost per step: n_steps
comparisons and O(N) synaptic updates, not O(N · n_steps). Everything is Brian2 code (no
network_operation); the mechanism (event at ``start``, two pathways, the ``%`` at t = 0)
gave the same numbers in numpy, cython and cpp_standalone on a toy network.

Warm-up: the first training trial has no baseline; it sets h̄, r̄, ȳ, L̄ to its own
values (δ = 0, L − L̄ = 0: its update is exactly zero). Its δ is 0, so it says nothing
about ‖δ‖²; the second training trial sets the ‖δ‖² average, and its loss signal is held
at zero too (otherwise its normaliser would be ‖δ_s‖² alone, the heavy-tailed 1/ε ratio
with one readout unit). Learning starts with the third training trial. Evaluation trials
(noise off) read the baselines but never change them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from brian2 import Equations, NeuronGroup, Synapses, second

from bioperturb.rules.perturbation import MATRICES, PerturbationRule, trace_params_check
from bioperturb.schema import param

__all__ = ["OnlineANP", "BASELINES"]

#: running averages in time, or per-time-point averages across trials
BASELINES = ("temporal", "trial")


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
    baseline: str = param(
        "temporal",
        choices=BASELINES,
        doc="running averages in time (τ_avg) or per-time-point averages across trials (α)",
    )
    baseline_rate: float = param(
        0.8,
        positive=True,
        doc="α: weight of the newest trial in the per-time-point baselines (baseline = trial)",
    )
    signal: str = param(
        "dense",
        choices=("dense", "trial_end"),
        doc="per-step loss difference, or one per trial: c (L_trial − L̄_trial) at trial end",
    )

    def check(self) -> None:
        trace_params_check(self)
        if self.signal == "trial_end" and self.tau_e == 0:
            raise ValueError(
                "signal: 'trial_end' with tau_e = 0 credits only the trial's last step; give "
                "the eligibility trace a time constant of the order of the trial (tau_e)"
            )
        if not 0 < self.baseline_rate <= 1:
            raise ValueError(
                f"baseline_rate: α = {self.baseline_rate} must lie in (0, 1] "
                "(h̄ ← (1 − α) h̄ + α h after each training trial)"
            )
        if self.baseline == "trial" and self.reset_each_trial:
            raise ValueError(
                "reset_each_trial: the per-trial baseline (baseline = 'trial') exists to carry "
                "over between trials; reset_each_trial applies to baseline = 'temporal' only"
            )


class OnlineANP(PerturbationRule):
    name = "online_anp"
    #: without noise and with per-time-point baselines, repeated trials sit on the baseline
    silent = {"model.sigma": 0.0, "rule.baseline": "trial"}
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
    #: per-trial baseline: W_rec pairs δ_s with the average of the vector it multiplied at
    #: s − 1 (r_prev: r, or r̂ with decorrelation), W_out with the average of r_s
    PRODUCTS_TRIAL = {**PRODUCTS, "W_rec": "nrm_post * (h_post - hbar_post) * rpbar_pre"}
    #: per-trial baseline: group → (stored variable, value it averages) per (unit, step);
    #: the group reads the loaded copy ``<var>_s`` through the subexpression ``<var>``
    TRIAL_STORE = {
        "hidden": (("hbar", "h"), ("rbar", "r"), ("rpbar", "r_prev")),
        "readout": (("ybar", "y"),),
        "loss": (("Lbar", "L"), ("dd_h_bar", "dd_h"), ("dd_y_bar", "dd_y")),
    }

    def __init__(self, params: Any):
        super().__init__(params)
        if self.trial:
            self.PRODUCTS = self.PRODUCTS_TRIAL

    @property
    def trial(self) -> bool:
        """Whether the baselines are per-time-point averages across trials."""
        return self.params.baseline == "trial"

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
        if self.trial:
            return eqs + self._trial_equations(group)
        extra = {
            "hidden": "hbar : 1\nrbar : 1",
            "readout": "ybar : 1",
            "loss": "Lbar : 1\ndd_h : 1\ndd_y : 1\ndd_h_bar : 1\ndd_y_bar : 1",
        }
        return eqs + Equations(extra.get(group, ""))

    def _trial_equations(self, group: str) -> Equations:
        """Loaded per-step averages and the baselines the products read.

        ``oanp_trials`` counts the training trials done. The baseline is the loaded
        average once it exists and the current value itself before (so δ = 0 exactly):
        h̄, r̄, ȳ from the second training trial on, L̄ and the ‖δ‖² averages from the
        third (the second trial sets the ‖δ‖² average; L̄ = L holds its signal at zero).
        """
        if group not in self.TRIAL_STORE:
            return Equations("")
        # 0 or 1 exactly, so that w x_s + (1 − w) x is x_s or x bit for bit
        w = "clip(oanp_trials - 1, 0, 1)" if group == "loss" else "clip(oanp_trials, 0, 1)"
        lines = ["oanp_trials : 1"]
        if group == "loss":
            lines += ["dd_h : 1", "dd_y : 1"]
        for var, value in self.TRIAL_STORE[group]:
            lines += [f"{var}_s : 1", f"{var} = {w} * {var}_s + (1 - {w}) * {value} : 1"]
        return Equations("\n".join(lines))

    def namespace(self, n_in: int, n_hidden: int, n_out: int) -> dict[str, Any]:
        ns = super().namespace(n_in, n_hidden, n_out)
        ns["eps_anp"] = self.params.eps
        ns["tau_avg"] = self.params.tau_avg * second
        ns["oanp_alpha"] = self.params.baseline_rate
        return ns

    def install_sums(self, network: Any) -> list[Any]:
        out = []
        specs = [
            (network.hidden, "dd_h_post = (h_pre - hbar_pre)**2 : 1 (summed)", "oanp_sum_hidden"),
            (network.readout, "dd_y_post = (y_pre - ybar_pre)**2 : 1 (summed)", "oanp_sum_readout"),
        ]
        for pre, model, name in specs:
            syn = Synapses(pre, network.loss, model, clock=network.clock, name=name)
            network.connect_global(syn)
            network.schedule_summed(syn, model.split("_post")[0], order=2)
            out.append(syn)
        if self.trial:
            return out + self._install_trial_store(network)
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

    def _install_trial_store(self, network: Any) -> list[Any]:
        """Per-(unit, step) averages on event-driven storage Synapses (baseline = trial).

        Schedule within a step (``start`` slot): −4 the step neuron s = (step in trial)
        emits ``oanp_step``; −3 the groups clear their loaded copies; −2 pathway ``load``
        adds column s into them (``+=`` on a cleared value: one synapse per unit, and
        Brian2 sees no order dependence); 0–4 the network and the rule use them; 6 pathway
        ``store`` moves column s towards this step's values (rate α, 1 on the first
        training trial, 0 on evaluation trials: ``noise_at(t)``).
        """
        clock = network.clock
        n_steps = round(float(network.trial_clock.dt_) / float(clock.dt_))
        # tape row 0 is the reset step; trial k's step s is row 1 + k n_steps + s
        steps = NeuronGroup(
            n_steps,
            "",
            events={"oanp_step": f"i == (t_in_timesteps - 1) % {n_steps}"},
            clock=clock,
            name="oanp_steps",
        )
        steps.set_event_schedule("oanp_step", when="start", order=-4)
        out: list[Any] = [steps]
        groups = {"hidden": network.hidden, "readout": network.readout, "loss": network.loss}
        for gname, stored in self.TRIAL_STORE.items():
            group = groups[gname]
            # the first training trial copies (rate 1); the ‖δ‖² averages copy on the
            # second, since the first has δ = 0 by construction
            first = {
                var: "clip(oanp_trials_post - 1, 0, 1)"
                if var.startswith("dd_")
                else "clip(oanp_trials_post, 0, 1)"
                for var, _ in stored
            }
            store = [
                f"{var}_avg += noise_at(t) * (1 - (1 - oanp_alpha) * {first[var]}) "
                f"* ({value}_post - {var}_avg)"
                for var, value in stored
            ]
            syn = Synapses(
                steps,
                group,
                "\n".join(f"{var}_avg : 1" for var, _ in stored),
                on_pre={
                    "load": "\n".join(f"{var}_s_post += {var}_avg" for var, _ in stored),
                    "store": "\n".join(store),
                },
                on_event={"load": "oanp_step", "store": "oanp_step"},
                # one scalar delay per pathway: no per-synapse delay arrays
                delay={"load": 0 * second, "store": 0 * second},
                clock=clock,
                name=f"oanp_store_{gname}",
            )
            syn.connect()
            syn.load.when, syn.load.order = "start", -2
            syn.store.when, syn.store.order = "start", 6
            out.append(syn)
            out.append(
                group.run_regularly(
                    "\n".join(f"{var}_s = 0" for var, _ in stored),
                    when="start",
                    order=-3,
                    name=f"oanp_clear_{gname}",
                )
            )
            out.append(
                group.run_regularly(
                    "oanp_trials += learn_at(t)",
                    clock=network.trial_clock,
                    when="end",
                    order=1,
                    name=f"oanp_count_{gname}",
                )
            )
        return out
