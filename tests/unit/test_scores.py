"""Sequence accuracy and NRMSE against hand-made answers and brute-force loops, and how
``score_dataset`` and the statistics tables use them.

Sequence-accuracy scores are ratios of small integers, compared to a few ulp of float64;
NRMSE values are square roots of sums of a few dozen float64 squares (a few ulp each).
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bioperturb import metrics
from bioperturb.dataset import score_dataset
from bioperturb.tasks import CopyTask, MackeyGlassTask
from tests.unit.test_accuracy import run

pytestmark = pytest.mark.filterwarnings("error")

EXACT = 1e-15  # relative tolerance of sums and ratios of a handful of float64 numbers
CLOSE = 1e-13  # relative tolerance of a square root of sums of a few dozen float64 squares


def with_slots(ds: xr.Dataset, slots: list[int]) -> xr.Dataset:
    return ds.assign_coords(time_slot=("time", np.array(slots)))


# --------------------------------------------------------------------------- sequence accuracy


def two_sequences() -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Targets, mask and slots of 2 conditions x 7 time points x 3 outputs.

    Time points 0-1: no slot; slot 0 at t = 2, 3; slot 1 at t = 4, 5; slot 2 at t = 6.
    Condition 0 recalls symbols (0, 2, 1), condition 1 (1, 1, 2); slot 2 of condition 1 is
    not masked.
    """
    target = np.zeros((2, 7, 3))
    for c, symbols in enumerate(((0, 2, 1), (1, 1, 2))):
        for (start, stop), k in zip(((2, 4), (4, 6), (6, 7)), symbols, strict=True):
            target[c, start:stop, k] = 1.0
    mask = np.zeros((2, 7))
    mask[:, 2:] = 1.0
    mask[1, 6] = 0.0
    return target, mask, [-1, -1, 0, 0, 1, 1, 2]


def test_sequence_accuracy_known_answers():
    target, mask, slots = two_sequences()
    y = np.zeros((2, 2, 7, 3))
    y[0] = target  # perfect recall …
    y[0, :, :2] = [9.0, -9.0, np.nan]  # … whatever happens outside the slots
    y[1, 0, 2:4] = [0.2, 0.5, 0.1]  # slot 0 wrong (answers 1 for 0)
    y[1, 0, 4] = [0.0, 2.0, 1.0]  # slot 1: mean [0, 1, 0.5] answers 1 for 2: wrong
    y[1, 0, 6] = [0.3, 0.9, 0.3]  # slot 2 right
    y[1, 1, 2:4] = [0.5, 0.5, 0.0]  # slot 0: a tie of 0 and 1 that includes 1: 1/2
    y[1, 1, 4:6] = [0.0, 1.0, 0.0]  # slot 1 right; slot 2 masked out: not counted
    result = metrics.sequence_accuracy(with_slots(run(y, target, mask), slots))
    per_pair = [[[1, 1, 1], [1, 1, np.nan]], [[0, 0, 1], [0.5, 1, np.nan]]]
    np.testing.assert_allclose(
        result["eval_sequence_accuracy_condition"], np.nanmean(per_pair, axis=2), rtol=EXACT
    )
    np.testing.assert_allclose(
        result["eval_sequence_accuracy_slot"], np.nanmean(per_pair, axis=1), rtol=EXACT
    )
    np.testing.assert_allclose(result["eval_sequence_accuracy"], [1.0, 2.5 / 5], rtol=EXACT)
    assert result["eval_sequence_accuracy"].dims == ("eval_trial",)
    assert result["eval_sequence_accuracy_condition"].dims == ("eval_trial", "condition")
    assert result["eval_sequence_accuracy_slot"].dims == ("eval_trial", "slot")
    np.testing.assert_array_equal(result["slot"], [0, 1, 2])
    for name in result.data_vars:
        assert result[name].attrs["units"] == "1" and result[name].attrs["long_name"]


