"""Online learning in a linear student–teacher network: GD, node and weight perturbation.

The setting of Werfel, Xie & Seung (2005), *Learning curves for stochastic gradient descent in
linear feedforward networks*, Neural Computation 17:2699–2718. Derivation and notation:
``docs/theory/werfel.md``.

Student ``y = W x`` with ``W`` of shape (M, N) (M outputs, N inputs), teacher ``W*``, one fresh
input ``x ~ N(0, I_N)`` per trial, squared error ``E(W, x) = ½‖(W − W*) x‖²``. The quantity that
is tracked is the generalisation error ``e(W) = E_x[E(W, x)] = ½‖W − W*‖²_F`` (exact for
isotropic Gaussian inputs, so no test set is needed).

Rules (one trial = one input; ``η`` learning rate, ``σ`` perturbation size):

- ``"gd"``: ``ΔW = −η (W x − W* x) xᵀ``.
- ``"np"`` (node perturbation): ``ξ ~ N(0, σ² I_M)`` added to the outputs,
  ``ΔW = −η (E(W, ξ) − E(W)) ξ xᵀ / σ²``.
- ``"wp"`` (weight perturbation): ``ψ ~ N(0, σ²)`` element-wise on the weights,
  ``ΔW = −η (E(W + ψ) − E(W)) ψ / σ²``.

Exact expected learning curve (derived in the docs, checked by ``tests/golden/test_werfel.py``)::

    E[e_{t+1}] = (1 − 2η + η² c) E[e_t] + η² b

    c_gd = N + 2        c_np = (N + 2)(M + 2)        c_wp = (N + 2)(NM + 2)
    b_gd = 0            b_np = σ² N M (M+2)(M+4) / 8  b_wp = σ² N (N+2) M (M+2)(NM+4) / 8

The decay factor per trial ``λ(η) = 1 − 2η + η² c`` is minimal at ``η* = 1/c``, where it equals
``1 − 1/c``. The learning time ``τ = 1/(1 − λ)`` (inverse learning speed) is then ``c`` trials,
so exactly ``τ_np/τ_gd = M + 2`` and ``τ_wp/τ_gd = NM + 2``; the e-fold time ``−1/ln λ`` is
``c − ½ + O(1/c)``.

Everything is plain numpy; simulations are vectorised over independent repetitions (leading
axis ``R`` of every array).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RULES = ("gd", "np", "wp")

__all__ = [
    "RULES",
    "Recursion",
    "asymptotic_error",
    "decay_factor",
    "efold_time",
    "exact_expected_update",
    "expected_error_curve",
    "gd_update",
    "generalisation_error",
    "learning_time",
    "make_teacher",
    "max_learning_rate",
    "measured_learning_time",
    "np_update",
    "optimal_learning_rate",
    "recursion",
    "simulate",
    "squared_error",
    "trials_to_threshold",
    "update",
    "wp_update",
]


# ----------------------------------------------------------------------------------------------
# analytic results
# ----------------------------------------------------------------------------------------------


def _check(rule: str, n_in: int, n_out: int) -> None:
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")
    if int(n_in) < 1 or int(n_out) < 1:
        raise ValueError(f"network sizes must be positive, got n_in={n_in}, n_out={n_out}")


@dataclass(frozen=True)
class Recursion:
    """Coefficients of ``E[e_{t+1}] = (1 − 2η + η² c) E[e_t] + η² b`` for one rule and size."""

    rule: str
    n_in: int
    n_out: int
    sigma: float
    c: float
    b: float

    def factor(self, eta: float) -> float:
        """Per-trial decay factor ``λ(η) = 1 − 2η + η² c`` of the expected error."""
        return 1.0 - 2.0 * eta + eta**2 * self.c

    def constant(self, eta: float) -> float:
        """Per-trial additive term ``η² b`` (perturbation noise; zero for GD)."""
        return eta**2 * self.b

    @property
    def eta_opt(self) -> float:
        """Learning rate of fastest decay, ``1/c``."""
        return 1.0 / self.c

    @property
    def eta_max(self) -> float:
        """Stability limit ``2/c``: above it the expected error grows."""
        return 2.0 / self.c


def recursion(rule: str, n_in: int, n_out: int, sigma: float = 0.0) -> Recursion:
    """The closed-form one-trial recursion of the expected generalisation error.

    ``sigma`` only enters the additive term ``b`` of NP and WP (it is ignored for GD).
    """
    _check(rule, n_in, n_out)
    n, m, s2 = float(n_in), float(n_out), float(sigma) ** 2
    if rule == "gd":
        c, b = n + 2.0, 0.0
    elif rule == "np":
        c = (n + 2.0) * (m + 2.0)
        b = s2 * n * m * (m + 2.0) * (m + 4.0) / 8.0
    else:  # wp
        c = (n + 2.0) * (n * m + 2.0)
        b = s2 * n * (n + 2.0) * m * (m + 2.0) * (n * m + 4.0) / 8.0
    return Recursion(rule, int(n_in), int(n_out), float(sigma), c, b)


def optimal_learning_rate(rule: str, n_in: int, n_out: int) -> float:
    """``η* = 1/c``: the learning rate that maximises the exponential decay rate of the error."""
    return recursion(rule, n_in, n_out).eta_opt


def max_learning_rate(rule: str, n_in: int, n_out: int) -> float:
    """``2/c``: the largest learning rate for which the expected error still decays."""
    return recursion(rule, n_in, n_out).eta_max


def decay_factor(rule: str, n_in: int, n_out: int, eta: float | None = None) -> float:
    """``λ(η) = 1 − 2η + η² c`` (``eta=None``: at ``η*``, where ``λ = 1 − 1/c``)."""
    rec = recursion(rule, n_in, n_out)
    return rec.factor(rec.eta_opt if eta is None else eta)


def learning_time(rule: str, n_in: int, n_out: int, eta: float | None = None) -> float:
    """``τ = 1/(1 − λ(η))``: trials per unit fractional decrease of the expected error.

    The inverse of the learning speed ``1 − λ`` (the fraction of the error above its floor that
    one trial removes on average). At ``η*`` it equals ``c`` exactly, so ratios between rules
    are exact: ``τ_np/τ_gd = M + 2``, ``τ_wp/τ_gd = NM + 2``. ``eta=None`` uses ``η*``;
    ``inf`` where the error does not decay.
    """
    lam = decay_factor(rule, n_in, n_out, eta)
    return math.inf if lam >= 1.0 else 1.0 / (1.0 - lam)


def efold_time(rule: str, n_in: int, n_out: int, eta: float | None = None) -> float:
    """Trials per e-fold of the expected error above its floor, ``−1/ln λ(η)`` (= τ − ½ + O(1/τ)).

    ``eta=None`` uses ``η*``; ``inf`` where the error does not decay.
    """
    lam = decay_factor(rule, n_in, n_out, eta)
    if lam >= 1.0:
        return math.inf
    return -1.0 / math.log1p(lam - 1.0)  # λ ≥ 1 − 1/c > 0 since c ≥ 3


def asymptotic_error(rule: str, n_in: int, n_out: int, eta: float, sigma: float) -> float:
    """Fixed point ``e_∞ = η² b / (1 − λ)`` of the recursion (``inf`` if unstable)."""
    rec = recursion(rule, n_in, n_out, sigma)
    lam = rec.factor(eta)
    if lam >= 1.0:
        return math.inf
    return rec.constant(eta) / (1.0 - lam)


def expected_error_curve(
    rule: str,
    n_in: int,
    n_out: int,
    eta: float,
    sigma: float,
    n_trials: int,
    e0: float = 1.0,
) -> np.ndarray:
    """``E[e_t]`` for ``t = 0 … n_trials`` (length ``n_trials + 1``), from the exact recursion.

    Closed form ``e_t = e_∞ + λᵗ (e0 − e_∞)``; evaluated by iterating the recursion so that it
    also holds for ``λ ≥ 1``.
    """
    rec = recursion(rule, n_in, n_out, sigma)
    lam, add = rec.factor(eta), rec.constant(eta)
    out = np.empty(int(n_trials) + 1)
    out[0] = e0
    for t in range(1, out.size):
        out[t] = lam * out[t - 1] + add
    return out


def trials_to_threshold(
    rule: str,
    n_in: int,
    n_out: int,
    threshold: float,
    eta: float | None = None,
    sigma: float = 0.0,
    e0: float = 1.0,
) -> float:
    """Trials for ``E[e_t]`` to fall to ``threshold`` (continuous ``t``; ``inf`` if never)."""
    rec = recursion(rule, n_in, n_out, sigma)
    eta = rec.eta_opt if eta is None else eta
    lam = rec.factor(eta)
    if lam >= 1.0:
        return math.inf
    e_inf = rec.constant(eta) / (1.0 - lam)
    if threshold >= e0:
        return 0.0
    if threshold <= e_inf:
        return math.inf
    return math.log((threshold - e_inf) / (e0 - e_inf)) / math.log1p(lam - 1.0)


# ----------------------------------------------------------------------------------------------
# the learning rules (batched over any leading axes)
# ----------------------------------------------------------------------------------------------


def _matvec(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.einsum("...mn,...n->...m", w, x)


def squared_error(w: np.ndarray, w_star: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``E(W, x) = ½‖W x − W* x‖²`` per leading index."""
    d = _matvec(w, x) - _matvec(w_star, x)
    return 0.5 * np.sum(d * d, axis=-1)


