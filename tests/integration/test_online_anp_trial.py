"""Online ANP with per-time-point baselines across trials (``baseline = "trial"``).

h̄_{i,s}, r̄_s, ȳ_s, L̄_s and the ‖δ‖² averages are exponential averages over earlier
training trials at the same step s of the trial (docs/rules/online_anp.md). Numpy target,
tiny networks.
"""

from __future__ import annotations

import numpy as np
import pytest
from brian2 import StateMonitor

from bioperturb.metrics import cosine
from bioperturb.schema import ConfigError
from bioperturb.training import Trainer
from tests.conftest import make_protocol
from tests.integration.test_checkpoint import resumed_runs_match
from tests.integration.test_rate_network import trial_rows
from tests.integration.test_rules import samples

TRIAL = {"name": "online_anp", "baseline": "trial"}


def stored(trainer, group: str, var: str) -> np.ndarray:
    """The storage column of every step: array (unit, step) of ``<var>_avg``."""
    syn = trainer.network.net[f"oanp_store_{group}"]
    out = np.zeros((len(syn.target), trainer.tape.n_steps))
    out[syn.j[:], syn.i[:]] = getattr(syn, f"{var}_avg")[:]
    return out


def ema(trials: list[np.ndarray], alpha: float, first: int = 0) -> np.ndarray:
    """x̄ ← (1 − α) x̄ + α x over ``trials``; rate 1 up to trial ``first`` (warm-up)."""
    avg = trials[0]
    for k, x in enumerate(trials[1:], start=1):
        avg = x if k <= first else (1 - alpha) * avg + alpha * x
    return avg


def test_zero_noise_gives_exactly_zero_estimate():
    # σ = 0: every training trial repeats the first bit for bit, so δ = h − h̄ = 0 and
    # L − L̄ = 0 exactly from the first trial with a baseline on (trials 3-5 here)
    est, _ = samples({**TRIAL, "baseline_rate": 0.5}, 5, model__sigma=0.0)
    for name, value in est.items():
        assert np.array_equal(value, np.zeros_like(value)), name


def test_warm_up_trials_give_zero_estimate_then_learning_starts():
    # trial 1 sets h̄ to its own h (δ = 0); trial 2 sets the ‖δ‖² average, its signal is
    # held at 0 (L̄ = L); from trial 3 on the estimate is the rule's
    est, _ = samples(TRIAL, 4)
    for name, value in est.items():
        assert np.array_equal(value[:2], np.zeros_like(value[:2])), name
        assert np.all(np.abs(value[2:]).max(axis=(1, 2)) > 0), name


def test_baselines_are_exponential_averages_over_training_trials():
    # the stored per-step averages after the run equal the numpy exponential average of
    # the values recorded on the training trials only (evaluation trials, noise off,
    # read but never write); during a trial the rule reads the average of the earlier
    # trials (update after use)
    alpha = 0.4
    trainer = Trainer(
        make_protocol(
            rule={**TRIAL, "baseline_rate": alpha},
            model__n_hidden=6,
            task__duration="20 ms",
            training__n_trials=5,
            training__eval_every=2,
            output__alignment=False,
        )
    )
    net = trainer.network
    kw = dict(record=True, when="start", order=5)  # after the products, before the store
    mons = {
        "hidden": StateMonitor(net.hidden, ["h", "r", "r_prev", "hbar"], **kw),
        "readout": StateMonitor(net.readout, ["y", "ybar"], **kw),
        "loss": StateMonitor(net.loss, ["L", "dd_h", "dd_y", "Lbar", "dd_h_bar"], **kw),
    }
    net.net.add(*mons.values())
    trainer.run()
    train = [k for k, (kind, _, _) in enumerate(trainer.tape.kinds) if kind == "train"]
    evals = [k for k, (kind, _, _) in enumerate(trainer.tape.kinds) if kind == "eval"]
    assert len(train) == 5 and evals[-1] > train[-1]

    def per_trial(group, var):
        values = getattr(mons[group], var)
        return [values[:, trial_rows(trainer, k)] for k in train]

    cases = [
        ("hidden", "hbar", "h", 0),
        ("hidden", "rbar", "r", 0),
        ("hidden", "rpbar", "r_prev", 0),
        ("readout", "ybar", "y", 0),
        ("loss", "Lbar", "L", 0),
        ("loss", "dd_h_bar", "dd_h", 1),  # the first trial has δ = 0: copied on the second
        ("loss", "dd_y_bar", "dd_y", 1),
    ]
    for group, var, value, first in cases:
        xs = per_trial(group, value)
        assert np.abs(xs[-1] - xs[0]).max() > 0, var  # the values do differ across trials
        expected = ema(xs, alpha, first)
        np.testing.assert_allclose(
            stored(trainer, group, var), expected, rtol=1e-10, atol=1e-14, err_msg=var
        )
    # read before the update: the last training trial saw the average of the four before
    h = per_trial("hidden", "h")
    np.testing.assert_allclose(per_trial("hidden", "hbar")[-1], ema(h[:-1], alpha), rtol=1e-10)
    L = per_trial("loss", "L")
    np.testing.assert_allclose(per_trial("loss", "Lbar")[-1], ema(L[:-1], alpha), rtol=1e-10)
    # warm-up: no baseline on the first training trial (δ = 0 bit for bit), no loss
    # baseline on the second
    assert np.array_equal(per_trial("hidden", "hbar")[0], h[0])
    assert np.array_equal(per_trial("loss", "Lbar")[1], L[1])
    assert np.array_equal(per_trial("loss", "dd_h")[0], np.zeros_like(L[0]))


