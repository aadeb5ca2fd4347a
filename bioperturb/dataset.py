"""The xarray data model of a run and atomic netCDF input/output (see docs/data-model.md)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import xarray as xr

__all__ = ["write_dataset", "read_dataset", "versions_toml", "STATUSES"]

STATUSES = ("completed", "diverged", "interrupted")


def write_dataset(ds: xr.Dataset, path: str | Path) -> Path:
    """Write ``ds`` to ``path`` atomically: a temp file in the same folder, then rename.

    A reader never sees a half-written file, and an existing file is replaced only once
    the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine="netcdf4")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


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
