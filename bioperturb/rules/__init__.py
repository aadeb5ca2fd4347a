"""Learning-rule registry: one rule per file, looked up by name; users add their own
(``@register_rule``, entry point ``bioperturb.rules``, or ``"module:Class"``)."""

from __future__ import annotations

from bioperturb.registry import Registry, decorator_for
from bioperturb.rules.base import Rule
from bioperturb.rules.eprop import EProp
from bioperturb.rules.inp import IterativeNP
from bioperturb.rules.miconi import Miconi
from bioperturb.rules.none import NoPlasticity
from bioperturb.rules.np import NodePerturbation
from bioperturb.rules.online_anp import OnlineANP
from bioperturb.rules.rflo import RFLO
from bioperturb.rules.td_anp import TDANP
from bioperturb.rules.wp import WeightPerturbation

__all__ = ["Rule", "RULES", "get_rule", "register_rule"]

#: every rule by name (a read-only mapping; see :class:`bioperturb.registry.Registry`)
RULES = Registry(
    "rule",
    Rule,
    "bioperturb.rules",
    {
        cls.name: cls
        for cls in (
            TDANP,
            NodePerturbation,
            IterativeNP,
            WeightPerturbation,
            OnlineANP,
            Miconi,
            RFLO,
            EProp,
            NoPlasticity,
        )
    },
)

register_rule = decorator_for(RULES)


def get_rule(name: str) -> type[Rule]:
    """The rule class of ``name``: a registered name, an entry point or ``"module:Class"``.

    An unknown name raises KeyError (with a did-you-mean hint and the known names); an
    import path that does not give a Rule raises ValueError.
    """
    return RULES[name]
