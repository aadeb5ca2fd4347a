"""BPTT reference: the JAX twin of the Brian2 rate RNN (model, gradient, trainer).

Importing this package enables JAX 64-bit mode (``jax_enable_x64``) for the whole
process; see :mod:`bioperturb.reference.model`.
"""

from bioperturb.reference.bptt import OPTIMIZERS, BPTTTrainer, make_optimizer, train_bptt
from bioperturb.reference.model import (
    WEIGHT_KEYS,
    batch_loss,
    forward,
    forward_trials,
    gradient_at,
    gradient_at_trials,
    loss_per_trial,
    loss_per_trial_trials,
    loss_t,
    truncated_gradient_at,
    truncated_gradient_per_trial,
)

__all__ = [
    "WEIGHT_KEYS",
    "OPTIMIZERS",
    "forward",
    "loss_t",
    "loss_per_trial",
    "batch_loss",
    "gradient_at",
    "truncated_gradient_at",
    "truncated_gradient_per_trial",
    "forward_trials",
    "loss_per_trial_trials",
    "gradient_at_trials",
    "make_optimizer",
    "BPTTTrainer",
    "train_bptt",
]
