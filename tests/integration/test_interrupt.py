"""SIGINT and SIGTERM stop a run between blocks, keep its data and tell the truth (issue 17)."""

from __future__ import annotations

import copy
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tomli_w
import xarray as xr

from bioperturb.checkpoint import read_checkpoint
from bioperturb.dataset import read_dataset
from bioperturb.runs import run_protocol
from bioperturb.training import Trainer
from tests.conftest import BASE, make_protocol

REPO = Path(__file__).resolve().parents[2]


def signalling_engine(trainer: Trainer, after_blocks: int, signals: list[int]):
    """Make the engine raise ``signals`` in this process during block ``after_blocks``."""
    engine = trainer.engine
    original = engine.run_block
    calls = {"n": 0}

    def run_block(position, n):
        calls["n"] += 1
        if calls["n"] == after_blocks:
            for sig in signals:
                signal.raise_signal(sig)
        return original(position, n)

    engine.run_block = run_block
    return calls


def protocol(**extra):
    return make_protocol(
        training__n_trials=6, training__eval_every=2, training__optimizer="adam", **extra
    )


@pytest.mark.parametrize(
    "sig, block",
    [
        (signal.SIGINT, 1),  # during the first evaluation
        (signal.SIGINT, 2),  # during a block of training trials
        (signal.SIGTERM, 3),
    ],
)
def test_first_signal_stops_after_the_block_with_a_checkpoint_and_resume_is_identical(
    tmp_path, sig, block
):
    p = protocol()
    reference = Trainer(p).run()
    trainer = Trainer(p)
    trainer.checkpoint_path = tmp_path / "run.ckpt.npz"
    kind = trainer.tape.kinds[0][0]
    calls = signalling_engine(trainer, after_blocks=block, signals=[sig])
    ds = trainer.run()
    assert calls["n"] == block, "the run went on after the block in which the signal came"
    assert ds.attrs["status"] == "interrupted"
    assert signal.Signals(sig).name in ds.attrs["status_reason"]
    done = ds.sizes["trial"]
    assert done < 6 and ds.sizes["eval_trial"] >= 1
    if block == 1:
        assert kind == "eval" and done == 0  # the evaluation finished, then the run stopped
        np.testing.assert_array_equal(ds["eval_loss"], reference["eval_loss"][:1])
    # the records are those of the uninterrupted run so far
    np.testing.assert_array_equal(ds["loss"].values, reference["loss"].values[:done])
    meta, _ = read_checkpoint(trainer.checkpoint_path)
    assert meta["trials_done"] == done
    again = Trainer(p)
    again.restore(trainer.checkpoint_path)
    resumed = again.run()
    assert resumed.attrs["status"] == "completed"
    xr.testing.assert_identical(
        resumed.drop_vars("wall_time").assign_attrs(created=""),
        reference.drop_vars("wall_time").assign_attrs(created=""),
    )
    # the handlers are given back: Python's default for SIGINT, the default for SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_second_signal_stops_at_once_and_keeps_the_whole_blocks(tmp_path):
    p = protocol()
    trainer = Trainer(p)
    trainer.checkpoint_path = tmp_path / "run.ckpt.npz"
    signalling_engine(trainer, after_blocks=3, signals=[signal.SIGINT, signal.SIGINT])
    ds = trainer.run()
    assert ds.attrs["status"] == "interrupted"
    assert "during a block" in ds.attrs["status_reason"]
    # the records end with the second block: the third was cut short
    first = trainer.block_length(0)
    two = first + trainer.block_length(first)
    expected = sum(kind == "train" for kind, _, _ in trainer.tape.kinds[:two])
    assert ds.sizes["trial"] == expected
    assert not trainer.checkpoint_path.exists()  # mid-block state is no place to resume


def test_a_brian2_run_that_ends_early_is_an_interruption_not_a_short_result():
    """Where Brian2's own handler is active it ends net.run early without an exception."""
    from brian2 import Network

    trainer = Trainer(protocol())
    net = trainer.network.net
    original = Network.run

    calls = {"n": 0}

    def stopping_run(duration, **kw):
        calls["n"] += 1
        return original(net, duration * (0.5 if calls["n"] == 3 else 1.0), **kw)

    net.run = stopping_run
    ds = trainer.run()
    assert ds.attrs["status"] == "interrupted"
    assert "Brian2 stopped the run" in ds.attrs["status_reason"]


def _cli_toml(tmp_path: Path, engine: str) -> Path:
    """A long run of the tests' shared network shape (standalone: its cached program)."""
    data = copy.deepcopy(BASE)
    data["training"].update(n_trials=4000)  # eval_every as BASE: the same program
    data["engine"] = {"name": engine} if engine == "standalone" else dict(data["engine"])
    data["output"]["progress"] = True
    path = tmp_path / "test.toml"
    path.write_text(tomli_w.dumps(data))
    return path


