"""Sweeps on a real dask LocalCluster: runs by hash, never recomputed, merged per swept key."""

from __future__ import annotations

import json
import logging
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bioperturb.cli import main
from bioperturb.config import protocol_from_mapping
from bioperturb.dataset import read_dataset
from bioperturb.sweep import collect, load_sweep, protocol_hash, run_point
from bioperturb.training import Trainer
from tests.conftest import pretend_free_disk, tiny_toml

REPO = Path(__file__).resolve().parents[2]

BASE = tiny_toml(training__n_trials=3, training__eval_every=2)

SWEEP = """\
base = "base.toml"
[grid]
seed = [0, 1]
training.lr = [0.01, 1e6]   # unquoted dotted keys work too; 1e6 diverges

[sweep]
workers = 2
"""


def comparable(ds: xr.Dataset) -> xr.Dataset:
    return ds.drop_vars("wall_time").assign_attrs(created="")


@pytest.fixture
def sweep_file(tmp_path):
    (tmp_path / "base.toml").write_text(BASE)
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP)
    return path


def test_load_sweep_resolves_points_and_stable_hashes(sweep_file, tmp_path):
    sweep = load_sweep(sweep_file, out=tmp_path / "out")
    assert sweep.keys == ["seed", "training.lr"]
    assert [p.values for p in sweep.points] == [
        {"seed": 0, "training.lr": 0.01},
        {"seed": 0, "training.lr": 1e6},
        {"seed": 1, "training.lr": 0.01},
        {"seed": 1, "training.lr": 1e6},
    ]
    point = sweep.points[1]
    assert point.protocol.seed == 0 and point.protocol.training.lr == 1e6
    assert not point.protocol.output.progress and not point.protocol.output.figures
    assert point.hash == protocol_hash(point.toml) and len(point.hash) == 16
    again = load_sweep(sweep_file, out=tmp_path / "elsewhere")
    assert [p.hash for p in again.points] == [p.hash for p in sweep.points]
    assert len({p.hash for p in sweep.points}) == 4
    assert sweep.workers == 2 and sweep.scheduler is None
    assert load_sweep(sweep_file, workers=1).workers == 1  # the command line wins


def test_shipped_sweeps_load():
    paths = sorted((REPO / "protocols" / "sweeps").glob("*.toml"))
    assert paths, "no sweep files shipped"
    for path in paths:
        sweep = load_sweep(path)
        assert len(sweep.points) == math.prod(len(v) for v in sweep.grid.values())


def test_run_point_records_a_failure_and_never_raises(tmp_path):
    result = run_point("this is = not [valid toml", str(tmp_path), "deadbeef")
    assert result["status"] == "failed" and "TOMLDecodeError" in result["reason"]
    record = json.loads((tmp_path / "deadbeef.failed.json").read_text())
    assert record["error"] == result["reason"] and "Traceback" in record["traceback"]
    assert not (tmp_path / "deadbeef.nc").exists()


