"""Running a protocol to its files: one resumable orchestration for run, sweep and compare.

:func:`train` builds the :class:`~bioperturb.training.Trainer`, continues from a checkpoint
where asked, runs the tape and, given a path, writes the Dataset atomically and removes the
checkpoint once the run is finished. ``bioperturb run`` (:func:`run_protocol`), each run of
a sweep (:func:`bioperturb.sweep.run_point`) and ``bioperturb compare``
(:func:`bioperturb.compare.compare_protocol`) all go through it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import xarray as xr

from bioperturb.config import Protocol
from bioperturb.dataset import write_dataset
from bioperturb.schema import ConfigError
from bioperturb.training import Trainer, stop_requests

__all__ = [
    "train",
    "run_protocol",
    "output_paths",
    "checkpoint_path",
    "describe_run",
]


def output_paths(protocol: Protocol, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """(netCDF path, learning-curve PNG path) of a protocol's run."""
    base = Path(out_dir if out_dir is not None else protocol.output.dir)
    return base / f"{protocol.name}.nc", base / f"{protocol.name}_learning.png"


def checkpoint_path(protocol: Protocol, out_dir: str | Path | None = None) -> Path:
    """Where a run's checkpoint lives: ``<dir>/<name>.ckpt.npz``."""
    base = Path(out_dir if out_dir is not None else protocol.output.dir)
    return base / f"{protocol.name}.ckpt.npz"


def _finished_run(nc_path: Path, protocol: Protocol) -> xr.Dataset | None:
    """The Dataset at ``nc_path`` if it is a finished run of ``protocol``, else None.

    Same protocol as for a checkpoint (:func:`~bioperturb.checkpoint.protocol_difference`):
    a file written before the ``[engine]`` table counts as the run of its protocol today.
    """
    import tomllib

    from bioperturb.checkpoint import protocol_difference
    from bioperturb.dataset import read_dataset

    if not nc_path.is_file():
        return None
    try:
        ds = read_dataset(nc_path)
    except (OSError, ValueError):
        return None
    try:
        same = protocol_difference(str(ds.attrs.get("config", "")), protocol) is None
    except tomllib.TOMLDecodeError:
        same = False
    return ds if same and ds.attrs.get("status") in ("completed", "diverged") else None


def train(
    protocol: Protocol,
    nc_path: str | Path | None = None,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    restart_bad_checkpoint: bool = False,
) -> tuple[Trainer, xr.Dataset]:
    """Run ``protocol``; return the trainer and its Dataset (written to ``nc_path``, if given).

    ``checkpoint``: where to write a checkpoint every ``training.checkpoint_every``
    training trials (none when that is 0) and when a SIGINT or SIGTERM stops the run
    between blocks; with ``resume`` the run continues from it when it exists. A
    checkpoint that cannot be used raises :class:`ConfigError`, or, with
    ``restart_bad_checkpoint``, is ignored and the run starts afresh. Once a run is not
    interrupted (completed or diverged) and written, its checkpoint is removed.
    """
    trainer = Trainer(protocol)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    trainer.checkpoint_path = ckpt  # every checkpoint_every trials, and on SIGINT/SIGTERM
    if resume and ckpt is not None and ckpt.exists():
        try:
            trainer.restore(ckpt)
        except ConfigError:
            if not restart_bad_checkpoint:
                raise
            trainer = Trainer(protocol, trainer.experiment)
            trainer.checkpoint_path = ckpt
    ds = trainer.run(progress=progress)
    if nc_path is not None:
        with stop_requests():  # a Ctrl-C now waits for the file (the run is over anyway)
            write_dataset(ds, nc_path)
        if ckpt is not None and ds.attrs["status"] != "interrupted":
            ckpt.unlink(missing_ok=True)  # the .nc is complete: the checkpoint is done
    return trainer, ds