@pytest.mark.parametrize(
    "engine, sig, group",
    [
        ("runtime", signal.SIGTERM, False),  # what `timeout` and job schedulers send
        pytest.param(
            "standalone",
            signal.SIGINT,
            True,  # Ctrl-C at a terminal: the whole foreground process group
            marks=[pytest.mark.slow, pytest.mark.standalone],
        ),
    ],
)
def test_cli_run_stopped_by_a_signal_writes_the_dataset_a_checkpoint_and_exits_130(
    tmp_path, engine, sig, group
):
    """The real thing: `bioperturb run` in a child process, the signal from outside."""
    path = _cli_toml(tmp_path, engine)
    out = tmp_path / "out"
    with (tmp_path / "log.txt").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bioperturb.cli", "run", str(path), "--out", str(out)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # the progress bar shows some training trials done
    deadline = time.monotonic() + 600
    text = ""
    while time.monotonic() < deadline and proc.poll() is None:
        text = (tmp_path / "log.txt").read_text()
        if re.search(r"\b[1-9]\d*/4000\b", text):
            break
        time.sleep(0.1)
    assert proc.poll() is None, text
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    rc = proc.wait(timeout=300)
    text = (tmp_path / "log.txt").read_text()
    assert rc == 130, text
    assert "--resume" in text
    ds = read_dataset(out / "test.nc")
    assert ds.attrs["status"] == "interrupted", text
    assert signal.Signals(sig).name in ds.attrs["status_reason"]
    assert 0 < ds.sizes["trial"] < 4000
    meta, _ = read_checkpoint(out / "test.ckpt.npz")
    assert meta["trials_done"] == ds.sizes["trial"]


def test_run_protocol_keeps_the_checkpoint_of_an_interrupted_run(tmp_path, monkeypatch):
    p = protocol()
    calls = {}

    class Signalling(Trainer):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            calls.update(signalling_engine(self, after_blocks=2, signals=[signal.SIGINT]))

    monkeypatch.setattr("bioperturb.runs.Trainer", Signalling)
    ds, _ = run_protocol(p, out_dir=tmp_path, progress=False)
    monkeypatch.undo()
    assert ds.attrs["status"] == "interrupted"
    assert (tmp_path / "test.ckpt.npz").exists()
    ds2, _ = run_protocol(p, out_dir=tmp_path, progress=False, resume=True)
    assert ds2.attrs["status"] == "completed" and ds2.sizes["trial"] == 6
    assert not (tmp_path / "test.ckpt.npz").exists()


@pytest.mark.parametrize(
    ("stopped", "sig", "extra", "methods"),
    [
        ("td_anp", signal.SIGTERM, [], ["td_anp"]),
        # the rule finishes, RFLO is stopped: np and BPTT never start
        ("rflo", signal.SIGINT, ["--with", "rflo", "np"], ["td_anp", "rflo"]),
    ],
    ids=["rule", "comparator"],
)
def test_compare_interrupted_keeps_the_runs_before_it_and_exits_130(
    tmp_path, monkeypatch, capsys, stopped, sig, extra, methods
):
    from bioperturb.cli import main

    class Signalling(Trainer):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            if self.protocol.rule_name == stopped:
                signalling_engine(self, after_blocks=2, signals=[sig])

    monkeypatch.setattr("bioperturb.runs.Trainer", Signalling)
    data = copy.deepcopy(BASE)
    data["training"].update(n_trials=6)
    path = tmp_path / "test.toml"
    path.write_text(tomli_w.dumps(data))
    assert main(["compare", str(path), "--out", str(tmp_path), "--quiet", *extra]) == 130
    assert "BPTT reference was not trained" in capsys.readouterr().err
    ds = read_dataset(tmp_path / "test_compare.nc")
    assert list(ds["method"].values) == methods
    assert ds.attrs["status"] == "interrupted"
    done = dict(zip(ds["method"].values, ds["loss"].notnull().sum("trial").values, strict=True))
    assert all(done[m] == 6 for m in methods[:-1]) and 0 < done[methods[-1]] < 6, done


def test_a_signal_while_the_result_is_written_waits_for_the_file(tmp_path, monkeypatch):
    import bioperturb.runs as runs

    written = runs.write_dataset

    def slow_write(ds, path):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C while the file is being written
        return written(ds, path)

    monkeypatch.setattr(runs, "write_dataset", slow_write)
    ds, path = run_protocol(protocol(), out_dir=tmp_path, progress=False)
    assert ds.attrs["status"] == "completed"
    assert read_dataset(path).sizes["trial"] == 6


def test_ctrl_c_before_the_first_trial_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    """While the network is built (or a standalone program compiles): no traceback."""
    from bioperturb.cli import main

    def building(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("bioperturb.runs.Trainer", building)
    path = tmp_path / "test.toml"
    path.write_text(tomli_w.dumps(BASE))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "bioperturb: interrupted (files written so far are complete)"
    assert not (tmp_path / "out" / "test.nc").exists()
