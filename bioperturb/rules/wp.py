"""Weight perturbation (WP): perturb every weight, correlate with the loss change.

At the start of each trial every plastic synapse draws an offset ψ_ij ~ N(0, σ_w²) that
only the noisy twin sees (it runs with w + ψ, without node noise); at the trial's end
the trial losses of the two twins give (Jabri & Flower 1992; Werfel, Xie & Seung 2005)::

    g_ij = c · (L̃_trial − L_trial) · ψ_ij / σ_w²          ΔW = −η g

E[ψψᵀ]/σ_w² = I, so for small σ_w the expected update is the gradient of the trial loss,
with a variance that grows with the number of weights — WP's known weakness.

In Brian2: the twin's summed currents use ``(w + w_pert)``; the rule's trial-end code
``acc += gate_post * w_pert * inv_var_w`` runs before the optimiser, and a new
``w_pert = sigma_w * randn()`` is drawn for the next trial after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from brian2 import Equations

from bioperturb.rules.perturbation import MATRICES, PerturbationRule, trace_params_check
from bioperturb.schema import param

__all__ = ["WeightPerturbation"]


@dataclass(frozen=True)
class WPParams:
    sigma_w: float = param(1e-3, nonnegative=True, doc="std σ_w of the weight offsets ψ")
    scale: str = param(
        "one", choices=("sqrt_total", "sqrt_layer", "one"), doc="c multiplying the estimate"
    )
    train: tuple[str, ...] = param(list(MATRICES), doc="plastic (and perturbed) matrices")

    def check(self) -> None:
        trace_params_check(self)


class WeightPerturbation(PerturbationRule):
    name = "wp"
    silent = {"rule.sigma_w": 0.0}
    Params = WPParams
    twin = True
    node_noise = False
    noisy_weight = "(w + w_pert)"
    meta = {
        "description": "weight perturbation: per-trial weight offsets x trial loss change",
        "reference": (
            "Jabri & Flower (1992) IEEE Trans. Neural Netw. 3:154; Werfel, Xie & Seung (2005) "
            "Neural Comput. 17:2699"
        ),
    }
    PRODUCTS = {m: "0" for m in MATRICES}

    @property
    def signal(self) -> str:
        return "trial_end"

    def synapse_equations(self) -> Equations:
        return super().synapse_equations() + Equations("w_pert : 1")

    def namespace(self, n_in: int, n_hidden: int, n_out: int) -> dict[str, Any]:
        ns = super().namespace(n_in, n_hidden, n_out)
        ns["sigma_w"] = self.params.sigma_w
        ns["inv_var_w"] = 1.0 / (self.params.sigma_w**2 + 1e-300)
        return ns

    def trace_code(self, matrix: str, dt: float) -> tuple[str | None, str | None]:
        gate = "gate_post" if self.LAYER[matrix] == "hidden" else "gate_y_post"
        return None, f"acc += {gate} * w_pert * inv_var_w"

    def trial_reset_code(self) -> str:
        # a fresh offset for the next trial (also drawn at t = 0 by the reset step)
        return "w_pert = sigma_w * randn()"
