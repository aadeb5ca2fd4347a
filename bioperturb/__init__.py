"""bioperturb: noisy rate RNNs in Brian2 that learn temporal tasks with a global loss signal
and local node-perturbation plasticity, compared against BPTT references in xarray."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bioperturb")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

import importlib.abc  # noqa: E402
import importlib.util  # noqa: E402
import sys  # noqa: E402


class _KeepExcepthook(importlib.abc.MetaPathFinder):
    """Undo the ``sys.excepthook`` that importing Brian2 installs (``brian_excepthook``).

    That hook reports *every* uncaught exception of the interpreter, a user's own
    ``ValueError`` included, as "Brian 2 encountered an unexpected error ... please report
    this issue". bioperturb imports Brian2 on first use, so the script that imported
    bioperturb would get the banner; this one-shot finder restores the hook that was set
    before Brian2's import. A program that imports Brian2 itself keeps Brian2's hook.
    """

    def find_spec(self, name, path, target=None):
        if name != "brian2":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        loader = getattr(spec, "loader", None)
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec

        def exec_keeping_hook(module):
            previous = sys.excepthook
            try:
                exec_module(module)
            finally:
                if getattr(sys.excepthook, "__name__", "") == "brian_excepthook":
                    sys.excepthook = previous

        loader.exec_module = exec_keeping_hook
        return spec


if "brian2" not in sys.modules and not any(isinstance(f, _KeepExcepthook) for f in sys.meta_path):
    sys.meta_path.insert(0, _KeepExcepthook())

from bioperturb import accessor  # noqa: E402,F401 - registers the ``ds.bp`` accessor

__all__ = ["__version__", "register_task", "register_rule"]


def __getattr__(name: str):
    """``register_task`` / ``register_rule`` without importing Brian2 at package import."""
    if name == "register_task":
        from bioperturb.tasks import register_task

        return register_task
    if name == "register_rule":
        from bioperturb.rules import register_rule

        return register_rule
    raise AttributeError(f"module 'bioperturb' has no attribute {name!r}")
