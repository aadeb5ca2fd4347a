r"""Random-feedback local online learning (RFLO; Murray 2019) on the rate network.

A comparator, not a node-perturbation rule: there is no noise and no twin. Each hidden
unit receives its own learning signal, the readout error fed back through a fixed
matrix B (``feedback = "random"``, Murray's rule) or through the readout weights
themselves (``"symmetric"``, B = W_outᵀ)::

    ℓ_i,t = Σ_k B_ik m_t (y_k,t − y*_k,t)                   (per neuron, not global)

Each synapse keeps the part of ∂h_t/∂W that its own unit's leak carries and drops what
the recurrence carries (the truncation that makes the rule local; a = dt/τ, the
``state_gain`` of the Euler step h_t = h_{t−1} + a(−h_{t−1} + W r_{t−1} + U u_{t−1} + b))::

    p_ij,t = (1 − a) p_ij,t−1 + a r_j,t−1                    (W_rec; u_j,t−1 for W_in)
    g_ij   = 1/M Σ_t φ'(h_i,t) ℓ_i,t p_ij,t                  (hidden matrices)
    g_kj   = 1/M Σ_t m_t (y_k,t − y*_k,t) r_j,t              (readout: the exact delta rule)
    ΔW = −η g at the trial's end (training.optimizer)

φ' = 1 − r² (r = tanh h). In Murray's network the leak acts on the rate and φ' sits
inside the trace (p ← (1 − a)p + a φ'(u) r); here the leak acts on the pre-activation h,
so φ'(h_t) multiplies the learning signal at the loss instead. The dropped term is
a W ∂r_{t−1}/∂W_ij: with W_rec = 0 and ``feedback = "symmetric"`` the update is the exact
gradient (BPTT) of the trial loss (tested), and with W_rec ≠ 0 it is that truncation.

In Brian2: the readout error ``err`` is a readout subexpression; the feedback is a summed
variable of the W_out Synapses onto their *presynaptic* (hidden) units,
``fb_pre = B_fb * err_post`` (or ``w * err_post``), so B lives on the readout synapses and
the symmetric form reads the current W_out. Per step (start, order 4) each plastic synapse
updates its trace and accumulates ``acc``; the optimiser reads ``acc`` at the trial's end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from brian2 import Equations

from bioperturb.rules.base import Rule
from bioperturb.rules.perturbation import MATRICES, trace_params_check
from bioperturb.schema import param

__all__ = ["RFLO", "RFLOParams"]

FEEDBACK = ("random", "symmetric")


@dataclass(frozen=True)
class RFLOParams:
    feedback: str = param(
        "random",
        choices=FEEDBACK,
        doc="B: fixed random (Murray's RFLO) or the readout weights W_outᵀ (symmetric)",
    )
    feedback_scale: float = param(
        1.0,
        nonnegative=True,
        doc="random: B_ik ~ N(0, s²/N) (the readout's initial scale at s = 1); "
        "symmetric: B = s·W_outᵀ",
    )
    train: tuple[str, ...] = param(list(MATRICES), doc="plastic weight matrices")

    def check(self) -> None:
        trace_params_check(self)


class RFLO(Rule):
    """RFLO: per-neuron fed-back error × the leak-only eligibility trace."""

    name = "rflo"
    Params = RFLOParams
    twin = False
    node_noise = False
    model_kinds = ("rate",)
    # B is drawn from the run's seed: on the standalone engine it is part of the program's
    # initial state (:meth:`initial_state`), not of the program
    standalone = True
    # no feedback: the hidden matrices get no credit (the readout's delta rule is exact
    # and is not exploration, so it is left out)
    silent = {"rule.feedback_scale": 0.0, "rule.train": ["W_in", "W_rec"]}
    meta = {
        "description": "random-feedback local online learning: per-neuron fed-back readout "
        "error x leak-only eligibility trace (comparator, not a global signal)",
        "reference": (
            "Murray (2019) Local online learning in recurrent networks with random "
            "feedback, eLife 8:e43299"
        ),
    }
    #: presynaptic factor of each hidden matrix's trace
    PRESYNAPTIC = {"W_rec": "r_prev_pre", "W_in": "u_prev_pre"}

    def group_equations(self, group: str) -> Equations:
        if group == "hidden":
            return Equations("fb : 1")
        if group == "readout":
            return Equations("err = mask_at(t) * (y - ystar) : 1")
        return Equations("")

    def synapse_equations(self) -> Equations:
        return Equations("acc : 1\nacc_last : 1\nelig : 1")

    def matrix_equations(self, matrix: str) -> Equations:
        if matrix != "W_out":
            return Equations("")
        if self.params.feedback == "symmetric":
            return Equations("fb_pre = rflo_scale * w * err_post : 1 (summed)")
        # B_fb is constant in use but not declared so: the standalone engine sets it as state
        return Equations("B_fb : 1\nfb_pre = B_fb * err_post : 1 (summed)")

    def namespace(self, n_in: int, n_hidden: int, n_out: int) -> dict[str, Any]:
        return {"rflo_scale": self.params.feedback_scale}

    def feedback_matrix(self, n_hidden: int, n_out: int) -> np.ndarray:
        """The fixed random B, (N, n_out), drawn from the rule's stream of the run's seed."""
        rng = np.random.default_rng(self.seed_sequence)
        return rng.normal(0.0, self.params.feedback_scale / np.sqrt(n_hidden), (n_hidden, n_out))

    def step_code(self, matrix: str) -> str:
        """Per-step code of one plastic matrix (start of the step, after the feedback)."""
        if matrix == "W_out":
            return "acc += minv_at(t) * err_post * r_pre"
        return (
            f"elig = (1 - state_gain) * elig + state_gain * {self.PRESYNAPTIC[matrix]}\n"
            "acc += minv_at(t) * (1 - r_post**2) * fb_post * elig"
        )

    def trial_reset_code(self) -> str:
        """Per-synapse code at every trial boundary, after the optimiser step."""
        return "elig = 0"

    def initial_state(self, shape: dict[str, tuple[int, int]]) -> dict[str, dict[str, Any]]:
        if self.params.feedback != "random":
            return {}
        n_out, n_hidden = shape["W_out"]
        return {"W_out": {"B_fb": self.feedback_matrix(n_hidden, n_out).T}}

    def install(self, network: Any) -> list[Any]:
        # B itself is set with the weights (RateNetwork.set_start, or the standalone state)
        updater = network.synapses["W_out"].summed_updaters["fb_pre"]
        updater.when, updater.order = "start", 2  # after y (0) and the loss (1)
        objs = []
        for matrix in self.params.train:
            objs += self.synapse_operations(
                network, matrix, self.step_code(matrix), reset=self.trial_reset_code()
            )
        return objs
