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


def test_sample_efficiency_splits_time_to_solution_into_trials_and_cost():
    """Known curves: the rule reaches 50 % of its start at trial 6, after 6 trials of 0.5 s,
    BPTT at trial 2, after 2 trials of 0.1 s: 3 s / 0.2 s = 15 = 3 (trials) x 5 (cost)."""
    bench = _load("sample_efficiency")
    eval_loss = [[1.0, 0.8, 0.6, 0.4], [1.0, 0.4, 0.2, 0.2]]  # at trials 0, 2, 4, 6
    wall = [[0.5] * 6, [0.1] * 6]
    ds = xr.Dataset(
        {
            "eval_loss": (("method", "eval_trial"), eval_loss),
            "wall_time": (("method", "trial"), wall, {"units": "s"}),
        },
        coords={"method": ["td_anp", "bptt"], "eval_trial": [0, 2, 4, 6], "trial": range(6)},
        attrs={"engines": "td_anp: brian2-2.10.1-cpp_standalone-threads1; bptt: jax-reference"},
    )
    cells = bench.measured_cells(ds, "td_anp", [0.7, 0.5])
    assert cells == [
        "cpp_standalone",
        "4 / 2 (2.0x)",
        "6 / 2 (3.0x)",
        "3 / 0.2",
        "15 = 3 x 5",
        "0.4 / 0.2",
        "500 / 100",
    ]
    assert len(bench.header([0.7, 0.5]).splitlines()[0].split("|")) == len(cells) + 5


@pytest.mark.slow
def test_paper_rnn_quick_runs_the_new_task_and_methods(tmp_path):
    """benchmarks/paper/rnn.py: its defaults reach temporal_credit.py, later options win;
    the digits task and decorrelated TD-ANP (its [model] keys) run beside BPTT."""
    spec = importlib.util.spec_from_file_location("paper_rnn", BENCHMARKS / "paper" / "rnn.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["--quick", "--workers", "1", "--tasks", "digits", "--rules", "danp"]
    assert bench.main([*argv, "--seeds", "1", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "temporal_credit.md").read_text()
    assert "cos full BPTT" not in text  # --draws 0: no credit diagnostics by default
    assert "| `bptt` |" in text and "| `danp` |" in text and "| `wp` |" not in text
    tc = sys.modules["temporal_credit"]  # the module rnn.py ran
    danp, td_anp = (tc.make_protocol("digits", r, 1, True, None) for r in ("danp", "td_anp"))
    assert list(danp.model.decorrelate) == ["input", "recurrent"] and danp.model.decor_lr == 0.002
    assert not td_anp.model.decorrelate and danp.rule == td_anp.rule
    with xr.open_dataset(tmp_path / "temporal_credit.nc") as ds:
        assert list(ds["task"].values) == ["digits"]
        assert ((ds["score"] >= 0) & (ds["score"] <= 1)).all()


@pytest.mark.slow
def test_paper_ff_quick_runs_feed_forward_stacks_beside_bp(tmp_path):
    """benchmarks/paper/ff.py: a feed-forward task, decorrelated ANP, decorrelated
    iterative NP (two runs per sample) and decorrelated BP beside BP, with the stacks' own
    decorrelation rate and the table's note that `bptt` is BP there."""
    spec = importlib.util.spec_from_file_location("paper_ff", BENCHMARKS / "paper" / "ff.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["--quick", "--workers", "1", "--tasks", "ff_breast_cancer"]
    argv += ["--rules", "danp", "dinp", "dbp"]
    assert bench.main([*argv, "--seeds", "1", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "temporal_credit.md").read_text()
    assert text.startswith("## Feed-forward stacks")
    assert "is backpropagation" in text and "decor_lr): 0.0002" in text
    assert all(f"| `{rule}` |" in text for rule in ("bptt", "danp", "dinp", "dbp"))
    tc = sys.modules["temporal_credit"]
    danp = tc.make_protocol("ff_breast_cancer", "danp", 1, True, None)
    assert danp.model.kind == "mlp" and list(danp.model.layers) == [8, 8]
    assert danp.model.decor_lr == 0.0002
    dinp = tc.make_protocol("ff_breast_cancer", "dinp", 1, True, None)
    assert dinp.rule_name == "inp" and dinp.training.batch == 2 and dinp.training.repeat
    dbp = tc.make_protocol("ff_breast_cancer", "none", 1, True, None, model_of="dbp")
    assert dbp.model.decorrelate and dbp.model.decor_lr == 0.0002
