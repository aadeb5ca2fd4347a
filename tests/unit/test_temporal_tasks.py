"""Unit tests of the flip-flop, copy, Mackey–Glass, perceptual decision and sequential
digits tasks (numpy; the digits from scikit-learn, the ``digits`` extra)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from bioperturb.tasks import (
    CopyTask,
    FlipFlopTask,
    MackeyGlassTask,
    PerceptualDecisionTask,
)
from bioperturb.tasks.base import load_dataset
from bioperturb.tasks.digits import SequentialDigitsTask, load_digits
from bioperturb.tasks.mackey_glass import mackey_glass_series
from tests.unit.test_tasks import assert_well_formed

DT = 1e-3
EPS = np.finfo(float).eps

#: small but complete versions of each task (Mackey–Glass: a short series)
SMALL = {
    FlipFlopTask: {"duration": 0.3, "pulse_rate": 10.0, "n_eval": 5},
    CopyTask: {"length": 3, "n_symbols": 4, "symbol_duration": 0.02, "n_eval": 6},
    MackeyGlassTask: {"duration": 0.1, "washout_duration": 0.02, "train_samples": 800},
    PerceptualDecisionTask: {"stimulus_duration": 0.2, "coherences": (0.1, 0.5)},
    SequentialDigitsTask: {"step_duration": 0.002, "response_duration": 0.004, "n_eval": 20},
}

#: tasks whose trials are random sequences: training trials have condition −1
SEQUENCE_TASKS = (FlipFlopTask, CopyTask, MackeyGlassTask, SequentialDigitsTask)


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


@pytest.mark.parametrize("cls", [FlipFlopTask, CopyTask, PerceptualDecisionTask])
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


# --------------------------------------------------------------------------- copy


def test_copy_periods_in_order():
    task = make(CopyTask, length=2, symbol_duration=0.02, delay_duration=0.05, go_duration=0.01)
    assert task.eval_trials().periods == {
        "present_0": (0, 20),
        "present_1": (20, 40),
        "delay": (40, 90),
        "go": (90, 100),
        "recall_0": (100, 120),
        "recall_1": (120, 140),
    }
    assert task.slots == [(100, 120), (120, 140)]
    assert task.n_steps == 140
    start, stop = make(CopyTask, delay_duration=0.0).eval_trials().periods["delay"]
    assert start == stop  # no delay: an empty period


def test_copy_targets_repeat_the_presented_sequence(rng):
    task = make(CopyTask, length=4, n_symbols=5)
    trials = task.trials(rng, 50)
    per = trials.periods
    sequences = task.sequences(trials)
    assert sequences.shape == (50, 4)
    one_hot = np.eye(5)
    for i in range(4):
        shown = trials.inputs[:, slice(*per[f"present_{i}"])]
        asked = trials.targets[:, slice(*per[f"recall_{i}"])]
        expected = np.broadcast_to(one_hot[sequences[:, i]][:, None], asked.shape)
        np.testing.assert_array_equal(asked, expected)
        np.testing.assert_array_equal(shown[..., :5], expected)
        assert np.all(shown[..., 5] == 0)
    go = slice(*per["go"])
    assert np.all(trials.inputs[:, go, 5] == 1) and np.all(trials.inputs[:, go, :5] == 0)
    assert np.all(trials.inputs[:, slice(*per["delay"])] == 0)
    assert np.all(trials.inputs[:, per["recall_0"][0] :] == 0)
    recall = np.zeros(task.n_steps)
    recall[per["recall_0"][0] :] = 1.0
    np.testing.assert_array_equal(trials.mask, np.broadcast_to(recall, trials.mask.shape))
    assert np.all(trials.targets[:, : per["recall_0"][0]] == 0)


def test_copy_symbols_uniform(rng):
    task = make(CopyTask, length=5, n_symbols=4)
    symbols = task.sequences(task.trials(rng, 800)).ravel()
    counts = np.bincount(symbols, minlength=4) / symbols.size
    # binomial fractions: 5 standard deviations
    assert np.all(np.abs(counts - 0.25) < 5 * np.sqrt(0.25 * 0.75 / symbols.size))


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"n_symbols": 1}, "n_symbols"),
        ({"symbol_duration": 0.0205}, "symbol_duration"),
        ({"delay_duration": 0.1005}, "delay_duration"),
        ({"go_duration": 0.0505}, "go_duration"),
    ],
)
def test_copy_bad_params_name_the_key(overrides, key):
    with pytest.raises(ValueError, match=f"^{key}: "):
        make(CopyTask, **overrides)


# --------------------------------------------------------------------------- Mackey–Glass

MG = {
    "sample_step": 1.0,
    "beta": 0.2,
    "gamma": 0.1,
    "exponent": 10.0,
    "tau_d": 17.0,
    "initial_value": 1.2,
    "transient": 0.0,
}


def test_mackey_glass_without_production_decays_exactly():
    h = 0.01
    x = mackey_glass_series(51, integration_step=h, **{**MG, "beta": 0.0})
    expected = 1.2 * np.exp(-0.1 * np.arange(51))
    # 5000 steps, each one multiplication by a rounded exp(-γh): ~k eps relative
    np.testing.assert_allclose(x, expected, rtol=10 * 5000 * EPS, atol=0)


def test_mackey_glass_matches_a_step_by_step_loop():
    h, n = 0.1, 150
    x = mackey_glass_series(n, integration_step=h, **MG)
    delay, a = 170, np.exp(-0.1 * h)
    hist = [1.2] * (delay + 1)  # x at times -τ … 0

    def g(v):
        return 0.2 * v / (1 + v**10)

    for k in range((n - 1) * 10):  # x_{k+1} from x_k and the values τ ago
        hist.append(a * hist[-1] + h / 2 * (a * g(hist[k]) + g(hist[k + 1])))
    expected = np.array(hist[delay::10])
    # the same arithmetic in another order; ~1500 steps of rounding, little amplified in 150 units
    np.testing.assert_allclose(x, expected, rtol=1e-11, atol=0)


def test_mackey_glass_integration_is_second_order():
    runs = [mackey_glass_series(101, integration_step=h, **MG) for h in (0.05, 0.025, 0.0125)]
    coarse = np.abs(runs[0] - runs[1]).max()
    fine = np.abs(runs[1] - runs[2]).max()
    # differences of successive halvings shrink by 2^2 (1 + O(h)); γh <= 0.005 here
    assert coarse / fine == pytest.approx(4.0, rel=0.01)


def test_mackey_glass_series_is_chaotic_with_the_known_range():
    task = make(MackeyGlassTask, train_samples=5000)
    raw = task.series * task.scale + task.offset
    # the τ = 17 attractor stays within about [0.4, 1.35] and never settles
    assert 0.35 < raw.min() < 0.5 and 1.25 < raw.max() < 1.4
    assert raw[-500:].std() > 0.15


def test_mackey_glass_normalised_over_the_training_part():
    task = make(MackeyGlassTask)
    train = task.series[:800]
    np.testing.assert_allclose(train.mean(), 0.0, atol=100 * EPS)
    np.testing.assert_allclose(train.std(), 1.0, rtol=100 * EPS)
    assert not task.series.flags.writeable


def test_mackey_glass_target_is_the_future(rng):
    horizon = 7
    task = make(MackeyGlassTask, horizon=horizon)
    for trials in (task.trials(rng, 5), task.eval_trials()):
        u, y = trials.inputs[..., 0], trials.targets[..., 0]
        np.testing.assert_array_equal(y[:, :-horizon], u[:, horizon:])
        for k in range(trials.n_trials):  # and the window continues the series
            start = int(np.flatnonzero(task.series == u[k, 0])[0])
            np.testing.assert_array_equal(y[k], task.series[start + horizon : start + 107])


def test_mackey_glass_training_and_evaluation_windows_do_not_overlap(rng):
    horizon = 15
    task = make(MackeyGlassTask, horizon=horizon, n_eval=4)
    span = task.n_steps + horizon
    assert task.series.size == 800 + 4 * span
    starts = [
        int(np.flatnonzero(task.series == u)[0]) for u in task.trials(rng, 300).inputs[:, 0, 0]
    ]
    assert min(starts) >= 0 and max(starts) + span <= 800
    assert max(starts) > 800 - span - 100  # the whole training part is used
    ev = task.eval_trials()
    eval_starts = [int(np.flatnonzero(task.series == u)[0]) for u in ev.inputs[:, 0, 0]]
    assert eval_starts == [800 + j * span for j in range(4)]
    washout = 20
    assert ev.periods == {"washout": (0, washout), "forecast": (washout, 100)}
    assert np.all(ev.mask[:, :washout] == 0) and np.all(ev.mask[:, washout:] == 1)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"duration": 0.1005}, "duration"),
        ({"washout_duration": 0.1}, "washout_duration"),
        ({"train_samples": 114}, "train_samples"),  # a window spans 100 + 15 samples
        ({"tau_d": 17.005}, "tau_d"),
        ({"sample_step": 0.005}, "sample_step"),
        ({"transient": 10.001}, "transient"),
    ],
)
def test_mackey_glass_bad_params_name_the_key(overrides, key):
    with pytest.raises(ValueError, match=f"^{key}: "):
        make(MackeyGlassTask, **overrides)


# --------------------------------------------------------------------------- perceptual decision


def test_decision_periods_inputs_and_targets(rng):
    task = make(PerceptualDecisionTask, delay_duration=0.05, input_noise=0.0)
    trials = task.trials(rng, 40)
    per = trials.periods
    assert list(per) == ["fixation", "stimulus", "delay", "decision"]
    assert [b - a for a, b in per.values()] == [100, 200, 50, 100]
    level, side = task.decode(trials.conditions)
    coherence = np.array([0.1, 0.5])[level]
    stim = trials.inputs[:, slice(*per["stimulus"])]
    trial = np.arange(40)
    for channel, mean in ((1 + side, (1 + coherence) / 2), (2 - side, (1 - coherence) / 2)):
        shown = stim[trial, :, channel]
        np.testing.assert_allclose(shown, np.broadcast_to(mean[:, None], shown.shape), rtol=EPS)
    assert np.all(stim[..., 0] == 1)
    decision = slice(*per["decision"])
    assert np.all(trials.inputs[:, : per["decision"][0], 0] == 1)
    assert np.all(trials.inputs[:, decision] == 0)
    for name in ("fixation", "delay"):
        assert np.all(trials.inputs[:, slice(*per[name]), 1:] == 0)
    np.testing.assert_array_equal(trials.targets[trial, decision.start, side], 1.0)
    assert trials.targets.sum() == 40 * 100  # one 1 per decision step, 0 elsewhere
    np.testing.assert_array_equal(trials.mask.sum(axis=1), 100)
    np.testing.assert_array_equal(trials.mask[:, decision], 1)


def test_decision_noise_only_in_the_stimulus(rng):
    task = make(PerceptualDecisionTask, input_noise=0.7)
    clean = make(PerceptualDecisionTask, input_noise=0.0)
    trials = task.trials(np.random.default_rng(3), 200)
    residual = trials.inputs - clean.trials(np.random.default_rng(3), 200).inputs
    stimulus = slice(*trials.periods["stimulus"])
    assert np.all(np.delete(residual, np.arange(task.n_steps)[stimulus], axis=1) == 0)
    assert np.all(residual[:, stimulus, 0] == 0)
    noise = residual[:, stimulus, 1:]
    # std of a sample std is ~ sigma / sqrt(2N); 5 standard deviations
    np.testing.assert_allclose(noise.std(), 0.7, rtol=5 / np.sqrt(2 * noise.size))
    assert abs(noise.mean()) < 5 * 0.7 / np.sqrt(noise.size)


def test_decision_ideal_observer_accuracy(rng):
    """Summed evidence difference: right with probability Φ(c √(N/2) / σ)."""
    c, sigma = 0.1, 1.0
    task = make(PerceptualDecisionTask, coherences=(c,), input_noise=sigma)
    trials = task.trials(rng, 4000)
    _, side = task.decode(trials.conditions)
    stim = trials.inputs[:, slice(*trials.periods["stimulus"])]
    evidence = stim[..., 1].sum(axis=1) - stim[..., 2].sum(axis=1)
    correct = np.mean(np.where(evidence > 0, 0, 1) == side)
    expected = norm.cdf(c * np.sqrt(200 / 2) / sigma)
    # binomial fraction: 5 standard deviations
    assert abs(correct - expected) < 5 * np.sqrt(expected * (1 - expected) / 4000)


def test_decision_eval_set_is_noisy_and_in_condition_order():
    task = make(PerceptualDecisionTask, n_eval_per_condition=3)
    ev = task.eval_trials()
    assert np.array_equal(ev.conditions, np.repeat(np.arange(4), 3))
    level, side = task.decode(ev.conditions)
    assert np.array_equal(level, [0] * 6 + [1] * 6) and np.array_equal(side, [0, 0, 0, 1, 1, 1] * 2)
    assert not np.array_equal(ev.inputs[0], ev.inputs[1])  # repeats differ by their noise
    decision = ev.periods["decision"][0]
    np.testing.assert_array_equal(ev.targets[np.arange(12), decision, side], 1.0)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"coherences": ()}, "coherences"),
        ({"coherences": (0.2, 0.0)}, "coherences"),
        ({"coherences": (1.5,)}, "coherences"),
        ({"stimulus_duration": 0.2005}, "stimulus_duration"),
        ({"delay_duration": 0.0005}, "delay_duration"),
    ],
)
def test_decision_bad_params_name_the_key(overrides, key):
    with pytest.raises(ValueError, match=f"^{key}: "):
        make(PerceptualDecisionTask, **overrides)


def test_delayed_match_with_variable_delays_names_each_trials_periods():
    """delay_jitter: per-trial delays, each trial's own periods, padding without loss."""
    from bioperturb.tasks.delayed_match import DelayedMatchTask

    dt = 0.01
    base = dict(
        fixation_duration=0.02,
        sample_duration=0.02,
        delay_duration=0.03,
        test_duration=0.02,
        decision_duration=0.02,
        n_stimuli=3,
        input_noise=0.1,
    )
    fixed = DelayedMatchTask(DelayedMatchTask.Params(**base), dt)
    task = DelayedMatchTask(DelayedMatchTask.Params(**base, delay_jitter=0.05), dt)
    assert task.n_steps == fixed.n_steps + 5
    trials = task.trials(np.random.default_rng(4), 400)
    same_draws = fixed.trials(np.random.default_rng(4), 400)
    # the jitter is drawn last: the same samples, tests and noise as without it
    np.testing.assert_array_equal(trials.conditions, same_draws.conditions)
    delays = trials.trial_periods["delay"] @ np.array([-1, 1])
    assert set(delays) == {3, 4, 5, 6, 7, 8}  # 30 ms plus 0 … 50 ms, whole steps
    sample, test = task.decode(trials.conditions)
    answer = np.where(sample == test, 0, 1)
    for i in range(trials.n_trials):
        per = trials.periods_of(i)
        assert list(per) == ["fixation", "sample", "delay", "test", "gap", "decision"]
        assert all(per[a][1] == per[b][0] for a, b in zip(per, list(per)[1:], strict=False))
        end = per["decision"][1]
        assert end == task.n_steps - (8 - delays[i])
        np.testing.assert_array_equal(
            trials.mask[i], np.r_[np.zeros(end - 2), 1, 1, np.zeros(task.n_steps - end)]
        )
        assert not trials.inputs[i, end:].any() and not trials.targets[i, end:].any()
        s0, s1 = per["sample"]
        t0, t1 = per["test"]
        assert np.all(trials.inputs[i, s0:s1, 1 + sample[i]] > 0.5)
        assert np.all(trials.inputs[i, t0:t1, 1 + test[i]] > 0.5)
        assert np.all(trials.targets[i, end - 2 : end, answer[i]] == 1)
        assert np.all(np.abs(trials.inputs[i, : end - 2, 0] - 1) < 0.6)  # fixation (noisy)
    one = trials[7]
    assert one.periods_of(0) == trials.periods_of(7)
    # the evaluation set: the longest delay, one layout
    ev = task.eval_trials()
    assert ev.trial_periods is None and ev.periods["delay"] == (4, 12)
    assert fixed.trials(np.random.default_rng(0), 3).trial_periods is None


