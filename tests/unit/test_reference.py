"""Tests of the BPTT reference (bioperturb.reference): forward, gradient, trainer."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from bioperturb.reference import (
    BPTTTrainer,
    batch_loss,
    forward,
    forward_trials,
    gradient_at,
    gradient_at_trials,
    loss_per_trial,
    loss_per_trial_trials,
    loss_t,
    make_optimizer,
    train_bptt,
)

DT, TAU = 1e-3, 1e-2


def numpy_loop(weights, inputs, targets, mask, dt, tau, b=None, h0=None):
    """The defining equations, one trial and one step at a time, in plain numpy."""
    n_trials, n_steps, _ = inputs.shape
    n = weights["W_rec"].shape[0]
    b = np.zeros(n) if b is None else b
    hs, rs, ys, lts = [], [], [], []
    for k in range(n_trials):
        h = np.zeros(n) if h0 is None else np.array(h0[k], dtype=float)
        hk, rk, yk, lk = [], [], [], []
        for t in range(n_steps):
            r = np.tanh(h)
            y = weights["W_out"] @ r
            lk.append(0.5 * mask[k, t] * np.sum((y - targets[k, t]) ** 2))
            hk.append(h)
            rk.append(r)
            yk.append(y)
            h = h + (dt / tau) * (-h + weights["W_rec"] @ r + weights["W_in"] @ inputs[k, t] + b)
        hs.append(hk)
        rs.append(rk)
        ys.append(yk)
        lts.append(lk)
    lts = np.array(lts)
    per_trial = lts.sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)
    return np.array(hs), np.array(rs), np.array(ys), lts, per_trial


def make_problem(seed=0, n=8, n_in=2, n_out=2, n_trials=3, n_steps=40, g=1.2):
    rng = np.random.default_rng(seed)
    w = {
        "W_in": rng.normal(size=(n, n_in)),
        "W_rec": g * rng.normal(size=(n, n)) / np.sqrt(n),
        "W_out": rng.normal(size=(n_out, n)) / np.sqrt(n),
    }
    u = rng.normal(size=(n_trials, n_steps, n_in))
    ys = 0.5 * rng.normal(size=(n_trials, n_steps, n_out))
    m = (rng.random(size=(n_trials, n_steps)) < 0.6).astype(float)
    return w, u, ys, m


def central_fd(f, weights, eps):
    """Central differences (f(w + eps e_i) - f(w - eps e_i)) / (2 eps) for every entry."""
    out = {}
    for key, a in weights.items():
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            wp = {k: v.copy() for k, v in weights.items()}
            wm = {k: v.copy() for k, v in weights.items()}
            wp[key][idx] += eps
            wm[key][idx] -= eps
            g[idx] = (f(wp) - f(wm)) / (2 * eps)
        out[key] = g
    return out


# Forward-pass tolerance: the JAX scan performs the same float64 operations as the numpy
# loop; only the summation order inside the matrix-vector products (and possibly the last
# ulp of tanh) differs, i.e. per-step differences of a few eps_machine ~ 1e-16 that the
# (non-chaotic, 40-step) dynamics carry forward without amplification beyond ~1e-14.
# rtol = 1e-12 leaves two orders of margin; atol = 1e-14 covers entries that cross zero.
RTOL, ATOL = 1e-12, 1e-14


def test_forward_matches_numpy_loop():
    w, u, ys, m = make_problem()
    rng = np.random.default_rng(1)
    b = 0.1 * rng.normal(size=8)
    h0 = 0.5 * rng.normal(size=(3, 8))
    h, r, y = forward(w, u, dt=DT, tau=TAU, b=b, h0=h0)
    h_np, r_np, y_np, lt_np, per_np = numpy_loop(w, u, ys, m, DT, TAU, b=b, h0=h0)
    assert h.shape == r.shape == (3, 40, 8) and y.shape == (3, 40, 2)
    assert h.dtype == r.dtype == y.dtype == np.float64
    np.testing.assert_allclose(h, h_np, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(r, r_np, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(y, y_np, rtol=RTOL, atol=ATOL)
    kw = dict(dt=DT, tau=TAU, b=b, h0=h0)
    np.testing.assert_allclose(loss_t(w, u, ys, m, **kw), lt_np, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(loss_per_trial(w, u, ys, m, **kw), per_np, rtol=RTOL)
    assert batch_loss(w, u, ys, m, **kw) == pytest.approx(per_np.mean(), rel=RTOL)


def test_forward_default_state_and_bias():
    w, u, ys, m = make_problem(seed=2)
    h, _, _ = forward(w, u, dt=DT, tau=TAU)
    assert np.all(h[:, 0] == 0.0)  # h_0 = 0; h_T is not returned
    h_np, *_ = numpy_loop(w, u, ys, m, DT, TAU)
    np.testing.assert_allclose(h, h_np, rtol=RTOL, atol=ATOL)
    # a shared (N,) h0 broadcasts over trials
    h0 = np.linspace(-1, 1, 8)
    h, _, _ = forward(w, u, dt=DT, tau=TAU, h0=h0)
    np.testing.assert_array_equal(h[:, 0], np.broadcast_to(h0, (3, 8)))


def test_trial_loss_normalisation_and_empty_mask():
    w, u, ys, m = make_problem(seed=3)
    m[1] = 0.0  # a trial with no loss: sum_t m_t = 0 -> denominator max(0, 1) = 1
    per = loss_per_trial(w, u, ys, m, dt=DT, tau=TAU)
    lt = loss_t(w, u, ys, m, dt=DT, tau=TAU)
    assert per[1] == 0.0
    np.testing.assert_allclose(per, lt.sum(1) / np.maximum(m.sum(1), 1), rtol=1e-14)


def test_trials_wrappers():
    w, u, ys, m = make_problem(seed=4)
    trials = SimpleNamespace(inputs=u, targets=ys, mask=m, dt=DT)
    np.testing.assert_array_equal(
        forward_trials(w, trials, tau=TAU)[2], forward(w, u, dt=DT, tau=TAU)[2]
    )
    np.testing.assert_array_equal(
        loss_per_trial_trials(w, trials, tau=TAU), loss_per_trial(w, u, ys, m, dt=DT, tau=TAU)
    )
    g1 = gradient_at_trials(w, trials, tau=TAU)
    g2 = gradient_at(w, u, ys, m, dt=DT, tau=TAU)
    for k in g2:
        np.testing.assert_array_equal(g1[k], g2[k])


def test_bad_shapes_raise():
    w, u, ys, m = make_problem()
    with pytest.raises(ValueError, match="inputs"):
        forward(w, u[..., :1], dt=DT, tau=TAU)
    with pytest.raises(ValueError, match="mask"):
        loss_per_trial(w, u, ys, m[:, :-1], dt=DT, tau=TAU)
    with pytest.raises(KeyError):
        forward({"W_in": w["W_in"]}, u, dt=DT, tau=TAU)
    with pytest.raises(ValueError, match="positive"):
        forward(w, u, dt=DT, tau=0.0)


# Finite-difference check.  Central differences have truncation error ~ eps^2 |f'''| / 6
# and round-off error ~ eps_machine |f| / eps.  With eps = 1e-5 and |f|, |f'''| = O(1):
# truncation ~ 2e-11, round-off ~ 2e-16 / 1e-5 = 2e-11 (eps near eps_machine^(1/3) balances
# them; measured max error here ~1e-11).  An absolute tolerance of 1e-9 (plus rtol 1e-6) is
# thus ~50x above the expected error while far below the gradient entries (~1e-3 .. 1).
FD_EPS, FD_ATOL, FD_RTOL = 1e-5, 1e-9, 1e-6


def test_gradient_matches_finite_differences():
    w, u, ys, m = make_problem(seed=5, n=6, n_steps=30)
    b = 0.1 * np.ones(6)
    g = gradient_at(w, u, ys, m, dt=DT, tau=TAU, b=b)
    assert set(g) == {"W_in", "W_rec", "W_out"}
    fd = central_fd(lambda ww: batch_loss(ww, u, ys, m, dt=DT, tau=TAU, b=b), w, FD_EPS)
    for k in w:
        assert g[k].shape == w[k].shape and g[k].dtype == np.float64
        assert np.abs(g[k]).max() > 1e-4  # the check is not vacuous
        np.testing.assert_allclose(g[k], fd[k], rtol=FD_RTOL, atol=FD_ATOL, err_msg=k)


def test_gradient_reaches_early_inputs_full_bptt():
    """Input only at t = 0, loss only at t = T-1: only full BPTT gives dL/dW_in != 0.

    W_in enters the dynamics only through W_in @ u_t, and u_t = 0 for t > 0.  With the
    state detached every step (one-step truncated BP, as in the papers' code) the only
    W_in path to L_{T-1} would be via u_{T-2} = 0, so that gradient is exactly zero; the
    true gradient flows back through T-1 recurrent steps.
    """
    rng = np.random.default_rng(6)
    n, n_steps = 6, 30
    w = {
        "W_in": rng.normal(size=(n, 1)),
        "W_rec": 1.5 * rng.normal(size=(n, n)) / np.sqrt(n),
        "W_out": rng.normal(size=(1, n)) / np.sqrt(n),
    }
    u = np.zeros((1, n_steps, 1))
    u[0, 0, 0] = 5.0
    ys = np.full((1, n_steps, 1), 0.3)
    m = np.zeros((1, n_steps))
    m[0, -1] = 1.0
    g = gradient_at(w, u, ys, m, dt=DT, tau=TAU)["W_in"]
    fd = central_fd(lambda ww: batch_loss(ww, u, ys, m, dt=DT, tau=TAU), w, FD_EPS)["W_in"]
    assert np.abs(g).max() > 1e-3  # orders of magnitude above the FD tolerance
    np.testing.assert_allclose(g, fd, rtol=FD_RTOL, atol=FD_ATOL)


def test_zero_mask_gives_zero_gradient():
    w, u, ys, _ = make_problem(seed=7)
    g = gradient_at(w, u, ys, np.zeros(u.shape[:2]), dt=DT, tau=TAU)
    for k in w:
        np.testing.assert_array_equal(g[k], 0.0)


def sine_problem(n=20, n_steps=200, seed=0):
    rng = np.random.default_rng(seed)
    w = {
        "W_in": rng.normal(size=(n, 1)),
        "W_rec": 1.2 * rng.normal(size=(n, n)) / np.sqrt(n),
        "W_out": rng.normal(size=(1, n)) / np.sqrt(n),
    }
    t = np.arange(n_steps) * DT
    u = np.zeros((1, n_steps, 1))
    u[0, :10, 0] = 1.0  # 10 ms pulse at the start
    ys = (0.5 * np.sin(2 * np.pi * 3.0 * t))[None, :, None]
    m = np.ones((1, n_steps))
    return w, u, ys, m


def test_adam_learns_sinusoid():
    w, u, ys, m = sine_problem()
    t0 = time.perf_counter()
    tr = BPTTTrainer(w, dt=DT, tau=TAU, optimizer="adam", lr=1e-2)
    initial = tr.evaluate(u, ys, m)
    losses = [tr.step(u, ys, m) for _ in range(300)]
    final = tr.evaluate(u, ys, m)
    elapsed = time.perf_counter() - t0
    assert losses[0] == pytest.approx(initial, rel=1e-12)  # loss before the first update
    assert final < 0.1 * initial
    assert elapsed < 10.0


def test_sgd_step_is_plain_gradient_descent():
    w, u, ys, m = make_problem(seed=8)
    g = gradient_at(w, u, ys, m, dt=DT, tau=TAU)
    for lr in (0.1, 0.3):  # two learning rates share one compiled step
        tr = BPTTTrainer(w, dt=DT, tau=TAU, optimizer="sgd", lr=lr)
        loss = tr.step(u, ys, m)
        assert loss == pytest.approx(batch_loss(w, u, ys, m, dt=DT, tau=TAU), rel=1e-12)
        for k in w:
            np.testing.assert_allclose(tr.weights[k], w[k] - lr * g[k], rtol=1e-12, atol=1e-15)


def test_train_subset_keeps_other_weights_fixed():
    w, u, ys, m = make_problem(seed=9)
    tr = BPTTTrainer(w, dt=DT, tau=TAU, optimizer="adam", lr=1e-2, train=("W_out",))
    tr.step(u, ys, m)
    np.testing.assert_array_equal(tr.weights["W_in"], w["W_in"])
    np.testing.assert_array_equal(tr.weights["W_rec"], w["W_rec"])
    assert not np.allclose(tr.weights["W_out"], w["W_out"])
    with pytest.raises(ValueError, match="train"):
        BPTTTrainer(w, dt=DT, tau=TAU, train=("W_bogus",))
    with pytest.raises(ValueError, match="train"):
        BPTTTrainer(w, dt=DT, tau=TAU, train=())


def test_optimizer_names_validated():
    make_optimizer("sgd", 0.1)
    make_optimizer("adam", 1e-3)
    for bad in ("rmsprop", "", "adamw"):
        with pytest.raises(ValueError, match="unknown optimizer"):
            make_optimizer(bad, 1e-3)
    w, *_ = make_problem()
    with pytest.raises(ValueError, match="unknown optimizer"):
        BPTTTrainer(w, dt=DT, tau=TAU, optimizer="lbfgs")
    with pytest.raises(ValueError, match="learning rate"):
        make_optimizer("sgd", -1.0)


def test_train_bptt_records():
    w, u, ys, m = sine_problem(n=10, n_steps=50)
    out = train_bptt(
        w,
        lambda i: (u[0], ys[0], m[0]),
        (u, ys, m),
        n_trials=7,
        eval_every=3,
        dt=DT,
        tau=TAU,
        optimizer="adam",
        lr=1e-2,
    )
    np.testing.assert_array_equal(out["eval_trial"], [0, 3, 6, 7])
    assert out["loss"].shape == out["wall_time"].shape == (7,)
    assert out["eval_loss"].shape == (4,) and len(out["weights_eval"]) == 4
    assert np.all(out["wall_time"] > 0)
    # same trial for training and evaluation: training loss i = eval loss after i updates
    assert out["loss"][0] == pytest.approx(out["eval_loss"][0], rel=1e-12)
    assert out["loss"][3] == pytest.approx(out["eval_loss"][1], rel=1e-12)
    for k in w:
        np.testing.assert_array_equal(out["weights_eval"][0][k], w[k])
        np.testing.assert_array_equal(out["weights_eval"][-1][k], out["weights"][k])
    assert out["eval_loss"][-1] < out["eval_loss"][0]
