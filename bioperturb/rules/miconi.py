"""Miconi (2017): sparse kicks, a supralinear eligibility trace, one reward per trial.

One network runs alone (no clean twin). Exploration comes from sparse *kicks*: at every
step each hidden unit independently receives, with probability ``kick_rate``·dt, a
perturbation drawn uniformly from [−A, A], added to its state h (the network runs on
the kicked state; ``noise = "kicks"`` in :mod:`bioperturb.networks.rate`). Each synapse
accumulates, over the whole trial, a supralinear function of its presynaptic rate times
the fluctuation of its postsynaptic state around a short running average::

    h̄_i ← h̄_i + (1 − e^(−dt/τ_avg)) (h_i − h̄_i)            (after use; 0 at trial start)
    e_ij ← e_ij + S(r_{j,t−1} (h_{i,t} − h̄_{i,t−1})),       S(x) = sign(x) |x|^p  (p = 3)

At the trial's end one broadcast scalar, the reward R = −L_trial (the task's loss over its
masked steps) against a running average R̄_c of the rewards of earlier trials *of the same
condition* c, turns the trace into the update::

    ΔW_ij = η e_ij (R − R̄_c)      i.e.   acc_ij = e_ij (L_trial − L̄_c),  ΔW = −η acc (SGD)
    L̄_c ← L̄_c + α_R (L_trial − L̄_c)        (after use, training trials of condition c only)

With ``error_scaling`` the signal is L̄_c (L_trial − L̄_c), the authors' code's extra
factor Ē_c: the step shrinks as the condition's loss falls.

The optimiser (``training.optimizer``; clipping with ``training.max_step``) is separate
from the rule. W_in pairs the fluctuation with the input u_{j,t−1}; W_out with the
readout's own fluctuation y_k − ȳ_k (same running average) and r_{j,t}. The paper trains
the recurrent weights only (``train = ["W_rec"]``, the default).

Warm-up: the first training trial of each condition has no baseline; it sets L̄_c to its
own loss and its signal is held at 0 (its update is exactly zero). Evaluation trials
(kicks off) read the baselines and never change them.

In Brian2 (all Brian2 code; no ``network_operation``). The condition label of the current
trial comes from the tape as a TimedArray ``cond_at``; the per-condition baselines live in
a group of K condition units (``miconi_conditions``)::

    conditions:  active = int(i == cond_at(t));  Lbar_cond, seen, L_new
    loss (start 2):      Lbar_c = Σ active · Lbar_cond,  seen_c = Σ active · seen  (summed)
                         signal = seen_c · (L_trial − Lbar_c)       (read at the trial's end)
    W_rec (start 4):     elig = elig + S(r_prev_pre · (h_post − hbar_post))
    hidden (start 6):    hbar += (1 − exp(−dt/τ_avg)) · (h − hbar)
    trial end (−3):      L_new = L_trial                                     (summed)
    trial end (−1, 0):   acc += gate · elig;  optimiser step
    trial end (1):       Lbar_cond += learn · active · (1 − (1 − α_R) seen) (L_new − Lbar_cond)
                         seen = clip(seen + learn · active, 0, 1);  elig = hbar = ybar = 0

With A = 0 (or ``kick_rate`` = 0) and trials that repeat exactly (the pattern task),
L_trial = L̄_c and the update is exactly 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from brian2 import Equations, NeuronGroup, Synapses, hertz, second

from bioperturb.rules.perturbation import PerturbationRule, trace_params_check
from bioperturb.schema import param

__all__ = ["Miconi", "MiconiParams"]


@dataclass(frozen=True)
class MiconiParams:
    kick_rate: float = param(
        3.0,
        unit="hertz",
        nonnegative=True,
        doc="rate of each unit's exploratory kicks (probability kick_rate·dt per step)",
    )
    kick_amplitude: float = param(
        0.5,
        nonnegative=True,
        doc="A: a kick is uniform in [−A, A], added to h (the paper's kick of 16 on the "
        "drive moves x by 16·dt/τ ≈ 0.53)",
    )
    tau_avg: float = param(
        1e-3 / math.log(20),
        unit="second",
        positive=True,
        doc="time constant of the running averages h̄, ȳ (default 1 ms / ln 20 ≈ 0.334 ms: "
        "the paper's weight 0.05 on the old average per 1 ms step)",
    )
    exponent: float = param(
        3.0, positive=True, doc="p of S(x) = sign(x)|x|^p (3: x³ as published; 1: identity)"
    )
    baseline_rate: float = param(
        0.25,
        positive=True,
        doc="α_R: weight of the newest trial in the per-condition baseline L̄_c "
        "(authors' code: 1 − 0.75)",
    )
    error_scaling: bool = param(
        False,
        doc="multiply the signal by the condition's running loss L̄_c (the authors' code's "
        "step η Ē_c e (E − Ē_c): steps shrink as the task is learned)",
    )
    train: tuple[str, ...] = param(["W_rec"], doc="plastic weight matrices (paper: W_rec)")

    def check(self) -> None:
        trace_params_check(self)
        if self.exponent < 1:
            raise ValueError(
                f"exponent: S(x) = sign(x)|x|^p needs p ≥ 1 (supralinear or identity), "
                f"got {self.exponent}"
            )
        if not 0 < self.baseline_rate <= 1:
            raise ValueError(
                f"baseline_rate: α_R = {self.baseline_rate} must lie in (0, 1] "
                "(L̄_c ← L̄_c + α_R (L_trial − L̄_c) after each training trial of condition c)"
            )

    def check_model(self, model: Any) -> None:
        """A kick probability per step kick_rate·dt must not exceed 1."""
        if self.kick_rate * model.dt > 1:
            raise ValueError(
                f"kick_rate: {self.kick_rate} Hz × dt = {self.kick_rate * model.dt:g} is a "
                "probability per step and must not exceed 1"
            )


class Miconi(PerturbationRule):
    """Miconi (2017) on the rate network: kicks, S(pre × fluctuation), trial-end reward."""

    name = "miconi"
    silent = {"rule.kick_amplitude": 0.0}
    Params = MiconiParams
    twin = False
    noise = "kicks"
    per_condition = True
    model_kinds = ("rate",)
    standalone = False
    meta = {
        "description": "sparse kicks, supralinear trace of pre x fluctuation, trial-end "
        "reward against a per-condition baseline (single pass)",
        "reference": (
            "Miconi (2017) Biologically plausible learning in recurrent neural networks "
            "reproduces neural dynamics observed during cognitive tasks, eLife 6:e20899"
        ),
    }
    #: the argument of S per matrix: presynaptic factor × postsynaptic fluctuation
    ARGUMENTS = {
        "W_rec": "r_prev_pre * (h_post - hbar_post)",
        "W_in": "u_prev_pre * (h_post - hbar_post)",
        "W_out": "r_pre * (y_post - ybar_post)",
    }

    def __init__(self, params: Any):
        super().__init__(params)
        self.PRODUCTS = {m: self.supralinear(x) for m, x in self.ARGUMENTS.items()}

    def supralinear(self, x: str) -> str:
        """S(x) as Brian2 code: x itself for p = 1, else sign(x) |x|^p."""
        p = float(self.params.exponent)
        return x if p == 1 else f"sign({x}) * abs({x})**{p!r}"

    @property
    def signal(self) -> str:
        return "trial_end"

    def trace_decay(self, matrix: str, dt: float) -> float:
        return 1.0  # the trace sums over the trial and is cleared at its end

    def group_equations(self, group: str) -> Equations:
        if group == "loss":
            scale = "Lbar_c * " if self.params.error_scaling else ""
            return Equations(
                f"""
                nrm_hidden = 1 : 1
                nrm_readout = 1 : 1
                L_trial : 1
                Lbar_c : 1
                seen_c : 1
                signal = seen_c * {scale}(L_trial - Lbar_c) : 1
                """
            )
        eqs = super().group_equations(group)
        extra = {"hidden": "hbar : 1", "readout": "ybar : 1"}
        return eqs + Equations(extra.get(group, ""))

    def namespace(self, n_in: int, n_hidden: int, n_out: int) -> dict[str, Any]:
        p = self.params
        return {
            "kick_rate": p.kick_rate * hertz,
            "kick_amp": p.kick_amplitude,
            "miconi_tau_avg": p.tau_avg * second,
            "miconi_alpha": p.baseline_rate,
        }

    def trial_loss_code(self) -> tuple[str, str]:
        return "L_trial += L * M_inv", "L_trial = 0"

    def install(self, network: Any) -> list[Any]:
        return (
            super().install(network)
            + self._install_averages(network)
            + (self._install_conditions(network))
        )

    def _install_averages(self, network: Any) -> list[Any]:
        """h̄ and ȳ: move after the step's products (order 4), restart with each trial."""
        out = []
        gain = "(1 - exp(-dt / miconi_tau_avg))"
        for group, var, value in ((network.hidden, "hbar", "h"), (network.readout, "ybar", "y")):
            out.append(
                group.run_regularly(
                    f"{var} += {gain} * ({value} - {var})",
                    when="start",
                    order=6,
                    name=f"miconi_avg_{group.name}",
                )
            )
            out.append(
                group.run_regularly(
                    f"{var} = 0",
                    clock=network.trial_clock,
                    when="end",
                    order=1,
                    name=f"miconi_reset_{group.name}",
                )
            )
        return out

    def _install_conditions(self, network: Any) -> list[Any]:
        """Per-condition reward baselines: K condition units, read and written by sums."""
        loss = network.loss
        cond = NeuronGroup(
            network.n_conditions,
            """
            Lbar_cond : 1
            seen : 1
            L_new : 1
            active = int(i == cond_at(t)) : 1
            """,
            clock=network.clock,
            name="miconi_conditions",
        )
        read = Synapses(
            cond,
            loss,
            "Lbar_c_post = active_pre * Lbar_cond_pre : 1 (summed)\n"
            "seen_c_post = active_pre * seen_pre : 1 (summed)",
            clock=network.clock,
            name="miconi_baseline_read",
        )
        read.connect()
        for var in ("Lbar_c", "seen_c"):
            network.schedule_summed(read, var, order=2)
        write = Synapses(
            loss,
            cond,
            "L_new_post = L_trial_pre : 1 (summed)",
            clock=network.trial_clock,
            name="miconi_baseline_write",
        )
        write.connect()
        updater = write.summed_updaters["L_new_post"]
        updater.when, updater.order = "end", -3
        cond.run_regularly(
            "Lbar_cond += learn_at(t) * active * (1 - (1 - miconi_alpha) * seen)"
            " * (L_new - Lbar_cond)\n"
            "seen = clip(seen + learn_at(t) * active, 0, 1)",
            clock=network.trial_clock,
            when="end",
            order=1,
            name="miconi_baseline_update",
        )
        return [cond, read, write]  # the update runs as part of ``cond``