def test_sequence_accuracy_matches_a_brute_force_loop():
    rng = np.random.default_rng(4)
    n_eval, n_cond, n_time, n_out = 3, 5, 12, 4
    y = rng.normal(size=(n_eval, n_cond, n_time, n_out))  # ties have probability 0
    target = rng.normal(size=(n_cond, n_time, n_out))
    mask = (rng.random((n_cond, n_time)) < 0.7).astype(float)
    slots = [-1, 0, 0, 0, 1, 1, -1, 2, 2, 2, 3, 3]
    result = metrics.sequence_accuracy(with_slots(run(y, target, mask), slots))
    expected = np.full((n_eval, n_cond, 4), np.nan)
    for e in range(n_eval):
        for c in range(n_cond):
            for s in range(4):
                steps = (mask[c] > 0) & (np.array(slots) == s)
                if steps.any():
                    right = np.argmax(target[c, steps].mean(0))
                    expected[e, c, s] = float(np.argmax(y[e, c, steps].mean(0)) == right)
    np.testing.assert_allclose(
        result["eval_sequence_accuracy"], np.nanmean(expected, axis=(1, 2)), rtol=EXACT
    )
    np.testing.assert_allclose(
        result["eval_sequence_accuracy_slot"], np.nanmean(expected, axis=1), rtol=EXACT
    )


def test_sequence_accuracy_keeps_a_method_dim():
    target, mask, slots = two_sequences()
    y = np.zeros((2, 1, 2, 7, 3))
    y[0, 0] = target
    ds = run(y, np.broadcast_to(target, (2, *target.shape)), np.broadcast_to(mask, (2, 2, 7)))
    result = metrics.sequence_accuracy(with_slots(ds, slots))
    assert result["eval_sequence_accuracy_slot"].dims == ("method", "eval_trial", "slot")
    # zeros everywhere: a tie of 3 outputs in each of the 5 scored slots
    np.testing.assert_allclose(result["eval_sequence_accuracy"], [[1.0], [1 / 3]], rtol=EXACT)


def test_sequence_accuracy_errors_name_what_is_missing():
    target, mask, slots = two_sequences()
    ds = run(np.zeros((1, 2, 7, 3)), target, mask)
    with pytest.raises(ValueError, match="time_slot"):
        metrics.sequence_accuracy(ds)
    with pytest.raises(ValueError, match="no masked time point lies in a slot"):
        metrics.sequence_accuracy(with_slots(ds, [-1] * 7))


# --------------------------------------------------------------------------- NRMSE


def test_nrmse_limiting_cases():
    rng = np.random.default_rng(5)
    target = rng.normal(size=(3, 8, 2))
    mask = np.ones((3, 8))
    mask[:, :2] = 0.0  # a washout
    scored = target[:, 2:]
    mean, spread = scored.mean(), scored.std()
    y = np.stack(
        [
            target,  # perfect: 0
            np.full_like(target, mean),  # the mean target: 1
            target + 0.5,  # a constant offset: 0.5 / sigma
            mean + 3.0 * (target - mean),  # thrice the deviations: 2
        ]
    )
    y[:, :, :2] = np.nan  # the washout does not count, even as NaN
    result = metrics.nrmse(run(y, target, mask))["eval_nrmse"]
    assert result.dims == ("eval_trial",)
    np.testing.assert_allclose(result[0], 0.0, atol=0)
    np.testing.assert_allclose(result[1:], [1.0, 0.5 / spread, 2.0], rtol=CLOSE)
    assert result.attrs["units"] == "1" and "lower is better" in result.attrs["long_name"]


def test_nrmse_matches_a_brute_force_loop():
    rng = np.random.default_rng(6)
    n_eval, n_cond, n_time, n_out = 3, 4, 9, 2
    y = rng.normal(size=(n_eval, n_cond, n_time, n_out))
    target = rng.normal(size=(n_cond, n_time, n_out))
    mask = (rng.random((n_cond, n_time)) < 0.6).astype(float)
    result = metrics.nrmse(run(y, target, mask))["eval_nrmse"]
    points = [(c, t) for c in range(n_cond) for t in range(n_time) if mask[c, t] > 0]
    scored = np.array([target[c, t] for c, t in points])
    for e in range(n_eval):
        errors = np.array([y[e, c, t] - target[c, t] for c, t in points])
        expected = np.sqrt(np.mean(errors**2)) / scored.std()
        np.testing.assert_allclose(result[e], expected, rtol=CLOSE)


