"""Unit tests of the flip-flop task (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from bioperturb.tasks import FlipFlopTask
from tests.unit.test_tasks import assert_well_formed

DT = 1e-3
EPS = np.finfo(float).eps

#: small but complete versions of each task
SMALL = {
    FlipFlopTask: {"duration": 0.3, "pulse_rate": 10.0, "n_eval": 5},
}

#: tasks whose trials are random sequences: training trials have condition −1
SEQUENCE_TASKS = (FlipFlopTask,)


def make(cls, dt: float = DT, **overrides):
    return cls(cls.Params(**{**SMALL[cls], **overrides}), dt)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240711)


# --------------------------------------------------------------------------- every task


@pytest.mark.parametrize("cls", list(SMALL))
def test_shapes_dtypes_and_periods(rng, cls):
    task = make(cls)
    assert_well_formed(task.trials(rng, 7), task, 7)
    ev = task.eval_trials()
    assert_well_formed(ev, task, ev.n_trials)


@pytest.mark.parametrize("cls", list(SMALL))
def test_reproducible_from_rng_only(cls):
    task = make(cls)
    a = task.trials(np.random.default_rng(1), 6)
    b = make(cls).trials(np.random.default_rng(1), 6)
    c = task.trials(np.random.default_rng(2), 6)
    for name in ("inputs", "targets", "mask", "conditions"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.inputs, c.inputs)


@pytest.mark.parametrize("cls", list(SMALL))
def test_eval_trials_fixed_and_independent_of_training_draws(cls):
    task = make(cls)
    first = task.eval_trials()
    task.trials(np.random.default_rng(0), 3)
    again = make(cls).eval_trials()
    for name in ("inputs", "targets", "mask", "conditions"):
        assert np.array_equal(getattr(first, name), getattr(task.eval_trials(), name))
        assert np.array_equal(getattr(first, name), getattr(again, name))


@pytest.mark.parametrize("cls", SEQUENCE_TASKS)
def test_condition_labels_of_sequence_tasks(rng, cls):
    task = make(cls)
    assert np.array_equal(task.trials(rng, 4).conditions, [-1, -1, -1, -1])
    ev = task.eval_trials()
    assert np.array_equal(ev.conditions, np.arange(ev.n_trials))


@pytest.mark.parametrize("cls", [FlipFlopTask])
def test_eval_seed_changes_only_the_eval_set(cls):
    a, b = make(cls), make(cls, eval_seed=1)
    assert not np.array_equal(a.eval_trials().inputs, b.eval_trials().inputs)
    assert np.array_equal(
        a.trials(np.random.default_rng(5), 3).inputs, b.trials(np.random.default_rng(5), 3).inputs
    )


@pytest.mark.parametrize("cls", list(SMALL))
def test_bad_dt(cls):
    with pytest.raises(ValueError, match="^dt: "):
        make(cls, dt=0.0)


# --------------------------------------------------------------------------- flip-flop


def test_flip_flop_targets_hold_the_sign_of_the_last_pulse(rng):
    task = make(FlipFlopTask, n_bits=4, pulse_rate=20.0)
    trials = task.trials(rng, 10)
    for u, y in zip(trials.inputs, trials.targets, strict=True):
        state = np.zeros(4)
        for t in range(task.n_steps):  # brute force: the latest nonzero input, else 0
            state = np.where(u[t] != 0, u[t], state)
            np.testing.assert_array_equal(y[t], state)
    assert np.any(trials.targets == 1) and np.any(trials.targets == -1)


def test_flip_flop_pulses_fill_whole_bins_after_settling(rng):
    task = make(FlipFlopTask, duration=0.305, settle_duration=0.05, pulse_duration=0.01)
    trials = task.trials(rng, 20)
    start, stop = trials.periods["flipflop"]
    assert trials.periods == {"settle": (0, 50), "flipflop": (50, 305)}
    assert set(np.unique(trials.inputs)) == {-1.0, 0.0, 1.0}
    assert np.all(trials.inputs[:, :start] == 0)
    assert np.all(trials.inputs[:, start + 250 :] == 0)  # the partial last bin: no pulse
    bins = trials.inputs[:, start : start + 250].reshape(20, 25, 10, -1)
    assert np.all(bins == bins[:, :, :1])  # constant within each bin
    assert np.all(trials.mask[:, :start] == 0) and np.all(trials.mask[:, start:] == 1)
    assert np.all(trials.targets[:, :start] == 0)


def test_flip_flop_pulse_statistics(rng):
    task = make(FlipFlopTask, duration=1.0, pulse_rate=8.0, pulse_duration=0.02)
    start = task.eval_trials().periods["flipflop"][0]
    onsets = task.trials(rng, 400).inputs[:, start::20]  # first step of each bin
    p = 8.0 * 0.02
    n = onsets.size
    # binomial fractions: 5 standard deviations
    assert abs(np.mean(onsets != 0) - p) < 5 * np.sqrt(p * (1 - p) / n)
    pulses = onsets[onsets != 0]
    assert abs(np.mean(pulses > 0) - 0.5) < 5 * np.sqrt(0.25 / pulses.size)


def test_flip_flop_rate_limits(rng):
    silent = make(FlipFlopTask, pulse_rate=0.0).trials(rng, 3)
    assert np.all(silent.inputs == 0) and np.all(silent.targets == 0)
    full = make(FlipFlopTask, pulse_rate=100.0, pulse_duration=0.01).trials(rng, 3)
    start = full.periods["flipflop"][0]
    assert np.all(full.inputs[:, start:] != 0)  # every bin carries a pulse
    assert np.array_equal(full.targets[:, start:], full.inputs[:, start:])


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"pulse_rate": 101.0}, "pulse_rate"),  # more than one pulse per 10 ms bin
        ({"duration": 0.3005}, "duration"),
        ({"settle_duration": 0.0505}, "settle_duration"),
        ({"pulse_duration": 0.0105}, "pulse_duration"),
        ({"duration": 0.055, "settle_duration": 0.05}, "duration"),  # no whole bin left
    ],
)
def test_flip_flop_bad_params_name_the_key(overrides, key):
    with pytest.raises(ValueError, match=f"^{key}: "):
        make(FlipFlopTask, **overrides)
