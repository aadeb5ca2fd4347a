"""`bioperturb plot` and the analysis/ scripts on small real runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.image import imread

from bioperturb.cli import main
from bioperturb.compare import combine_methods, reference_dataset
from bioperturb.dataset import write_dataset
from bioperturb.training import Trainer
from tests.conftest import make_protocol

ROOT = Path(__file__).resolve().parents[2]
SINGLE = ["learning", "activity", "pca", "weight_changes", "weight_drift", "spectrum"]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, Path]:
    """A tiny TD-ANP run and its compare file with BPTT (and a made-up alignment)."""
    folder = tmp_path_factory.mktemp("results")
    trainer = Trainer(make_protocol(training__n_trials=4, output__alignment=False))
    run = trainer.run()
    bptt = reference_dataset(trainer)
    compare = combine_methods({"td_anp": run, "bptt": bptt})
    matrices = ["W_in", "W_rec", "W_out", "all"]
    cosines = np.stack([np.full((compare.sizes["eval_trial"], 4), 0.3), np.ones((3, 4))])
    compare["alignment"] = xr.DataArray(
        cosines, dims=("method", "eval_trial", "matrix"), coords={"matrix": matrices}
    )
    assert "alignment" not in run
    return {
        "run": write_dataset(run, folder / "tiny.nc"),
        "compare": write_dataset(compare, folder / "tiny_compare.nc"),
    }


def check_pngs(paths: list[Path]) -> None:
    for path in paths:
        image = imread(path)
        assert image.shape[0] > 300 and image.shape[1] > 300, path


def test_plot_writes_the_standard_figures_of_a_run(results, tmp_path, capsys):
    out = tmp_path / "figures"
    assert main(["plot", str(results["run"]), "--out", str(out)]) == 0
    written = sorted(out.glob("*.png"))
    assert sorted(p.name for p in written) == sorted(f"tiny_{name}.png" for name in SINGLE)
    assert capsys.readouterr().out.count("wrote ") == len(SINGLE)
    check_pngs(written)


def test_plot_of_a_compare_file_has_figures_per_method(results, tmp_path):
    from bioperturb.report import plot_result

    written = plot_result(results["compare"], tmp_path)
    names = {p.stem.removeprefix("tiny_compare_") for p in written}
    assert names == {
        "learning",
        "activity_td_anp",
        "activity_bptt",
        "pca_td_anp",
        "pca_bptt",
        "weight_changes",
        "weight_drift",
        "spectrum",
        "alignment",
        "similarity",
    }
    check_pngs(written)


def test_plot_reports_bad_input_on_one_line(results, tmp_path, capsys):
    not_netcdf = tmp_path / "notes.nc"
    not_netcdf.write_text("not a netCDF file")
    other = tmp_path / "other.nc"
    xr.Dataset({"x": ("a", [1.0, 2.0])}).to_netcdf(other)
    blocker = tmp_path / "file"
    blocker.write_text("")
    cases = {
        str(tmp_path / "missing.nc"): "no such file",
        str(not_netcdf): "not a netCDF file",
        str(other): "not a bioperturb result",
    }
    for path, reason in cases.items():
        assert main(["plot", path]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and path in err and reason in err, err
    assert main(["plot", str(results["run"]), "--out", str(blocker / "sub")]) == 2
    assert "output directory" in capsys.readouterr().err


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=False, cwd=ROOT
    )


def test_compare_bptt_script_writes_figures_and_tables(results, tmp_path):
    proc = run_script("analysis/compare_bptt.py", str(results["compare"]), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    for name in ("tiny_compare_learning.png", "tiny_compare_similarity.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    table = pd.read_csv(tmp_path / "compare_bptt.csv", index_col="statistic")
    assert list(table.columns) == ["td_anp", "bptt"]
    cka = "linear CKA of hidden activity with bptt (last eval.) [1]"
    assert table.loc[cka, "bptt"] == pytest.approx(1.0)
    assert "training time to 5 % of initial eval. loss [s]" in table.index
    markdown = (tmp_path / "compare_bptt.md").read_text()
    assert "| statistic | td_anp | bptt |" in markdown
    bad = run_script("analysis/compare_bptt.py", str(results["run"]), "--out", str(tmp_path))
    assert bad.returncode == 2 and "not a compare file" in bad.stderr


def test_stats_table_script_puts_runs_side_by_side(results, tmp_path):
    proc = run_script(
        "analysis/stats_table.py",
        str(results["run"]),
        str(results["compare"]),
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "stats_table.csv", index_col="statistic")
    assert list(table.columns) == ["tiny", "tiny_compare: td_anp", "tiny_compare: bptt"]
    assert table.loc["training trials done [1]"].tolist() == [4, 4, 4]
    # the same run, read from both files, gives the same statistics (only the compare file
    # has an alignment)
    alignment = table.index.str.contains("alignment")
    assert table.loc[alignment, "tiny"].isna().all()
    assert table.loc[alignment, "tiny_compare: td_anp"].tolist() == [0.3] * 4
    same = table.loc[~alignment]
    np.testing.assert_allclose(same["tiny"], same["tiny_compare: td_anp"], equal_nan=True)
    assert table.loc["spectral radius of W_rec, initial [1]"].nunique() == 1
    assert all(label.endswith("]") for label in table.index)
    assert "| mean \\|pairwise correlation\\|" in (tmp_path / "stats_table.md").read_text()
    for name in ("stats_learning.png", "stats_weight_drift.png", "stats_spectrum.png"):
        assert (tmp_path / name).stat().st_size > 10_000
