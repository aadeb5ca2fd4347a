"""Optimisers: turn a rule's per-trial gradient estimate ``acc`` into a weight change.

They run as Brian2 code at trial end (a ``run_regularly`` operation whose clock ticks
once per trial, on the trial's last step), so the same code serves Brian2's runtime mode
(one ``run`` per trial) and a whole training inside one standalone simulation.

SGD::

    Δw = −η · acc

Adam (Kingma & Ba 2015), with k the number of training updates so far::

    m ← β1 m + (1 − β1) acc,   v ← β2 v + (1 − β2) acc²
    Δw = −η · (m / (1 − β1^k)) / (√(v / (1 − β2^k)) + ε)

``step_at(t)`` is 1 on the last step of a training trial that ends a batch
(``training.batch`` trials; every training trial when batch = 1) and 0 elsewhere, so an
evaluation never moves a weight nor an Adam moment; ``acc`` sums the batch's estimates
and the step uses their mean (``batch_inv`` = 1/batch) with k counting steps. ``acc`` is
kept over a batch's trials (``learn_at(t) − step_at(t)`` is 1 only at the end of a
training trial inside a batch) and cleared at the end of every other trial. The trial's
estimate so far is kept in ``acc_last`` (for update–gradient alignment). A change is
optionally clipped to ±max_step per trial (a local guard against the learning-rate edge
of TD-ANP).
"""

from __future__ import annotations

from typing import Any

from brian2 import Equations

__all__ = [
    "optimizer_equations",
    "optimizer_code",
    "optimizer_values",
    "OPTIMIZER_PARAMS",
    "CLEAR_CODE",
]

#: the optimisers' hyperparameters (TrainingConfig fields); shared constant variables of
#: every plastic Synapses object rather than namespace constants, so that a compiled
#: standalone program takes new values as run arguments instead of being recompiled
OPTIMIZER_PARAMS = ("lr", "beta1", "beta2", "adam_eps", "max_step", "batch_inv")


def optimizer_equations(name: str) -> Equations:
    """Per-synapse state of the optimiser and its hyperparameters (shared)."""
    params = Equations("\n".join(f"{p} : 1 (shared, constant)" for p in OPTIMIZER_PARAMS))
    if name == "adam":
        return params + Equations("m_adam : 1\nv_adam : 1")
    return params


def optimizer_code(name: str, clip: bool, online: bool = False, keep_last: bool = True) -> str:
    """Brian2 synapse code applying one batch's update at a trial's end.

    With ``online`` the rule has already applied its SGD steps during the trial; the
    trial end only keeps the estimate. :data:`CLEAR_CODE` then clears ``acc``. With
    ``keep_last = False`` the synapses have no ``acc_last`` and nothing copies it.
    """
    keep = "\nacc_last = acc" if keep_last else ""
    if online:
        if name != "sgd":
            raise ValueError(f"online weight updates use plain SGD, not '{name}'")
        return keep.lstrip()
    if name == "sgd":
        step = "dw = -lr * step_at(t) * batch_inv * acc"
    elif name == "adam":
        step = "\n".join(
            [
                "g_mean = batch_inv * acc",
                "m_adam = m_adam + step_at(t) * (1 - beta1) * (g_mean - m_adam)",
                "v_adam = v_adam + step_at(t) * (1 - beta2) * (g_mean**2 - v_adam)",
                "dw = -lr * step_at(t) * (m_adam / (1 - beta1**n_updates(t)))"
                " / (sqrt(v_adam / (1 - beta2**n_updates(t))) + adam_eps)",
            ]
        )
    else:
        raise ValueError(f"unknown optimizer '{name}' (known: adam, sgd)")
    apply = "w = w + clip(dw, -max_step, max_step)" if clip else "w = w + dw"
    return f"{step}\n{apply}{keep}"


#: after the optimiser step (its own operation): ``acc`` is kept at the end of a training
#: trial inside a batch and cleared at the end of every other trial. (In one code block
#: with ``acc_last = acc``, Brian2 turns this line into an in-place ``acc *= …`` that its
#: numpy target applies to ``acc_last`` too, the same array.)
CLEAR_CODE = "acc = acc * (learn_at(t) - step_at(t))"


def optimizer_values(training: Any) -> dict[str, float]:
    """Values of the hyperparameter variables of :func:`optimizer_equations`."""
    return {name: float(getattr(training, name)) for name in OPTIMIZER_PARAMS}
