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


@pytest.mark.parametrize(
    ("rule", "match"),
    [
        ({**TRIAL, "baseline_rate": 0.0}, "rule.baseline_rate"),
        ({**TRIAL, "baseline_rate": 1.5}, "must lie in \\(0, 1\\]"),
        ({**TRIAL, "reset_each_trial": True}, "reset_each_trial"),
        ({"name": "online_anp", "baseline": "trials"}, "rule.baseline"),
    ],
    ids=["alpha_zero", "alpha_above_one", "reset_each_trial", "unknown_baseline"],
)
def test_bad_baseline_parameters_are_refused(rule, match):
    with pytest.raises(ConfigError, match=match):
        make_protocol(rule=rule)