def test_frozen_network_estimate_follows_the_gradient_with_a_moving_input():
    # Random, time-varying input: the driven trajectory moves on the scale of τ_avg, so
    # the temporal baseline's estimate leaks the task-driven change. Measured here, cosine
    # of the mean estimate with −∇L for W_in / W_rec / W_out, 100 draws: temporal
    # (τ_avg = 5 ms) 0.49 / 0.47 / 0.97; per-time-point (α = 0.5) 0.992 / 0.990 / 1.0,
    # as TD-ANP's clean twin (400 draws: 0.994 / 0.994 / 1.0). The bound 0.95 separates
    # the two baselines by a wide margin.
    n = 100
    est, grad = samples({**TRIAL, "baseline_rate": 0.5}, n + 2)
    est = {k: v[2:] for k, v in est.items()}  # the two warm-up trials are zero
    cos = cosine({k: v.mean(axis=0) for k, v in est.items()}, grad)
    for name in ("W_in", "W_rec", "W_out"):
        assert cos[name] > 0.95, cos


def test_resume_restores_the_stored_baselines(tmp_path):
    # the per-(unit, step) averages live in the storage Synapses and the trial counters in
    # the groups: all are checkpointed, so a run resumed after 3 training trials (past the
    # warm-up, with baselines in use) continues bit for bit
    protocol = make_protocol(
        rule=TRIAL,
        task__duration="40 ms",
        training__n_trials=5,
        training__eval_every=2,
        training__checkpoint_every=1,
    )
    resumed_runs_match(protocol, tmp_path, resume_after=(3,))


TRIAL_END = {**TRIAL, "signal": "trial_end", "tau_e": "30 ms"}


def test_trial_end_zero_noise_gives_exactly_zero_estimate():
    # σ = 0: δ = 0 on every trial and L_trial = L̄_trial, so the trace and the signal are 0
    est, _ = samples(TRIAL_END, 4, model__sigma=0.0)
    for name, value in est.items():
        assert np.array_equal(value, np.zeros_like(value)), name


