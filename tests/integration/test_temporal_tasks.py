"""Two training trials of each temporal task on the runtime engine, and its score variables.

Tiny networks (8 units, numpy code generation) and tasks of a few tens of steps: this checks
that the tasks run end to end and that each run's Dataset carries its task's score,
recomputable from the written variables, not that anything learns.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bioperturb import metrics
from bioperturb.dataset import read_dataset, write_dataset
from bioperturb.training import Trainer
from tests.conftest import make_protocol

TASKS = {
    "flip_flop": {
        "duration": "40 ms",
        "settle_duration": "10 ms",
        "pulse_duration": "5 ms",
        "pulse_rate": "50 Hz",
        "n_eval": 2,
    },
    "copy": {
        "length": 2,
        "n_symbols": 3,
        "symbol_duration": "6 ms",
        "delay_duration": "4 ms",
        "go_duration": "4 ms",
        "n_eval": 2,
    },
    "mackey_glass": {
        "duration": "40 ms",
        "washout_duration": "10 ms",
        "horizon": 5,
        "train_samples": 200,
        "transient": 100.0,
        "n_eval": 2,
    },
    "perceptual_decision": {
        "fixation_duration": "10 ms",
        "stimulus_duration": "20 ms",
        "decision_duration": "10 ms",
        "coherences": [0.5],
        "n_eval_per_condition": 1,
    },
    "digits": {"step_duration": "2 ms", "response_duration": "4 ms", "n_eval": 3},
}

#: the score variables of each task and the metric that computes them
SCORES = {
    "flip_flop": ((), None),
    "copy": (
        (
            "eval_sequence_accuracy",
            "eval_sequence_accuracy_condition",
            "eval_sequence_accuracy_slot",
        ),
        metrics.sequence_accuracy,
    ),
    "mackey_glass": (("eval_nrmse",), metrics.nrmse),
    "perceptual_decision": (("eval_accuracy", "eval_accuracy_condition"), metrics.accuracy),
    "digits": (("eval_accuracy", "eval_accuracy_condition"), metrics.accuracy),
}

SCORED = {
    "eval_accuracy",
    "eval_accuracy_condition",
    "eval_nrmse",
    *SCORES["copy"][0],
}


def protocol(name: str):
    return make_protocol(
        task={"name": name, **TASKS[name]},
        model__n_hidden=8,
        training__n_trials=2,
        training__eval_every=2,
        output__record_dt="2 ms",
        output__alignment=False,
    )


@pytest.mark.parametrize("name", list(TASKS))
def test_two_trials_run_and_carry_the_task_score(name, tmp_path):
    ds = Trainer(protocol(name)).run(progress=False)
    assert ds.attrs["status"] == "completed" and ds.attrs["task"] == name
    assert ds.sizes["trial"] == 2 and np.isfinite(ds["eval_loss"]).all()
    names, metric = SCORES[name]
    assert SCORED & set(ds.data_vars) == set(names)
    if metric is None:
        return
    written = read_dataset(write_dataset(ds, tmp_path / "run.nc"))
    result = metric(written)  # from the written output_y, target, eval_mask (and time_slot)
    for var in names:
        xr.testing.assert_equal(result[var], written[var])
        assert written[var].dims[0] == "eval_trial" and np.isfinite(written[var]).all()
