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
√(layer size); ``"one"``).  ‖δ_t‖² is taken per layer and per time step
(``normalise = "per_layer"``) or left out (``"none"``; then g carries a factor σ² and η
must absorb 1/σ²).

In Brian2 (all per step, all local)::

    loss group:   dd_h = Σ_i (h_n,i − h_i)²           (summed from hidden)
                  dd_y = Σ_k (y_n,k − y_k)²           (summed from readout)
                  ghat_h = c_h · M⁻¹ · (L_n − L) / (dd_h + ε)
    hidden:       gate = ghat_h                       (summed broadcast of a scalar)
    W_rec syn.:   acc += gate_post · (h_n_post − h_post) · r_prev_pre
    W_in  syn.:   acc += gate_post · (h_n_post − h_post) · u_prev_pre
    W_out syn.:   acc += gate_y_post · (y_n_post − y_post) · r_pre

With σ = 0 the twins coincide, δ = 0 and L_n = L, so ``acc`` stays exactly 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from brian2 import Equations, Synapses

from bioperturb.rules.base import Rule
from bioperturb.schema import param

__all__ = ["TDANP"]

MATRICES = ("W_in", "W_rec", "W_out")

#: accumulation code per weight matrix (the presynaptic factor is the clean activity)
ACCUMULATE = {
    "W_rec": "acc += gate_post * (h_n_post - h_post) * r_prev_pre",
    "W_in": "acc += gate_post * (h_n_post - h_post) * u_prev_pre",
    "W_out": "acc += gate_y_post * (y_n_post - y_post) * r_pre",
}


@dataclass(frozen=True)
class TDANPParams:
    scale: str = param(
        "sqrt_total",
        choices=("sqrt_total", "sqrt_layer", "one"),
        doc="c: √(n_in+N+n_out) (paper code), √(layer size), or 1",
    )
    normalise: str = param(
        "per_layer", choices=("per_layer", "none"), doc="divide by ‖δ_t‖² of the layer, or not"
    )
    train: tuple[str, ...] = param(list(MATRICES), doc="plastic weight matrices")
    eps: float = param(1e-30, positive=True, doc="ε guarding 0/0 when δ = 0 (σ = 0, step 0)")

    def check(self) -> None:
        bad = [m for m in self.train if m not in MATRICES]
        if bad:
            raise ValueError(f"train: unknown matrix '{bad[0]}' (known: {', '.join(MATRICES)})")
        if not self.train:
            raise ValueError("train: at least one matrix must be plastic")


class TDANP(Rule):
    """TD-ANP with trial-end application of the summed update."""

    name = "td_anp"
    Params = TDANPParams
    twin = True
    meta = {
        "description": "time-discretised activity-based node perturbation (clean + noisy twin)",
        "reference": (
            "Dalm, Ahmad, Ahmad, van Gerven (2024) Effective learning with node perturbation in "
            "deep neural networks, arXiv:2310.00965; García Fernández, Keemink, van Gerven "
            "(2024) Gradient-free training of recurrent neural networks using random "
            "perturbations, Front. Neurosci. 18:1439155"
        ),
    }

    def group_equations(self, group: str) -> Equations:
        return {
            "hidden": Equations("gate : 1"),
            "readout": Equations("gate_y : 1"),
            "loss": Equations(
                """
                dd_h : 1
                dd_y : 1
                ghat_h = c_h * M_inv * (L_n - L) / (norm_h * dd_h + eps_anp) : 1
                ghat_y = c_y * M_inv * (L_n - L) / (norm_y * dd_y + eps_anp) : 1
                """
            ),
        }.get(group, Equations(""))

    def scales(self, n_in: int, n_hidden: int, n_out: int) -> tuple[float, float]:
        """(c_h, c_y) for the hidden and readout layers."""
        if self.params.scale == "sqrt_total":
            c = math.sqrt(n_in + n_hidden + n_out)
            return c, c
        if self.params.scale == "sqrt_layer":
            return math.sqrt(n_hidden), math.sqrt(n_out)
        return 1.0, 1.0

    def namespace(self, n_in: int, n_hidden: int, n_out: int) -> dict[str, Any]:
        c_h, c_y = self.scales(n_in, n_hidden, n_out)
        per_layer = 1.0 if self.params.normalise == "per_layer" else 0.0
        # With normalise = "none" the denominator is eps_anp alone; use 1 instead.
        eps = self.params.eps if per_layer else 1.0
        return {
            "c_h": c_h,
            "c_y": c_y,
            "norm_h": per_layer,
            "norm_y": per_layer,
            "eps_anp": eps,
        }

    def install(self, network: Any) -> list[Any]:
        """Global sums, the broadcast of the two gates, and the accumulation ops."""
        hid, ro, loss = network.hidden, network.readout, network.loss
        objs = []
        specs = [
            (hid, loss, "dd_h_post = (h_n_pre - h_pre)**2 : 1 (summed)", "anp_sum_hidden"),
            (ro, loss, "dd_y_post = (y_n_pre - y_pre)**2 : 1 (summed)", "anp_sum_readout"),
            (loss, hid, "gate_post = ghat_h_pre : 1 (summed)", "anp_gate_hidden"),
            (loss, ro, "gate_y_post = ghat_y_pre : 1 (summed)", "anp_gate_readout"),
        ]
        sum_h, sum_y, to_h, to_y = (
            Synapses(pre, post, model, clock=network.clock, name=name)
            for pre, post, model, name in specs
        )
        for syn in (sum_h, sum_y, to_h, to_y):
            syn.connect()
            objs.append(syn)
        network.schedule_summed(sum_h, "dd_h", order=2)
        network.schedule_summed(sum_y, "dd_y", order=2)
        network.schedule_summed(to_h, "gate", order=3)
        network.schedule_summed(to_y, "gate_y", order=3)
        for matrix in self.params.train:
            syn = network.synapses[matrix]
            objs.append(
                syn.run_regularly(
                    ACCUMULATE[matrix],
                    when="start",
                    order=4,
                    name=f"anp_accumulate_{matrix.lower()}",
                )
            )
        return objs
