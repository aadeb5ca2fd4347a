"""Determinism: same seed ⇒ identical results in any process; different seeds ⇒ other noise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from bioperturb.config import load_protocol
from bioperturb.dataset import read_dataset
from bioperturb.training import Trainer
from tests.conftest import make_protocol, tiny_toml

REPO = Path(__file__).resolve().parents[2]

PROTOCOL = tiny_toml(
    name="det", seed=5, training__n_trials=3, training__eval_every=2, output__figures=False
)


def comparable(ds: xr.Dataset) -> xr.Dataset:
    return ds.drop_vars("wall_time").assign_attrs(created="")


def test_same_seed_is_identical_across_processes(tmp_path):
    path = tmp_path / "det.toml"
    path.write_text(PROTOCOL)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bioperturb.cli", "run", str(path), "--quiet"]
            + ["--out", str(tmp_path / f"p{k}")],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    a, b = (comparable(read_dataset(tmp_path / f"p{k}" / "det.nc")) for k in range(2))
    xr.testing.assert_identical(a, b)
    # ... and equal to a run in this process, whatever else it has imported or drawn
    np.random.seed(12345)  # noqa: NPY002 - disturb the global generator on purpose
    here = comparable(Trainer(load_protocol(path)).run(progress=False))
    xr.testing.assert_identical(a, here)


def test_different_seeds_give_different_noise():
    a = Trainer(make_protocol(seed=1)).run()
    b = Trainer(make_protocol(seed=2)).run()
    noise_a = (a["loss_noisy"] - a["loss"]).values
    noise_b = (b["loss_noisy"] - b["loss"]).values
    assert np.all(noise_a != 0) and not np.allclose(noise_a, noise_b)
    assert Trainer(make_protocol(seed=1)).brian_seed != Trainer(make_protocol(seed=2)).brian_seed


class NoisyNeighbour(Trainer):
    """Draws from numpy's global generator between trials, as other code in a process may."""

    def _record_eval_trial(self, condition):
        np.random.rand(17)  # noqa: NPY002 - on purpose
        super()._record_eval_trial(condition)


def test_other_use_of_the_global_rng_does_not_change_the_noise():
    protocol = make_protocol(training__n_trials=4, training__eval_every=1)
    plain = comparable(Trainer(protocol).run())
    disturbed = comparable(NoisyNeighbour(protocol).run())
    xr.testing.assert_identical(plain, disturbed)
