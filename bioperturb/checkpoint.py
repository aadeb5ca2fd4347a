"""Checkpoints of one run: everything needed to continue it bit-identically.

A checkpoint is one ``.npz`` file (no pickles) written atomically (temp file + rename), so
a process killed at any moment leaves either the previous checkpoint or the new one.
It holds:

* the state of every Brian2 group and synapse object of the network: all writable state
  variables (``h``, ``r``, ``w``, ``acc``, ``m_adam``/``v_adam``, the loss accumulators, ...),
  i.e. weights, optimiser state and the dynamical state at the trial boundary;
* the network time ``Network.t_``, which is where the next ``net.run`` starts, so the
  TimedArrays of the tape line up again;
* the run's random state (:class:`bioperturb.brian_rng.BrianRNG`): the numpy legacy
  generator state that Brian2's ``randn()`` draws from, and the cython target's buffered
  random numbers with their read positions (contents, not addresses);
* the tape position, the number of training trials done and the records so far
  (``meta``, a JSON text, and arrays);
* the resolved protocol, to refuse a checkpoint written for another protocol.

Monitors are not saved: the trainer reads each trial's samples relative to the
monitor's length before the trial, so an empty monitor after a restore is equivalent.
Spike queues (for networks with synaptic delays) are not saved either; the rate network
has none.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from bioperturb.schema import ConfigError

__all__ = [
    "FORMAT",
    "network_state",
    "restore_network_state",
    "records_to_arrays",
    "records_from_arrays",
    "write_checkpoint",
    "read_checkpoint",
    "check_same_protocol",
    "RESUME_FREE",
    "protocol_difference",
]

FORMAT = 1
_META = "__meta__"


# --------------------------------------------------------------------------- network state
def network_state(net: Any) -> dict[str, np.ndarray]:
    """Copies of all writable array variables owned by the objects of ``net``."""
    from brian2.core.variables import ArrayVariable

    out: dict[str, np.ndarray] = {}
    for obj in net.objects:
        variables = getattr(obj, "variables", None)
        if variables is None:
            continue
        for name, var in variables.items():
            if not isinstance(var, ArrayVariable) or var.read_only:
                continue  # read-only: structure (i, j, N) or monitor data
            if var.owner is None or var.owner.name != obj.name:
                continue  # a reference to another object's variable
            out[f"state/{obj.name}/{name}"] = np.array(var.get_value(), copy=True)
    return out


def restore_network_state(net: Any, arrays: dict[str, np.ndarray], where: str) -> None:
    """Set the variables saved by :func:`network_state` (same network structure)."""
    expected = network_state(net)
    saved = {k: v for k, v in arrays.items() if k.startswith("state/")}
    if set(saved) != set(expected):
        diff = sorted(set(saved) ^ set(expected))
        raise ConfigError(where, "", f"checkpoint does not match the network (variable {diff[0]})")
    objects = {obj.name: obj for obj in net.objects}
    for key, value in saved.items():
        _, obj_name, var_name = key.split("/")
        var = objects[obj_name].variables[var_name]
        if np.shape(value) != np.shape(expected[key]):
            raise ConfigError(where, "", f"checkpoint does not match the network ({key} shape)")
        var.set_value(value)


# --------------------------------------------------------------------------- records
def records_to_arrays(records: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Arrays of a records dataclass whose fields are lists; returns (layout, arrays)."""
    layout: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for f in dataclasses.fields(records):
        values = getattr(records, f.name)
        key = f"rec/{f.name}"
        if not values:
            layout[f.name] = "empty"
        elif isinstance(values[0], dict):
            names = list(values[0])
            layout[f.name] = {"dict": names}
            for name in names:
                arrays[f"{key}/{name}"] = np.array([v[name] for v in values])
        elif np.ndim(values[0]) == 0:
            layout[f.name] = "scalar"
            arrays[key] = np.array(values)
        elif len({np.shape(v) for v in values}) == 1:
            layout[f.name] = "stack"
            arrays[key] = np.array(values)
        else:  # ragged
            layout[f.name] = {"list": len(values)}
            for i, v in enumerate(values):
                arrays[f"{key}/{i}"] = np.asarray(v)
    return layout, arrays