def test_sweep_on_a_local_cluster_with_two_workers(sweep_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", str(sweep_file), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "2 completed, 2 diverged" in printed, printed

    runs = sorted((out / "runs").glob("*.nc"))
    assert len(runs) == 4
    with xr.open_dataset(out / "sweep.nc") as merged:
        assert merged["loss"].dims == ("seed", "training.lr", "trial")
        assert list(merged["seed"].values) == [0, 1]
        assert list(merged["training.lr"].values) == [0.01, 1e6]
        status = merged["status"].sel({"training.lr": 1e6}).values
        assert list(status) == ["diverged", "diverged"]
        assert set(merged["status"].sel({"training.lr": 0.01}).values) == {"completed"}
        # a diverged run stops within one trial and keeps what it recorded
        bad = merged["loss"].sel({"training.lr": 1e6})
        assert np.all(np.isfinite(bad.isel(trial=0))) and np.all(np.isnan(bad.isel(trial=-1)))
        assert np.all(np.isfinite(merged["loss"].sel({"training.lr": 0.01})))
        reasons = merged["status_reason"].sel({"training.lr": 1e6}).values
        assert all("max_weight" in r for r in reasons)
        # different seeds: different runs
        good = merged["loss"].sel({"training.lr": 0.01})
        assert not np.array_equal(good.sel(seed=0), good.sel(seed=1))

    # a worker process computes exactly what a plain run in this process computes
    sweep = load_sweep(sweep_file, out=out)
    point = sweep.points[0]
    direct = Trainer(protocol_from_mapping(tomllib.loads(point.toml))).run(progress=False)
    xr.testing.assert_identical(
        comparable(read_dataset(out / "runs" / f"{point.hash}.nc")), comparable(direct)
    )

    # running again recomputes nothing
    mtimes = {p: p.stat().st_mtime_ns for p in runs}
    assert main(["sweep", str(sweep_file), "--out", str(out), "--quiet"]) == 0
    assert "4 reused" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in runs} == mtimes

    # a failed point is recorded, collected as 'failed', and the only one rerun next time
    lost = out / "runs" / f"{point.hash}.nc"
    lost.unlink()
    run_point("not = [valid", str(out / "runs"), point.hash)
    assert main(["collect", str(out)]) == 0
    with xr.open_dataset(out / "sweep.nc") as merged:
        cell = {"seed": 0, "training.lr": 0.01}
        assert merged["status"].sel(cell).item() == "failed"
        assert "TOMLDecodeError" in merged["status_reason"].sel(cell).item()
        assert np.all(np.isnan(merged["loss"].sel(cell)))
    del mtimes[lost]
    # ... here on an existing dask cluster, by its scheduler's address
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"},  # not 8787, which a parallel test may hold
        silence_logs=logging.ERROR,
    ) as cluster:
        argv = ["sweep", str(sweep_file), "--out", str(out), "--quiet"]
        assert main([*argv, "--scheduler", cluster.scheduler_address]) == 0
    assert "3 reused, 1 completed" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert lost.exists() and not (out / "runs" / f"{point.hash}.failed.json").exists()


def test_collect_is_lazy_and_follows_the_manifest(sweep_file, tmp_path):
    """Collect only what the manifest lists; runs are opened with dask (not loaded)."""
    from bioperturb.sweep import combine_runs

    out = tmp_path / "out"
    sweep = load_sweep(sweep_file, out=out)
    (out / "runs").mkdir(parents=True)
    from bioperturb.sweep import MANIFEST, _manifest

    (out / MANIFEST).write_text(json.dumps(_manifest(sweep)))
    point = sweep.points[0]
    run_point(point.toml, str(out / "runs"), point.hash)
    stray = Path(out / "runs" / "0123456789abcdef.nc")
    stray.write_bytes((out / "runs" / f"{point.hash}.nc").read_bytes())
    combined = combine_runs(out)
    try:
        assert combined["loss"].chunks is not None  # dask-backed
        assert combined.sizes["seed"] == 2 and combined.sizes["training.lr"] == 2
        assert list(combined["status"].values.ravel()) == ["completed"] + ["missing"] * 3
    finally:
        combined.close()
    path = collect(out)
    assert path == out / "sweep.nc" and path.is_file()


def _write_sweep(tmp_path: Path, base: str, grid: str) -> Path:
    (tmp_path / "base.toml").write_text(base)
    path = tmp_path / "sweep.toml"
    path.write_text(f'base = "base.toml"\n[grid]\n{grid}\n')
    return path


def _run_all(sweep, out: Path, first: int | None = None) -> None:
    """The points (the first ``first`` of them) in this process, as a dask worker runs them."""
    from bioperturb.sweep import MANIFEST, _manifest

    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps(_manifest(sweep)))
    for point in sweep.points[:first]:
        result = run_point(point.toml, str(out / "runs"), point.hash)
        assert result["status"] in ("completed", "diverged", "exists"), result


