"""Shared fixtures: small protocols built in memory."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from bioperturb.config import apply_override, protocol_from_mapping

BASE: dict[str, Any] = {
    "name": "test",
    "seed": 7,
    "model": {"preset": "rate_rnn", "n_hidden": 12, "tau": "10 ms", "dt": "1 ms", "sigma": 0.05},
    "task": {"name": "pattern", "duration": "60 ms", "pulse_duration": "10 ms"},
    "rule": {"name": "td_anp"},
    "training": {"n_trials": 3, "eval_every": 2, "lr": 0.01},
    "engine": {"name": "runtime", "codegen": "numpy"},
    "output": {"record_dt": "2 ms", "n_record_units": 4, "figures": False, "progress": False},
}


def make_protocol(model: dict[str, Any] | None = None, **overrides: Any):
    """A tiny protocol; ``overrides`` use dotted keys with '__' for '.' (``rule__lr``).

    ``model`` replaces the whole model table (e.g. a LIF model instead of the rate one).
    """
    data = copy.deepcopy(BASE)
    if model is not None:
        data["model"] = dict(model)
    for key, value in overrides.items():
        apply_override(data, key.replace("__", "."), copy.deepcopy(value), "<test>")
    return protocol_from_mapping(data, "<test>")


#: a feed-forward stack on the iris data (3-step trials), for rules that run only there
STACK: dict[str, Any] = {
    "model": {"preset": "mlp", "layers": [4, 3]},
    "task": {
        "name": "classify",
        "dataset": "iris",
        "stimulus_duration": "2 ms",
        "response_duration": "1 ms",
    },
    "output__record_dt": "1 ms",
}
LIF_SMALL: dict[str, Any] = {"preset": "lif_rnn", "n_hidden": 12}


def on_rule_network(rule: str, lif: dict[str, Any] = LIF_SMALL, **overrides: Any) -> dict:
    """``make_protocol`` keyword arguments that put ``rule`` on a network it runs on: the
    shared rate network, else ``lif`` (a spiking rule), else :data:`STACK` (a rule that
    lists only ``"mlp"``; the ``task__*`` overrides of the pattern task are dropped)."""
    from bioperturb.rules import get_rule

    kinds = get_rule(rule).model_kinds
    if "rate" in kinds:
        return overrides
    if "lif" in kinds:
        return {"model": lif, **overrides}
    pytest.importorskip("sklearn")
    kept = {k: v for k, v in overrides.items() if not k.startswith("task__")}
    return {**kept, **STACK}


@pytest.fixture
def protocol_factory():
    return make_protocol


#: a tiny protocol as a TOML file would hold it (for CLI, sweep and checkpoint tests)
TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 2,
    "model": {"preset": "rate_rnn", "n_hidden": 8},
    "task": {"name": "pattern", "duration": "40 ms", "pulse_duration": "10 ms"},
    "rule": {"name": "td_anp"},
    "training": {"n_trials": 2, "eval_every": 1},
    "engine": {"name": "runtime", "codegen": "numpy"},
    "output": {"record_dt": "2 ms", "n_record_units": 3},
}


def tiny_toml(**overrides: Any) -> str:
    """TOML text of :data:`TINY` with dotted overrides written ``table__key=value``."""
    data = copy.deepcopy(TINY)
    for key, value in overrides.items():
        apply_override(data, key.replace("__", "."), copy.deepcopy(value), "<test>")
    return tomli_w.dumps(data)


# --------------------------------------------------------------------------- plugins
#: the worked examples of docs/extending.md (a user task and a user rule)
EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def write_distribution(root: Path, name: str, entry_points: dict[str, dict[str, str]]) -> Path:
    """An installed-looking distribution: ``<root>/<name>-0.1.dist-info`` with its
    ``entry_points.txt`` (group -> {name: "module:Class"}), which importlib.metadata finds
    once ``root`` is on sys.path (no pip, no venv)."""
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {value}" for key, value in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return info


@contextlib.contextmanager
def kept_registries():
    """Forget, on exit, the classes registered (by decorator or import path) inside."""
    from bioperturb.registry import REGISTRIES

    saved = {g: (dict(r._registered), dict(r._paths)) for g, r in REGISTRIES.items()}
    try:
        yield
    finally:
        for group, (registered, paths) in saved.items():
            REGISTRIES[group]._registered = registered
            REGISTRIES[group]._paths = paths


@pytest.fixture
def clean_registries():
    with kept_registries():
        yield


def pretend_free_disk(monkeypatch: pytest.MonkeyPatch, free: int) -> None:
    """Make every disk look as if it had only ``free`` bytes left (bioperturb.resources)."""
    from collections import namedtuple

    from bioperturb import resources

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(resources.shutil, "disk_usage", lambda path: usage(10**6, 10**6, free))
