"""The xarray data model of a run and atomic netCDF input/output (see docs/data-model.md).

:class:`Records` holds what the trial loop recorded; :func:`run_dataset` turns it into the
Dataset that every engine, ``compare`` and ``sweep`` write; :func:`score_dataset` adds the
task's score; :func:`write_dataset`/:func:`read_dataset` store it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    from bioperturb.experiment import Experiment
    from bioperturb.tasks import Task

__all__ = [
    "Records",
    "run_dataset",
    "score_dataset",
    "var",
    "ALIGN_MATRICES",
    "atomic_write",
    "write_text",
    "write_dataset",
    "read_dataset",
    "versions_toml",
    "STATUSES",
]

STATUSES = ("completed", "diverged", "interrupted")

#: the matrices (and their concatenation) whose update–gradient cosine is recorded
ALIGN_MATRICES = ("W_in", "W_rec", "W_out", "all")

#: dimensions of the weight matrices
_MATRIX_DIMS = {"W_in": ("post", "input"), "W_rec": ("post", "pre"), "W_out": ("output", "pre")}


@dataclass
class Records:
    """What the trial loop recorded so far (one list entry per trial or evaluation)."""

    loss: list[float] = field(default_factory=list)
    loss_noisy: list[float] = field(default_factory=list)
    loss_t: list[np.ndarray] = field(default_factory=list)
    wall_time: list[float] = field(default_factory=list)
    eval_trial: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    weights: list[dict[str, np.ndarray]] = field(default_factory=list)
    activity: list[np.ndarray] = field(default_factory=list)
    output: list[np.ndarray] = field(default_factory=list)
    align_trial: list[int] = field(default_factory=list)
    membrane: list[np.ndarray] = field(default_factory=list)
    #: per evaluation trial: (n_spikes, 2) array of (unit, time within the trial in s)
    spikes: list[np.ndarray] = field(default_factory=list)
    alignment: list[list[float]] = field(default_factory=list)


def var(data: Any, dims: tuple[str, ...], units: str, long_name: str) -> xr.Variable:
    """A Dataset variable with its units and long name."""
    return xr.Variable(dims, data, {"units": units, "long_name": long_name})


def run_dataset(
    exp: Experiment,
    rec: Records,
    *,
    shape: dict[str, tuple[int, int]],
    lateral: Iterable[str],
    engine: str,
    status: str,
    status_reason: str = "",
) -> xr.Dataset:
    """The records of a run so far as a Dataset following docs/data-model.md.

    ``shape``: (post, pre) of every matrix; ``lateral``: the decorrelation matrices the
    network has; ``engine``: the engine's description; ``status``: one of
    :data:`STATUSES` (``status_reason`` says why a run did not complete).
    """
    p = exp.protocol
    lateral = tuple(lateral)
    dt = p.model.dt
    n_done = len(rec.loss)
    n_eval = len(rec.eval_trial)
    # eval blocks may be incomplete after an interruption: keep complete ones only
    n_cond = exp.eval_set.n_trials
    times = exp.sample_steps
    time = times * dt
    loss_t = np.array(rec.loss_t).reshape(n_done, len(time))
    acts = np.array(rec.activity[: n_eval * n_cond]).reshape(
        n_eval, n_cond, len(time), len(exp.record_units)
    )
    outs = np.array(rec.output[: n_eval * n_cond]).reshape(
        n_eval, n_cond, len(time), exp.task.n_outputs
    )
    ev = exp.eval_set

    data_vars = {
        "loss": var(np.array(rec.loss), ("trial",), "1", "clean-twin loss of each training trial"),
        "loss_noisy": var(
            np.array(rec.loss_noisy), ("trial",), "1", "noisy-twin loss of each training trial"
        ),
        "eval_loss": var(
            np.array(rec.eval_loss),
            ("eval_trial",),
            "1",
            "noise-free loss, mean over the evaluation set",
        ),
        "loss_t": var(loss_t, ("trial", "time"), "1", "clean instantaneous loss L_t"),
        "wall_time": var(
            np.array(rec.wall_time), ("trial",), "s", "wall-clock time of each training trial"
        ),
        "activity": var(
            acts,
            ("eval_trial", "condition", "time", "unit"),
            "1",
            exp.model_spec.activity,
        ),
        "output_y": var(
            outs,
            ("eval_trial", "condition", "time", "output"),
            "1",
            "readout y = V r, noise-free evaluation",
        ),
        "target": var(ev.targets[:, times], ("condition", "time", "output"), "1", "target y*"),
        "eval_inputs": var(
            ev.inputs[:, times],
            ("condition", "time", "input"),
            "1",
            "input u of the evaluation trials",
        ),
        "eval_mask": var(ev.mask[:, times], ("condition", "time"), "1", "loss mask"),
    }
    for name in _MATRIX_DIMS:
        stack = np.array([w[name] for w in rec.weights]).reshape(n_eval, *shape[name])
        data_vars[name] = var(stack, ("eval_trial", *_MATRIX_DIMS[name]), "1", f"weights {name}")
    lateral_dims = {"D_rec": ("post", "pre"), "D_in": ("input_post", "input")}
    for name in lateral:  # only with model.decorrelate
        stack = np.array([w[name] for w in rec.weights]).reshape(n_eval, *shape[name])
        data_vars[name] = var(
            stack,
            ("eval_trial", *lateral_dims[name]),
            "1",
            f"decorrelation matrix {name} = I + lateral weights",
        )
    coords = {
        "trial": ("trial", np.arange(n_done), {"units": "1"}),
        "eval_trial": ("eval_trial", np.array(rec.eval_trial, dtype=int), {"units": "1"}),
        "time": ("time", time, {"units": "s", "long_name": "time within the trial"}),
        "condition": ("condition", np.arange(n_cond), {"units": "1"}),
        "unit": ("unit", exp.record_units, {"units": "1"}),
        "pre": ("pre", np.arange(p.model.n_hidden), {"units": "1"}),
        "post": ("post", np.arange(p.model.n_hidden), {"units": "1"}),
        "input": ("input", np.arange(exp.task.n_inputs), {"units": "1"}),
        "output": ("output", np.arange(exp.task.n_outputs), {"units": "1"}),
    }
    if rec.spikes:
        coords["neuron"] = ("neuron", np.arange(p.model.n_hidden), {"units": "1"})
    if "D_in" in lateral:
        coords["input_post"] = ("input_post", np.arange(exp.task.n_inputs), {"units": "1"})
    if rec.spikes:
        data_vars.update(_spike_variables(exp, rec, n_eval, n_cond, len(time)))
    if rec.align_trial:
        data_vars["alignment"] = xr.Variable(
            ("align_trial", "matrix"),
            np.array(rec.alignment),
            {
                "units": "1",
                "long_name": "cosine of the rule's estimate with the exact loss gradient",
                "description": "cos(g_rule, dL/dW) on the training trial right after each "
                "evaluation, at the weights before its update (one noise draw); "
                "equals cos(ΔW, −dL/dW) for SGD",
            },
        )
        coords["align_trial"] = ("align_trial", np.array(rec.align_trial), {"units": "1"})
        coords["matrix"] = ("matrix", list(ALIGN_MATRICES))
    from bioperturb import __version__

    attrs = {
        "title": f"bioperturb run {p.name}",
        "config": p.to_toml(),
        "versions": versions_toml(),
        "bioperturb_version": __version__,
        "seed": p.seed,
        "engine": engine,
        # what resolving the protocol decided (e.g. why engine 'auto' chose runtime)
        "notes": "; ".join(p.notes),
        "task": p.task_name,
        "rule": p.rule_name,
        # trials simulated per weight update (training.batch; `trial` counts trials simulated)
        "trials_per_update": p.training.batch,
        "status": status,
        "status_reason": status_reason,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return score_dataset(xr.Dataset(data_vars, coords, attrs), exp.task)


def _dale_signs(model: Any) -> np.ndarray:
    from bioperturb.networks.spiking import dale_signs

    return dale_signs(model)


def _spike_variables(
    exp: Experiment, rec: Records, n_eval: int, n_cond: int, n_time: int
) -> dict[str, xr.Variable]:
    """Membrane sample and the evaluation trials' spikes as a ragged (spike) list."""
    membrane = np.array(rec.membrane[: n_eval * n_cond]).reshape(
        n_eval, n_cond, n_time, len(exp.record_units)
    )
    trials = rec.spikes[: n_eval * n_cond]
    parts = [np.reshape(x, (-1, 2)) for x in trials]
    pairs = np.concatenate(parts) if parts else np.zeros((0, 2))
    counts = [len(x) for x in parts]
    which = np.repeat(np.arange(len(trials)), counts)
    T = exp.tape.n_steps * exp.protocol.model.dt
    rates = np.zeros((n_eval, n_cond, exp.protocol.model.n_hidden))
    np.add.at(rates.reshape(-1, rates.shape[-1]), (which, pairs[:, 0].astype(int)), 1.0 / T)

    out = (
        {}
        if not exp.protocol.model.dale
        else {
            "cell_sign": var(
                _dale_signs(exp.protocol.model),
                ("neuron",),
                "1",
                "Dale's law: +1 excitatory, −1 inhibitory (sign of the outgoing W_rec weights)",
            )
        }
    )
    return out | {
        "membrane": var(
            membrane,
            ("eval_trial", "condition", "time", "unit"),
            "1",
            "membrane potential v of sampled neurons (threshold units), noise-free evaluation",
        ),
        "spike_unit": var(pairs[:, 0].astype(np.int32), ("spike",), "1", "neuron of each spike"),
        "spike_time": var(pairs[:, 1], ("spike",), "s", "spike time within its trial"),
        "spike_eval": var(
            (which // n_cond).astype(np.int32),
            ("spike",),
            "1",
            "position along eval_trial of each spike's evaluation",
        ),
        "spike_condition": var(
            (which % n_cond).astype(np.int32), ("spike",), "1", "condition of each spike"
        ),
        "rate": var(
            rates,
            ("eval_trial", "condition", "neuron"),
            "Hz",
            "firing rate of every neuron, noise-free evaluation",
        ),
    }


def score_dataset(ds: xr.Dataset, task: Task) -> xr.Dataset:
    """``ds`` with the variables of ``task.score``, computed from its own ``output_y``.

    Replacing any that ``ds`` has: for ``"accuracy"`` ``eval_accuracy`` and
    ``eval_accuracy_condition`` (:func:`bioperturb.metrics.accuracy`); for ``"sequence"``
    the coordinate ``time_slot`` (the task's slot of each recorded time point, −1 outside
    its slots) and ``eval_sequence_accuracy[_condition|_slot]``
    (:func:`bioperturb.metrics.sequence_accuracy`); for ``"nrmse"`` ``eval_nrmse``
    (:func:`bioperturb.metrics.nrmse`). For a task scored by its loss alone (``None``)
    ``ds`` is returned as it is.
    """
    from bioperturb import metrics

    if task.score == "accuracy":
        return ds.assign(metrics.accuracy(ds).data_vars)
    if task.score == "nrmse":
        return ds.assign(metrics.nrmse(ds).data_vars)
    if task.score == "sequence":
        steps = np.rint(ds["time"].values / task.dt).astype(int)
        slot = np.full(steps.size, -1)
        for k, (start, stop) in enumerate(task.slots):
            slot[(steps >= start) & (steps < stop)] = k
        attrs = {"units": "1", "long_name": "answer slot of the time point (-1: none)"}
        ds = ds.assign_coords(time_slot=("time", slot, attrs))
        return ds.assign(metrics.sequence_accuracy(ds).data_vars)
    return ds


def _umask() -> int:
    """This process's umask (read back by setting it, the only portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Create ``path`` atomically: ``write(tmp)`` fills a hidden temp file in the same
    folder, which is then renamed over ``path``.

    A reader never sees a half-written file, an existing file is replaced only once the
    new one is complete, and the temp file is removed if writing fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would make it (mkstemp: 0600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically (UTF-8)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_dataset(ds: xr.Dataset, path: str | Path) -> Path:
    """Write ``ds`` to ``path`` as netCDF4, atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4"))


def read_dataset(path: str | Path) -> xr.Dataset:
    """Load a result file fully into memory (the file is closed afterwards)."""
    with xr.open_dataset(path, engine="netcdf4") as ds:
        return ds.load()


def versions_toml() -> str:
    """Versions of Python and the packages that shape a result, as TOML text."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import tomli_w

    out = {"python": platform.python_version()}
    for pkg in ("bioperturb", "brian2", "numpy", "scipy", "xarray", "netCDF4", "jax", "optax"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return tomli_w.dumps(out)
