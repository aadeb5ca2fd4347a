r"""Which gradient does a rule follow? Credit-assignment diagnostics at frozen weights.

A perturbation rule's estimate g (``acc``, ΔW = −η g under SGD) is a random variable: its
mean over noise draws is the direction the rule follows on average, its spread sets how
many trials it needs. This module measures both against the exact gradients of the BPTT
reference (:mod:`bioperturb.reference`), at the protocol's initial weights:

* ``credit_cosine`` (horizon, matrix): cosine of the *mean* estimate over ``n_draws``
  training trials with the mean gradient of BPTT truncated at ``horizon`` steps
  (:func:`bioperturb.reference.truncated_gradient_at`) on the same trials. Horizon 1 is
  the *instantaneous* gradient (each L_t credited to the step that produced h_t), the
  longest horizon (= trial length) is the full BPTT gradient.
* ``credit_cosine_single`` (horizon, matrix): the mean over draws of the single-trial
  cosine, what one update step sees; ≈ cos(mean) / √(1 + variance/‖mean‖²).
* ``credit_cosine_halves`` (matrix): cosine between the mean estimates of the two halves
  of the draws: near 1 when ``n_draws`` is enough to pin down the mean, near 0 when the
  mean cosines above are still dominated by noise.
* ``credit_pr`` (credit_time): participation ratio PR_t = (tr P_t)² / tr(P_t²) = 1/tr(P_t²)
  of P_t = E[δ_t δ_tᵀ / ‖δ_t‖²], δ = h̃ − h the twins' activity difference (N when δ is
  isotropic, 1 when it points one way). TD-ANP's mean update is
  Σ_t P_t (∂L_t/∂h_t) x_{t−1}ᵀ, the instantaneous gradient preconditioned by P_t.
* ``delta_rms`` (credit_time): rms of δ_t over units and draws, in units of σ.

``matrix`` = W_in, W_rec, W_out and ``all`` (the three flattened and concatenated; it
weights each matrix by the rule's own scale, see docs/rules/np.md). The estimates come from
the Brian2 network itself (runtime engine, ``training.lr = 0``); δ from the JAX twin of the
same dynamics and noise (Euler–Maruyama increment σ √(2 dt/τ) ξ after the step).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["credit_diagnostics", "check_credit", "delta_statistics", "CREDIT_MATRICES"]

CREDIT_MATRICES = ("W_in", "W_rec", "W_out", "all")


def check_credit(protocol: Any) -> None:
    """Raise ValueError ("<file>: <key>: reason") if the diagnostics cannot run on ``protocol``."""
    where = protocol.source
    from bioperturb.modelspec import model_spec

    if not model_spec(protocol.model.kind).exact_gradient:
        raise ValueError(
            f"{where}: model.kind: credit diagnostics need a rate network (exact gradient)"
        )
    if protocol.model.decorrelate:
        raise ValueError(
            f"{where}: model.decorrelate: credit diagnostics are not defined with decorrelating "
            "lateral weights yet"
        )
    if protocol.rule_name == "none":
        raise ValueError(f"{where}: rule.name: 'none' makes no estimate to diagnose")


def _cosines(est: dict[str, np.ndarray], grad: dict[str, np.ndarray]) -> list[float]:
    """Per-matrix and all-matrix cosines (:func:`bioperturb.metrics.cosine`), NaN if absent."""
    from bioperturb.metrics import cosine

    out = cosine(est, grad)
    return [out.get(m, np.nan) for m in CREDIT_MATRICES]


def delta_statistics(
    weights: dict[str, np.ndarray],
    inputs: np.ndarray,
    *,
    dt: float,
    tau: float,
    sigma: float,
    b: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(PR_t, rms δ_t / σ) of the twins' difference δ = h̃ − h, shape (T,) each.

    ``inputs`` (n_draws, T, n_in): one noise draw per row. The noisy twin gets the
    increment σ √(2 dt/τ) ξ_t after each deterministic Euler step, as in the Brian2
    network; t = 0 is the (noise-free) initial state, so PR_0 and rms_0 are NaN and 0.
    """
    import jax
    import jax.numpy as jnp

    from bioperturb.reference.model import _alpha

    alpha = float(_alpha(dt, tau))
    n, T, _ = inputs.shape
    N = weights["W_rec"].shape[0]
    b = np.zeros(N) if b is None else np.asarray(b, float)
    xi = np.random.default_rng(seed).standard_normal((T, n, N)) * sigma * np.sqrt(2 * alpha)
    W_in, W_rec = jnp.asarray(weights["W_in"]), jnp.asarray(weights["W_rec"])

    def step(carry, x):
        h, hn = carry
        u, noise = x
        f = lambda z: z + alpha * (-z + jnp.tanh(z) @ W_rec.T + u @ W_in.T + b)  # noqa: E731
        return (f(h), f(hn) + noise), hn - h

    h0 = jnp.zeros((n, N))
    _, delta = jax.lax.scan(step, (h0, h0), (jnp.swapaxes(jnp.asarray(inputs), 0, 1), xi))
    delta = np.asarray(delta)  # (T, n, N): δ_t before step t's update
    norm2 = np.sum(delta**2, axis=-1)
    rms = np.sqrt(norm2.mean(axis=1) / N) / sigma if sigma > 0 else np.full(T, np.nan)
    pr = np.full(T, np.nan)
    for t in range(T):
        ok = norm2[t] > 0
        if ok.any():
            d = delta[t, ok] / np.sqrt(norm2[t, ok])[:, None]
            gram = d @ d.T if d.shape[0] <= N else d.T @ d
            pr[t] = ok.sum() ** 2 / np.sum(gram**2)
    return pr, rms


