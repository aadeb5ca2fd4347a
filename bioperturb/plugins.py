"""User tasks and rules in every process the package starts.

The registries (:mod:`bioperturb.registry`) resolve entry points and ``"module:Class"``
names by importing, so a child process finds the same classes when its ``sys.path`` holds
the parent's entries; classes registered with the decorator need their defining module
imported again. This module carries both across:

* :func:`child_env`: the environment of a child Python process (the standalone build):
  the parent's ``sys.path`` entries on ``PYTHONPATH`` and the modules to import in
  ``$BIOPERTURB_PLUGIN_MODULES``; the child calls :func:`load_plugin_modules`;
* :func:`worker_plugin`: a dask worker plugin doing the same in every sweep worker;
* :func:`check_portable`: a class defined in ``__main__`` (a script, a notebook) cannot
  be imported by another process; using one on the standalone engine or in a sweep is a
  one-line error that says what to do;
* :func:`kernel_sources`: a user rule's class and source hash, part of the standalone
  kernel key (a user rule's code is compiled into the program).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import site
import sys
import sysconfig
from pathlib import Path
from typing import Any

from bioperturb.registry import registered_modules
from bioperturb.schema import ConfigError

__all__ = [
    "MODULES_ENV",
    "child_path",
    "child_env",
    "load_plugin_modules",
    "worker_plugin",
    "check_portable",
    "protocol_classes",
    "kernel_sources",
]

#: environment variable listing the modules a child process imports (comma-separated)
MODULES_ENV = "BIOPERTURB_PLUGIN_MODULES"

_PACKAGE = __name__.split(".")[0]


def _own_module(module: str) -> bool:
    return module == _PACKAGE or module.startswith(_PACKAGE + ".")


def plugin_modules() -> list[str]:
    """Modules defining decorator-registered classes, to import in a child process."""
    return [m for m in registered_modules() if m != "__main__" and not _own_module(m)]


def _default_path() -> set[str]:
    """Entries a fresh interpreter puts on ``sys.path`` by itself (stdlib, site dirs)."""
    paths = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths |= set(site.getsitepackages()) | {site.getusersitepackages()}
    return {os.path.normpath(p) for p in paths if p}


def child_path() -> list[str]:
    """The parent's ``sys.path`` entries a child must be given (absolute, in order)."""
    default = _default_path()
    out: list[str] = []
    for entry in sys.path:
        path = os.path.normpath(os.path.abspath(entry or os.getcwd()))
        if path in default or path in out or not os.path.exists(path):
            continue
        if any(path.startswith(d + os.sep) for d in default):
            continue  # e.g. the stdlib's lib-dynload
        out.append(path)
    return out


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with the parent's path and plugin modules added."""
    env = dict(os.environ if env is None else env)
    paths = child_path()
    paths += [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in paths]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env[MODULES_ENV] = ",".join(plugin_modules())
    return env


def load_plugin_modules(modules: list[str] | None = None) -> None:
    """Import the modules that register user classes (default: ``$BIOPERTURB_PLUGIN_MODULES``)."""
    if modules is None:
        modules = [m for m in os.environ.get(MODULES_ENV, "").split(",") if m]
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - say which plugin failed
            raise RuntimeError(
                f"importing plugin module '{module}' (it registers a task or rule of the "
                f"parent process) failed: {type(err).__name__}: {err}"
            ) from err


def worker_plugin() -> Any:
    """A dask WorkerPlugin giving each worker this process's path and plugin modules."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class BioperturbPlugins(WorkerPlugin):
        """Put the client's ``sys.path`` entries on the worker's and import the modules
        that register user tasks and rules (entry points and import paths then resolve
        in the worker as in the client)."""

        name = "bioperturb-plugins"

        def __init__(self, paths: list[str], modules: list[str]):
            self.paths = paths
            self.modules = modules

        def setup(self, worker):
            from bioperturb.plugins import load_plugin_modules

            for path in self.paths:
                if path not in sys.path and os.path.exists(path):
                    sys.path.append(path)
            load_plugin_modules(self.modules)

    return BioperturbPlugins(child_path(), plugin_modules())


def protocol_classes(protocol: Any) -> dict[str, tuple[str, type]]:
    """``{"task.name": (name, class), "rule.name": …, "model.kind": …}`` of a protocol."""
    from bioperturb.modelspec import model_spec
    from bioperturb.rules import get_rule
    from bioperturb.tasks import get_task

    return {
        "task.name": (protocol.task_name, get_task(protocol.task_name)),
        "rule.name": (protocol.rule_name, get_rule(protocol.rule_name)),
        "model.kind": (protocol.model.kind, model_spec(protocol.model.kind)),
    }


def check_portable(protocol: Any, where: str, purpose: str) -> None:
    """ConfigError unless another process can find the protocol's task, rule and model classes.

    ``purpose`` names the processes ("the standalone build process", "a sweep's worker
    processes"). Only a class defined in ``__main__`` fails: a module's classes are found
    again by importing it.
    """
    for key, (name, cls) in protocol_classes(protocol).items():
        if cls.__module__ == "__main__":
            raise ConfigError(
                where,
                key,
                f"{key.split('.')[0]} '{name}' is class {cls.__qualname__} defined in "
                f"__main__, which {purpose} cannot import: move it into a module on "
                f"sys.path and import that (its decorator then registers it there too), or "
                f"name it by import path 'module:{cls.__qualname__}'",
            )


def _source_files(cls: type) -> list[Path]:
    """Source files of ``cls`` and of its bases outside this package."""
    files: list[Path] = []
    for klass in cls.__mro__:
        if klass is object or _own_module(klass.__module__) or klass.__module__ == "builtins":
            continue
        try:
            path = inspect.getsourcefile(klass)
        except (OSError, TypeError):
            path = None
        if path is None:
            raise ValueError(
                f"the source of class {klass.__module__}.{klass.__qualname__} cannot be "
                f"found; the standalone engine compiles a rule's code and rebuilds when it "
                f"changes, so define it in a .py file"
            )
        if Path(path) not in files:
            files.append(Path(path))
    return files


def kernel_sources(protocol: Any) -> dict[str, Any]:
    """Kernel-key entries of a user rule (``{}`` for a builtin).

    A user rule's code is compiled into the standalone program, so the key holds a hash of
    the source files of its class and its bases outside bioperturb (an edited rule gives
    another program) and names the rule by its class, not by the protocol's string (an
    entry point, an import path and a decorator name of one class share a program).
    Builtin rules keep the key of the package's own sources alone.
    """
    import dataclasses

    from bioperturb.rules import RULES

    _, cls = protocol_classes(protocol)["rule.name"]
    if RULES.is_builtin(cls):
        return {}
    check_portable(protocol, protocol.source, "the standalone build process")
    digest = hashlib.sha256()
    for path in _source_files(cls):
        digest.update(path.read_bytes())
    return {
        "rule": [f"{cls.__module__}:{cls.__qualname__}", dataclasses.asdict(protocol.rule)],
        "plugin_source": digest.hexdigest()[:16],
    }
