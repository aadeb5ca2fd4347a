"""Miconi (2017): sparse kicks, supralinear eligibility, per-condition trial-end reward.

Limiting cases and numpy recomputations on tiny networks (numpy target), the
configuration errors, and one learning curve (cython; marked slow).
"""

from __future__ import annotations

import numpy as np
import pytest
from brian2 import StateMonitor

from bioperturb.schema import ConfigError
from bioperturb.training import Trainer
from tests.conftest import make_protocol
from tests.integration.test_rate_network import trial_rows
from tests.integration.test_rules import samples

ALL = ["W_in", "W_rec", "W_out"]
#: delayed recall with 2 stimuli: 4 conditions (sample, distractor), 50 steps
RECALL = dict(
    task={
        "name": "delayed_match",
        "report": "sample",
        "n_stimuli": 2,
        "fixation_duration": "10 ms",
        "sample_duration": "10 ms",
        "delay_duration": "10 ms",
        "test_duration": "10 ms",
        "decision_duration": "10 ms",
    },
)


@pytest.mark.parametrize(
    "kicks", [{"kick_amplitude": 0.0}, {"kick_rate": "0 Hz"}], ids=["amplitude", "rate"]
)
def test_no_kicks_give_exactly_zero_update(kicks):
    # the pattern task repeats one trial: without kicks every training trial is the first
    # bit for bit, L_trial = L̄_c and the signal is exactly 0 (the trace is not)
    est, _ = samples({"name": "miconi", "train": ALL, **kicks}, 4)
    for name, value in est.items():
        assert np.array_equal(value, np.zeros_like(value)), name


def test_kicks_are_sparse_uniform_and_off_in_evaluation():
    # p = rate·dt = 0.1 per unit and step, amplitude uniform on [−A, A]; evaluation
    # trials (noise gate 0) get none. 20 units × 40 steps × 20 trials = 16000 draws:
    # the kick fraction is within 5 standard errors of p, mean and variance of the
    # amplitudes within 5 standard errors of 0 and A²/3.
    A, p = 0.4, 0.1
    trainer = Trainer(
        make_protocol(
            rule={"name": "miconi", "kick_amplitude": A, "kick_rate": "100 Hz"},
            model__n_hidden=20,
            task__duration="40 ms",
            training__n_trials=20,
            training__eval_every=10,
            output__alignment=False,
        )
    )
    mon = StateMonitor(trainer.network.hidden, "noise_h", record=True, when="end")
    trainer.network.net.add(mon)
    trainer.run()
    kinds = trainer.tape.kinds
    train = np.concatenate(
        [mon.noise_h[:, trial_rows(trainer, k)] for k, kd in enumerate(kinds) if kd[0] == "train"],
        axis=1,
    ).ravel()
    evals = [
        mon.noise_h[:, trial_rows(trainer, k)] for k, kd in enumerate(kinds) if kd[0] == "eval"
    ]
    assert all(np.array_equal(e, np.zeros_like(e)) for e in evals)
    n = train.size
    kicks = train[train != 0]
    assert abs(kicks.size / n - p) < 5 * np.sqrt(p * (1 - p) / n)
    assert np.abs(kicks).max() <= A
    assert abs(kicks.mean()) < 5 * A / np.sqrt(3 * kicks.size)
    var = A**2 / 3  # Var of U[−A, A]; Var of x² is A⁴ (1/5 − 1/9)
    assert abs(np.mean(kicks**2) - var) < 5 * A**2 * np.sqrt((1 / 5 - 1 / 9) / kicks.size)


def recorded_run(rule: dict, n_train: int, **overrides):
    """Estimates and raw states of a frozen run on the 4-condition recall task."""
    trainer = Trainer(
        make_protocol(
            rule=rule,
            seed=4,
            model__n_hidden=6,
            model__sigma=0.0,
            training__n_trials=n_train,
            training__eval_every=n_train,
            training__lr=0.0,
            output__alignment=False,
            **{**RECALL, **overrides},
        )
    )
    net = trainer.network
    kw = dict(record=True, when="start", order=5)  # after the products, before h̄ moves
    mons = {
        "hidden": StateMonitor(net.hidden, ["h", "r", "r_prev"], name="mon_h", **kw),
        "inputs": StateMonitor(net.inputs, ["u_prev"], name="mon_u", **kw),
        "readout": StateMonitor(net.readout, ["y"], name="mon_y", **kw),
        "loss": StateMonitor(net.loss, ["L", "M_inv"], name="mon_l", **kw),
    }
    net.net.add(*mons.values())
    est = trainer.engine.update_samples()
    train = [k for k, (kind, _, _) in enumerate(trainer.tape.kinds) if kind == "train"]
    raw = {
        var: [np.asarray(getattr(mon, var))[:, trial_rows(trainer, k)] for k in train]
        for mon in mons.values()
        for var in mon.record_variables
    }
    return trainer, est, raw