def generalisation_error(w: np.ndarray, w_star: np.ndarray) -> np.ndarray:
    """``e(W) = E_x[E(W, x)] = ½‖W − W*‖²_F`` for ``x ~ N(0, I)``, per leading index."""
    d = w - w_star
    return 0.5 * np.sum(d * d, axis=(-2, -1))


def gd_update(w: np.ndarray, w_star: np.ndarray, x: np.ndarray, eta: float) -> np.ndarray:
    """``ΔW = −η ∂E/∂W = −η (W x − W* x) xᵀ``."""
    err = _matvec(w, x) - _matvec(w_star, x)
    return -eta * err[..., :, None] * x[..., None, :]


def np_update(
    w: np.ndarray, w_star: np.ndarray, x: np.ndarray, xi: np.ndarray, eta: float, sigma: float
) -> np.ndarray:
    """Node perturbation with the output noise ``xi`` (shape ``(..., M)``) given.

    Two forward passes on the same input: clean ``y = W x`` and noisy ``ỹ = W x + ξ``; only the
    two scalar errors, the noise and the input enter the update,
    ``ΔW = −η (E(W, ξ) − E(W)) ξ xᵀ / σ²``.
    """
    target = _matvec(w_star, x)
    y = _matvec(w, x)
    e_clean = 0.5 * np.sum((y - target) ** 2, axis=-1)
    e_noisy = 0.5 * np.sum((y + xi - target) ** 2, axis=-1)
    scale = -eta * (e_noisy - e_clean) / sigma**2
    return scale[..., None, None] * xi[..., :, None] * x[..., None, :]