def test_a_damaged_run_file_is_reported_and_computed_again(sweep_file, tmp_path):
    from bioperturb.sweep import combine_runs, run_file_problem

    out = tmp_path / "out"
    sweep = load_sweep(sweep_file, out=out)
    _run_all(sweep, out, first=2)  # the second keeps something to collect
    point = sweep.points[0]
    path = out / "runs" / f"{point.hash}.nc"
    good = path.read_bytes()
    assert run_file_problem(path) == ""
    for damage in (b"", good[: len(good) // 2], b"not netcdf at all"):
        path.write_bytes(damage)
        assert run_file_problem(path).startswith("unreadable"), damage[:10]
        combined = combine_runs(out)
        try:
            cell = {"seed": 0, "training.lr": 0.01}
            assert combined["status"].sel(cell).item() == "damaged"
            assert "unreadable" in combined["status_reason"].sel(cell).item()
        finally:
            combined.close()
        result = run_point(point.toml, str(out / "runs"), point.hash)
        assert result["status"] == "completed" and result["reason"].startswith("recomputed")
        assert run_file_problem(path) == ""
    # an interrupted run is not a finished one either
    ds = read_dataset(path).assign_attrs(status="interrupted")
    from bioperturb.dataset import write_dataset

    write_dataset(ds, path)
    assert "not a finished run" in run_file_problem(path)


def test_a_sweep_says_which_damaged_runs_it_recomputes(sweep_file, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["sweep", str(sweep_file), "--out", str(out), "--quiet", "--workers", "1"]
    sweep = load_sweep(sweep_file, out=out)
    (out / "runs").mkdir(parents=True)
    for point in sweep.points:  # every run on disk, one of them 0 bytes
        run_point(point.toml, str(out / "runs"), point.hash)
    (out / "runs" / f"{sweep.points[0].hash}.nc").write_bytes(b"")
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "3 reused, 1 completed" in captured.out, captured
    assert f"{sweep.points[0].hash}.nc is unreadable" in captured.err


def test_a_grid_over_the_output_folder_is_refused_not_computed_twice(tmp_path):
    from bioperturb.schema import ConfigError

    path = _write_sweep(tmp_path, BASE, 'output.dir = ["a", "b"]')
    with pytest.raises(ConfigError, match="give the same protocol"):
        load_sweep(path)
    # ... and the folder a base protocol names does not change the runs' hashes
    other = tiny_toml(training__n_trials=3, training__eval_every=2, output__dir="elsewhere")
    assert [p.hash for p in load_sweep(_write_sweep(tmp_path, other, "seed = [0, 1]")).points] == [
        p.hash for p in load_sweep(_write_sweep(tmp_path, BASE, "seed = [0, 1]")).points
    ]


def test_ragged_spike_lists_and_mixed_models_merge_without_fake_data(tmp_path):
    """LIF runs record different numbers of spikes; rate runs have none (issue 17)."""
    lif = tiny_toml(
        training__n_trials=2,
        training__eval_every=1,
        model__preset="lif_rnn",
        model__n_hidden=16,
        model__input_scale=4.0,
        task__input="poisson",
        task__n_inputs=20,
        task__input_rate="40 Hz",
        task__duration="80 ms",
    )
    out = tmp_path / "out"
    sweep = load_sweep(_write_sweep(tmp_path, lif, "seed = [0, 1]"), out=out)
    _run_all(sweep, out)
    sizes = [read_dataset(out / "runs" / f"{p.hash}.nc").sizes["spike"] for p in sweep.points]
    assert sizes[0] != sizes[1], "the test needs runs with different spike counts"
    merged = read_dataset(collect(out))
    assert merged.sizes["spike"] == max(sizes)
    assert list(merged["spike_count"].values) == sizes
    for k, n in enumerate(sizes):
        units = merged["spike_unit"].isel(seed=k).values
        assert np.all(np.isnan(units[n:])) and np.all(units[:n] >= 0)
        np.testing.assert_array_equal(
            units[:n], read_dataset(out / "runs" / f"{sweep.points[k].hash}.nc")["spike_unit"]
        )

    # a grid over the model kind: rate runs have no spike variables at all
    mixed = _write_sweep(tmp_path, lif, 'model.preset = ["lif_rnn", "rate_rnn"]')
    out2 = tmp_path / "mixed"
    sweep = load_sweep(mixed, out=out2)
    _run_all(sweep, out2)
    merged = read_dataset(collect(out2))
    for name, var in merged.data_vars.items():
        if var.dtype.kind in "iu":
            assert not np.any(var.values == np.iinfo(var.dtype).min), name
    rate = merged.sel({"model.preset": "rate_rnn"})
    assert np.all(np.isnan(rate["spike_unit"].values))


def test_a_sweep_that_cannot_fit_on_the_disk_is_refused_before_any_run(
    sweep_file, tmp_path, capsys, monkeypatch
):
    pretend_free_disk(monkeypatch, 1000)
    out = tmp_path / "out"
    assert main(["sweep", str(sweep_file), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "only 1000 B is free" in err, err
    assert str(sweep_file) in err and not (out / "runs").exists()
