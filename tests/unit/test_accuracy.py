"""Accuracy of classification tasks against hand-made answers and a brute-force loop.

The scores are ratios of small integers (k / n_conditions, 1 / n_tied), so they are
compared to a few ulp of float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bioperturb import metrics
from bioperturb.dataset import score_dataset
from bioperturb.tasks import DelayedMatchTask, PatternTask

pytestmark = pytest.mark.filterwarnings("error")

EXACT = 1e-15  # relative tolerance of sums and ratios of a handful of float64 numbers

DIMS_Y = ("eval_trial", "condition", "time", "output")


def run(output_y: np.ndarray, target: np.ndarray, mask: np.ndarray) -> xr.Dataset:
    """A Dataset with the three variables the metric reads (docs/data-model.md)."""
    dims_y = DIMS_Y if output_y.ndim == 4 else ("method", *DIMS_Y)
    dims_t = ("condition", "time", "output")
    dims_t = dims_t if target.ndim == 3 else ("method", *dims_t)
    coords = {"eval_trial": np.arange(output_y.shape[-4]) * 10}
    if output_y.ndim == 5:
        coords["method"] = ["rule", "bptt"][: output_y.shape[0]]
    return xr.Dataset(
        {
            "output_y": (dims_y, output_y),
            "target": (dims_t, target),
            "eval_mask": (dims_t[:-1], mask),
        },
        coords,
    )


def three_conditions() -> tuple[np.ndarray, np.ndarray]:
    """Targets and mask of 3 conditions × 4 time points × 2 outputs.

    Condition 0 answers output 0, condition 1 output 1 (both masked at t = 2, 3);
    condition 2 has no masked time point.
    """
    target = np.zeros((3, 4, 2))
    target[0, 2:, 0] = 1.0
    target[1, 2:, 1] = 1.0
    mask = np.zeros((3, 4))
    mask[:2, 2:] = 1.0
    return target, mask


def test_known_answers_with_a_tie_and_an_unmasked_condition():
    target, mask = three_conditions()
    y = np.zeros((3, 3, 4, 2))
    y[0, :, 2:] = [0.9, 0.1]  # answers 0: right in condition 0, wrong in 1
    y[1, :, 2:] = [0.2, 0.8]  # answers 1: right in condition 1 …
    y[1, 0, 2] = [1.0, -1.0]  # … and in condition 0 the mean [0.6, -0.1] answers 0: right
    y[2, 1, 2:] = 0.5  # a tie in condition 1; condition 0 stays 0 (a tie too)
    y[:, :, 1] = [5.0, -5.0]  # unmasked time points do not count …
    y[:, :, 0] = np.nan  # … even when they are NaN
    ds = run(y, target, mask)
    result = metrics.accuracy(ds)
    per = result["eval_accuracy_condition"]
    assert per.dims == ("eval_trial", "condition")
    expected = [[1.0, 0.0, np.nan], [1.0, 1.0, np.nan], [0.5, 0.5, np.nan]]
    np.testing.assert_allclose(per.values, expected, rtol=EXACT)
    np.testing.assert_allclose(result["eval_accuracy"].values, [0.5, 1.0, 0.5], rtol=EXACT)
    assert result["eval_accuracy"].dims == ("eval_trial",)
    np.testing.assert_array_equal(result["eval_accuracy"]["eval_trial"], [0, 10, 20])
    for name in result.data_vars:
        assert result[name].attrs["units"] == "1" and result[name].attrs["long_name"]


def test_a_tie_of_three_scores_a_third_and_a_tied_target_is_no_answer():
    target = np.zeros((2, 1, 3))
    target[0, 0, 2] = 1.0
    target[1, 0, :2] = 1.0  # condition 1: two right answers, none unique
    y = np.zeros((1, 2, 1, 3))
    ds = run(y, target, np.ones((2, 1)))
    result = metrics.accuracy(ds)
    np.testing.assert_allclose(result["eval_accuracy_condition"], [[1 / 3, np.nan]], rtol=EXACT)
    np.testing.assert_allclose(result["eval_accuracy"], [1 / 3], rtol=EXACT)


def test_leading_method_dim_is_kept_and_padding_is_nan():
    target, mask = three_conditions()
    y = np.zeros((2, 2, 3, 4, 2))
    y[0, :, :, 2:] = [0.9, 0.1]  # rule: always output 0
    y[1, 0, :, 2:] = [0.1, 0.9]  # bptt: always output 1 …
    y[1, 1] = np.nan  # … and its second evaluation is padding
    ds = run(y, np.broadcast_to(target, (2, *target.shape)), np.broadcast_to(mask, (2, 3, 4)))
    result = metrics.accuracy(ds)
    assert result["eval_accuracy_condition"].dims == ("method", "eval_trial", "condition")
    np.testing.assert_array_equal(result["method"], ["rule", "bptt"])
    np.testing.assert_allclose(
        result["eval_accuracy"].values, [[0.5, 0.5], [0.5, np.nan]], rtol=EXACT
    )
    np.testing.assert_allclose(
        result["eval_accuracy_condition"].sel({"method": "bptt"}).values,
        [[0.0, 1.0, np.nan], [np.nan, np.nan, np.nan]],
        rtol=EXACT,
    )


def test_matches_a_brute_force_loop():
    rng = np.random.default_rng(3)
    n_eval, n_cond, n_time, n_out = 4, 6, 9, 3
    y = rng.normal(size=(n_eval, n_cond, n_time, n_out))  # ties have probability 0
    target = rng.normal(size=(n_cond, n_time, n_out))
    mask = (rng.random((n_cond, n_time)) < 0.4).astype(float)
    mask[0] = 0.0
    ds = run(y, target, mask)
    result = metrics.accuracy(ds)
    expected = np.full((n_eval, n_cond), np.nan)
    for e in range(n_eval):
        for c in range(n_cond):
            steps = mask[c] > 0
            if steps.any():
                right = np.argmax(target[c, steps].mean(0))
                expected[e, c] = float(np.argmax(y[e, c, steps].mean(0)) == right)
    np.testing.assert_array_equal(result["eval_accuracy_condition"].values, expected)
    np.testing.assert_allclose(
        result["eval_accuracy"].values, np.nanmean(expected, axis=1), rtol=EXACT
    )


def test_errors_name_what_is_missing():
    target, mask = three_conditions()
    ds = run(np.zeros((1, 3, 4, 2)), target, mask)
    with pytest.raises(ValueError, match="output_y"):
        metrics.accuracy(ds.drop_vars("output_y"))
    with pytest.raises(ValueError, match="no response to score"):
        metrics.accuracy(ds.assign(eval_mask=0.0 * ds["eval_mask"]))


def test_trials_to_accuracy_is_the_first_evaluation_at_the_level():
    acc = xr.DataArray(
        [[0.5, 0.75, 0.9, 1.0], [0.5, 0.5, 0.5, 0.75]],
        dims=("method", "eval_trial"),
        coords={"eval_trial": [0, 10, 20, 30], "method": ["a", "b"]},
        name="eval_accuracy",
    )
    trials = metrics.trials_to_accuracy(acc)
    np.testing.assert_array_equal(trials.values, [20.0, np.nan])
    assert trials.dims == ("method",) and trials.attrs["units"] == "1"
    np.testing.assert_array_equal(metrics.trials_to_accuracy(acc, 0.75).values, [10.0, 30.0])
    with pytest.raises(ValueError, match="level"):
        metrics.trials_to_accuracy(acc, 0.0)


def test_classification_tasks_are_scored_by_accuracy_and_regression_tasks_not():
    target, mask = three_conditions()
    ds = run(np.ones((1, 3, 4, 2)), target, mask)
    assert score_dataset(ds, PatternTask(PatternTask.Params(), 0.001)) is ds
    for report in ("match", "sample"):
        task = DelayedMatchTask(DelayedMatchTask.Params(report=report), 0.001)
        scored = score_dataset(ds, task)
        xr.testing.assert_identical(scored.drop_vars(list(ds.data_vars)), metrics.accuracy(ds))


def test_tables_report_final_accuracy_and_trials_to_90_percent():
    n_trials, eval_trial = 30, [0, 10, 20, 30]
    accuracy = [[0.5, 0.75, 1.0, 0.875], [0.5, 0.5, 0.75, np.nan]]  # bptt: padded
    ds = xr.Dataset(
        {
            "loss": (("method", "trial"), np.ones((2, n_trials))),
            "wall_time": (("method", "trial"), np.full((2, n_trials), 0.1)),
            "eval_loss": (("method", "eval_trial"), np.ones((2, 4))),
            "eval_accuracy": (("method", "eval_trial"), accuracy),
        },
        {"method": ["td_anp", "bptt"], "eval_trial": eval_trial, "trial": np.arange(n_trials)},
    )
    final, trials = "final evaluation accuracy [1]", "training trials to 90 % eval. accuracy [1]"
    for table in (metrics.summary_table(ds), metrics.comparison_table(ds)):
        assert table.loc[final].tolist() == [0.875, 0.75]
        np.testing.assert_array_equal(table.loc[trials], [20.0, np.nan])
    assert final not in metrics.summary_table(ds.drop_vars("eval_accuracy")).index