def test_trial_end_estimate_matches_numpy():
    # One trial-end signal c (L_trial − L̄_trial) times the trace of the trial's products,
    # recomputed in numpy from the raw states alone (h, r, r_prev, u_prev, y, L): the
    # per-step baselines as exponential averages over the earlier training trials (with
    # the warm-up of docs/rules/online_anp.md), ‖δ‖², the normalisers, the trace λ = 1 −
    # dt/τ_e and L̄_trial = Σ_s m_s L̄_s / M. Trials 1-2 are exactly 0 (warm-up).
    alpha, n_train = 0.6, 4
    trainer = Trainer(
        make_protocol(
            rule={**TRIAL_END, "baseline_rate": alpha},
            model__n_hidden=5,
            task__duration="20 ms",
            training__n_trials=n_train,
            training__eval_every=n_train,
            training__lr=0.0,
            output__alignment=False,
        )
    )
    net = trainer.network
    kw = dict(record=True, when="start", order=5)
    mons = [
        StateMonitor(net.hidden, ["h", "r", "r_prev"], name="mon_h", **kw),
        StateMonitor(net.inputs, ["u_prev"], name="mon_u", **kw),
        StateMonitor(net.readout, ["y"], name="mon_y", **kw),
        StateMonitor(net.loss, ["L", "M_inv"], name="mon_l", **kw),
    ]
    net.net.add(*mons)
    est = trainer.engine.update_samples()
    train = [k for k, (kind, _, _) in enumerate(trainer.tape.kinds) if kind == "train"]

    def raw(mon, var):
        return [np.asarray(getattr(mon, var))[:, trial_rows(trainer, k)] for k in train]

    h, r, r_prev = (raw(mons[0], v) for v in ("h", "r", "r_prev"))
    u_prev, y = raw(mons[1], "u_prev"), raw(mons[2], "y")
    L, m_inv = raw(mons[3], "L"), raw(mons[3], "M_inv")
    p = trainer.protocol
    lam = 1 - p.model.dt / p.rule.tau_e
    n_in, n_out = u_prev[0].shape[0], y[0].shape[0]
    c = np.sqrt(n_in + p.model.n_hidden + n_out)
    eps = p.rule.eps
    avg = {}
    for k in range(n_train):
        # baselines the trial reads: its own values before a trial is stored
        # (h, r, y from trial 1 on; L and the ‖δ‖² averages from trial 2 on)
        hbar = avg["h"] if k >= 1 else h[k]
        rbar = avg["r"] if k >= 1 else r[k]
        rpbar = avg["rp"] if k >= 1 else r_prev[k]
        ybar = avg["y"] if k >= 1 else y[k]
        dd_h = ((h[k] - hbar) ** 2).sum(axis=0)
        dd_y = ((y[k] - ybar) ** 2).sum(axis=0)
        Lbar = avg["L"] if k >= 2 else L[k]
        dd_h_bar = avg["dd_h"] if k >= 2 else dd_h
        dd_y_bar = avg["dd_y"] if k >= 2 else dd_y
        nrm_h = 1 / (dd_h + dd_h_bar + eps)
        nrm_y = 1 / (dd_y + dd_y_bar + eps)
        products = {
            "W_rec": np.einsum("s,is,js->sij", nrm_h, h[k] - hbar, rpbar),
            "W_in": np.einsum("s,is,js->sij", nrm_h, h[k] - hbar, u_prev[k]),
            "W_out": np.einsum("s,is,js->sij", nrm_y, y[k] - ybar, rbar),
        }
        signal = c * ((L[k] * m_inv[k]).sum() - (Lbar * m_inv[k]).sum())
        for name, prod in products.items():
            elig = np.zeros(prod.shape[1:])
            for step in prod:
                elig = lam * elig + step
            if k < 2:
                assert np.array_equal(est[name][k], np.zeros_like(elig)), (name, k)
            else:
                np.testing.assert_allclose(
                    est[name][k], signal * elig, rtol=1e-9, atol=1e-14, err_msg=f"{name} {k}"
                )
        # store after use: the first trial copies (the ‖δ‖² averages on the second)
        for key, value, first in (
            ("h", h[k], 0),
            ("r", r[k], 0),
            ("rp", r_prev[k], 0),
            ("y", y[k], 0),
            ("L", L[k], 0),
            ("dd_h", dd_h, 1),
            ("dd_y", dd_y, 1),
        ):
            avg[key] = value if k <= first else avg[key] + alpha * (value - avg[key])
    assert all(np.abs(est[m][2:]).max() > 0 for m in est)


def test_trial_end_estimate_follows_the_gradient():
    # Frozen network of tests/integration/test_rules.py (τ = dt, moving random input),
    # one loss difference per trial and a trace longer than the trial (τ_e = 1 s vs 60
    # ms): the REINFORCE form. Measured, cosine of the mean estimate with −∇L, 100 draws
    # after the warm-up, W_in / W_rec / W_out: per-time-point baseline (α = 0.5) 0.85 /
    # 0.84 / 0.999; the temporal baseline (τ_avg = 5 ms) −0.25 / 0.54 / 0.98 (its signal
    # is a high-passed loss that carries this trial's noise; docs/rules/online_anp.md).
    est, grad = samples({**TRIAL, "baseline_rate": 0.5, "signal": "trial_end", "tau_e": "1 s"}, 102)
    est = {k: v[2:] for k, v in est.items()}
    cos = cosine({k: v.mean(axis=0) for k, v in est.items()}, grad)
    for name in ("W_in", "W_rec", "W_out"):
        assert cos[name] > 0.7, cos


@pytest.mark.parametrize(
    ("rule", "match"),
    [
        ({**TRIAL, "baseline_rate": 0.0}, "rule.baseline_rate"),
        ({**TRIAL, "baseline_rate": 1.5}, "must lie in \\(0, 1\\]"),
        ({**TRIAL, "reset_each_trial": True}, "reset_each_trial"),
        ({"name": "online_anp", "baseline": "trials"}, "rule.baseline"),
        ({**TRIAL, "signal": "trial_end"}, "tau_e = 0 credits only the trial's last step"),
        ({**TRIAL, "signal": "end"}, "rule.signal"),
    ],
    ids=[
        "alpha_zero",
        "alpha_above_one",
        "reset_each_trial",
        "unknown_baseline",
        "trial_end_without_trace",
        "unknown_signal",
    ],
)
def test_bad_baseline_parameters_are_refused(rule, match):
    with pytest.raises(ConfigError, match=match):
        make_protocol(rule=rule)
