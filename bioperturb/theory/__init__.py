"""Analytic reference results that the learning rules are checked against.

``linear``: online learning of a linear student–teacher problem with gradient descent, node
perturbation and weight perturbation (Werfel, Xie & Seung 2005) — simulators, exact expected
learning curves and optimal learning rates. See ``docs/theory/werfel.md``.
"""

from bioperturb.theory import linear

__all__ = ["linear"]
