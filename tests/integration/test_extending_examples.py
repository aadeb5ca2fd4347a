"""The worked examples of docs/extending.md run as the page says (shrunk to a tiny network).

``docs/examples/interval.toml`` names its task and rule by import path; with the folder on
sys.path (``PYTHONPATH=docs/examples``) ``bioperturb run`` and ``bioperturb compare`` train
on them and the example sweep resolves. (Entry points, the standalone engine and sweep
workers: tests/integration/test_plugins.py.)
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import tomli_w
import xarray as xr

from bioperturb.cli import main
from bioperturb.config import apply_override
from bioperturb.sweep import load_sweep
from tests.conftest import EXAMPLES, kept_registries

pytestmark = pytest.mark.slow

TINY = {
    "model.n_hidden": 8,
    "task.duration": "60 ms",
    "task.longest": "30 ms",
    "training.n_trials": 2,
    "training.eval_every": 1,
    "engine.codegen": "numpy",
    "output.figures": False,
}


@pytest.fixture
def example(tmp_path, monkeypatch) -> Path:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    data = tomllib.loads((EXAMPLES / "interval.toml").read_text())
    for key, value in TINY.items():
        apply_override(data, key, value, "<test>")
    path = tmp_path / "interval.toml"
    path.write_text(tomli_w.dumps(data))
    with kept_registries():
        yield path


def test_example_files_are_short():
    for name in ("interval_task.py", "my_rule.py"):
        assert len((EXAMPLES / name).read_text().splitlines()) < 40, name


def test_run_and_compare_the_example(example, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(example), "--out", str(out), "--quiet"]) == 0
    assert main(["compare", str(example), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "completed" in printed and "bptt: eval loss" in printed
    with xr.open_dataset(out / "interval_rate_anp.nc") as ds:
        assert ds.attrs["status"] == "completed"
        assert 'name = "interval_task:IntervalTask"' in ds.attrs["config"]
        assert 'name = "my_rule:RateANP"' in ds.attrs["config"]
    with xr.open_dataset(out / "interval_rate_anp_compare.nc") as ds:
        assert list(ds["method"].values) == ["my_rule:RateANP", "bptt"]


def test_example_sweep_resolves(example):
    sweep = load_sweep(EXAMPLES / "interval_sweep.toml")
    assert len(sweep.points) == 4 and sweep.workers == 2
    assert {p.protocol.rule_name for p in sweep.points} == {"my_rule:RateANP"}
