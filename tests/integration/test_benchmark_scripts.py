"""Smoke runs of the benchmark scripts that docs quote, so that they keep working."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_temporal_credit_quick_writes_tables_curves_and_is_resumable(tmp_path, capsys):
    bench = _load("temporal_credit")
    argv = ["--quick", "--workers", "1", "--tasks", "recall", "--rules", "np_trace"]
    argv += ["--draws", "4", "--seeds", "1", "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    text = (tmp_path / "temporal_credit.md").read_text()
    assert "| `bptt` |" in text and "| `np_trace` |" in text and "cos full BPTT" in text
    with xr.open_dataset(tmp_path / "temporal_credit.nc") as ds:
        assert ds["score"].dims == ("task", "rule", "seed", "eval_trial")
        assert list(ds["rule"].values) == ["bptt", "np_trace"]
        assert ((ds["score"] >= 0) & (ds["score"] <= 1)).all()
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["credit_recall_np_trace_4_quick.json", "recall_bptt_1_quick.json"] + [
        "recall_np_trace_1_quick.json"
    ]
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()}
    assert bench.main(argv) == 0  # everything is reused, nothing recomputed
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()} == stamp
    assert (tmp_path / "temporal_credit.png").stat().st_size > 1000


@pytest.mark.slow
def test_nest_speed_quick_times_both_simulators(capsys, monkeypatch):
    import importlib

    pytest.importorskip("nest")
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # spawned workers import the script by name
    bench = importlib.import_module("nest_speed")
    assert bench.main(["--quick"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 20 |")]
    assert [row.split("|")[2].strip() for row in rows[-2:]] == ["forward", "eprop"]
    for row in rows[-2:]:
        ours, theirs, ratio = (float(x) for x in row.split("|")[3:6])
        assert ours > 0 and theirs > 0 and ratio > 0


@pytest.mark.parametrize(
    ("extra", "name"),
    [
        ([], "miconi_reference_quick.md"),
        (["--readout", "random"], "miconi_reference_random_readout_quick.md"),
        (["--coding", "onehot"], "miconi_reference_onehot_quick.md"),
        (
            ["--no-bias-units", "--start", "zero", "--gap", "0"],
            "miconi_reference_no_bias_units_zero_start_gap0_quick.md",
        ),
        (["--fixation", "--constant-lr", "0.1"], "miconi_reference_fixation_lr0.1_quick.md"),
    ],
)
def test_miconi_reference_quick_writes_its_table(tmp_path, extra, name):
    bench = _load("miconi_reference")
    assert bench.main(["--quick", "--out", str(tmp_path), *extra]) == 0
    text = (tmp_path / name).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| 0 |"))
    correct, error = (float(x) for x in row.split("|")[3:5])
    assert 0 <= correct <= 1 and error > 0


def test_miconi_reference_codings_give_the_same_answers():
    """Conditions A-A, A-B, B-A, B-B: match is −0.98 (sign) or output 0 (onehot)."""
    bench = _load("miconi_reference")
    _, sign = bench.cues(bench.Settings())
    _, onehot = bench.cues(bench.Settings(coding="onehot"))
    np.testing.assert_array_equal(sign[:, 0], [-0.98, 0.98, 0.98, -0.98])
    np.testing.assert_array_equal(onehot, [[1, 0], [0, 1], [0, 1], [1, 0]])
    assert not set(bench.OUTPUT_UNITS["onehot"]) & set(bench.BIAS_UNITS)


def test_miconi_reference_counts_trials_to_criterion():
    bench = _load("miconi_reference")
    correct = np.r_[np.zeros(150, bool), np.ones(200, bool)]  # correct from trial 151 on
    assert bench.trials_to(correct) == 245  # trials 151–245: 95 of 100 correct
    assert bench.trials_to(np.zeros(300, bool)) is None


def test_temporal_credit_keeps_no_interrupted_run(tmp_path):
    """A run stopped by a signal returns its partial curves: they must not be cached as
    the result a rerun would then reuse."""
    bench = _load("temporal_credit")
    path = tmp_path / "runs" / "recall_np_1.json"
    with pytest.raises(KeyboardInterrupt, match="interrupted"):
        bench.cached(path, lambda: {"status": "interrupted", "score": np.zeros(2)})
    assert not path.exists()
    assert bench.cached(path, lambda: {"status": "completed", "score": np.ones(2)})["score"] == [
        1.0,
        1.0,
    ]
    assert path.exists()
