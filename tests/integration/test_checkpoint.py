"""Checkpoint / resume: a run killed at any point and resumed equals the uninterrupted run."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bioperturb.checkpoint import read_checkpoint
from bioperturb.cli import main
from bioperturb.dataset import read_dataset
from bioperturb.rules import RULES
from bioperturb.runs import run_protocol
from bioperturb.training import Trainer
from tests.conftest import make_protocol, on_rule_network, tiny_toml

REPO = Path(__file__).resolve().parents[2]

TINY = tiny_toml(
    seed=3,
    training__n_trials=8,
    training__eval_every=3,
    training__optimizer="adam",
    training__lr=0.01,
    training__checkpoint_every=1,
    output__figures=False,
)


def comparable(ds: xr.Dataset) -> xr.Dataset:
    """A run's Dataset without what legitimately differs between processes."""
    return ds.drop_vars("wall_time").assign_attrs(created="")


class CopyingTrainer(Trainer):
    """Keeps a copy of every checkpoint, named by the number of trials done."""

    copies: Path

    def save_checkpoint(self, path):
        out = super().save_checkpoint(path)
        shutil.copy(out, self.copies / f"after{len(self.records.loss)}.npz")
        return out


def resumed_runs_match(protocol, tmp_path, resume_after):
    tmp_path.mkdir(parents=True, exist_ok=True)
    trainer = CopyingTrainer(protocol)
    trainer.copies = tmp_path
    trainer.checkpoint_path = tmp_path / "run.ckpt.npz"
    reference = comparable(trainer.run())
    for k in resume_after:
        again = Trainer(protocol)
        again.restore(tmp_path / f"after{k}.npz")
        assert again.position > 0 and len(again.records.loss) == k
        xr.testing.assert_identical(comparable(again.run()), reference)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_in_process_is_identical_numpy(tmp_path, optimizer):
    protocol = make_protocol(
        training__n_trials=5,
        training__eval_every=2,
        training__optimizer=optimizer,
        training__checkpoint_every=1,
    )
    # after 2 trials an evaluation block follows; after 5 only the final one remains
    resumed_runs_match(protocol, tmp_path, resume_after=(1, 2, 5))


@pytest.mark.parametrize(
    ("rule", "extra"),
    [(name, {}) for name in sorted(RULES)]
    + [("td_anp", {"model__decorrelate": ["input", "recurrent"]})],
    ids=[*sorted(RULES), "td_anp-decorrelate"],
)
def test_resume_is_identical_for_every_rule(tmp_path, rule, extra):
    """Whatever state a rule or decorrelation layer keeps is in the checkpoint (a LIF
    network for a rule that does not run on the rate network)."""
    lif = {"preset": "lif_rnn", "n_hidden": 12, "input_scale": 4.0}
    keys = dict(task__duration="40 ms", training__n_trials=3, training__eval_every=2)
    protocol = make_protocol(
        rule__name=rule,
        training__checkpoint_every=1,
        **on_rule_network(rule, lif, **keys, **extra),
    )
    resumed_runs_match(protocol, tmp_path, resume_after=(1,))


@pytest.mark.cython
def test_resume_in_process_is_identical_cython(tmp_path):
    """The cython target draws from a 20000-number C buffer: it is saved and restored.

    50 units × 40 steps × 11 tape trials = 22000 draws, so the restored buffer is used
    up (freed by Brian2's code) and refilled from the restored numpy state.
    """
    protocol = make_protocol(
        model__n_hidden=50,
        task__duration="40 ms",
        training__n_trials=8,
        training__eval_every=4,
        training__optimizer="adam",
        engine__codegen="cython",
        training__checkpoint_every=1,
    )
    resumed_runs_match(protocol, tmp_path, resume_after=(1, 6))


def test_checkpoint_holds_weights_optimiser_rng_and_records(tmp_path):
    protocol = make_protocol(
        training__n_trials=2, training__optimizer="adam", training__checkpoint_every=1
    )
    trainer = Trainer(protocol)
    trainer.checkpoint_path = tmp_path / "c.npz"
    trainer.run()
    meta, arrays = read_checkpoint(tmp_path / "c.npz")
    assert meta["trials_done"] == 2 and meta["position"] == 2 + 1  # initial eval + 2 trials
    for matrix in ("w_in", "w_rec", "w_out"):
        for var in ("w", "acc", "m_adam", "v_adam"):
            assert f"state/{matrix}/{var}" in arrays
    assert "rng/numpy_keys" in arrays
    np.testing.assert_array_equal(arrays["rec/loss"], trainer.records.loss)