def test_delayed_match_gap_waits_silently_before_the_decision(rng):
    """gap_duration (Miconi 2017's 200 ms): after the test, only the fixation cue; no
    target and no loss; the decision moves later by the gap."""
    from bioperturb.tasks.delayed_match import DelayedMatchTask

    base = dict(fixation_duration=0.0, sample_duration=0.02, delay_duration=0.02)
    base.update(test_duration=0.02, decision_duration=0.02, input_noise=0.0)
    plain = DelayedMatchTask(DelayedMatchTask.Params(**base), 0.01)
    task = DelayedMatchTask(DelayedMatchTask.Params(**base, gap_duration=0.03), 0.01)
    assert task.n_steps == plain.n_steps + 3
    assert task.eval_trials().periods["gap"] == (6, 9)
    assert plain.eval_trials().periods["gap"] == (6, 6)
    a, b = plain.trials(np.random.default_rng(2), 20), task.trials(np.random.default_rng(2), 20)
    np.testing.assert_array_equal(b.inputs[:, :6], a.inputs[:, :6])
    np.testing.assert_array_equal(b.inputs[:, 6:9], np.eye(3)[[0, 0, 0]][None].repeat(20, 0))
    assert not b.targets[:, :9].any() and not b.mask[:, :9].any()
    np.testing.assert_array_equal(b.targets[:, 9:], a.targets[:, 6:])
    np.testing.assert_array_equal(b.mask[:, 9:], a.mask[:, 6:])