def credit_diagnostics(
    protocol: Any,
    n_draws: int = 500,
    horizons: tuple[int, ...] = (1, 10),
    progress: bool = False,
) -> xr.Dataset:
    """Mean-update cosines, their reliability, and δ's statistics (see module docstring).

    ``horizons``: BPTT truncations k (steps) besides the full gradient, which is always
    included as the last horizon (the trial length). The estimate's draws are
    ``n_draws`` training trials of the protocol's task (its first ``n_draws`` trials, same
    seed) run by the runtime engine at frozen weights.
    """
    from bioperturb.engines.runtime import RuntimeEngine
    from bioperturb.experiment import Experiment
    from bioperturb.reference import truncated_gradient_per_trial

    check_credit(protocol)
    if n_draws < 2:
        raise ValueError(f"n_draws must be at least 2 (two halves), got {n_draws}")
    frozen = protocol.replace(
        training=replace(
            protocol.training,
            lr=0.0,
            n_trials=n_draws,
            eval_every=n_draws,
            checkpoint_every=0,
            batch=1,  # one estimate per draw (a mirror draw −ξ has the same mean)
            repeat=False,
            antithetic=False,
        ),
        engine=replace(protocol.engine, name="runtime", fuse="auto"),
        output=replace(protocol.output, alignment=False, figures=False, progress=progress),
    )
    engine = RuntimeEngine(Experiment(frozen))
    samples = engine.update_samples()  # {matrix: (n_draws, post, pre)}
    model = protocol.model
    exp = engine.experiment
    T = exp.tape.n_steps
    steps = sorted({int(k) for k in horizons if 0 < int(k) < T} | {T})
    tt = exp.train_trials
    b = np.full(model.n_hidden, model.bias)
    w0, masks = exp.weights0, engine.network.masks

    def per_trial(k: int) -> dict[str, np.ndarray]:
        g = truncated_gradient_per_trial(
            w0, tt.inputs, tt.targets, tt.mask, k, dt=model.dt, tau=model.tau, b=b
        )
        return {m: np.where(masks[m], g[m], 0.0) if m in masks else g[m] for m in samples}

    mean_est = {m: s.mean(axis=0) for m, s in samples.items()}
    half = n_draws // 2
    halves = [
        {m: s[sl].mean(axis=0) for m, s in samples.items()}
        for sl in (slice(0, half), slice(half, None))
    ]
    cos_mean, cos_single = [], []
    for k in steps:
        grads = per_trial(k)
        cos_mean.append(_cosines(mean_est, {m: g.mean(axis=0) for m, g in grads.items()}))
        single = [
            _cosines({m: s[i] for m, s in samples.items()}, {m: g[i] for m, g in grads.items()})
            for i in range(n_draws)
        ]
        single = np.array(single)  # NaN where a matrix is not plastic
        n_ok = np.isfinite(single).sum(axis=0)
        cos_single.append(
            np.where(n_ok > 0, np.nansum(single, axis=0) / np.maximum(n_ok, 1), np.nan)
        )
    if getattr(model, "hold_noise", False):  # one held draw per trial: not the white-noise
        pr = rms = np.full(T, np.nan)  # process delta_statistics simulates
    else:
        pr, rms = delta_statistics(
            w0, tt.inputs, dt=model.dt, tau=model.tau, sigma=model.sigma, b=b, seed=protocol.seed
        )
    coords = {
        "horizon": ("horizon", steps, {"units": "1", "long_name": "BPTT truncation (steps)"}),
        "matrix": list(CREDIT_MATRICES),
        "credit_time": ("credit_time", np.arange(T) * model.dt, {"units": "s"}),
    }
    ds = xr.Dataset(
        {
            "credit_cosine": (
                ("horizon", "matrix"),
                np.array(cos_mean),
                {"units": "1", "long_name": "cosine of the mean estimate with BPTT(horizon)"},
            ),
            "credit_cosine_single": (
                ("horizon", "matrix"),
                np.array(cos_single),
                {"units": "1", "long_name": "mean single-trial cosine with BPTT(horizon)"},
            ),
            "credit_cosine_halves": (
                ("matrix",),
                np.array(_cosines(*halves)),
                {"units": "1", "long_name": "cosine between the two half-sample mean estimates"},
            ),
            "credit_pr": (
                ("credit_time",),
                pr,
                {"units": "1", "long_name": "participation ratio of P_t = E[δδᵀ/‖δ‖²]"},
            ),
            "delta_rms": (
                ("credit_time",),
                rms,
                {"units": "1", "long_name": "rms of δ = h̃ − h over units and draws / σ"},
            ),
        },
        coords=coords,
    )
    ds.attrs.update(
        credit_n_draws=n_draws,
        credit_rule=protocol.rule_name,
        credit_trial_steps=T,
    )
    return ds
