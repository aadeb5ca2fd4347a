r"""Statistics of hidden activity, to judge how brain-like a trained rate network is.

All functions take activity as samples × units:

* a DataArray such as ``ds.activity.isel(eval_trial=-1)``: the ``sample_dims`` (default
  ``("condition", "time")``) are stacked into samples, ``unit_dim`` (default ``"unit"``)
  are the units, and every other dim (``eval_trial``, ``method``, ``seed``) is kept in the
  result, which is a DataArray with ``units`` and ``long_name`` attributes;
* a plain array of shape ``(..., samples, units)``: leading axes are kept, the result is
  a plain array (or float).

The spike-train statistics of spiking networks are in :mod:`bioperturb.metrics.spikes`.

References
----------
Gao, P., Trautmann, E., Yu, B., Santhanam, G., Ryu, S., Shenoy, K. & Ganguli, S. (2017).
A theory of multineuronal dimensionality, dynamics and measurement. *bioRxiv* 214262.

Treves, A. & Rolls, E. T. (1991). What determines the capacity of autoassociative
memories in the brain? *Network* 2(4), 371–397.

Vinje, W. E. & Gallant, J. L. (2000). Sparse coding and decorrelation in primary visual
cortex during natural vision. *Science* 287(5456), 1273–1276.

Willmore, B. & Tolhurst, D. J. (2001). Characterizing the sparseness of neural codes.
*Network* 12(3), 255–270.

Cohen, M. R. & Kohn, A. (2011). Measuring and interpreting neuronal correlations.
*Nature Neuroscience* 14(7), 811–819.

Cunningham, J. P. & Yu, B. M. (2014). Dimensionality reduction for large-scale neural
recordings. *Nature Neuroscience* 17(11), 1500–1509.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import xarray as xr

from bioperturb.metrics._util import (
    SAMPLE_DIMS,
    UNIT_DIM,
    activity_of,
    pearson_matrix,
    result_attrs,
    samples_by_units,
    select_eval,
)

__all__ = [
    "participation_ratio",
    "pairwise_correlations",
    "activity_distribution",
    "sparseness",
    "pca_trajectories",
]

Activity = xr.DataArray | np.ndarray


def _units_of(X: Activity) -> str:
    return X.attrs.get("units", "1") if isinstance(X, xr.DataArray) else "1"


def participation_ratio(
    X: Activity,
    sample_dims: Sequence[str] = SAMPLE_DIMS,
    unit_dim: str = UNIT_DIM,
) -> float | np.ndarray | xr.DataArray:
    r"""Participation ratio: the effective number of dimensions of the activity.

    With :math:`\lambda_i` the eigenvalues of the unit × unit covariance :math:`C` of the
    activity over samples (Gao et al. 2017),

    .. math:: \mathrm{PR} = \frac{\left(\sum_i \lambda_i\right)^2}{\sum_i \lambda_i^2}
              = \frac{(\operatorname{tr} C)^2}{\lVert C\rVert_F^2}
              \in [1, N].

    It is 1 if all variance lies along one direction, :math:`k` for variance spread evenly
    over :math:`k` directions.  The sample estimate from :math:`n` samples is biased down:
    for :math:`k` isotropic directions its expectation is about :math:`k/(1 + k/n)`
    (Marchenko–Pastur spread of the sample eigenvalues).  Computed from the trace
    identity, with the smaller of the covariance and the Gram matrix.

    Parameters
    ----------
    X : DataArray or array (..., samples, units)
        Activity (see the module docstring for the layout).
    sample_dims, unit_dim : str
        DataArray dims of samples and units.

    Returns
    -------
    float, array or DataArray
        Dimensionless; NaN if the activity does not vary.
    """
    values, layout = samples_by_units(X, sample_dims, unit_dim)
    centred = values - values.mean(axis=-2, keepdims=True)
    if centred.shape[-2] < centred.shape[-1]:
        second = centred @ np.swapaxes(centred, -1, -2)
    else:
        second = np.swapaxes(centred, -1, -2) @ centred
    trace = np.trace(second, axis1=-2, axis2=-1)
    frobenius = np.sum(second**2, axis=(-2, -1))
    pr = np.divide(trace**2, frobenius, out=np.full(trace.shape, np.nan), where=frobenius > 0)
    attrs = result_attrs(
        "1",
        "participation ratio",
        "(sum of covariance eigenvalues)^2 / sum of squared eigenvalues, covariance of "
        f"units over {' x '.join(layout.sample_dims) or 'samples'} (Gao et al. 2017)",
    )
    return layout.wrap(pr, attrs, "participation_ratio")


def pairwise_correlations(
    X: Activity,
    sample_dims: Sequence[str] = SAMPLE_DIMS,
    unit_dim: str = UNIT_DIM,
) -> np.ndarray | xr.DataArray:
    r"""Pearson correlations of all pairs of units over samples.

    .. math:: r_{ij} = \frac{\sum_s (x_{si} - \bar x_i)(x_{sj} - \bar x_j)}
              {\sqrt{\sum_s (x_{si} - \bar x_i)^2}\sqrt{\sum_s (x_{sj} - \bar x_j)^2}},
              \qquad i < j,

    the upper triangle of the correlation matrix, pairs in the order of
    ``numpy.triu_indices(n_units, 1)``.  Their distribution (mean, spread) is the usual
    summary of population correlations (Cohen & Kohn 2011); for independent units the
    :math:`r_{ij}` scatter around 0 with standard deviation :math:`\approx 1/\sqrt{n}`.

    Parameters
    ----------
    X : DataArray or array (..., samples, units)
        Activity (see the module docstring for the layout).
    sample_dims, unit_dim : str
        DataArray dims of samples and units.

    Returns
    -------
    array (..., pairs) or DataArray (..., pair)
        Dimensionless; a DataArray has coordinates ``unit_i`` and ``unit_j`` on ``pair``.
        NaN for pairs involving a unit with constant activity.
    """
    values, layout = samples_by_units(X, sample_dims, unit_dim)
    n_units = values.shape[-1]
    i, j = np.triu_indices(n_units, 1)
    pairs = pearson_matrix(values)[..., i, j]
    units = layout.unit_coord if layout.unit_coord is not None else np.arange(n_units)
    attrs = result_attrs(
        "1",
        "pairwise correlation",
        "Pearson correlation of each pair of units (upper triangle) over "
        f"{' x '.join(layout.sample_dims) or 'samples'}",
    )
    coords = {"unit_i": ("pair", units[i]), "unit_j": ("pair", units[j])}
    return layout.wrap(pairs, attrs, "pairwise_correlation", ("pair",), coords)


def activity_distribution(
    X: Activity,
    bins: int | Sequence[float] | np.ndarray = 50,
    sample_dims: Sequence[str] = SAMPLE_DIMS,
    unit_dim: str = UNIT_DIM,
) -> np.ndarray | xr.DataArray:
    r"""Histogram (probability density) of activity values pooled over samples and units.

    .. math:: p_b = \frac{\#\{x_{si} \in [e_b, e_{b+1})\}}{N\,(e_{b+1} - e_b)}

    with :math:`N` the number of finite values inside the edges (the last bin includes its
    right edge), as :func:`numpy.histogram` with ``density=True``; it integrates to 1.

    Parameters
    ----------
    X : DataArray or array (..., samples, units)
        Activity (see the module docstring for the layout); leading / batch dims get one
        histogram each, all on the same edges.
    bins : int or sequence of float
        Number of equal bins spanning the finite range of all of ``X``, or the edges.
    sample_dims, unit_dim : str
        DataArray dims of samples and units.

    Returns
    -------
    array (..., bins) or DataArray (..., bin)
        Density in 1 / (units of ``X``); a DataArray has the bin centres as coordinate
        ``bin`` and the edges as ``bin_lower`` and ``bin_upper``.  Plain arrays give the
        densities only; compute edges with :func:`numpy.histogram_bin_edges` if needed.
    """
    values, layout = samples_by_units(X, sample_dims, unit_dim)
    edges = _edges(values, bins)
    n_bins = edges.size - 1
    flat = values.reshape(-1, values.shape[-2] * values.shape[-1])
    index = np.searchsorted(edges, flat, side="right") - 1
    index[flat == edges[-1]] = n_bins - 1
    inside = (index >= 0) & (index < n_bins) & np.isfinite(flat)
    batch = np.broadcast_to(np.arange(flat.shape[0])[:, None], flat.shape)
    counts = np.bincount(
        batch[inside] * n_bins + index[inside], minlength=flat.shape[0] * n_bins
    ).reshape(flat.shape[0], n_bins)
    total = counts.sum(axis=1, keepdims=True)
    density = np.divide(
        counts, total * np.diff(edges), out=np.full(counts.shape, np.nan), where=total > 0
    )
    density = density.reshape(*values.shape[:-2], n_bins)
    units = _units_of(X)
    attrs = result_attrs(
        "1" if units == "1" else f"1/({units})",
        "activity density",
        "histogram of activity values pooled over samples and units, normalised to unit area",
    )
    coords = {
        "bin": 0.5 * (edges[:-1] + edges[1:]),
        "bin_lower": ("bin", edges[:-1]),
        "bin_upper": ("bin", edges[1:]),
    }
    return layout.wrap(density, attrs, "activity_density", ("bin",), coords)


def _edges(values: np.ndarray, bins) -> np.ndarray:
    if np.ndim(bins) == 0:
        if int(bins) < 1:
            raise ValueError(f"bins must be at least 1, got {bins!r}")
        finite = values[np.isfinite(values)]
        low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        if low == high:
            low, high = low - 0.5, high + 0.5
        return np.linspace(low, high, int(bins) + 1)
    edges = np.asarray(bins, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("bin edges must be a 1-D increasing sequence of at least 2 values")
    return edges


def sparseness(
    X: Activity,
    kind: Literal["lifetime", "population"] = "population",
    sample_dims: Sequence[str] = SAMPLE_DIMS,
    unit_dim: str = UNIT_DIM,
) -> float | np.ndarray | xr.DataArray:
    r"""Treves–Rolls sparseness, rescaled to [0, 1] as by Vinje & Gallant (2000).

    For non-negative responses :math:`r_1 \dots r_n`, the Treves–Rolls (1991) activity
    ratio and the Vinje–Gallant (2000) sparseness are

    .. math:: a = \frac{\left(\frac1n\sum_k r_k\right)^2}{\frac1n\sum_k r_k^2}, \qquad
              S = \frac{1 - a}{1 - 1/n},

    :math:`S = 0` for a uniform response, :math:`S = 1` when only one :math:`r_k` is
    non-zero.  Following Willmore & Tolhurst (2001):

    * ``"lifetime"``: per unit, :math:`r_k` over samples (condition × time): how
      selectively a unit responds;
    * ``"population"``: per sample, :math:`r_k` over units: how few units are active at
      once.

    The measure needs firing rates (:math:`r \ge 0`); signed activity such as
    :math:`\tanh(h)` must be mapped to rates first (e.g. a rectified or shifted copy).

    Parameters
    ----------
    X : DataArray or array (..., samples, units)
        Non-negative activity (see the module docstring for the layout).
    kind : {"population", "lifetime"}
        Which sparseness.
    sample_dims, unit_dim : str
        DataArray dims of samples and units.

    Returns
    -------
    array or DataArray
        Dimensionless :math:`S`: lifetime (..., unit), population (..., samples) (for a
        DataArray: the sample dims, e.g. (..., condition, time)).  NaN where all
        responses are 0.

    Raises
    ------
    ValueError
        If ``X`` has negative values.
    """
    if kind not in ("lifetime", "population"):
        raise ValueError(f"kind must be 'lifetime' or 'population', got {kind!r}")
    values, layout = samples_by_units(X, sample_dims, unit_dim)
    if np.any(values < 0):
        raise ValueError(
            f"sparseness needs non-negative responses (rates); min is {np.nanmin(values):g}. "
            "Map signed activity to rates first, e.g. np.maximum(X, 0)"
        )
    axis = -2 if kind == "lifetime" else -1
    n = values.shape[axis]
    if n < 2:
        raise ValueError(f"{kind} sparseness needs at least 2 responses, got {n}")
    mean = values.mean(axis=axis)
    mean_square = np.mean(values**2, axis=axis)
    ratio = np.divide(mean**2, mean_square, out=np.full(mean.shape, np.nan), where=mean_square > 0)
    s = (1.0 - ratio) / (1.0 - 1.0 / n)
    over = "samples" if kind == "lifetime" else "units"
    attrs = result_attrs(
        "1",
        f"{kind} sparseness",
        f"Vinje-Gallant sparseness (1 - a)/(1 - 1/n) of the Treves-Rolls ratio "
        f"a = mean(r)^2/mean(r^2) over {over}",
    )
    if kind == "population":
        return layout.wrap_samples(s, attrs, "population_sparseness")
    coords = {layout.unit_dim: layout.unit_coord} if layout.unit_coord is not None else None
    return layout.wrap(s, attrs, "lifetime_sparseness", (layout.unit_dim,), coords)


def pca_trajectories(
    ds: xr.Dataset | xr.DataArray,
    n_components: int = 3,
    eval_trial: int | None = -1,
) -> xr.Dataset:
    r"""Principal components of hidden activity, and the trajectories projected on them.

    The activity at one evaluation is arranged as :math:`X` (samples = condition × time,
    units), centred over samples, :math:`\tilde X = X - \bar x`, and decomposed,
    :math:`\tilde X = U \Sigma V^\top`.  The trajectories are
    :math:`z_{c,t} = V_{:k}^\top (x_{c,t} - \bar x)` and the explained variance ratios
    :math:`\sigma_i^2 / \sum_j \sigma_j^2` (Cunningham & Yu 2014).  The sign of each
    component is fixed so that its largest-magnitude loading is positive.

    Parameters
    ----------
    ds : Dataset or DataArray
        A run (its ``activity`` (eval_trial, condition, time, unit) is used) or the
        activity itself.  Other dims (``method``, ``seed``) get their own PCA each.
    n_components : int
        Number :math:`k` of components, at most min(samples, units).
    eval_trial : int or None
        Position along ``eval_trial`` (default −1: the last evaluation); ``None`` gives a
        PCA per evaluation.  Ignored without that dim.

    Returns
    -------
    Dataset
        ``trajectory`` (..., condition, time, pc) in the units of the activity,
        ``explained_variance_ratio`` (..., pc) and ``components`` (..., pc, unit);
        ``pc`` = 1 … k.
    """
    activity = activity_of(ds)
    if not isinstance(activity, xr.DataArray):
        raise TypeError("pca_trajectories needs a Dataset or a DataArray of activity")
    activity = select_eval(activity, eval_trial)
    values, layout = samples_by_units(activity, SAMPLE_DIMS, UNIT_DIM)
    if not np.all(np.isfinite(values)):
        raise ValueError("pca_trajectories: the activity has non-finite values (diverged run?)")
    n_samples, n_units = values.shape[-2:]
    if not 1 <= n_components <= min(n_samples, n_units):
        raise ValueError(
            f"n_components must be in 1 … {min(n_samples, n_units)} "
            f"(samples {n_samples}, units {n_units}), got {n_components}"
        )
    centred = values - values.mean(axis=-2, keepdims=True)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[..., :n_components, :]
    largest = np.argmax(np.abs(components), axis=-1)[..., None]
    sign = np.sign(np.take_along_axis(components, largest, axis=-1))
    components = components * np.where(sign == 0, 1.0, sign)
    projected = centred @ np.swapaxes(components, -1, -2)
    variance = singular**2
    total = variance.sum(axis=-1, keepdims=True)
    ratio = np.divide(
        variance[..., :n_components],
        total,
        out=np.full(variance[..., :n_components].shape, np.nan),
        where=total > 0,
    )
    pc = {"pc": np.arange(1, n_components + 1)}
    trajectory = layout.wrap(
        projected.reshape(*projected.shape[:-2], *layout.sample_shape, n_components),
        result_attrs(
            _units_of(activity),
            "activity projected on principal components",
            "centred hidden activity (condition x time samples) projected on the leading "
            "right singular vectors",
        ),
        "trajectory",
        (*layout.sample_dims, "pc"),
        {**layout.sample_coords, **pc},
    )
    explained = layout.wrap(
        ratio,
        result_attrs(
            "1",
            "explained variance ratio",
            "variance along each principal component / total variance",
        ),
        "explained_variance_ratio",
        ("pc",),
        pc,
    )
    unit_coords = {UNIT_DIM: layout.unit_coord} if layout.unit_coord is not None else {}
    loadings = layout.wrap(
        components,
        result_attrs("1", "principal component loadings", "unit-norm principal axes"),
        "components",
        ("pc", UNIT_DIM),
        {**pc, **unit_coords},
    )
    return xr.Dataset(
        {"trajectory": trajectory, "explained_variance_ratio": explained, "components": loadings},
        attrs={"description": "PCA of hidden activity over condition x time samples"},
    )
