"""BPTT training of the reference RNN with optax.

The gradient is backpropagated through the whole trial (true BPTT): the hidden
state is never detached between steps.  The papers' RNN "BP" baselines detached
the state at every step (one-step truncated BP); this trainer does not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bioperturb.reference import model as _m

__all__ = ["OPTIMIZERS", "make_optimizer", "BPTTTrainer", "train_bptt"]

OPTIMIZERS = ("sgd", "adam")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name.lower() not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {list(OPTIMIZERS)}")
    return name.lower()


def make_optimizer(name: str, lr: float) -> optax.GradientTransformation:
    """An optax optimizer: ``"sgd"`` (plain gradient descent) or ``"adam"`` (default betas).

    The learning rate is an injected hyperparameter (kept in the optimizer state),
    so compiled training steps are shared between trainers that differ only in ``lr``.
    """
    name = _check_name(name)
    lr = float(lr)
    if not (np.isfinite(lr) and lr >= 0):
        raise ValueError(f"learning rate must be finite and >= 0, got {lr}")
    factory = {"sgd": optax.sgd, "adam": optax.adam}[name]
    return optax.inject_hyperparams(factory)(learning_rate=lr)


@cache
def _compiled_step(name: str, train: tuple[str, ...], loss_fn: Callable = _m._batch_loss):
    """Jitted (params, fixed, opt_state, *loss args) -> (params, state, loss).

    ``loss_fn(weights, *args)`` is the batch loss (the rate model's by default, whose
    args are u, y*, m, alpha, b, h0). The learning rate lives in ``opt_state``
    (inject_hyperparams), so the value used to build ``opt`` here is irrelevant.
    """
    opt = make_optimizer(name, 1.0)

    def step(params, fixed, masks, opt_state, *args):
        def f(p):
            return loss_fn({**p, **fixed}, *args)

        loss, g = jax.value_and_grad(f)(params)
        g = {k: g[k] * masks[k] if k in masks else g[k] for k in g}  # absent synapses
        updates, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(step)


def _unpack(batch) -> tuple[Any, Any, Any]:
    """(inputs, targets, mask) from a tuple or a ``Trials``-like object."""
    if all(hasattr(batch, a) for a in ("inputs", "targets", "mask")):
        return batch.inputs, batch.targets, batch.mask
    inputs, targets, mask = batch
    return inputs, targets, mask


def _batchify(inputs, targets, mask):
    """Accept one trial (T, n_in), (T, n_out), (T,) as a batch of one."""
    u = np.asarray(inputs, dtype=np.float64)
    ys = np.asarray(targets, dtype=np.float64)
    m = np.asarray(mask, dtype=np.float64)
    if u.ndim == 2:
        u, ys, m = u[None], ys[None], m[None]
    return u, ys, m


class BPTTTrainer:
    """Train the reference RNN by full backpropagation through time.

    Parameters
    ----------
    weights0 : dict with ``W_in`` (N, n_in), ``W_rec`` (N, N), ``W_out`` (n_out, N)
    dt, tau : float, seconds
    b : (N,) fixed bias, zeros by default (never trained)
    optimizer : ``"sgd"`` or ``"adam"``
    lr : learning rate
    train : which weight matrices are updated; the others stay at ``weights0``
    masks : {name: (post, pre) bool array} of sparse matrices: gradients of absent
        synapses are zeroed, so their weights stay 0 (SGD and Adam alike)
    dynamics : another model with the same weights (e.g.
        :class:`bioperturb.reference.lif.LIFDynamics`): it supplies ``loss_fn``,
        ``loss_args`` and ``evaluate``; ``tau`` and ``b`` are then unused
    lateral : {``"D_rec"`` | ``"D_in"``: (post, pre) mask} — decorrelated BP (DBP): W_rec
        and W_in read r̂ = D_rec r and û = D_in u, D = I at the start, and after every
        update D moves by the Brian2 network's local rule, ΔD_ij = −η_d ⟨x̂_i x̂_j⟩_trial
        off the diagonal and within the mask (per trial of the batch, summed)
    decor_lr : η_d of that rule (``model.decor_lr``)
    """

    def __init__(
        self,
        weights0: Mapping[str, Any],
        *,
        dt: float,
        tau: float,
        b=None,
        optimizer: str = "adam",
        lr: float = 1e-3,
        train: Iterable[str] = ("W_in", "W_rec", "W_out"),
        dynamics: Any = None,
        masks: Mapping[str, Any] | None = None,
        lateral: Mapping[str, Any] | None = None,
        decor_lr: float = 0.0,
    ):
        w = _m._as_weights(weights0)
        self.dynamics = dynamics
        if lateral and dynamics is not None:
            raise ValueError("lateral: decorrelation is part of the rate dynamics only")
        train = (train,) if isinstance(train, str) else tuple(train)
        unknown = [k for k in train if k not in _m.WEIGHT_KEYS]
        if unknown or not train or len(set(train)) != len(train):
            raise ValueError(
                f"train must be a non-empty set of distinct keys from {list(_m.WEIGHT_KEYS)}, "
                f"got {list(train)}"
            )
        self.train = tuple(k for k in _m.WEIGHT_KEYS if k in train)
        self.optimizer = _check_name(optimizer)
        self.lr = float(lr)
        self.dt, self.tau = float(dt), float(tau)
        self._alpha = _m._alpha(dt, tau)
        self._b, _ = _m._bias_h0(w, 1, b, None)
        self._params = {k: jnp.asarray(w[k]) for k in self.train}
        self._fixed = {k: jnp.asarray(w[k]) for k in _m.WEIGHT_KEYS if k not in self.train}
        self._opt_state = make_optimizer(self.optimizer, self.lr).init(self._params)
        self._masks = {
            k: jnp.asarray(np.asarray(m, dtype=np.float64))
            for k, m in (masks or {}).items()
            if k in self.train
        }
        loss_fn = _m._batch_loss if dynamics is None else dynamics.loss_fn
        self._step = _compiled_step(self.optimizer, self.train, loss_fn)
        # decorrelation (DBP): D = I at the start, moved by the local anti-Hebbian rule of
        # the Brian2 network after every update (docs/rules/decorrelation.md)
        n_of = {"D_rec": w["W_rec"].shape[0], "D_in": w["W_in"].shape[1]}
        self._lateral_mask = {}
        for key, mask in (lateral or {}).items():
            if key not in _m.LATERAL_KEYS:
                raise ValueError(f"lateral: unknown matrix {key!r} (known: {_m.LATERAL_KEYS})")
            mask = np.broadcast_to(np.asarray(mask, dtype=np.float64), (n_of[key],) * 2)
            self._lateral_mask[key] = mask * (1.0 - np.eye(n_of[key]))  # diagonal fixed at 1
        self._lateral = {k: np.eye(n_of[k]) for k in self._lateral_mask}
        self.decor_lr = float(decor_lr)

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """Current weights (numpy float64 copies), all three keys."""
        merged = {**self._params, **self._fixed}
        return {k: np.array(merged[k], dtype=np.float64) for k in _m.WEIGHT_KEYS}

    @property
    def lateral(self) -> dict[str, np.ndarray]:
        """Current decorrelation matrices D (``D_rec``, ``D_in``; empty without them)."""
        return {k: d.copy() for k, d in self._lateral.items()}

    def _decorrelate(self, inputs) -> None:
        """ΔD_ij = −η_d Σ_trials (1/T) Σ_t x̂_i,t x̂_j,t (i ≠ j, within the mask) from this
        batch's pass at the weights and D it ran with (x̂ = D r, or D_in u)."""
        u = np.asarray(inputs, dtype=np.float64)
        u = u[None] if u.ndim == 2 else u
        w = {**self._params, **self._fixed, **self._lateral}
        _, h0 = _m._bias_h0(w, u.shape[0], self._b, None)
        _, r, _ = _m._forward_jit(w, u, self._alpha, self._b, h0)
        src = {"D_rec": np.asarray(r), "D_in": u}
        for key, d in self._lateral.items():
            x = src[key] @ d.T
            corr = np.einsum("bti,btj->ij", x, x) / x.shape[1]
            self._lateral[key] = d - self.decor_lr * corr * self._lateral_mask[key]

    def _args(self, inputs, targets, mask):
        u, ys, m = _batchify(inputs, targets, mask)
        w = {**self._params, **self._fixed, **self._lateral}
        if self.dynamics is not None:
            return self.dynamics.loss_args(w, u, ys, m)
        u = _m._as_inputs(w, u)
        ys, m = _m._as_targets_mask(w, u, ys, m)
        _, h0 = _m._bias_h0(w, u.shape[0], self._b, None)
        return u, ys, m, self._alpha, self._b, h0

    def step(self, inputs, targets, mask) -> float:
        """One optimizer update on a batch of trials.

        Returns the batch loss at the weights *before* the update (a training curve).
        A single trial may be given without the trial axis.
        """
        params, state, loss = self._step(
            self._params,
            {**self._fixed, **self._lateral},
            self._masks,
            self._opt_state,
            *self._args(inputs, targets, mask),
        )
        jax.block_until_ready((params, state, loss))
        if self._lateral:  # from the pass just made, then the new weights
            self._decorrelate(inputs)
        self._params, self._opt_state = params, state
        return float(loss)

    def evaluate(self, inputs, targets, mask) -> float:
        """Noise-free batch loss at the current weights; no update."""
        w = {**self._params, **self._fixed, **self._lateral}
        if self.dynamics is not None:
            return self.dynamics.evaluate(w, *_batchify(inputs, targets, mask))
        return float(_m._batch_loss_jit(w, *self._args(inputs, targets, mask)))

    def step_trials(self, trials) -> float:
        """:meth:`step` on a ``Trials``-like object."""
        return self.step(*_unpack(trials))

    def evaluate_trials(self, trials) -> float:
        """:meth:`evaluate` on a ``Trials``-like object."""
        return self.evaluate(*_unpack(trials))


