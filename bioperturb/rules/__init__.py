"""Learning-rule registry: one rule per file, looked up by name."""

from __future__ import annotations

from bioperturb.rules.base import Rule
from bioperturb.rules.miconi import Miconi
from bioperturb.rules.none import NoPlasticity
from bioperturb.rules.np import NodePerturbation
from bioperturb.rules.online_anp import OnlineANP
from bioperturb.rules.td_anp import TDANP
from bioperturb.rules.wp import WeightPerturbation

__all__ = ["Rule", "RULES", "get_rule"]

RULES: dict[str, type[Rule]] = {
    cls.name: cls
    for cls in (TDANP, NodePerturbation, WeightPerturbation, OnlineANP, Miconi, NoPlasticity)
}


def get_rule(name: str) -> type[Rule]:
    """The rule class registered under ``name`` (KeyError lists the known names)."""
    try:
        return RULES[name]
    except KeyError:
        raise KeyError(f"unknown rule '{name}' (known: {', '.join(sorted(RULES))})") from None
