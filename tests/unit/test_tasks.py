"""Unit tests of the pattern-generation and delayed match-to-sample tasks (numpy only).

The registry test covers every task; the others are in test_temporal_tasks.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bioperturb.tasks import TASKS, DelayedMatchTask, PatternTask, Trials, get_task

DT = 1e-3


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240710)


def pattern(dt: float = DT, **overrides) -> PatternTask:
    return PatternTask(PatternTask.Params(**overrides), dt)


def dms(dt: float = DT, **overrides) -> DelayedMatchTask:
    return DelayedMatchTask(DelayedMatchTask.Params(**overrides), dt)


def assert_well_formed(trials: Trials, task, n: int) -> None:
    assert trials.inputs.shape == (n, task.n_steps, task.n_inputs)
    assert trials.targets.shape == (n, task.n_steps, task.n_outputs)
    assert trials.mask.shape == (n, task.n_steps)
    assert trials.conditions.shape == (n,)
    for array in (trials.inputs, trials.targets, trials.mask):
        assert array.dtype == np.float64
        assert np.all(np.isfinite(array))
    assert np.issubdtype(trials.conditions.dtype, np.integer)
    assert set(np.unique(trials.mask)) <= {0.0, 1.0}
    assert trials.dt == task.dt
    # periods partition [0, n_steps) in order
    bounds = list(trials.periods.values())
    assert bounds[0][0] == 0
    assert bounds[-1][1] == task.n_steps
    for (_, stop), (start, _) in zip(bounds[:-1], bounds[1:], strict=True):
        assert stop == start
    assert all(start <= stop for start, stop in bounds)


@pytest.mark.parametrize("cls", list(TASKS.values()), ids=list(TASKS))
def test_registry_and_metadata(cls):
    assert get_task(cls.name) is cls
    assert TASKS[cls.name] is cls
    assert set(cls.meta) == {"description", "reference", "tags"}
    assert isinstance(cls.meta["tags"], list)
    assert cls.score in (None, "accuracy", "sequence", "nrmse")
    assert dataclasses.is_dataclass(cls.Params)
    assert cls.Params.__dataclass_params__.frozen
    for f in dataclasses.fields(cls.Params):
        has_default = f.default is not dataclasses.MISSING
        assert has_default or f.default_factory is not dataclasses.MISSING, f.name
        assert f.metadata["doc"], f.name


# --------------------------------------------------------------------------- pattern


@pytest.mark.parametrize("mode", ["pulse", "random", "constant"])
def test_pattern_shapes_and_dtypes(rng, mode):
    task = pattern(input=mode, n_inputs=3, n_outputs=2, input_noise=0.1)
    assert (task.n_inputs, task.n_outputs, task.n_steps) == (3, 2, 1000)
    assert_well_formed(task.trials(rng, 4), task, 4)
    assert_well_formed(task.eval_trials(), task, 1)
    assert np.array_equal(task.trials(rng, 4).conditions, np.zeros(4))
    assert np.array_equal(task.eval_trials().conditions, [0])


def test_pattern_periods_match_durations():
    task = pattern(duration=0.5, pulse_duration=0.02)
    assert task.eval_trials().periods == {"cue": (0, 20), "pattern": (20, 500)}
    for mode in ("random", "constant"):
        assert pattern(duration=0.5, input=mode).eval_trials().periods == {"pattern": (0, 500)}
    # 0.3 / 1e-4 is not exactly 3000 in floating point: accepted within 1e-9 relative
    assert pattern(duration=0.3, dt=1e-4).n_steps == 3000


def test_pattern_reproducible_from_rng_only():
    task = pattern(input="random", input_noise=0.2)
    a = task.trials(np.random.default_rng(1), 3)
    b = task.trials(np.random.default_rng(1), 3)
    c = task.trials(np.random.default_rng(2), 3)
    assert np.array_equal(a.inputs, b.inputs)
    assert not np.array_equal(a.inputs, c.inputs)
    assert np.array_equal(a.targets, c.targets)
    # a task rebuilt from the same parameters is the same task
    again = pattern(input="random", input_noise=0.2)
    assert np.array_equal(again.trials(np.random.default_rng(1), 3).inputs, a.inputs)


@pytest.mark.parametrize("amplitude", [0.8, 2.5])
def test_pattern_peak_equals_amplitude(rng, amplitude):
    task = pattern(amplitude=amplitude, n_outputs=3, n_components=5)
    peaks = np.abs(task.trials(rng, 2).targets).max(axis=1)
    np.testing.assert_allclose(peaks, amplitude, rtol=4 * np.finfo(float).eps)


def test_pattern_contains_requested_frequencies():
    duration = 20.0  # long trial: frequency resolution 1/T = 0.05 Hz
    task = pattern(
        duration=duration,
        input="constant",
        n_outputs=2,
        n_components=3,
        freq_min=1.0,
        freq_max=4.0,
        pattern_seed=7,
    )
    resolution = 1.0 / duration
    assert task.frequencies.shape == (2, 3)
    assert np.all((task.frequencies >= 1.0) & (task.frequencies <= 4.0))
    targets = task.eval_trials().targets[0]
    freqs = np.fft.rfftfreq(task.n_steps, DT)
    for k in range(2):
        true = np.sort(task.frequencies[k])
        # precondition: components are resolvable (at least 6 bins apart)
        assert np.min(np.diff(true)) > 6 * resolution
        power = np.abs(np.fft.rfft(targets[:, k] * np.hanning(task.n_steps))) ** 2
        interior = power[1:-1]
        local_max = 1 + np.flatnonzero((interior > power[:-2]) & (interior >= power[2:]))
        top = np.sort(freqs[local_max[np.argsort(power[local_max])[-3:]]])
        # the nearest bin is at most half a bin away; allow one bin for leakage of neighbours
        np.testing.assert_allclose(top, true, rtol=0, atol=resolution)
        # and no power outside [freq_min, freq_max] beyond the Hann window's leakage
        outside = (freqs < 1.0 - 4 * resolution) | (freqs > 4.0 + 4 * resolution)
        assert power[outside].sum() < 1e-4 * power.sum()


def test_pattern_fixed_across_trials_and_rngs():
    task = pattern(input_noise=0.3, n_outputs=2)
    a = task.trials(np.random.default_rng(1), 5).targets
    b = task.trials(np.random.default_rng(99), 5).targets
    assert np.array_equal(a, b)
    assert np.array_equal(a, np.repeat(a[:1], 5, axis=0))
    assert np.array_equal(a[:1], task.eval_trials().targets)
    other = pattern(input_noise=0.3, n_outputs=2, pattern_seed=1)
    assert not np.array_equal(other.eval_trials().targets, a[:1])


def test_pattern_target_is_the_stated_sum_of_sinusoids():
    task = pattern(duration=0.5, n_outputs=2, pulse_duration=0.04)
    start, stop = task.eval_trials().periods["pattern"]
    t = np.arange(stop - start) * DT
    expected = task.gains[:, None] * np.sin(
        2 * np.pi * task.frequencies[:, :, None] * t + task.phases[:, :, None]
    ).sum(axis=1)
    targets = task.eval_trials().targets[0]
    np.testing.assert_allclose(targets[start:].T, expected, rtol=0, atol=1e-12)
    assert np.all(targets[:start] == 0)


def test_pattern_mask_and_pulse_input():
    task = pattern(n_inputs=2, input_amplitude=1.5, pulse_duration=0.05)
    ev = task.eval_trials()
    assert np.all(ev.mask[0, :50] == 0) and np.all(ev.mask[0, 50:] == 1)
    assert np.all(ev.inputs[0, :50] == 1.5) and np.all(ev.inputs[0, 50:] == 0)
    for mode in ("random", "constant"):
        assert np.all(pattern(input=mode).eval_trials().mask == 1)


def test_pattern_constant_input():
    ev = pattern(input="constant", n_inputs=2, input_amplitude=0.7).eval_trials()
    assert np.all(ev.inputs == 0.7)


def test_pattern_random_input_is_frozen_smooth_and_normalised(rng):
    task = pattern(input="random", n_inputs=2, input_amplitude=0.5, input_timescale=0.05)
    u = task.eval_trials().inputs[0]
    np.testing.assert_allclose(u.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(u.std(axis=0), 0.5, rtol=1e-12)
    assert np.array_equal(task.trials(rng, 2).inputs[1], u)  # no input noise by default
    assert not np.array_equal(u[:, 0], u[:, 1])  # channels independent
    # lag-1 autocorrelation: exp(-dt/tau) = 0.98 for the OU input, 0 +- 1/sqrt(1000) = 0.03
    # for white noise; 0.5 separates the two by more than 10 standard deviations.
    for ch in range(2):
        assert np.corrcoef(u[:-1, ch], u[1:, ch])[0, 1] > 0.5
    changed = pattern(input="random", n_inputs=2, input_amplitude=0.5, pattern_seed=3)
    assert not np.array_equal(changed.eval_trials().inputs[0], u)


def test_pattern_input_noise_only_in_training(rng):
    task = pattern(input_noise=0.2, n_inputs=2)
    clean = task.eval_trials().inputs
    residual = task.trials(rng, 50).inputs - clean
    n_samples = residual.size
    # std of a sample std is ~ sigma / sqrt(2N); 5 standard deviations
    np.testing.assert_allclose(residual.std(), 0.2, rtol=5 / np.sqrt(2 * n_samples))
    assert abs(residual.mean()) < 5 * 0.2 / np.sqrt(n_samples)
    quiet = pattern(input_noise=0.0)
    assert np.array_equal(quiet.trials(rng, 2).inputs[0], quiet.eval_trials().inputs[0])


@pytest.mark.parametrize(
    ("overrides", "dt", "key"),
    [
        ({"duration": 0.1005}, 1e-3, "duration"),
        ({"pulse_duration": 0.0505}, 1e-3, "pulse_duration"),
        ({"freq_min": 4.0, "freq_max": 4.0}, 1e-3, "freq_min"),
        ({"freq_min": 5.0, "freq_max": 4.0}, 1e-3, "freq_min"),
        ({"freq_max": 50.0}, 1e-2, "freq_max"),  # Nyquist 1/(2 dt) = 50 Hz
        ({"pulse_duration": 1.0}, 1e-3, "pulse_duration"),
    ],
)
def test_pattern_bad_params_name_the_key(overrides, dt, key):
    with pytest.raises(ValueError, match=f"^{key}: "):
        PatternTask(PatternTask.Params(**overrides), dt)


def test_pattern_check_is_a_params_method():
    with pytest.raises(ValueError, match="^freq_min: "):
        PatternTask.Params(freq_min=3.0, freq_max=2.0).check()
    PatternTask.Params().check()
    PatternTask.Params(input="random", pulse_duration=2.0).check()  # pulse unused


# --------------------------------------------------------------------------- delayed match


@pytest.mark.parametrize("n_stimuli", [2, 5])
def test_dms_shapes_and_dtypes(rng, n_stimuli):
    task = dms(n_stimuli=n_stimuli)
    assert (task.n_inputs, task.n_outputs, task.n_steps) == (n_stimuli + 1, 2, 900)
    assert_well_formed(task.trials(rng, 7), task, 7)
    assert_well_formed(task.eval_trials(), task, n_stimuli**2)


@pytest.mark.parametrize("dt", [1e-3, 1e-2, 5e-4])
def test_dms_periods_match_durations(dt):
    durations = {"fixation": 0.05, "sample": 0.2, "delay": 0.7, "test": 0.1, "gap": 0.15}
    durations["decision"] = 0.3
    task = dms(dt=dt, **{f"{k}_duration": v for k, v in durations.items()})
    periods = task.eval_trials().periods
    assert list(periods) == list(durations)
    for name, (start, stop) in periods.items():
        assert (stop - start) * dt == pytest.approx(durations[name], rel=1e-9)
    assert task.n_steps * dt == pytest.approx(sum(durations.values()), rel=1e-9)


def test_dms_reproducible_from_rng_only():
    task = dms()
    a = task.trials(np.random.default_rng(1), 20)
    b = task.trials(np.random.default_rng(1), 20)
    c = task.trials(np.random.default_rng(2), 20)
    for name in ("inputs", "targets", "mask", "conditions"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.inputs, c.inputs)
    assert not np.array_equal(a.conditions, c.conditions)


def test_dms_stimuli_in_their_periods_and_labels_decode(rng):
    task = dms(n_stimuli=4, input_noise=0.0)
    trials = task.trials(rng, 200)
    per = trials.periods
    sample, test = task.decode(trials.conditions)
    stim = trials.inputs[:, :, 1:]
    one_hot = np.eye(4)
    for name, shown in (("sample", sample), ("test", test)):
        window = stim[:, slice(*per[name])]
        np.testing.assert_array_equal(
            window, np.broadcast_to(one_hot[shown][:, None], window.shape)
        )
    for name in ("fixation", "delay", "decision"):
        assert np.all(stim[:, slice(*per[name])] == 0)
    fixation = trials.inputs[:, :, 0]
    assert np.all(fixation[:, : per["decision"][0]] == 1)
    assert np.all(fixation[:, slice(*per["decision"])] == 0)


def test_dms_targets_report_match(rng):
    task = dms(n_stimuli=3)
    trials = task.trials(rng, 300)
    sample, test = task.decode(trials.conditions)
    match = sample == test
    assert match.any() and (~match).any()
    start, stop = trials.periods["decision"]
    decision = trials.targets[:, start:stop]
    np.testing.assert_array_equal(
        decision[match], np.broadcast_to([1.0, 0.0], decision[match].shape)
    )
    np.testing.assert_array_equal(
        decision[~match], np.broadcast_to([0.0, 1.0], decision[~match].shape)
    )
    assert np.all(trials.targets[:, :start] == 0)


@pytest.mark.parametrize("match_prob", [0.5, 0.2])
def test_dms_match_fraction(rng, match_prob):
    n = 4000
    task = dms(n_stimuli=3, match_prob=match_prob)
    sample, test = task.decode(task.trials(rng, n).conditions)
    # binomial: std of the fraction is sqrt(p (1 - p) / n) (0.008 at p = 0.5); 5 std
    tolerance = 5 * np.sqrt(match_prob * (1 - match_prob) / n)
    assert abs(np.mean(sample == test) - match_prob) < tolerance
    # samples uniform: each stimulus has probability 1/3, same 5-std binomial bound
    counts = np.bincount(sample, minlength=3) / n
    assert np.all(np.abs(counts - 1 / 3) < 5 * np.sqrt((1 / 3) * (2 / 3) / n))


@pytest.mark.parametrize(("match_prob", "all_match"), [(0.0, False), (1.0, True)])
def test_dms_match_prob_limits(rng, match_prob, all_match):
    task = dms(n_stimuli=4, match_prob=match_prob)
    sample, test = task.decode(task.trials(rng, 500).conditions)
    assert np.all((sample == test) == all_match)


def test_dms_eval_trials_cover_every_pair_noise_free():
    task = dms(n_stimuli=3, input_noise=0.5)
    ev = task.eval_trials()
    assert np.array_equal(ev.conditions, np.arange(9))
    sample, test = task.decode(ev.conditions)
    assert {(int(s), int(t)) for s, t in zip(sample, test, strict=True)} == {
        (s, t) for s in range(3) for t in range(3)
    }
    assert set(np.unique(ev.inputs)) == {0.0, 1.0}
    assert np.array_equal(ev.inputs, task.eval_trials().inputs)


def test_dms_input_noise_only_in_training(rng):
    task = dms(input_noise=0.1)
    trials = task.trials(rng, 100)
    residual = trials.inputs - task.eval_trials().inputs[trials.conditions]
    n_samples = residual.size
    # std of a sample std is ~ sigma / sqrt(2N); 5 standard deviations
    np.testing.assert_allclose(residual.std(), 0.1, rtol=5 / np.sqrt(2 * n_samples))
    assert abs(residual.mean()) < 5 * 0.1 / np.sqrt(n_samples)
    assert np.array_equal(trials.targets, task.eval_trials().targets[trials.conditions])


def test_dms_mask():
    ev = dms().eval_trials()
    start, stop = ev.periods["decision"]
    assert np.all(ev.mask[:, start:stop] == 1)
    assert np.all(ev.mask[:, :start] == 0)
    assert np.all(dms(mask_all_periods=True).eval_trials().mask == 1)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"delay_duration": 0.3005}, "delay_duration"),
        ({"fixation_duration": 0.0001}, "fixation_duration"),
        ({"n_stimuli": 1}, "n_stimuli"),
        ({"match_prob": 1.5}, "match_prob"),
    ],
)
def test_dms_bad_params_name_the_key(overrides, key):
    with pytest.raises(ValueError, match=f"^{key}: "):
        DelayedMatchTask(DelayedMatchTask.Params(**overrides), DT)


@pytest.mark.parametrize("cls", [PatternTask, DelayedMatchTask])
def test_bad_dt(cls):
    with pytest.raises(ValueError, match="^dt: "):
        cls(cls.Params(), 0.0)


def test_delayed_recall_reports_the_sample_and_ignores_the_distractor():
    task = dms(report="sample", n_stimuli=3)
    assert task.n_outputs == 3
    ev = task.eval_trials()
    sample, test = task.decode(ev.conditions)
    lo, hi = ev.periods["decision"]
    for k in range(ev.n_trials):
        expected = np.zeros(3)
        expected[sample[k]] = 1.0
        np.testing.assert_array_equal(ev.targets[k, lo:hi], np.tile(expected, (hi - lo, 1)))
        assert np.all(ev.targets[k, :lo] == 0)
        assert ev.inputs[k, slice(*ev.periods["test"]), 1 + test[k]].min() == 1.0


def test_pattern_poisson_inputs_are_frozen_spike_trains_at_the_rate():
    task = PatternTask(
        PatternTask.Params(input="poisson", n_inputs=200, input_rate=20.0, duration=1.0), DT
    )
    a = task.trials(np.random.default_rng(0), 2)
    b = task.eval_trials()
    assert set(np.unique(a.inputs)) == {0.0, 1.0}
    np.testing.assert_array_equal(a.inputs[0], a.inputs[1])
    np.testing.assert_array_equal(a.inputs[0], b.inputs[0])
    rate = a.inputs[0].mean() / DT
    assert abs(rate - 20.0) < 2.0  # 200 × 1000 Bernoulli(0.02) steps: sd ≈ 0.2 Hz