@contextlib.contextmanager
def output_lock(nc_path: Path, where: str) -> Iterator[None]:
    """Hold ``.<name>.nc.lock`` beside ``nc_path`` for a run; refuse if another run holds it.

    Two runs that would write the same file (same name and folder) cannot both go on:
    the second stops before any work with a one-line error. The lock is an advisory
    ``flock``, released by the operating system when its process ends however it ends,
    so a killed run leaves no stale lock (the empty lock file stays and is reused).
    """
    import fcntl

    lock = nc_path.with_name(f".{nc_path.name}.lock")
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                where,
                "name",
                f"another run is writing {nc_path} now (it holds {lock.name}): wait for it, "
                "or give this run another name or --out",
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run_protocol(
    protocol: Protocol,
    out_dir: str | Path | None = None,
    progress: bool | None = None,
    resume: bool = False,
) -> tuple[xr.Dataset, Path]:
    """Train, write ``<dir>/<name>.nc`` (and figures, if configured); return both.

    The figures (``output.figures``) are ``<name>_learning.png``, ``<name>_accuracy.png``
    for a task scored by accuracy and ``<name>_raster.png`` for a spiking network.

    With ``training.checkpoint_every = k`` a checkpoint ``<dir>/<name>.ckpt.npz`` is
    written every k training trials and removed once the run is finished. ``resume``
    continues from that checkpoint if there is one; without one, a finished run of the
    same protocol in ``<dir>/<name>.nc`` is returned as it is, else the run starts afresh.
    """
    from bioperturb.resources import check_disk, estimate_protocol

    nc_path, png_path = output_paths(protocol, out_dir)
    ckpt_path = checkpoint_path(protocol, out_dir)
    check_disk(estimate_protocol(protocol), nc_path.parent, protocol.source, "output.dir")
    nc_path.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(nc_path, protocol.source):
        return _run_locked(protocol, nc_path, png_path, ckpt_path, progress, resume)


def _run_locked(
    protocol: Protocol,
    nc_path: Path,
    png_path: Path,
    ckpt_path: Path,
    progress: bool | None,
    resume: bool,
) -> tuple[xr.Dataset, Path]:
    if resume:
        for name in (nc_path.name, ckpt_path.name):  # left by a killed process
            for stale in nc_path.parent.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)
        if not ckpt_path.exists():
            done = _finished_run(nc_path, protocol)
            if done is not None:
                return done, nc_path
    _, ds = train(protocol, nc_path, checkpoint=ckpt_path, resume=resume, progress=progress)
    if protocol.output.figures and ds.sizes["eval_trial"]:  # (interrupted at once: none)
        from bioperturb.plotting import plot_accuracy, plot_learning_curves, save_figure

        save_figure(plot_learning_curves({protocol.rule_name: ds}), png_path)
        if "eval_accuracy" in ds:  # a task scored by accuracy
            accuracy_png = png_path.with_name(f"{protocol.name}_accuracy.png")
            save_figure(plot_accuracy({protocol.rule_name: ds}), accuracy_png)
        if "spike_unit" in ds and ds.sizes["eval_trial"]:  # spiking run: the last raster
            from bioperturb.plotting import plot_raster

            save_figure(plot_raster(ds), png_path.with_name(f"{protocol.name}_raster.png"))
    return ds, nc_path


def describe_run(ds: xr.Dataset) -> dict[str, Any]:
    """Short summary numbers of a run for the command line.

    ``final_eval_accuracy`` (the last ``eval_accuracy``) only where the run has one.
    """
    ev = ds["eval_loss"].values
    summary = {
        "status": ds.attrs["status"],
        "trials": int(ds.sizes["trial"]),
        "initial_eval_loss": float(ev[0]) if ev.size else float("nan"),
        "final_eval_loss": float(ev[-1]) if ev.size else float("nan"),
    }
    if "eval_accuracy" in ds:
        acc = ds["eval_accuracy"].values
        summary["final_eval_accuracy"] = float(acc[-1]) if acc.size else float("nan")
    return summary
