"""Node perturbation (NP): the injected noise itself as the postsynaptic factor.

The noisy twin receives white noise; the clean twin gives the baseline loss. The update
is the classic score-function estimate (Williams 1992; Fiete & Seung 2006; Werfel, Xie &
Seung 2005), with the injected per-step noise increment ξ_{i,t} (variance σ_ξ² =
σ² · 2 dt/τ) paired with the presynaptic activity of the step it entered::

    p_ij,t = κ ξ_{i,t−1} x_{j,t−1} / σ_ξ²          g_ij = c/M · Σ_t (L̃_t − L_t) elig_ij,t

with the eligibility trace elig of :mod:`bioperturb.rules.perturbation` and κ =
∂h_t/∂(W x_{t−1}) the model's ``state_gain`` (dt/τ for the rate network's Euler step, 1 for
the LIF current h = W r): the noise enters h directly, a weight through κ, so κ makes the
estimate of every matrix the gradient itself (same scale as the readout's). With ``tau_e = 0``
only the step right after the noise is credited; a trace of the order of τ (or the whole
trial, with ``signal = "trial_end"``) credits the later losses that the noise changed, at
the price of variance. E[ξ ξᵀ]/σ_ξ² = I, so for small σ the expected update is the gradient
(credited as far as the trace reaches): the default scale is 1 (``scale = "one"``).

The readout receives no injected noise; its update uses the output activity difference
ỹ − y normalised by ‖ỹ − y‖², as in ANP (for one linear output this is exact).
"""

from __future__ import annotations

from dataclasses import dataclass

from bioperturb.rules.perturbation import SCALES, TraceParams
from bioperturb.rules.td_anp import TDANP
from bioperturb.schema import param

__all__ = ["NodePerturbation"]


@dataclass(frozen=True)
class NPParams(TraceParams):
    # the estimator is already normalised by σ_ξ²: no extra scale by default
    scale: str = param("one", choices=SCALES, doc="c multiplying the estimate")


class NodePerturbation(TDANP):
    """NP with a clean-twin baseline; shares TD-ANP's sums and broadcasts."""

    name = "np"
    Params = NPParams
    meta = {
        "description": "node perturbation: injected noise x presynaptic activity (clean baseline)",
        "reference": (
            "Williams (1992) Mach. Learn. 8:229; Fiete & Seung (2006) Phys. Rev. Lett. "
            "97:048104; Werfel, Xie & Seung (2005) Neural Comput. 17:2699"
        ),
    }
    PRODUCTS = {
        "W_rec": "noise_h_post * r_prev_pre * inv_var_post",
        "W_in": "noise_h_post * u_prev_pre * inv_var_post",
        "W_out": "nrm_y_post * (y_n_post - y_post) * r_pre",
    }

    #: factor of the hidden layers' estimate (iterative NP: the number of layers)
    GAIN = "1"

    def normalisers(self) -> dict[str, str]:
        return {"hidden": "1", "readout": "1 / (dd_y + eps_anp)"}

    def group_equations(self, group: str):
        eqs = super().group_equations(group)
        if group == "hidden":
            from brian2 import Equations

            gain = "" if self.GAIN == "1" else f"{self.GAIN} * "
            eqs += Equations(
                f"inv_var = {gain}state_gain / (sigma**2 * 2 * dt / tau + eps_anp) : 1 (shared)"
            )
        return eqs