def test_delayed_match_without_fixation_cue_keeps_channel_0_silent():
    from bioperturb.tasks.delayed_match import DelayedMatchTask

    kw = dict(input_noise=0.0, gap_duration=0.1)
    cued = DelayedMatchTask(DelayedMatchTask.Params(**kw), 0.01)
    bare = DelayedMatchTask(DelayedMatchTask.Params(**kw, fixation_cue=False), 0.01)
    a, b = cued.trials(np.random.default_rng(5), 8), bare.trials(np.random.default_rng(5), 8)
    assert a.inputs[..., 0].any() and not b.inputs[..., 0].any()
    np.testing.assert_array_equal(a.inputs[..., 1:], b.inputs[..., 1:])
    np.testing.assert_array_equal(a.targets, b.targets)


def test_delay_jitter_must_be_whole_steps():
    from bioperturb.tasks.delayed_match import DelayedMatchTask

    with pytest.raises(ValueError, match="delay_jitter"):
        DelayedMatchTask(DelayedMatchTask.Params(delay_jitter=0.0015), 0.001)


# --------------------------------------------------------------------------- digits


def test_digits_rows_show_the_image_row_by_row_then_ask_for_its_class(rng):
    images, labels = load_digits()
    assert images.shape == (1797, 8, 8) and images.min() == 0 and images.max() == 1
    task = make(SequentialDigitsTask, input_scale=2.0)
    trials = task.eval_trials()
    assert trials.periods == {"stimulus": (0, 16), "response": (16, 20)}
    assert (task.n_inputs, task.n_outputs, task.n_steps) == (8, 10, 20)
    for k, image in enumerate(task.eval_index):
        # row r during steps 2r, 2r + 1; nothing during the response
        np.testing.assert_array_equal(trials.inputs[k, :16], 2 * np.repeat(images[image], 2, 0))
        assert not trials.inputs[k, 16:].any()
        assert not trials.targets[k, :16].any() and not trials.mask[k, :16].any()
        assert (trials.targets[k, 16:].argmax(-1) == labels[image]).all()
        assert (trials.targets[k, 16:].sum(-1) == 1).all() and (trials.mask[k, 16:] == 1).all()
    assert np.array_equal(task.labels(trials), labels[task.eval_index])