def numpy_estimates(trainer, raw) -> dict[str, list[np.ndarray]]:
    """The rule recomputed from the raw states: h̄ and ȳ (restarting at 0 each trial,
    gain 1 − e^(−dt/τ_avg)), S, the summed trace and the per-condition baseline."""
    p = trainer.protocol
    rule = p.rule
    gain = 1 - np.exp(-p.model.dt / rule.tau_avg)

    def running(x):  # the average the step reads: of the steps before it
        avg, out = np.zeros(x.shape[0]), np.empty_like(x)
        for s in range(x.shape[1]):
            out[:, s] = avg
            avg = avg + gain * (x[:, s] - avg)
        return out

    def S(x):
        return np.sign(x) * np.abs(x) ** rule.exponent

    conditions = trainer.train_trials.conditions
    lbar, seen, out = {}, set(), {m: [] for m in rule.train}
    for k, c in enumerate(conditions):
        h, y = raw["h"][k], raw["y"][k]
        dh, dy = h - running(h), y - running(y)
        elig = {
            "W_rec": S(np.einsum("is,js->sij", dh, raw["r_prev"][k])).sum(axis=0),
            "W_in": S(np.einsum("is,js->sij", dh, raw["u_prev"][k])).sum(axis=0),
            "W_out": S(np.einsum("ks,js->skj", dy, raw["r"][k])).sum(axis=0),
        }
        L = float((raw["L"][k] * raw["M_inv"][k]).sum())
        signal = L - lbar[c] if c in seen else 0.0
        if rule.error_scaling and c in seen:  # the authors' factor Ē_c
            signal *= lbar[c]
        lbar[c] = lbar[c] + rule.baseline_rate * (L - lbar[c]) if c in seen else L
        seen.add(c)
        for m in rule.train:
            out[m].append(signal * elig[m])
    return out


@pytest.mark.parametrize(
    ("exponent", "scaling"),
    [(1.0, False), (3.0, False), (3.0, True)],
    ids=["identity", "cube", "cube-error_scaling"],
)
def test_update_matches_numpy_with_per_condition_baseline(exponent, scaling):
    # Input noise makes every training trial different; the kicks (here 200 Hz, A = 0.5)
    # add the exploration. The first training trial of each condition has no baseline:
    # its update is exactly 0; every other trial's equals the numpy recomputation.
    rule = {
        "name": "miconi",
        "train": ALL,
        "exponent": exponent,
        "error_scaling": scaling,
        "kick_rate": "200 Hz",
        "baseline_rate": 0.4,
        "tau_avg": "3 ms",
    }
    trainer, est, raw = recorded_run(rule, 10)
    ref = numpy_estimates(trainer, raw)
    conditions = trainer.train_trials.conditions
    first = {int(np.argmax(conditions == c)) for c in np.unique(conditions)}
    assert len(first) >= 3  # the run visits several conditions, some more than once
    assert len(first) < len(conditions)
    for name in ALL:
        for k in range(len(conditions)):
            if k in first:
                assert np.array_equal(est[name][k], np.zeros_like(ref[name][k])), (name, k)
            else:
                assert np.abs(ref[name][k]).max() > 0, (name, k)
                np.testing.assert_allclose(
                    est[name][k], ref[name][k], rtol=1e-9, atol=1e-15, err_msg=f"{name} {k}"
                )


def test_paper_running_average_follows_the_last_step():
    # the default τ_avg = 1 ms / ln 20 gives h̄ ← 0.05 h̄ + 0.95 h at dt = 1 ms, the
    # authors' x_trace (weight 0.05 on the old average)
    rule = {"name": "miconi", "kick_rate": "200 Hz"}
    trainer, est, raw = recorded_run(rule, 3)
    gain = 1 - np.exp(-trainer.protocol.model.dt / trainer.protocol.rule.tau_avg)
    assert gain == pytest.approx(0.95, rel=1e-12)
    ref = numpy_estimates(trainer, raw)
    for k in range(3):
        np.testing.assert_allclose(est["W_rec"][k], ref["W_rec"][k], rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize(
    ("overrides", "key", "match"),
    [
        ({"model": {"preset": "lif_rnn", "n_hidden": 10}}, "rule.name", "runs on model.kind"),
        ({"engine__name": "standalone"}, "engine.name", "runtime"),
        ({"rule__kick_rate": "2 kHz"}, "rule.kick_rate", "must not exceed 1"),
        ({"rule__exponent": 0.5}, "rule", "p ≥ 1"),
        ({"rule__baseline_rate": 1.5}, "rule", "must lie in"),
        ({"rule__train": ["W_x"]}, "rule", "unknown matrix"),
    ],
    ids=["lif", "standalone", "kick_probability", "exponent", "baseline_rate", "train"],
)
def test_unsupported_settings_are_refused(overrides, key, match):
    with pytest.raises(ConfigError, match=match) as info:
        make_protocol(rule__name="miconi", **overrides)
    assert key in str(info.value)
