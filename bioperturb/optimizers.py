"""Optimisers: turn a rule's per-trial gradient estimate ``acc`` into a weight change.

They run as Brian2 code at trial end (a ``run_regularly`` operation whose clock ticks
once per trial, on the trial's last step), so the same code serves Brian2's runtime mode
(one ``run`` per trial) and a whole training inside one standalone simulation.

SGD::

    Δw = −η · acc

Adam (Kingma & Ba 2015), with k the number of training updates so far::

    m ← β1 m + (1 − β1) acc,   v ← β2 v + (1 − β2) acc²
    Δw = −η · (m / (1 − β1^k)) / (√(v / (1 − β2^k)) + ε)

``learn_at(t)`` is 1 on the last step of a training trial and 0 on evaluation trials, so
an evaluation never moves a weight nor an Adam moment. The trial's estimate is kept in
``acc_last`` (for update–gradient alignment) before ``acc`` is cleared. A change is
optionally clipped to ±max_step per trial (a local guard against the learning-rate edge
of TD-ANP).
"""

from __future__ import annotations

from typing import Any

from brian2 import Equations

__all__ = ["optimizer_equations", "optimizer_code", "optimizer_values", "OPTIMIZER_PARAMS"]

#: the optimisers' hyperparameters (TrainingConfig fields); shared constant variables of
#: every plastic Synapses object rather than namespace constants, so that a compiled
#: standalone program takes new values as run arguments instead of being recompiled
OPTIMIZER_PARAMS = ("lr", "beta1", "beta2", "adam_eps", "max_step")


def optimizer_equations(name: str) -> Equations:
    """Per-synapse state of the optimiser and its hyperparameters (shared)."""
    params = Equations("\n".join(f"{p} : 1 (shared, constant)" for p in OPTIMIZER_PARAMS))
    if name == "adam":
        return params + Equations("m_adam : 1\nv_adam : 1")
    return params


def optimizer_code(name: str, clip: bool, online: bool = False) -> str:
    """Brian2 synapse code applying one trial's update and clearing ``acc``.

    With ``online`` the rule has already applied its SGD steps during the trial; the
    trial end only keeps the estimate and clears it.
    """
    if online:
        if name != "sgd":
            raise ValueError(f"online weight updates use plain SGD, not '{name}'")
        return "acc_last = acc\nacc = 0"
    if name == "sgd":
        step = "dw = -lr * learn_at(t) * acc"
    elif name == "adam":
        step = "\n".join(
            [
                "m_adam = m_adam + learn_at(t) * (1 - beta1) * (acc - m_adam)",
                "v_adam = v_adam + learn_at(t) * (1 - beta2) * (acc**2 - v_adam)",
                "dw = -lr * learn_at(t) * (m_adam / (1 - beta1**n_updates(t)))"
                " / (sqrt(v_adam / (1 - beta2**n_updates(t))) + adam_eps)",
            ]
        )
    else:
        raise ValueError(f"unknown optimizer '{name}' (known: adam, sgd)")
    apply = "w = w + clip(dw, -max_step, max_step)" if clip else "w = w + dw"
    return f"{step}\n{apply}\nacc_last = acc\nacc = 0"


def optimizer_values(training: Any) -> dict[str, float]:
    """Values of the hyperparameter variables of :func:`optimizer_equations`."""
    return {name: float(getattr(training, name)) for name in OPTIMIZER_PARAMS}
