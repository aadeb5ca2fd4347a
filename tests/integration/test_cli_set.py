"""``--set KEY=VALUE`` on ``run`` and ``compare``, and switching the rule by an override
(also from a sweep's grid)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bioperturb.cli import main
from bioperturb.sweep import load_sweep
from tests.conftest import tiny_toml

REPO = Path(__file__).resolve().parents[2]

#: td_anp with keys np does not take (normalise) and keys wp does not take either
TINY = tiny_toml(output__figures=False, rule__normalise="per_layer", rule__tau_e_out="0 ms")


@pytest.fixture
def protocol(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def config_of(path: Path) -> dict:
    with xr.open_dataset(path) as ds:
        return tomllib.loads(ds.attrs["config"])


def test_run_with_set_writes_the_overridden_protocol(protocol, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", str(protocol), "--out", str(out), "--quiet"]
    sets = ["rule.name=np", "training.lr=1e-3", "task.duration=40 ms", 'rule.train=["W_out"]']
    assert main([*args, *(f"--set={s}" for s in sets)]) == 0
    captured = capsys.readouterr()
    assert "completed" in captured.out
    assert captured.err == "note: rule.name = 'np' does not take rule.normalise; dropped\n"
    config = config_of(out / "tiny.nc")
    assert config["rule"]["name"] == "np" and config["rule"]["train"] == ["W_out"]
    assert config["training"]["lr"] == 1e-3
    assert "normalise" not in config["rule"] and config["rule"]["tau_e_out"] == "0.0 ms"


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("rule.name", "expected KEY=VALUE"),
        ("=np", "empty key"),
        ("rule..name=np", "bad key"),
        ("training.lr=", "empty value"),
        ("rule.train=[1,", "invalid TOML value"),
    ],
)
@pytest.mark.parametrize("command", ["run", "compare"])
def test_malformed_set_is_one_line_exit_2_before_any_work(
    protocol, tmp_path, capsys, command, item, reason
):
    out = tmp_path / "out"
    assert main([command, str(protocol), "--out", str(out), "--set", item]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"bioperturb: error: --set {item}: ") and reason in err[0]
    assert not out.exists()


@pytest.mark.parametrize(
    ("item", "expect"),
    [
        ("training.lr=fast", "--set: training.lr: value 'fast': expected a number"),
        ("training.lrr=1", "--set: training.lrr: unknown key (did you mean 'lr'?)"),
        ("task.duration=40 mV", "--set: task.duration: value '40 mV'"),
        ("rule.name=xyz", "--set: rule.name: value 'xyz': unknown rule 'xyz'"),
        ("model.kind=[1]", "--set: model.kind: value [1]: unknown kind [1]"),
        ("model.preset=lif", "--set: model.preset: value 'lif': unknown preset 'lif'"),
        ("rule=3", "--set: rule: value 3: expected a table"),
    ],
)
def test_a_bad_overridden_value_names_set(protocol, tmp_path, capsys, item, expect):
    assert main(["run", str(protocol), "--out", str(tmp_path / "out"), "--set", item]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err
    assert not (tmp_path / "out").exists()


def test_malformed_set_in_a_subprocess_has_no_traceback(protocol):
    proc = subprocess.run(
        [sys.executable, "-m", "bioperturb.cli", "run", str(protocol), "--set", "lr"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "bioperturb: error: --set lr: expected KEY=VALUE, e.g. training.lr=1e-3"
    )


def test_resume_treats_another_override_as_another_protocol(protocol, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", str(protocol), "--out", str(out), "--quiet", "--resume"]
    assert main([*args, "--set", "training.lr=1e-3"]) == 0
    mtime = (out / "tiny.nc").stat().st_mtime_ns
    assert main([*args, "--set", "training.lr=1e-3"]) == 0  # the same: not recomputed
    assert (out / "tiny.nc").stat().st_mtime_ns == mtime
    assert main([*args, "--set", "training.lr=2e-3"]) == 0  # another: run afresh
    assert config_of(out / "tiny.nc")["training"]["lr"] == 2e-3
    assert main([*args]) == 0  # and the file's own (default) lr is a third protocol
    assert config_of(out / "tiny.nc")["training"]["lr"] == 0.01


def test_compare_takes_set_and_writes_engines(protocol, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["compare", str(protocol), "--out", str(out), "--quiet"]
    assert main([*args, "--set", "rule.name=np", "--set", "training.lr=0.002"]) == 0
    with xr.open_dataset(out / "tiny_compare.nc") as ds:
        assert list(ds["method"].values) == ["np", "bptt"]
        config = tomllib.loads(ds.attrs["config"])
        # compare files name each method's engine (docs/data-model.md), not one engine
        assert "engine" not in ds.attrs and ds.attrs["engines"].startswith("np: brian2")
        assert "bptt: jax-reference" in ds.attrs["engines"]
    assert config["rule"]["name"] == "np" and config["training"]["lr"] == 0.002
    doc = (REPO / "docs" / "data-model.md").read_text()
    assert "`engines`" in doc and "`methods`" in doc


def test_compare_with_trains_more_rules_from_the_same_start(protocol, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["compare", str(protocol), "--out", str(out), "--quiet", "--with", "rflo", "np"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "rflo: eval loss" in printed and "np: eval loss" in printed
    with xr.open_dataset(out / "tiny_compare.nc") as ds:
        assert list(ds["method"].values) == ["td_anp", "rflo", "np", "bptt"]
        assert "rflo: brian2" in ds.attrs["engines"]
        start = ds["W_rec"].isel(eval_trial=0)
        for method in ("td_anp", "rflo", "np"):  # one start, and every method trained
            np.testing.assert_array_equal(start.sel(method=method), start.sel(method="bptt"))
            moved = ds["W_rec"].sel(method=method).isel(eval_trial=-1) - start.sel(method=method)
            assert float(np.abs(moved).max()) > 0, method
    assert not list(out.glob("*_with_*"))  # the comparators' runs live in the compare file


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "rule.name=rflo", "--with", "rflo"], "--with rflo: 'rflo' is the protocol"),
        (["--with", "rflo", "rflo"], "--with: a rule is named twice"),
        (["--with", "rfl"], "--with rfl: unknown rule 'rfl' (did you mean 'rflo'?"),
        (["--set", "model.preset=lif_rnn", "--with", "rflo"], "runs on model.kind = 'rate'"),
    ],
    ids=["own", "twice", "unknown", "lif"],
)
def test_compare_with_refuses_before_any_work(protocol, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert main(["compare", str(protocol), "--out", str(out), "--quiet", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # notes on dropped keys, then the error
    assert message in err[-1] and sum("error" in line for line in err) == 1, err
    assert not out.exists() or not any(out.iterdir())


def test_sweep_grid_over_rule_name_drops_keys_with_one_note(tmp_path, capsys):
    (tmp_path / "base.toml").write_text(TINY)
    sweep_file = tmp_path / "sweep.toml"
    sweep_file.write_text(
        'base = "base.toml"\n[grid]\nseed = [0, 1, 2]\n"rule.name" = ["td_anp", "np", "wp"]\n'
    )
    sweep = load_sweep(sweep_file, out=tmp_path / "out")
    assert [p.protocol.rule_name for p in sweep.points[:3]] == ["td_anp", "np", "wp"]
    assert sweep.points[0].protocol.rule.tau_e_out == 0.0  # td_anp keeps its own keys
    assert capsys.readouterr().err.splitlines() == [
        "note: rule.name = 'np' does not take rule.normalise; dropped",
        "note: rule.name = 'wp' does not take rule.normalise, rule.tau_e_out; dropped",
    ]


def test_sweep_grid_still_rejects_a_key_no_rule_takes(tmp_path, capsys):
    (tmp_path / "base.toml").write_text(TINY.replace('normalise = "per_layer"', "normalis = 1"))
    sweep_file = tmp_path / "sweep.toml"
    sweep_file.write_text('base = "base.toml"\n[grid]\n"rule.name" = ["td_anp", "np"]\n')
    assert main(["sweep", str(sweep_file), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rule.normalis: unknown key" in err[0], err


def test_engine_auto_says_once_why_it_runs_on_runtime_and_records_it(protocol, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", str(protocol), "--out", str(out), "--quiet"]
    assert main([*args, "--set", "engine.name=auto", "--set", "rule.name=miconi"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "engine 'auto'" in line]
    assert notes == [
        "note: engine 'auto' runs 'tiny' on the runtime engine (rule 'miconi' is "
        "not built into standalone programs)"
    ]
    with xr.open_dataset(out / "tiny.nc") as ds:
        assert ds.attrs["notes"] == notes[0].removeprefix("note: ")
        assert "runtime" in ds.attrs["engine"]
        assert tomllib.loads(ds.attrs["config"])["engine"]["name"] == "runtime"