def records_from_arrays(cls: type, layout: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`records_to_arrays`."""
    records = cls()
    for f in dataclasses.fields(records):
        kind = layout.get(f.name, "empty")
        key = f"rec/{f.name}"
        if kind == "empty":
            values: list[Any] = []
        elif kind == "scalar":
            values = arrays[key].tolist()
        elif kind == "stack":
            values = list(arrays[key])
        elif "dict" in kind:
            names = kind["dict"]
            stacks = {name: arrays[f"{key}/{name}"] for name in names}
            n = len(next(iter(stacks.values()))) if stacks else 0
            values = [{name: stacks[name][i] for name in names} for i in range(n)]
        else:
            values = [arrays[f"{key}/{i}"] for i in range(kind["list"])]
        setattr(records, f.name, values)
    return records


# --------------------------------------------------------------------------- files
def write_checkpoint(path: str | Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``meta`` (JSON) and ``arrays`` to ``path`` atomically (temp file + rename)."""
    from bioperturb.dataset import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{_META: np.array(json.dumps(meta))}, **arrays)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, write)


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(meta, arrays) of a checkpoint; a damaged file raises :class:`ConfigError`."""
    where = str(path)
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as data:
            meta = json.loads(str(data[_META]))
            arrays = {k: data[k] for k in data.files if k != _META}
    except FileNotFoundError:
        raise ConfigError(where, "", "checkpoint not found") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(where, "", f"not a readable checkpoint ({reason})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConfigError(where, "", f"unsupported checkpoint format (expected {FORMAT})")
    return meta, arrays


#: keys that may differ between a checkpoint's protocol and the protocol resuming it
RESUME_FREE = (
    "output.dir",
    "output.progress",
    "output.figures",
    "training.checkpoint_every",
    "engine.check_memory",
)


def protocol_difference(saved_toml: str, protocol: Any) -> tuple[str, Any, Any] | None:
    """The first key where ``saved_toml`` and ``protocol`` differ: (key, saved, now), or None.

    Keys in :data:`RESUME_FREE` may differ; the engine keys that older protocols kept in
    ``[training]`` compare equal to their ``[engine]`` twins. Raises ``tomllib.TOMLDecodeError``
    if ``saved_toml`` is not TOML.
    """
    import tomllib

    from bioperturb.protocol import OLD_ENGINE_KEYS

    def flat(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in doc.items():
            name = f"{prefix}{key}"
            if prefix == "training." and key in OLD_ENGINE_KEYS:
                name = f"engine.{OLD_ENGINE_KEYS[key]}"
            if isinstance(value, dict):
                out.update(flat(value, f"{name}."))
            elif name not in RESUME_FREE:
                out[name] = value
        return out

    saved = flat(tomllib.loads(saved_toml))
    now = flat(tomllib.loads(protocol.to_toml()))
    differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    return (differ[0], saved.get(differ[0]), now.get(differ[0])) if differ else None


def check_same_protocol(saved_toml: str, protocol: Any, where: str) -> None:
    """Raise ConfigError unless ``saved_toml`` (a checkpoint's protocol) is ``protocol``
    (see :func:`protocol_difference`)."""
    import tomllib

    try:
        differ = protocol_difference(saved_toml, protocol)
    except tomllib.TOMLDecodeError:
        raise ConfigError(where, "", "checkpoint has no readable protocol") from None
    if differ is not None:
        key, there, now = differ
        raise ConfigError(
            where,
            "",
            f"checkpoint was written for a different protocol ({key}: "
            f"{there!r} there, {now!r} now); delete it or run without --resume",
        )