def test_digits_split_holds_out_the_eval_images_from_training(rng):
    task = make(SequentialDigitsTask, n_eval=300)
    assert task.eval_index.size == 300 and task.train_index.size == 1497
    assert not np.intersect1d(task.eval_index, task.train_index).size
    images, _ = load_digits()
    drawn = task.trials(rng, 400).inputs[:, :16:2]  # one step per row
    flat = images.reshape(1797, -1)
    train = set(task.train_index.tolist())
    seen = [set(np.flatnonzero((flat == x.ravel()).all(1)).tolist()) for x in drawn]
    assert all(match & train for match in seen)  # each drawn image is a training image
    assert len(set().union(*seen)) > 300
    other = make(SequentialDigitsTask, n_eval=300, split_seed=1)
    assert not np.array_equal(task.eval_index, other.eval_index)


def test_digits_pixels_in_raster_or_a_fixed_permuted_order():
    images, _ = load_digits()
    raster = make(SequentialDigitsTask, order="pixels", step_duration=0.001)
    permuted = make(SequentialDigitsTask, order="pixels", step_duration=0.001, permute=True)
    a, b = raster.eval_trials(), permuted.eval_trials()
    assert raster.n_inputs == 1 and raster.n_steps == 64 + 4
    first = images[raster.eval_index[0]].ravel()
    np.testing.assert_array_equal(a.inputs[0, :64, 0], first)
    order = permuted.pixel_order
    assert sorted(order) == list(range(64)) and not np.array_equal(order, np.arange(64))
    np.testing.assert_array_equal(b.inputs[0, :64, 0], first[order])
    assert np.array_equal(a.targets, b.targets)
    again = make(SequentialDigitsTask, order="pixels", step_duration=0.001, permute=True)
    assert np.array_equal(again.pixel_order, order)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"permute": True}, "^permute: needs order = 'pixels'"),
        ({"n_eval": 1797}, r"^n_eval: 1797 leaves no training images \(at most 1796\)$"),
        ({"step_duration": 0.0015}, "^step_duration: "),
    ],
)
def test_digits_bad_parameters(overrides, message):
    with pytest.raises(ValueError, match=message):
        make(SequentialDigitsTask, **overrides)


def test_digits_without_scikit_learn_is_a_one_line_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    load_dataset.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    try:
        with pytest.raises(ValueError, match=r"^name: .*pip install 'bioperturb\[digits\]'$"):
            make(SequentialDigitsTask)
    finally:
        monkeypatch.undo()
        load_dataset.cache_clear()
