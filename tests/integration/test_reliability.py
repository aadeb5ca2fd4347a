"""Reliability round 2 (issue 17): what used to fail late, lose data or tell a lie."""

from __future__ import annotations

import fcntl
import gc
import os
import signal
import stat

import numpy as np
import pytest
from brian2.utils.logger import catch_logs

from bioperturb import resources
from bioperturb.checkpoint import read_checkpoint, write_checkpoint
from bioperturb.cli import main
from bioperturb.config import load_protocol
from bioperturb.dataset import write_dataset
from bioperturb.schema import ConfigError
from bioperturb.training import Trainer
from tests.conftest import make_protocol, pretend_free_disk, tiny_toml

GOOD = tiny_toml(output__figures=False)


@pytest.fixture
def protocol_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(GOOD)
    return path


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_second_run_writing_the_same_file_is_refused_before_any_work(
    protocol_file, tmp_path, capsys
):
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".tiny.nc.lock", "a") as held:  # another process's run holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(["run", str(protocol_file), "--out", str(out), "--quiet"]) == 2
        err = one_line(capsys)
        assert "another run is writing" in err and "name" in err
        assert not (out / "tiny.nc").exists()
    # released (as when that process ends, however it ends): the run goes ahead
    assert main(["run", str(protocol_file), "--out", str(out), "--quiet"]) == 0
    assert (out / "tiny.nc").is_file()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_get_the_umask_mode(protocol_file, tmp_path, umask):
    old = os.umask(umask)
    try:
        out = tmp_path / f"out{umask:o}"
        assert main(["run", str(protocol_file), "--out", str(out), "--quiet"]) == 0
        write_checkpoint(out / "x.ckpt.npz", {"format": 1}, {"a": np.zeros(2)})
    finally:
        os.umask(old)
    for name in ("tiny.nc", "x.ckpt.npz"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o666 & ~umask, name


def test_a_run_that_cannot_fit_on_the_disk_is_refused_before_any_work(
    protocol_file, tmp_path, capsys, monkeypatch
):
    pretend_free_disk(monkeypatch, 100)
    out = tmp_path / "out"
    assert main(["run", str(protocol_file), "--out", str(out), "--quiet"]) == 2
    err = one_line(capsys)
    assert "output.dir" in err and "only 100 B is free" in err
    assert not out.exists()


def test_a_failed_write_is_one_line_and_exit_1(protocol_file, tmp_path, capsys, monkeypatch):
    def full(ds, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr("bioperturb.runs.write_dataset", full)
    assert main(["run", str(protocol_file), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    err = one_line(capsys)
    assert "No space left on device" in err and "tiny.nc" in err


def test_memory_estimate_counts_what_the_run_allocates():
    """The estimate's exact parts against the arrays a real run builds."""
    p = make_protocol(training__n_trials=6, training__eval_every=2)
    trainer = Trainer(p)
    exp = trainer.experiment
    need = resources.estimate_protocol(p)
    tape_bytes = (
        sum(
            getattr(exp.tape, name).nbytes
            for name in (
                "inputs",
                "targets",
                "mask",
                "noise",
                "learn",
                "step",
                "m_inv",
                "n_updates",
            )
        )
        + exp.tape.condition.nbytes
    )
    assert need.parts["tape"] == 2 * tape_bytes  # the arrays and the TimedArrays' copy
    trials = exp.train_trials
    assert need.parts["training trials"] == (
        trials.inputs.nbytes + trials.targets.nbytes + trials.mask.nbytes
    )
    ds = trainer.run(progress=False)
    weights = sum(ds[m].nbytes for m in ("W_in", "W_rec", "W_out"))
    assert need.parts["weights recorded"] == weights
    assert need.output >= weights


def test_check_memory_false_lets_a_big_run_through_validation(protocol_file):
    with pytest.raises(ConfigError, match="more than this machine's"):
        load_protocol(protocol_file, {"model.n_hidden": 100_000})
    p = load_protocol(protocol_file, {"model.n_hidden": 100_000, "engine.check_memory": False})
    assert p.model.n_hidden == 100_000


def test_plot_of_a_run_with_no_evaluation_is_one_line(tmp_path, capsys):
    def interrupted(position, n):  # Ctrl-C twice in the very first block
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        raise AssertionError("not reached")

    with catch_logs():  # a network that never ran: no "unused Brian2 object" notes
        trainer = Trainer(make_protocol())
        trainer.engine.run_block = interrupted
        ds = trainer.run(progress=False)
        del trainer
        gc.collect()
    assert ds.sizes["eval_trial"] == 0 and ds.attrs["status"] == "interrupted"
    write_dataset(ds, tmp_path / "empty.nc")
    capsys.readouterr()  # the trainer's note on the first signal
    assert main(["plot", str(tmp_path / "empty.nc")]) == 2
    err = one_line(capsys)
    assert "nothing to plot" in err and "interrupted" in err


@pytest.mark.parametrize(
    "change, match",
    [
        ({"position": 10_000}, "tape position"),
        ({"position": 0}, "tape position"),
        ({"position": "3"}, "tape position"),
        ({"trials_done": None, "position": 1}, "inconsistent"),
    ],
)
def test_a_checkpoint_past_the_end_or_inconsistent_is_refused(tmp_path, change, match):
    p = make_protocol(training__n_trials=4, training__checkpoint_every=1)
    trainer = Trainer(p)
    trainer.checkpoint_path = tmp_path / "c.npz"
    trainer.run(progress=False)  # the last checkpoint: after 4 trials
    meta, arrays = read_checkpoint(tmp_path / "c.npz")
    meta.update({k: v for k, v in change.items() if v is not None})
    write_checkpoint(tmp_path / "bad.npz", meta, arrays)
    with catch_logs():  # the refused trainer never runs: no "unused Brian2 object" notes
        refused = Trainer(p)
        with pytest.raises(ConfigError, match=match):
            refused.restore(tmp_path / "bad.npz")
        del refused
        gc.collect()


def test_compare_with_a_diverging_rule_writes_both_methods_and_exits_1(tmp_path, capsys):
    """As `run` does: the file is written with every method, and the exit status says
    that a method did not complete (a comparator's divergence as much as the rule's)."""
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_toml(training__n_trials=4, training__eval_every=2, training__lr=1e6))
    argv = ["compare", str(path), "--out", str(tmp_path), "--quiet", "--with", "np"]
    assert main(argv) == 1
    from bioperturb.dataset import read_dataset

    ds = read_dataset(tmp_path / "tiny_compare.nc")
    assert list(ds["method"].values) == ["td_anp", "np", "bptt"]
    assert ds.attrs["status"] == "diverged" and "max_weight" in ds.attrs["status_reason"]
    assert ds.attrs["method_status"].startswith("td_anp: diverged; np: diverged; bptt: ")
    out, err = capsys.readouterr()
    assert "td_anp: eval loss" in out
    assert err.strip().startswith("diverged: td_anp: ") and "np: " in err
