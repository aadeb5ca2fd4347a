"""bioperturb: noisy rate RNNs in Brian2 that learn temporal tasks with a global loss signal
and local node-perturbation plasticity, compared against BPTT references in xarray."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bioperturb")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

from bioperturb import accessor  # noqa: E402,F401 - registers the ``ds.bp`` accessor

__all__ = ["__version__"]
