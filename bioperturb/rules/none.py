"""No plasticity: the forward-only control (and the speed baseline of the benchmarks).

The network runs a single (noisy, if σ > 0) pass; no weight ever changes. Use it for a
no-learning control curve and to measure what a learning rule costs beyond simulation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from brian2 import Equations

from bioperturb.rules.base import Rule

__all__ = ["NoPlasticity"]


@dataclass(frozen=True)
class NoPlasticityParams:
    """No parameters."""


class NoPlasticity(Rule):
    name = "none"
    Params = NoPlasticityParams
    twin = False
    plastic = False
    meta = {"description": "no plasticity: forward-only control", "reference": ""}

    def synapse_equations(self) -> Equations:
        return Equations("")

    def install(self, network: Any) -> list[Any]:
        return []
