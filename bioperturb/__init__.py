"""bioperturb: noisy rate RNNs in Brian2 that learn temporal tasks with a global loss signal
and local node-perturbation plasticity, compared against BPTT references in xarray."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bioperturb")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

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
