"""Shared helpers of the metrics: result attributes, the samples × units layout, Pearson r."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

#: Dimensions of ``activity`` (see docs/data-model.md) that index samples of the population.
SAMPLE_DIMS: tuple[str, ...] = ("condition", "time")
#: Dimension of ``activity`` that indexes units (features).
UNIT_DIM = "unit"


def result_attrs(units: str, long_name: str, description: str) -> dict[str, str]:
    """CF-style attributes every metric result carries."""
    return {"units": units, "long_name": long_name, "description": description}


def select_eval(activity: xr.DataArray, eval_trial: int | None) -> xr.DataArray:
    """Pick one evaluation by position (``-1``: the last); ``None`` keeps them all.

    An array without an ``eval_trial`` dimension (already selected, e.g. with
    ``ds.sel(eval_trial=500)``) is returned unchanged.
    """
    if eval_trial is None or "eval_trial" not in activity.dims:
        return activity
    return activity.isel(eval_trial=eval_trial)


def activity_of(data: xr.Dataset | xr.DataArray) -> xr.DataArray:
    """The ``activity`` variable of a run, or the DataArray itself."""
    if isinstance(data, xr.Dataset):
        if "activity" not in data:
            raise ValueError(
                f"the Dataset has no 'activity' variable (variables: {', '.join(map(str, data))})"
            )
        return data["activity"]
    return data


@dataclass(frozen=True)
class Layout:
    """How an input was arranged as ``(..., samples, units)`` and how to wrap results back.

    ``batch`` is ``None`` for a plain array input (results stay plain arrays); for a
    DataArray it is a DataArray holding only the batch dimensions and their coordinates.
    """

    batch: xr.DataArray | None
    sample_dims: tuple[str, ...] = ()
    sample_shape: tuple[int, ...] = ()
    sample_coords: dict[Hashable, np.ndarray] | None = None
    unit_dim: str = UNIT_DIM
    unit_coord: np.ndarray | None = None

    def wrap(
        self,
        values: np.ndarray,
        attrs: dict[str, str],
        name: str,
        core_dims: Sequence[str] = (),
        core_coords: dict[Hashable, np.ndarray] | None = None,
    ) -> np.ndarray | float | xr.DataArray:
        """Wrap ``values`` of shape ``(*batch, *core)`` like the input was given."""
        if self.batch is None:
            return float(values) if np.ndim(values) == 0 else values
        return xr.DataArray(
            values,
            dims=(*self.batch.dims, *core_dims),
            coords={**self.batch.coords, **(core_coords or {})},
            attrs=attrs,
            name=name,
        )

    def wrap_samples(
        self, values: np.ndarray, attrs: dict[str, str], name: str
    ) -> np.ndarray | xr.DataArray:
        """Wrap values of shape ``(*batch, samples)``, unstacking the sample dimensions."""
        if self.batch is None:
            return values
        shaped = values.reshape(*values.shape[:-1], *self.sample_shape)
        return self.wrap(shaped, attrs, name, self.sample_dims, self.sample_coords)


def samples_by_units(
    X: xr.DataArray | np.ndarray,
    sample_dims: Sequence[str] = SAMPLE_DIMS,
    unit_dim: str = UNIT_DIM,
) -> tuple[np.ndarray, Layout]:
    """Arrange ``X`` as a float array ``(..., samples, units)``.

    A DataArray has its ``sample_dims`` stacked into one samples axis and ``unit_dim`` last;
    its other dimensions (``eval_trial``, ``method``, ``seed``, ...) are batch dimensions,
    kept in the results.  A plain array must already be ``(..., samples, units)``.
    """
    if isinstance(X, xr.DataArray):
        sample_dims = tuple(sample_dims)
        missing = [d for d in (*sample_dims, unit_dim) if d not in X.dims]
        if missing:
            raise ValueError(
                f"{X.name or 'the DataArray'} has dims {X.dims}, missing {missing}; "
                "pass sample_dims= and unit_dim= naming its samples and units"
            )
        batch_dims = [d for d in X.dims if d not in (*sample_dims, unit_dim)]
        ordered = X.transpose(*batch_dims, *sample_dims, unit_dim)
        values = np.asarray(ordered.values, dtype=float)
        sample_shape = values.shape[len(batch_dims) : -1]
        values = values.reshape(*values.shape[: len(batch_dims)], -1, values.shape[-1])
        batch = ordered.isel({d: 0 for d in (*sample_dims, unit_dim)}, drop=True)
        layout = Layout(
            batch=batch,
            sample_dims=sample_dims,
            sample_shape=sample_shape,
            sample_coords={d: X[d].values for d in sample_dims if d in X.coords},
            unit_dim=unit_dim,
            unit_coord=X[unit_dim].values if unit_dim in X.coords else None,
        )
        return values, layout
    values = np.asarray(X, dtype=float)
    if values.ndim < 2:
        raise ValueError(f"expected an array (..., samples, units), got shape {values.shape}")
    return values, Layout(batch=None)


def pearson_matrix(X: np.ndarray) -> np.ndarray:
    """Pearson correlations between the columns of ``X`` (..., samples, units).

    Columns with zero variance get NaN rows and columns (no warning).
    """
    centred = X - X.mean(axis=-2, keepdims=True)
    norm = np.sqrt(np.sum(centred**2, axis=-2, keepdims=True))
    z = np.divide(centred, norm, out=np.full_like(centred, np.nan), where=norm > 0)
    corr = np.swapaxes(z, -1, -2) @ z
    return np.clip(corr, -1.0, 1.0)