def wp_update(
    w: np.ndarray, w_star: np.ndarray, x: np.ndarray, psi: np.ndarray, eta: float, sigma: float
) -> np.ndarray:
    """Weight perturbation with the weight noise ``psi`` (shape of ``w``) given.

    ``ΔW = −η (E(W + ψ) − E(W)) ψ / σ²``.
    """
    target = _matvec(w_star, x)
    e_clean = 0.5 * np.sum((_matvec(w, x) - target) ** 2, axis=-1)
    e_pert = 0.5 * np.sum((_matvec(w + psi, x) - target) ** 2, axis=-1)
    scale = -eta * (e_pert - e_clean) / sigma**2
    return scale[..., None, None] * psi


def update(
    rule: str,
    w: np.ndarray,
    w_star: np.ndarray,
    x: np.ndarray,
    eta: float,
    sigma: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """One trial's weight change for ``rule``, drawing the perturbation from ``rng``."""
    if rule == "gd":
        return gd_update(w, w_star, x, eta)
    if sigma <= 0.0:
        raise ValueError(f"rule {rule!r} needs a perturbation size sigma > 0, got {sigma}")
    if rule == "np":
        xi = sigma * rng.standard_normal(w.shape[:-1])
        return np_update(w, w_star, x, xi, eta, sigma)
    if rule == "wp":
        psi = sigma * rng.standard_normal(w.shape)
        return wp_update(w, w_star, x, psi, eta, sigma)
    raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")


def exact_expected_update(
    rule: str, w: np.ndarray, w_star: np.ndarray, x: np.ndarray, eta: float, sigma: float
) -> np.ndarray:
    """``E_perturbation[ΔW]`` at fixed ``W, x``, exactly, by a degree-3 Gaussian cubature.

    The NP and WP updates are polynomials of degree ≤ 3 in the perturbation (the error is
    quadratic in the output). The symmetric rule with the 2K points ``±σ√K e_k`` and equal
    weights ``1/(2K)`` (K = M for NP, MN for WP) reproduces every moment of ``N(0, σ² I_K)`` up
    to degree 3, so averaging the rule's own update over those points gives its expectation to
    rounding error — without using the analytic answer. For GD this is the GD update itself.
    """
    if rule == "gd":
        return gd_update(w, w_star, x, eta)
    if rule == "np":
        k = w.shape[-2]
        shape = (2 * k, *w.shape[:-2], k)
    elif rule == "wp":
        k = w.shape[-2] * w.shape[-1]
        shape = (2 * k, *w.shape)
    else:
        raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")
    pts = np.zeros((2 * k, k))
    pts[np.arange(k), np.arange(k)] = sigma * math.sqrt(k)
    pts[k + np.arange(k), np.arange(k)] = -sigma * math.sqrt(k)
    # broadcast each point over the batch axes of w
    batch = w.shape[:-2]
    pts = pts.reshape((2 * k,) + (1,) * len(batch) + (k,))
    pert = np.broadcast_to(pts, (2 * k, *batch, k)).reshape(shape)
    if rule == "np":
        dw = np_update(w[None], w_star[None], x[None], pert, eta, sigma)
    else:
        dw = wp_update(w[None], w_star[None], x[None], pert, eta, sigma)
    return dw.mean(axis=0)


# ----------------------------------------------------------------------------------------------
# simulation
# ----------------------------------------------------------------------------------------------


def make_teacher(
    n_in: int, n_out: int, n_reps: int, rng: np.random.Generator, e0: float = 1.0
) -> np.ndarray:
    """Random teachers ``W*`` (shape ``(R, M, N)``), each scaled so that ``e(0) = e0`` exactly."""
    w_star = rng.standard_normal((n_reps, n_out, n_in))
    norm = np.sqrt(np.sum(w_star**2, axis=(-2, -1), keepdims=True))
    return w_star * math.sqrt(2.0 * e0) / norm


def simulate(
    rule: str,
    n_in: int,
    n_out: int,
    eta: float,
    sigma: float,
    n_trials: int,
    n_reps: int,
    seed: int | np.random.Generator = 0,
    e0: float = 1.0,
    record_every: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Online learning from ``W = 0`` towards random teachers, ``n_reps`` independent runs.

    Each trial draws one fresh input ``x ~ N(0, I_N)`` per run (and the rule's perturbation)
    and applies one update. Returns ``(trials, errors)``: the recorded trial indices
    (0, record_every, …, always including ``n_trials``) and the generalisation errors
    ``e(W_t)``, shape ``(len(trials), n_reps)``.
    """
    _check(rule, n_in, n_out)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    w_star = make_teacher(n_in, n_out, n_reps, rng, e0)
    w = np.zeros_like(w_star)
    trials = np.arange(0, int(n_trials) + 1, int(record_every))
    if trials[-1] != n_trials:
        trials = np.append(trials, int(n_trials))
    errors = np.empty((trials.size, n_reps))
    errors[0] = generalisation_error(w, w_star)
    k = 1
    for t in range(1, int(n_trials) + 1):
        x = rng.standard_normal((n_reps, n_in))
        w += update(rule, w, w_star, x, eta, sigma, rng)
        if t == trials[k]:
            errors[k] = generalisation_error(w, w_star)
            k += 1
    return trials, errors


def measured_learning_time(
    mean_error: float, n_trials: int, e0: float = 1.0, e_inf: float = 0.0
) -> float:
    """Learning time from a mean learning curve's end point.

    ``λ̂ = ((ē_T − e_∞)/(e0 − e_∞))^(1/T)`` and ``τ̂ = 1/(1 − λ̂)`` (compare
    :func:`learning_time`). ``e_inf`` is the analytic error floor (:func:`asymptotic_error`);
    pass 0 to ignore it.
    """
    ratio = (mean_error - e_inf) / (e0 - e_inf)
    if ratio >= 1.0:
        return math.inf
    if ratio <= 0.0:
        return 0.0
    return -1.0 / math.expm1(math.log(ratio) / float(n_trials))
