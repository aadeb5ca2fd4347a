"""The command line: run, list, and one-line errors with a non-zero exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import xarray as xr

from bioperturb.cli import main
from tests.conftest import tiny_toml

TINY = tiny_toml()


def test_list_shows_tasks_rules_and_models(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("pattern", "delayed_match", "td_anp", "rate_rnn"):
        assert name in out


def test_run_writes_dataset_and_figure(tmp_path, capsys):
    protocol = tmp_path / "tiny.toml"
    protocol.write_text(TINY)
    assert main(["run", str(protocol), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "completed" in capsys.readouterr().out
    with xr.open_dataset(tmp_path / "out" / "tiny.nc") as ds:
        assert ds.attrs["status"] == "completed"
        assert ds.sizes["trial"] == 2
        assert 'name = "tiny"' in ds.attrs["config"]
    assert (tmp_path / "out" / "tiny_learning.png").stat().st_size > 1000


def test_bad_protocol_gives_one_line_and_exit_2(tmp_path):
    protocol = tmp_path / "bad.toml"
    protocol.write_text(TINY.replace("n_hidden = 8", "n_hidden = -8"))
    proc = subprocess.run(
        [sys.executable, "-m", "bioperturb.cli", "run", str(protocol)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(protocol) in lines[0] and "model.n_hidden" in lines[0] and "positive" in lines[0]
    assert "Traceback" not in proc.stderr


def test_unwritable_output_directory_is_reported(tmp_path, capsys):
    protocol = tmp_path / "tiny.toml"
    protocol.write_text(TINY)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["run", str(protocol), "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert "not writable" in err and str(Path(blocker)) in err