def train_bptt(
    weights0: Mapping[str, Any],
    make_trials: Callable[[int], Any],
    eval_trials: Any,
    n_trials: int,
    eval_every: int,
    **kw,
) -> dict[str, Any]:
    """Train for ``n_trials`` updates, one per ``make_trials(i)``, evaluating periodically.

    ``make_trials(i)`` returns ``(inputs, targets, mask)`` (one trial without a trial
    axis, or a batch) or a ``Trials``-like object; ``eval_trials`` likewise.  ``kw``
    go to :class:`BPTTTrainer` (``dt``, ``tau``, ``b``, ``optimizer``, ``lr``, ``train``).

    Returns a dict of numpy arrays:

    - ``loss`` (n_trials,): training loss of trial i at the weights before its update
    - ``eval_trial``: evaluation points 0, eval_every, 2*eval_every, ..., n_trials
      (number of updates done before the evaluation; n_trials is always included)
    - ``eval_loss``: evaluation loss at those points
    - ``wall_time`` (n_trials,): seconds for each update (forward, backward, optimizer),
      measured with ``time.perf_counter`` after ``jax.block_until_ready``; excludes
      making the trial and evaluating
    - ``weights``: final weights dict; ``weights_eval``: list of weights dicts at the
      evaluation points; ``lateral_eval``: the decorrelation matrices there (empty dicts
      without ``lateral``)
    """
    n_trials, eval_every = int(n_trials), int(eval_every)
    if n_trials < 0:
        raise ValueError(f"n_trials must be >= 0, got {n_trials}")
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every}")
    trainer = BPTTTrainer(weights0, **kw)
    ev = _unpack(eval_trials)
    points = list(range(0, n_trials, eval_every)) + [n_trials]
    loss = np.full(n_trials, np.nan)
    wall = np.full(n_trials, np.nan)
    eval_loss, weights_eval, lateral_eval = [], [], []

    def record():
        eval_loss.append(trainer.evaluate(*ev))
        weights_eval.append(trainer.weights)
        lateral_eval.append(trainer.lateral)

    record()  # point 0
    next_point = 1
    for i in range(n_trials):
        batch = _unpack(make_trials(i))
        t0 = time.perf_counter()
        loss[i] = trainer.step(*batch)
        wall[i] = time.perf_counter() - t0
        if i + 1 == points[next_point]:
            record()
            next_point += 1
    return {
        "loss": loss,
        "eval_trial": np.asarray(points, dtype=np.int64),
        "eval_loss": np.asarray(eval_loss, dtype=np.float64),
        "wall_time": wall,
        "weights": trainer.weights,
        "weights_eval": weights_eval,
        "lateral_eval": lateral_eval,
    }
