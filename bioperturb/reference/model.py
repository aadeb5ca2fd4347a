"""BPTT twin of the Brian2 rate RNN: the same discretised dynamics, written in JAX.

The dynamics are exactly (Euler step ``dt``, time constant ``tau``, tanh rate)::

    h_0 = 0 (or a given h0)
    for t = 0 .. T-1:
        r_t = tanh(h_t)
        y_t = W_out @ r_t
        L_t = 0.5 * m_t * ||y_t - ystar_t||^2
        h_{t+1} = h_t + (dt/tau) * (-h_t + W_rec @ r_t + W_in @ u_t + b)

    trial loss = sum_t L_t / max(sum_t m_t, 1);  batch loss = mean over trials

Weights are a dict ``{"W_in": (N, n_in), "W_rec": (N, N), "W_out": (n_out, N)}``, and
optionally fixed decorrelation matrices ``D_rec`` (N, N) and ``D_in`` (n_in, n_in) that
W_rec and W_in then read through (W_rec D_rec r_t, W_in D_in u_t);
``b`` (N,) is a fixed bias (zeros by default).  Arrays are batched over trials:
inputs (n_trials, T, n_in), targets (n_trials, T, n_out), mask (n_trials, T).

Importing this module enables JAX 64-bit mode (``jax_enable_x64``), which is
process-global: afterwards every JAX array created without an explicit dtype in
this process is float64 / int64.  The reference needs float64 to agree with the
Brian2 network and the numpy loop to ~1e-12.

All public functions take and return numpy arrays.  The compiled functions are
module-level and take ``dt / tau``, ``b`` and ``h0`` as traced arguments, so
they are compiled once per array shape, not per call or per weight value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

__all__ = [
    "WEIGHT_KEYS",
    "LATERAL_KEYS",
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
]

WEIGHT_KEYS = ("W_in", "W_rec", "W_out")
#: decorrelation matrices (docs/rules/decorrelation.md) the dynamics take when given
LATERAL_KEYS = ("D_rec", "D_in")


# --------------------------------------------------------------------------- pure JAX


def _scan(weights, inputs, alpha, b, h0):
    """Run the dynamics; returns h_t, r_t, y_t for t = 0..T-1, time-major (T, B, .).

    With decorrelation matrices among the weights (``D_rec``, ``D_in``; held fixed), W_rec
    reads r̂ = D_rec r and W_in reads û = D_in u: W_rec D_rec r and W_in D_in u.
    """
    W_in, W_rec, W_out = weights["W_in"], weights["W_rec"], weights["W_out"]
    if "D_rec" in weights:
        W_rec = W_rec @ weights["D_rec"]
    if "D_in" in weights:
        inputs = inputs @ weights["D_in"].T

    def step(h, u):
        r = jnp.tanh(h)
        y = r @ W_out.T
        h_next = h + alpha * (-h + r @ W_rec.T + u @ W_in.T + b)
        return h_next, (h, r, y)

    _, (h, r, y) = jax.lax.scan(step, h0, jnp.swapaxes(inputs, 0, 1))
    return h, r, y


def _loss_t(weights, inputs, targets, mask, alpha, b, h0):
    """Instantaneous masked losses L_t, shape (B, T)."""
    _, _, y = _scan(weights, inputs, alpha, b, h0)
    err = jnp.swapaxes(y, 0, 1) - targets
    return 0.5 * mask * jnp.sum(err * err, axis=-1)


def _loss_per_trial(weights, inputs, targets, mask, alpha, b, h0):
    lt = _loss_t(weights, inputs, targets, mask, alpha, b, h0)
    return jnp.sum(lt, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)


def _batch_loss(weights, inputs, targets, mask, alpha, b, h0):
    return jnp.mean(_loss_per_trial(weights, inputs, targets, mask, alpha, b, h0))


@jax.jit
def _forward_jit(weights, inputs, alpha, b, h0):
    h, r, y = _scan(weights, inputs, alpha, b, h0)
    return tuple(jnp.swapaxes(a, 0, 1) for a in (h, r, y))


_loss_t_jit = jax.jit(_loss_t)
_loss_per_trial_jit = jax.jit(_loss_per_trial)
_batch_loss_jit = jax.jit(_batch_loss)
_grad_jit = jax.jit(jax.grad(_batch_loss))


def _truncated_batch_loss(weights, inputs, targets, mask, alpha, b, h0, k):
    """The batch loss with every L_t's path to the weights cut k steps back.

    Each L_t is recomputed from the (gradient-stopped) clean state h_{t−k} by the last k
    Euler steps, so its gradient is BPTT truncated at k steps: Σ_{s=t−k+1}^{t} over the
    steps whose weights produced h_t, plus the readout's direct term. Windows that
    start before t = 0 start from h_0. The value equals the untruncated loss.
    """
    W_in, W_rec, W_out = weights["W_in"], weights["W_rec"], weights["W_out"]
    h, _, _ = _scan(jax.lax.stop_gradient(weights), inputs, alpha, b, h0)  # (T, B, N)
    T = h.shape[0]
    pad = lambda x: jnp.concatenate([jnp.zeros((k, *x.shape[1:]), x.dtype), x])  # noqa: E731
    starts = jnp.concatenate([jnp.broadcast_to(h0, (k, *h0.shape)), h])[:T]  # h_{t−k}
    u = pad(jnp.swapaxes(inputs, 0, 1))  # (k + T, B, n_in)
    valid = pad(jnp.ones(T))

    def window(t):
        def step(hh, s):
            nxt = hh + alpha * (-hh + jnp.tanh(hh) @ W_rec.T + u[t + s] @ W_in.T + b)
            return jnp.where(valid[t + s] > 0, nxt, hh), None

        h_t, _ = jax.lax.scan(step, jax.lax.stop_gradient(starts[t]), jnp.arange(k))
        return jnp.tanh(h_t) @ W_out.T  # y_t, (B, n_out)

    y = jax.vmap(window)(jnp.arange(T))  # (T, B, n_out)
    err = jnp.swapaxes(y, 0, 1) - targets
    lt = 0.5 * mask * jnp.sum(err * err, axis=-1)
    return jnp.mean(jnp.sum(lt, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0))


_truncated_grad_jit = jax.jit(jax.grad(_truncated_batch_loss), static_argnums=7)


def _one_trial(weights, u, ys, m, alpha, b, h0, k):
    """Truncated (k ≥ 0) or full (k < 0) loss of one trial (arrays without a trial axis)."""
    args = (weights, u[None], ys[None], m[None], alpha, b, h0[None])
    return _batch_loss(*args) if k < 0 else _truncated_batch_loss(*args, k)


_per_trial_grad_jit = jax.jit(
    jax.vmap(jax.grad(_one_trial), in_axes=(None, 0, 0, 0, None, None, 0, None)),
    static_argnums=7,
)


# --------------------------------------------------------------------------- argument handling


def _as_weights(weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
    missing = [k for k in WEIGHT_KEYS if k not in weights]
    if missing:
        raise KeyError(f"weights lack {missing}; expected keys {list(WEIGHT_KEYS)}")
    w = {
        k: np.asarray(weights[k], dtype=np.float64)
        for k in (*WEIGHT_KEYS, *LATERAL_KEYS)
        if k in weights
    }
    n = w["W_rec"].shape[0]
    n_in = w["W_in"].shape[-1]
    for key, size in (("D_rec", n), ("D_in", n_in)):
        if key in w and w[key].shape != (size, size):
            raise ValueError(f"{key} must be ({size}, {size}), got {w[key].shape}")
    if w["W_rec"].shape != (n, n):
        raise ValueError(f"W_rec must be square, got {w['W_rec'].shape}")
    if w["W_in"].ndim != 2 or w["W_in"].shape[0] != n:
        raise ValueError(f"W_in must be (N={n}, n_in), got {w['W_in'].shape}")
    if w["W_out"].ndim != 2 or w["W_out"].shape[1] != n:
        raise ValueError(f"W_out must be (n_out, N={n}), got {w['W_out'].shape}")
    return w


def _alpha(dt: float, tau: float) -> np.ndarray:
    dt, tau = float(dt), float(tau)
    if not (dt > 0 and tau > 0):
        raise ValueError(f"dt and tau must be positive, got dt={dt}, tau={tau}")
    return np.float64(dt / tau)


def _as_inputs(w, inputs) -> np.ndarray:
    u = np.asarray(inputs, dtype=np.float64)
    if u.ndim != 3 or u.shape[2] != w["W_in"].shape[1]:
        raise ValueError(f"inputs must be (n_trials, T, n_in={w['W_in'].shape[1]}), got {u.shape}")
    return u


def _as_targets_mask(w, u, targets, mask) -> tuple[np.ndarray, np.ndarray]:
    ys = np.asarray(targets, dtype=np.float64)
    m = np.asarray(mask, dtype=np.float64)
    n_out = w["W_out"].shape[0]
    if ys.shape != (*u.shape[:2], n_out):
        raise ValueError(f"targets must be {(*u.shape[:2], n_out)}, got {ys.shape}")
    if m.shape != u.shape[:2]:
        raise ValueError(f"mask must be {u.shape[:2]}, got {m.shape}")
    return ys, m


def _bias_h0(w, n_trials, b, h0) -> tuple[np.ndarray, np.ndarray]:
    n = w["W_rec"].shape[0]
    bb = np.zeros(n) if b is None else np.asarray(b, dtype=np.float64)
    if bb.shape != (n,):
        raise ValueError(f"b must have shape ({n},), got {bb.shape}")
    if h0 is None:
        hh = np.zeros((n_trials, n))
    else:
        hh = np.asarray(h0, dtype=np.float64)
        if hh.shape not in ((n,), (n_trials, n)):
            raise ValueError(f"h0 must be ({n},) or ({n_trials}, {n}), got {hh.shape}")
        hh = np.broadcast_to(hh, (n_trials, n)).copy()
    return bb, hh


def _prepare(weights, inputs, targets, mask, dt, tau, b, h0):
    w = _as_weights(weights)
    u = _as_inputs(w, inputs)
    ys, m = _as_targets_mask(w, u, targets, mask)
    bb, hh = _bias_h0(w, u.shape[0], b, h0)
    return w, u, ys, m, _alpha(dt, tau), bb, hh


# --------------------------------------------------------------------------- public API


def forward(weights, inputs, *, dt: float, tau: float, b=None, h0=None):
    """Run the network on a batch of trials.

    Returns ``(h, r, y)`` as numpy float64 arrays: ``h`` and ``r`` (n_trials, T, N)
    hold h_t and r_t = tanh(h_t) for t = 0..T-1 (h_T is not included), ``y``
    (n_trials, T, n_out) holds y_t = W_out r_t.  ``h0`` is (N,) or (n_trials, N).
    """
    w = _as_weights(weights)
    u = _as_inputs(w, inputs)
    bb, hh = _bias_h0(w, u.shape[0], b, h0)
    h, r, y = _forward_jit(w, u, _alpha(dt, tau), bb, hh)
    return np.asarray(h), np.asarray(r), np.asarray(y)


def loss_t(weights, inputs, targets, mask, *, dt: float, tau: float, b=None, h0=None):
    """Instantaneous masked losses L_t = 0.5 m_t ||y_t - y*_t||^2, shape (n_trials, T)."""
    args = _prepare(weights, inputs, targets, mask, dt, tau, b, h0)
    return np.asarray(_loss_t_jit(*args))


def loss_per_trial(weights, inputs, targets, mask, *, dt: float, tau: float, b=None, h0=None):
    """Loss of each trial, sum_t L_t / max(sum_t m_t, 1), shape (n_trials,)."""
    args = _prepare(weights, inputs, targets, mask, dt, tau, b, h0)
    return np.asarray(_loss_per_trial_jit(*args))


def batch_loss(weights, inputs, targets, mask, *, dt: float, tau: float, b=None, h0=None):
    """Mean of :func:`loss_per_trial` over the trials (a float)."""
    args = _prepare(weights, inputs, targets, mask, dt, tau, b, h0)
    return float(_batch_loss_jit(*args))


def gradient_at(weights, inputs, targets, mask, *, dt: float, tau: float, b=None, h0=None):
    """Exact gradient of the batch loss w.r.t. the weights (full BPTT through the trial).

    Returns a dict with the keys and shapes of ``weights`` (``W_in``, ``W_rec``,
    ``W_out``), numpy float64.  The bias ``b`` and ``h0`` are held fixed.
    """
    args = _prepare(weights, inputs, targets, mask, dt, tau, b, h0)
    g = _grad_jit(*args)
    return {k: np.asarray(g[k]) for k in WEIGHT_KEYS}


def truncated_gradient_at(
    weights, inputs, targets, mask, k: int, *, dt: float, tau: float, b=None, h0=None
):
    """Gradient of the batch loss by BPTT truncated at ``k`` steps (BPTT(k)).

    Each instantaneous loss L_t credits only the weights of the last ``k`` Euler steps
    that led to h_t (plus the readout, which acts on r_t directly)::

        g_k = Σ_t [ ∂L_t/∂W_out + Σ_{s = t−k}^{t−1} ∂L_t/∂h_{s+1} ∂h_{s+1}/∂W |_{h_s fixed} ]

    ``k = 0``: the readout alone; ``k = 1``: the *instantaneous* gradient, each L_t
    credited to the step that produced h_t (what TD-ANP's products δ_t x_{t−1}ᵀ pair);
    ``k ≥ T``: the full BPTT gradient (:func:`gradient_at`). Cost and memory grow with
    T·k·N (every step's window is replayed); ``k ≥ T`` calls :func:`gradient_at`.
    """
    k = int(k)
    if k < 0:
        raise ValueError(f"k must be a non-negative number of steps, got {k}")
    args = _prepare(weights, inputs, targets, mask, dt, tau, b, h0)
    if k >= args[1].shape[1]:
        return gradient_at(weights, inputs, targets, mask, dt=dt, tau=tau, b=b, h0=h0)
    g = _truncated_grad_jit(*args, k)
    return {key: np.asarray(g[key]) for key in WEIGHT_KEYS}


def truncated_gradient_per_trial(
    weights, inputs, targets, mask, k: int, *, dt: float, tau: float, b=None, chunk: int = 32
):
    """:func:`truncated_gradient_at` of every trial on its own: ``{name: (n_trials, ...)}``.

    ``k ≥ T`` gives each trial's full BPTT gradient. Trials are vmapped in chunks of
    ``chunk`` (memory ∝ chunk·T·k·N), starting from h_0 = 0.
    """
    k = int(k)
    if k < 0:
        raise ValueError(f"k must be a non-negative number of steps, got {k}")
    w, u, ys, m, alpha, bb, hh = _prepare(weights, inputs, targets, mask, dt, tau, b, None)
    k = -1 if k >= u.shape[1] else k
    parts = []
    for lo in range(0, u.shape[0], chunk):
        sl = slice(lo, lo + chunk)
        parts.append(_per_trial_grad_jit(w, u[sl], ys[sl], m[sl], alpha, bb, hh[sl], k))
    return {key: np.concatenate([np.asarray(p[key]) for p in parts]) for key in WEIGHT_KEYS}


# --------------------------------------------------------------------------- Trials wrappers
# ``trials`` is anything with ``inputs``, ``targets``, ``mask`` and ``dt`` attributes,
# e.g. :class:`bioperturb.tasks.base.Trials`.


def forward_trials(weights, trials, *, tau: float, b=None, h0=None):
    """:func:`forward` on a ``Trials`` object (uses ``trials.dt``)."""
    return forward(weights, trials.inputs, dt=trials.dt, tau=tau, b=b, h0=h0)


def loss_per_trial_trials(weights, trials, *, tau: float, b=None, h0=None):
    """:func:`loss_per_trial` on a ``Trials`` object (uses ``trials.dt``)."""
    return loss_per_trial(
        weights, trials.inputs, trials.targets, trials.mask, dt=trials.dt, tau=tau, b=b, h0=h0
    )


def gradient_at_trials(weights, trials, *, tau: float, b=None, h0=None):
    """:func:`gradient_at` on a ``Trials`` object (uses ``trials.dt``)."""
    return gradient_at(
        weights, trials.inputs, trials.targets, trials.mask, dt=trials.dt, tau=tau, b=b, h0=h0
    )
