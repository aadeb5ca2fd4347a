r"""Surrogate-gradient BPTT twin of the Brian2 LIF network, in JAX.

The same discrete dynamics as :mod:`bioperturb.networks.spiking` (one Euler step per
``dt``, in the order Brian2 schedules them), for one trial starting from rest::

    for t = 0 .. T-1:
        y_t = V r                                   (readout at the step's start)
        L_t = ½ m_t ‖y_t − y*_t‖²
        v ← v + dt · a · (−v + h + b)/τ_m           a = 1 unless refractory
        h ← h − dt · h/τ_s;  r ← r − dt · r/τ_s;  u ← u − dt · u/τ_s
        (integration = "exact": v ← v + a((p22 − 1)(v − b) + p21 h); h, r, u ← ps ·)
        s = H(v − v_th)                             (spikes; input spikes s_in from the task)
        h ← h + W s + U s_in;  r ← r + s;  u ← u + s_in
        v ← v (1 − s) + v_reset s;  a = 0 in the round(t_ref/dt) steps after a spike

The Heaviside step has the SuperSpike surrogate derivative
``∂s/∂v ≈ 1 / (1 + β |v − v_th|)²`` (Zenke & Ganguli 2018; Neftci, Mostafa & Zenke
2019); the reset and the refractory gate are not differentiated through (as recommended
by Zenke & Vogels 2021). With the task's frozen input spikes the forward pass reproduces
the Brian2 network's spikes (tested); with Poisson-coded inputs the reference draws its
own input spikes (same rates, other realisations).

Imports :mod:`bioperturb.reference.model` (which enables JAX float64).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bioperturb.reference import model as _m

__all__ = ["LIFDynamics", "lif_forward", "spike_fn"]


@jax.custom_jvp
def spike_fn(x, beta):
    """Heaviside H(x) (x = v − v_th) with the SuperSpike surrogate derivative."""
    return (x > 0).astype(x.dtype)


@spike_fn.defjvp
def _spike_jvp(primals, tangents):
    x, beta = primals
    dx, _ = tangents
    return spike_fn(x, beta), dx / (1.0 + beta * jnp.abs(x)) ** 2


def _scan(weights, s_in, p):
    """Time-major outputs (T, B, ·): v, r, y at each step's start, the step's spikes."""
    W_in, W_rec, W_out = weights["W_in"], weights["W_rec"], weights["W_out"]
    dt, tau_m, tau_s, t_ref, v_th, v_reset, b, beta, exact, p22m1, p21, ps = p
    n_b, n = s_in.shape[0], W_rec.shape[0]
    zeros = jnp.zeros((n_b, n))
    n_in = W_in.shape[1]
    state0 = (zeros, zeros, zeros, jnp.zeros((n_b, n_in)), jnp.full((n_b, n), 1e9))

    def step(state, x):
        v, h, r, u, since = state
        v_start, r_start = v, r
        y = r @ W_out.T
        active = (since * dt > t_ref + 0.5 * dt).astype(v.dtype)
        # Euler exactly as before (bit for bit), or the exact propagators (a traced flag)
        v = jnp.where(
            exact > 0.5,
            v + active * (p22m1 * (v - b) + p21 * h),
            v + dt * (active * (-v + h + b) / tau_m),
        )
        h, r, u = (jnp.where(exact > 0.5, x * ps, x - dt * x / tau_s) for x in (h, r, u))
        s = spike_fn(v - v_th, beta)
        h = h + s @ W_rec.T + x @ W_in.T
        r = r + s
        u = u + x
        fired = jax.lax.stop_gradient(s)
        v = v * (1.0 - fired) + v_reset * fired
        since = jnp.where(fired > 0, 1.0, since + 1.0)
        return (v, h, r, u, since), (v_start, r_start, y, s)

    _, out = jax.lax.scan(step, state0, jnp.swapaxes(s_in, 0, 1))
    return out


def _batch_loss(weights, s_in, targets, mask, p):
    _, _, y, _ = _scan(weights, s_in, p)
    err = jnp.swapaxes(y, 0, 1) - targets
    lt = 0.5 * mask * jnp.sum(err * err, axis=-1)
    return jnp.mean(jnp.sum(lt, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0))


@jax.jit
def _forward_jit(weights, s_in, p):
    return tuple(jnp.swapaxes(a, 0, 1) for a in _scan(weights, s_in, p))


_batch_loss_jit = jax.jit(_batch_loss)


@dataclass(frozen=True)
class LIFDynamics:
    """Parameters of the LIF twin (SI seconds; potentials in threshold units).

    ``beta`` is the surrogate's steepness per threshold unit. ``input_coding`` and
    ``input_rate`` say how task inputs become input spikes (:meth:`input_spikes`).
    """

    dt: float
    tau_m: float
    tau_syn: float
    t_ref: float
    v_th: float = 1.0
    v_reset: float = 0.0
    bias: float = 0.0
    beta: float = 10.0
    input_coding: str = "spikes"
    input_rate: float = 100.0
    integration: str = "euler"

    @classmethod
    def from_model(cls, model: Any, beta: float = 10.0) -> LIFDynamics:
        return cls(
            dt=model.dt,
            tau_m=model.tau_m,
            tau_syn=model.tau_syn,
            t_ref=model.t_ref,
            v_th=model.v_th,
            v_reset=model.v_reset,
            bias=model.bias,
            beta=beta,
            input_coding=model.input_coding,
            input_rate=model.input_rate,
            integration=getattr(model, "integration", "euler"),
        )

    @property
    def params(self) -> tuple[np.ndarray, ...]:
        """The traced parameter tuple of the compiled functions."""
        from bioperturb.protocol import lif_propagators

        values = (self.dt, self.tau_m, self.tau_syn, self.t_ref, self.v_th, self.v_reset)
        prop = lif_propagators(self.dt, self.tau_m, self.tau_syn, self.integration)
        exact = float(self.integration == "exact")
        extra = (self.bias, self.beta, exact, prop["p22m1"], prop["p21"], prop["ps"])
        return tuple(np.float64(x) for x in (*values, *extra))

    def input_spikes(self, inputs, rng: np.random.Generator | None = None) -> np.ndarray:
        """0/1 input spikes of a batch of task inputs (n_trials, T, n_in)."""
        u = np.asarray(inputs, dtype=np.float64)
        if self.input_coding == "spikes":
            return (u >= 0.5).astype(np.float64)
        if rng is None:
            raise ValueError("Poisson-coded inputs need a random generator")
        p = self.input_rate * np.clip(u, 0.0, None) * self.dt
        return (rng.random(u.shape) < p).astype(np.float64)

    # the interface BPTTTrainer uses ----------------------------------------------------
    loss_fn = staticmethod(_batch_loss)

    def loss_args(self, weights, s_in, targets, mask) -> tuple[Any, ...]:
        return (s_in, targets, mask, self.params)

    def evaluate(self, weights, s_in, targets, mask) -> float:
        return float(_batch_loss_jit(weights, *self.loss_args(weights, s_in, targets, mask)))


def lif_forward(weights, s_in, dynamics: LIFDynamics):
    """(v, r, y, spikes) of a batch of trials, each (n_trials, T, ·), numpy float64.

    ``v``, ``r`` and ``y`` are taken at the step's start (as Brian2's monitors record
    them), ``spikes`` are the spikes emitted during the step.
    """
    w = _m._as_weights(weights)
    s = np.asarray(s_in, dtype=np.float64)
    out = _forward_jit(w, s, dynamics.params)
    return tuple(np.asarray(a) for a in out)
