"""Shared fixtures: small protocols built in memory."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bioperturb.config import apply_override, protocol_from_mapping

BASE: dict[str, Any] = {
    "name": "test",
    "seed": 7,
    "model": {"preset": "rate_rnn", "n_hidden": 12, "tau": "10 ms", "dt": "1 ms", "sigma": 0.05},
    "task": {"name": "pattern", "duration": "60 ms", "pulse_duration": "10 ms"},
    "rule": {"name": "td_anp"},
    "training": {"n_trials": 3, "eval_every": 2, "codegen": "numpy", "lr": 0.01},
    "output": {"record_dt": "2 ms", "n_record_units": 4, "figures": False, "progress": False},
}


def make_protocol(**overrides: Any):
    """A tiny protocol; ``overrides`` use dotted keys with '__' for '.' (``rule__lr``)."""
    data = copy.deepcopy(BASE)
    for key, value in overrides.items():
        apply_override(data, key.replace("__", "."), value, "<test>")
    return protocol_from_mapping(data, "<test>")


@pytest.fixture
def protocol_factory():
    return make_protocol
