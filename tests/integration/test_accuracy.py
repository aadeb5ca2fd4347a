"""Accuracy in the Datasets of tiny delayed match-to-sample runs and their BPTT reference."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bioperturb import metrics
from bioperturb.cli import main
from bioperturb.compare import compare_protocol
from bioperturb.dataset import read_dataset
from bioperturb.runs import describe_run
from tests.conftest import make_protocol, tiny_toml

EXACT = 1e-12  # relative tolerance of float64 sums over a trial's 50 steps

#: 5 periods of 10 ms: 50 steps of 1 ms, recorded at every step
TASK = {
    "name": "delayed_match",
    **{
        f"{period}_duration": "10 ms"
        for period in ("fixation", "sample", "delay", "test", "decision")
    },
}

SETTINGS = {
    "model__n_hidden": 10,
    "training__n_trials": 4,
    "training__eval_every": 4,
    "output__record_dt": "1 ms",
    "output__alignment": False,
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("accuracy")


def test_a_run_writes_its_accuracy(folder, capsys):
    protocol = folder / "tiny.toml"
    protocol.write_text(tiny_toml(task=TASK, **SETTINGS))
    assert main(["run", str(protocol), "--out", str(folder), "--quiet"]) == 0
    written = read_dataset(folder / "tiny.nc")
    for name, dims in (
        ("eval_accuracy", ("eval_trial",)),
        ("eval_accuracy_condition", ("eval_trial", "condition")),
    ):
        assert written[name].dims == dims
        assert written[name].attrs["units"] == "1" and written[name].attrs["long_name"]
    per = written["eval_accuracy_condition"].values
    assert per.shape == (2, 4) and np.all((per >= 0) & (per <= 1))
    recomputed = metrics.accuracy(written[["output_y", "target", "eval_mask"]])
    xr.testing.assert_equal(recomputed["eval_accuracy"], written["eval_accuracy"])
    final = describe_run(written)["final_eval_accuracy"]
    assert final == written["eval_accuracy"].values[-1]
    assert f"accuracy {100 * final:.3g} %" in capsys.readouterr().out
    assert (folder / "tiny_accuracy.png").stat().st_size > 10_000
    # target and mask are stored at the time points of output_y: with every step
    # recorded, the evaluation loss is recomputed from them exactly
    y, target, mask = written["output_y"], written["target"], written["eval_mask"]
    loss = (0.5 * mask * ((y - target) ** 2).sum("output")).sum("time") / mask.sum("time")
    np.testing.assert_allclose(loss.mean("condition"), written["eval_loss"], rtol=EXACT)


def test_each_compared_method_scores_its_own_outputs(folder):
    protocol = make_protocol(task=TASK, output__figures=True, **SETTINGS)
    ds, _ = compare_protocol(protocol, out_dir=folder)
    assert (folder / "test_compare_accuracy.png").stat().st_size > 10_000
    assert ds["eval_accuracy"].dims == ("method", "eval_trial")
    recomputed = metrics.accuracy(ds[["output_y", "target", "eval_mask"]])
    xr.testing.assert_equal(recomputed["eval_accuracy"], ds["eval_accuracy"])
    xr.testing.assert_equal(recomputed["eval_accuracy_condition"], ds["eval_accuracy_condition"])
    rule, bptt = (ds.sel({"method": m}) for m in ("td_anp", "bptt"))
    assert not np.allclose(rule["output_y"][-1], bptt["output_y"][-1])
    table = metrics.comparison_table(ds)
    assert table.loc["final evaluation accuracy [1]", "bptt"] == bptt["eval_accuracy"][-1]