def test_nrmse_padding_method_dim_and_constant_target():
    rng = np.random.default_rng(7)
    target = rng.normal(size=(2, 5, 1))
    y = np.zeros((2, 2, 2, 5, 1))
    y[1, 1, 0, 3] = np.nan  # bptt's second evaluation is padding at a masked point
    ds = run(y, np.broadcast_to(target, (2, 2, 5, 1)), np.ones((2, 2, 5)))
    result = metrics.nrmse(ds)["eval_nrmse"]
    assert result.dims == ("method", "eval_trial")
    assert np.isfinite(result.values[0]).all() and np.isnan(result.values[1, 1])
    flat = run(np.zeros((1, 2, 5, 1)), np.ones((2, 5, 1)), np.ones((2, 5)))
    assert np.isnan(metrics.nrmse(flat)["eval_nrmse"].values).all()
    with pytest.raises(ValueError, match="target"):
        metrics.nrmse(flat.drop_vars("target"))
    with pytest.raises(ValueError, match="no response to score"):
        metrics.nrmse(flat.assign(eval_mask=0.0 * flat["eval_mask"]))


# --------------------------------------------------------------------------- score_dataset


def recorded(task, every: int) -> xr.Dataset:
    """A perfect run of ``task``'s evaluation set recorded at every ``every``-th step (the
    last step of each window, as the Trainer records)."""
    ev = task.eval_trials()
    steps = np.arange(every - 1, task.n_steps, every)
    y = ev.targets[None, :, steps]
    ds = run(y, ev.targets[:, steps], ev.mask[:, steps])
    return ds.assign_coords(time=steps * task.dt)


def test_score_dataset_marks_the_copy_slots_and_scores_them():
    task = CopyTask(CopyTask.Params(length=3, symbol_duration=0.004, delay_duration=0.002), 1e-3)
    ds = recorded(task, every=2)
    scored = score_dataset(ds, task)
    steps = np.rint(scored["time"].values / 1e-3).astype(int)
    expected = np.full(steps.size, -1)
    for k, (start, stop) in enumerate(task.slots):
        expected[(steps >= start) & (steps < stop)] = k
    np.testing.assert_array_equal(scored["time_slot"], expected)
    assert np.array_equal(np.unique(expected), [-1, 0, 1, 2])
    np.testing.assert_array_equal(scored["eval_sequence_accuracy"], [1.0])
    xr.testing.assert_identical(
        scored[["eval_sequence_accuracy", "eval_sequence_accuracy_slot"]],
        metrics.sequence_accuracy(scored)[
            ["eval_sequence_accuracy", "eval_sequence_accuracy_slot"]
        ],
    )


def test_score_dataset_adds_the_nrmse_of_forecasts():
    params = MackeyGlassTask.Params(duration=0.05, washout_duration=0.01, train_samples=300)
    task = MackeyGlassTask(params, 1e-3)
    scored = score_dataset(recorded(task, every=1), task)
    np.testing.assert_array_equal(scored["eval_nrmse"], [0.0])
    assert "eval_accuracy" not in scored and "eval_sequence_accuracy" not in scored


def test_tables_report_final_sequence_accuracy_and_nrmse():
    n_trials, eval_trial = 20, [0, 10, 20]
    ds = xr.Dataset(
        {
            "loss": (("method", "trial"), np.ones((2, n_trials))),
            "wall_time": (("method", "trial"), np.full((2, n_trials), 0.1)),
            "eval_loss": (("method", "eval_trial"), np.ones((2, 3))),
            "eval_sequence_accuracy": (("method", "eval_trial"), [[0.2, 0.5, 0.75], [0, 1, 1]]),
            "eval_nrmse": (("method", "eval_trial"), [[1.0, 0.5, 0.25], [1.0, 0.125, np.nan]]),
        },
        {"method": ["td_anp", "bptt"], "eval_trial": eval_trial, "trial": np.arange(n_trials)},
    )
    sequence = "final evaluation sequence accuracy [1]"
    error = "final evaluation NRMSE (lower is better) [1]"
    for table in (metrics.summary_table(ds), metrics.comparison_table(ds)):
        assert table.loc[sequence].tolist() == [0.75, 1.0]
        assert table.loc[error].tolist() == [0.25, 0.125]  # the last non-NaN value
    assert error not in metrics.summary_table(ds.drop_vars("eval_nrmse")).index
