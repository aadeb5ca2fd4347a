"""Dopamine-modulated STDP (Izhikevich 2007): the reference three-factor rule.

Spike-timing-dependent plasticity does not change the weight directly; it writes into a
slow synaptic *eligibility trace* c, and the weight changes only while the neuromodulator
(dopamine) concentration d is non-zero (Izhikevich 2007, Cereb. Cortex 17:2443, eqs 1–3)::

    dc/dt = −c/τ_c + STDP(Δt) · δ(t − t_pre/post)
    dd/dt = −d/τ_d + DA(t)
    dw/dt = η · c · d

    STDP(Δt) = A₊ exp(−Δt/τ₊)     Δt = t_post − t_pre > 0 (pre before post: potentiation)
             = −A₋ exp(Δt/τ₋)     Δt < 0 (post before pre: depression)

The pair-based STDP is written with the usual presynaptic and postsynaptic traces (each
nearest-neighbour-free, all-to-all pairs): a presynaptic spike adds A₊ to ``apre`` and
the postsynaptic trace ``apost`` (≤ 0) to c; a postsynaptic spike adds −A₋ to ``apost``
and ``apre`` to c. Defaults are the paper's: τ_c = 1 s, τ_d = 200 ms, A₊ = 1.0,
A₋ = 1.5, τ₊ = τ₋ = 20 ms (the paper's dopamine step per reward is 0.5 µM; here d is
dimensionless and a reward of size R adds R to it, ``schedule.reward``).

c and w are integrated with Euler steps of dt (c decays by 1 − dt/τ_c per step, as the
perturbation rules' eligibility traces do), the spike traces exactly between events.

This rule is a synaptic-protocol rule (``kind = "synaptic"``, :mod:`bioperturb.synaptic`):
it needs presynaptic and postsynaptic spikes, which the synaptic schedule supplies. It is
not (yet) a training rule of the rate or LIF networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from brian2 import Equations, second

from bioperturb.schema import param

__all__ = ["DopamineSTDP", "DopamineSTDPParams"]


@dataclass(frozen=True)
class DopamineSTDPParams:
    tau_c: float = param(1.0, unit="second", positive=True, doc="τ_c of the eligibility trace c")
    tau_d: float = param(0.2, unit="second", positive=True, doc="τ_d of the dopamine d")
    a_plus: float = param(1.0, nonnegative=True, doc="A₊: potentiation of a pre→post pair")
    a_minus: float = param(1.5, nonnegative=True, doc="A₋: depression of a post→pre pair")
    tau_plus: float = param(0.02, unit="second", positive=True, doc="τ₊ of the causal side")
    tau_minus: float = param(0.02, unit="second", positive=True, doc="τ₋ of the acausal side")
    lr: float = param(1.0, unit="hertz", nonnegative=True, doc="η in dw/dt = η c d")


class DopamineSTDP:
    """Izhikevich's DA-STDP as Brian2 fragments for the synaptic protocols."""

    name: ClassVar[str] = "da_stdp"
    Params: ClassVar[type] = DopamineSTDPParams
    meta: ClassVar[dict[str, Any]] = {
        "description": "dopamine-modulated STDP: STDP into an eligibility trace c, Δw ∝ c·d",
        "reference": (
            "Izhikevich (2007) Solving the distal reward problem through linkage of STDP "
            "and dopamine signaling, Cereb. Cortex 17:2443-2452"
        ),
    }
    #: the synapse's eligibility and the postsynaptic neuromodulator (what is recorded)
    eligibility: ClassVar[str] = "c"
    modulator: ClassVar[str] = "da"

    def __init__(self, params: Any):
        self.params = params

    def synapse_equations(self) -> Equations:
        return Equations(
            """
            dc/dt = -c / tau_c : 1 (clock-driven)
            dw/dt = lr_da * c * da_post : 1 (clock-driven)
            dapre/dt = -apre / tau_plus : 1 (event-driven)
            dapost/dt = -apost / tau_minus : 1 (event-driven)
            """
        )

    on_pre: ClassVar[str] = "apre += a_plus\nc += apost"
    on_post: ClassVar[str] = "apost -= a_minus\nc += apre"

    def post_equations(self) -> Equations:
        """The neuromodulator at the postsynaptic unit; ``da += reward`` per step."""
        return Equations("dda/dt = -da / tau_d : 1")

    def namespace(self) -> dict[str, Any]:
        p = self.params
        return {
            "tau_c": p.tau_c * second,
            "tau_d": p.tau_d * second,
            "a_plus": p.a_plus,
            "a_minus": p.a_minus,
            "tau_plus": p.tau_plus * second,
            "tau_minus": p.tau_minus * second,
            "lr_da": p.lr / second,
        }

    def stdp(self, dt_pair: Any) -> Any:
        """STDP(Δt) of one pre/post pair (Δt = t_post − t_pre, seconds): the jump of c.
        Δt = 0 (both spikes in one step) potentiates: Brian2 runs the presynaptic pathway
        first, so the postsynaptic spike finds the presynaptic trace."""
        import numpy as np

        p, x = self.params, np.asarray(dt_pair, dtype=float)
        return np.where(
            x >= 0, p.a_plus * np.exp(-x / p.tau_plus), -p.a_minus * np.exp(x / p.tau_minus)
        )
