"""The xarray data model of a run and atomic netCDF input/output (see docs/data-model.md)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import xarray as xr

__all__ = [
    "atomic_write",
    "write_text",
    "write_dataset",
    "read_dataset",
    "versions_toml",
    "STATUSES",
]

STATUSES = ("completed", "diverged", "interrupted")


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
