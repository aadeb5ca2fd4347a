"""Engines: the ways of simulating an experiment's network, behind one interface.

* ``runtime`` (:class:`~bioperturb.engines.runtime.RuntimeEngine`): Brian2's runtime mode
  in this process, any model kind;
* ``standalone`` (:class:`~bioperturb.engines.standalone.StandaloneEngine`): a compiled
  cpp_standalone program per network shape, cached, run per block of trials.

:class:`~bioperturb.engines.base.Engine` says what an engine offers the trial loop
(:class:`bioperturb.training.Trainer`). A protocol names its engine in ``[engine] name``.
"""

from __future__ import annotations

import importlib

from bioperturb.engines.base import Block, DivergedError, Engine

__all__ = ["ENGINES", "Block", "DivergedError", "Engine", "get_engine"]

#: engine classes by name, as "module:Class" (imported on first use)
ENGINES: dict[str, str] = {
    "runtime": "bioperturb.engines.runtime:RuntimeEngine",
    "standalone": "bioperturb.engines.standalone:StandaloneEngine",
}


def get_engine(name: str) -> type[Engine]:
    """The engine class registered under ``name`` (KeyError lists the known names)."""
    try:
        module, _, cls = ENGINES[name].partition(":")
    except KeyError:
        raise KeyError(f"unknown engine '{name}' (known: {', '.join(ENGINES)})") from None
    return getattr(importlib.import_module(module), cls)