def test_run_protocol_removes_checkpoint_when_finished(tmp_path):
    protocol = make_protocol(training__n_trials=2, training__checkpoint_every=1)
    ds, path = run_protocol(protocol, out_dir=tmp_path)
    assert path.is_file() and not (tmp_path / "test.ckpt.npz").exists()
    # resume without a checkpoint returns the finished run instead of recomputing it
    mtime = path.stat().st_mtime_ns
    again, _ = run_protocol(protocol, out_dir=tmp_path, resume=True)
    assert path.stat().st_mtime_ns == mtime
    xr.testing.assert_identical(again, read_dataset(path))


def test_resume_refuses_a_checkpoint_of_another_protocol(tmp_path, capsys):
    protocol = tmp_path / "tiny.toml"
    protocol.write_text(TINY)
    out = tmp_path / "out"
    trainer = Trainer(make_protocol(name="tiny"))
    trainer.save_checkpoint(out / "tiny.ckpt.npz")
    assert main(["run", str(protocol), "--out", str(out), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "different protocol" in err
    assert str(out / "tiny.ckpt.npz") in err


def _start(protocol: Path, out: Path, resume: bool, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bioperturb.cli", "run", str(protocol), "--out", str(out)]
    cmd += ["--quiet"] + (["--resume"] if resume else [])
    with open(log, "w") as fh:
        return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=fh)


def _trials_done(ckpt: Path) -> int:
    try:
        return read_checkpoint(ckpt)[0]["trials_done"]
    except Exception:  # noqa: BLE001 - not there (yet, or any more)
        return -1


class FileWatcher(threading.Thread):
    """Opens every visible (not dot-prefixed) .nc / .npz file that appears in a folder."""

    def __init__(self, folder: Path):
        super().__init__(daemon=True)
        self.folder = folder
        self.stop = threading.Event()
        self.bad: list[str] = []
        self.seen = 0

    def run(self):
        while not self.stop.is_set():
            for path in list(self.folder.glob("[!.]*")):
                try:
                    if path.suffix == ".nc":
                        read_dataset(path)
                    elif path.suffix == ".npz":
                        read_checkpoint(path)
                    self.seen += 1
                except Exception as err:  # noqa: BLE001 - any failure is a finding
                    gone = isinstance(err, FileNotFoundError) or "checkpoint not found" in str(err)
                    if gone:  # removed between glob and open (a finished run's checkpoint)
                        continue
                    self.bad.append(f"{path.name}: {err}")
            time.sleep(0.02)


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_gives_identical_dataset(tmp_path):
    """SIGKILL during start-up and after a random number of trials, several times."""
    protocol = tmp_path / "tiny.toml"
    protocol.write_text(TINY)
    ref_out, out = tmp_path / "reference", tmp_path / "killed"
    log = tmp_path / "stderr.txt"
    proc = _start(protocol, ref_out, resume=False, log=log)
    assert proc.wait(timeout=300) == 0, log.read_text()
    reference = read_dataset(ref_out / "tiny.nc")

    out.mkdir()
    ckpt = out / "tiny.ckpt.npz"
    rng = random.Random(1234)
    # kill points: trials done (0 = still starting up), then a random extra delay
    targets = [0, *sorted(rng.sample(range(1, 8), 3))]
    watcher = FileWatcher(out)
    watcher.start()
    history = []
    try:
        for attempt, target in enumerate(targets):
            before = _trials_done(ckpt)
            proc = _start(protocol, out, resume=attempt > 0, log=log)
            if target == 0:  # while importing / building the network
                time.sleep(rng.uniform(0.2, 2.0))
            deadline = time.monotonic() + 120
            while target and _trials_done(ckpt) < target and proc.poll() is None:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))
            proc.send_signal(signal.SIGKILL)
            rc = proc.wait()
            history.append((max(before, 0), _trials_done(ckpt), rc))
            # only complete files (or dot-prefixed temp files) are ever visible
            for path in out.glob("[!.]*"):
                assert path.name in ("tiny.nc", "tiny.ckpt.npz"), path.name
        proc = _start(protocol, out, resume=True, log=log)
        assert proc.wait(timeout=300) == 0, log.read_text()
    finally:
        watcher.stop.set()
        watcher.join()
    assert not watcher.bad, watcher.bad
    assert sum(rc == -signal.SIGKILL for *_, rc in history) >= 3, history
    result = read_dataset(out / "tiny.nc")
    xr.testing.assert_identical(comparable(result), comparable(reference))
    assert not ckpt.exists()
    assert not list(out.glob(".*.tmp")), "stale temp files are cleaned up on resume"
    print(f"kill/resume (resumed at, killed at, rc): {history}")
