"""The rule family against its maths: limiting cases and expected updates along −∇L.

All estimates are taken at frozen weights (lr = 0) on one fixed trial with
``RuntimeEngine.update_samples``, in one simulation per rule (numpy target). The
network is weakly recurrent and leak-free (τ = dt, g = 0.3), where the per-step rules'
instantaneous credit is nearly the full gradient (see tests/integration/test_alignment.py).
Measured with these settings (seed 11): cosine of the mean estimate with −∇L, per matrix
W_in / W_rec / W_out: NP (100 draws) 0.995 / 0.994 / 1.0; WP (1500 draws) 0.975 / 0.859 /
0.998; TD-ANP (100 draws) 0.976 / 0.974 / 1.0.
"""

from __future__ import annotations

import numpy as np
import pytest

from bioperturb.metrics import cosine
from bioperturb.reference import gradient_at
from bioperturb.training import Trainer
from tests.conftest import make_protocol

SMALL = dict(
    seed=11,
    model__n_hidden=8,
    model__tau="1 ms",
    model__g=0.3,
    model__sigma=0.01,
    task__duration="60 ms",
    task__input="random",
    task__n_inputs=2,
    training__optimizer="sgd",
    training__lr=0.0,
    output__alignment=False,
)


def samples(rule: dict, n: int, **overrides):
    kw = {**SMALL, "training__n_trials": n, "training__eval_every": n, **overrides}
    trainer = Trainer(make_protocol(rule=rule, **kw))
    est = trainer.engine.update_samples()
    tt, m = trainer.train_trials, trainer.protocol.model
    grad = gradient_at(
        trainer.weights0, tt.inputs[:1], tt.targets[:1], tt.mask[:1], dt=m.dt, tau=m.tau
    )
    return est, grad


def mean_cosines(est, grad):
    return cosine({k: v.mean(axis=0) for k, v in est.items()}, grad)


@pytest.mark.parametrize(
    ("rule", "overrides"),
    [
        ({"name": "td_anp"}, {"model__sigma": 0.0}),
        ({"name": "td_anp", "tau_e": "5 ms"}, {"model__sigma": 0.0}),
        ({"name": "td_anp", "tau_e": "20 ms", "signal": "trial_end"}, {"model__sigma": 0.0}),
        ({"name": "np"}, {"model__sigma": 0.0}),
        ({"name": "np", "tau_e": "20 ms", "signal": "trial_end"}, {"model__sigma": 0.0}),
        ({"name": "wp", "sigma_w": 0.0}, {}),
    ],
    ids=["td_anp", "td_anp_trace", "td_anp_trial_end", "np", "np_trial_end", "wp"],
)
def test_zero_noise_gives_exactly_zero_estimate(rule, overrides):
    est, _ = samples(rule, 3, **overrides)
    for name, value in est.items():
        assert np.array_equal(value, np.zeros_like(value)), name


def test_one_step_trace_reproduces_td_anp():
    # τ_e = dt makes the trace factor λ = 1 − dt/τ_e = 0: elig is the current product
    plain, _ = samples({"name": "td_anp"}, 4)
    traced, _ = samples({"name": "td_anp", "tau_e": "1 ms"}, 4)
    for name in plain:
        assert np.abs(plain[name]).max() > 0
        # same products, multiplied in another order: a few ulp
        np.testing.assert_allclose(traced[name], plain[name], rtol=1e-12, atol=1e-15)


def test_trace_changes_the_estimate_and_stays_finite():
    plain, _ = samples({"name": "td_anp"}, 4)
    traced, _ = samples({"name": "td_anp", "tau_e": "10 ms"}, 4)
    assert not np.allclose(traced["W_rec"], plain["W_rec"])
    assert all(np.isfinite(v).all() for v in traced.values())


def test_readout_trace_override_keeps_the_readout_per_step():
    # tau_e_out = 0 with a hidden trace: the readout estimate is TD-ANP's (at frozen
    # weights every trial sees the same state, so the estimates match sample by sample)
    plain, _ = samples({"name": "td_anp"}, 3)
    mixed, _ = samples({"name": "td_anp", "tau_e": "10 ms", "tau_e_out": "0 ms"}, 3)
    np.testing.assert_array_equal(mixed["W_out"], plain["W_out"])
    assert not np.allclose(mixed["W_rec"], plain["W_rec"])


def test_np_expected_update_points_along_gradient():
    cos = mean_cosines(*samples({"name": "np"}, 100))
    for name in ("W_in", "W_rec", "W_out"):
        assert cos[name] > 0.95, cos


def test_wp_expected_update_points_along_gradient():
    # WP's variance grows with the number of weights (here 8*2 + 64 + 8 = 88); its mean is
    # the gradient of the trial loss for small σ_w. 1500 draws: all > 0.95 (measured 0.98).
    est, grad = samples({"name": "wp", "sigma_w": 1e-3}, 1500, model__sigma=0.0)
    cos = mean_cosines(est, grad)
    assert cos["all"] > 0.95, cos
    few = cosine({k: v[:100].mean(axis=0) for k, v in est.items()}, grad)
    assert few["all"] < cos["all"]


def test_online_anp_on_a_frozen_stationary_network_follows_td_anp():
    # constant input and τ = dt: the clean state is a fixed point, so h − h̄ is the noise
    # response and E[(L − L̄) δ] is TD-ANP's direction; the task-driven loss variation only
    # adds variance. Measured (400 draws, τ_avg = 5 ms): cosine with TD-ANP's mean ≈ 0.7-0.8.
    anp, _ = samples({"name": "td_anp"}, 400, task__input="constant")
    online, _ = samples({"name": "online_anp", "tau_avg": "5 ms"}, 400, task__input="constant")
    for name in ("W_in", "W_rec", "W_out"):
        c = cosine(anp[name].mean(axis=0), online[name].mean(axis=0))
        assert c > 0.6, (name, c)


def test_online_application_matches_trial_end_for_small_steps():
    # Online SGD applies η·gate·elig every step; at trial end the same terms are summed
    # and applied at once. With a small η the weights hardly move within the trial, so
    # the two changes agree up to O(η²) terms (measured relative difference ~1e-4).
    kw = dict(
        training__n_trials=1, training__eval_every=1, training__lr=1e-4, output__alignment=False
    )
    end = Trainer(make_protocol(rule={"name": "td_anp"}, **kw)).run()
    trainer = Trainer(make_protocol(rule={"name": "td_anp", "apply": "online"}, **kw))
    online = trainer.run()
    for name in ("W_in", "W_rec", "W_out"):
        d_end = end[name].values[1] - end[name].values[0]
        d_online = online[name].values[1] - online[name].values[0]
        assert np.abs(d_end).max() > 0
        assert np.abs(d_online - d_end).max() < 1e-2 * np.abs(d_end).max(), name
    # the evaluation block before training ran with the online rule in place: no change
    np.testing.assert_array_equal(online["W_rec"].values[0], trainer.weights0["W_rec"])


def test_online_application_needs_sgd():
    from bioperturb.schema import ConfigError

    with pytest.raises(ConfigError, match="rule.apply"):
        make_protocol(rule={"name": "np", "apply": "online"}, training__optimizer="adam")
