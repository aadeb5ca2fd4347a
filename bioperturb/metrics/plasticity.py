r"""Plasticity statistics: how learning changed the weight matrices.

Weights are DataArrays as a run records them (docs/data-model.md): ``W_in`` (eval_trial,
post, input), ``W_rec`` (eval_trial, post, pre) and ``W_out`` (eval_trial, output, pre),
one snapshot per noise-free evaluation.  The postsynaptic dim is ``post`` or ``output``
(rows), the presynaptic dim ``pre`` or ``input`` (columns); other names can be passed.
Every other dim (``eval_trial``, ``method``, ``seed``) is kept in the results.  Changes
are measured from the first evaluation (``eval_trial`` position 0, the initial weights):
:math:`\Delta W_k = W_k - W_0`.

The per-matrix statistics (:func:`dale_compliance`, :func:`spectral_radius`,
:func:`eigenvalues`) also take plain arrays ``(..., post, pre)``.  A matrix with a
non-finite entry (the NaN padding of runs of different length combined into one
Dataset, or a diverged run) gives NaN.

References
----------
Dale, H. (1935). Pharmacology and nerve-endings. *Proceedings of the Royal Society of
Medicine* 28(3), 319–332 (the principle as named by Eccles, 1954).

Rajan, K. & Abbott, L. F. (2006). Eigenvalue spectra of random matrices for neural
networks. *Physical Review Letters* 97(18), 188104.

Sompolinsky, H., Crisanti, A. & Sommers, H. J. (1988). Chaos in random neural networks.
*Physical Review Letters* 61(3), 259–262.

Marschall, O., Cho, K. & Savin, C. (2020). A unified framework of online learning
algorithms for training recurrent neural networks. *JMLR* 21(135), 1–34.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from bioperturb.metrics._util import result_attrs

__all__ = [
    "MATRICES",
    "weight_change",
    "weight_change_norm",
    "weight_change_quantiles",
    "weight_change_histogram",
    "sign_change_fraction",
    "dale_compliance",
    "spectral_radius",
    "eigenvalues",
    "plasticity_statistics",
    "alignment_summary",
]

#: The weight matrices of a run and their (postsynaptic, presynaptic) dims.
MATRICES: dict[str, tuple[str, str]] = {
    "W_in": ("post", "input"),
    "W_rec": ("post", "pre"),
    "W_out": ("output", "pre"),
}
#: Dims along which ``alignment`` may be recorded, in the order they are looked for.
ALIGNMENT_DIMS = ("align_trial", "eval_trial", "trial")
_POST_DIMS = ("post", "output")
_PRE_DIMS = ("pre", "input")

Weights = xr.DataArray | np.ndarray


def _matrix_dims(W: xr.DataArray, post_dim: str | None, pre_dim: str | None) -> tuple[str, str]:
    """(post, pre) dims of a weight DataArray: given, from its name, or by the usual names."""
    known = MATRICES.get(str(W.name), (None, None))
    post_dim = post_dim or (known[0] if known[0] in W.dims else None)
    pre_dim = pre_dim or (known[1] if known[1] in W.dims else None)
    post_dim = post_dim or next((d for d in _POST_DIMS if d in W.dims), None)
    pre_dim = pre_dim or next((d for d in _PRE_DIMS if d in W.dims), None)
    if post_dim is None or pre_dim is None or post_dim == pre_dim:
        raise ValueError(
            f"{W.name or 'the weights'} has dims {W.dims}: cannot tell its postsynaptic "
            "(post/output) and presynaptic (pre/input) dims; pass post_dim= and pre_dim="
        )
    for dim in (post_dim, pre_dim):
        if dim not in W.dims:
            raise ValueError(f"{W.name or 'the weights'} has no dim {dim!r} (dims: {W.dims})")
    return post_dim, pre_dim


def _as_matrices(
    W: Weights, post_dim: str | None, pre_dim: str | None
) -> tuple[np.ndarray, xr.DataArray | None]:
    """Values ``(..., post, pre)`` and a template of the batch dims (None for arrays)."""
    if isinstance(W, xr.DataArray):
        post_dim, pre_dim = _matrix_dims(W, post_dim, pre_dim)
        moved = W.transpose(..., post_dim, pre_dim)
        return np.asarray(moved.values, dtype=float), moved.isel(
            {post_dim: 0, pre_dim: 0}, drop=True
        )
    values = np.asarray(W, dtype=float)
    if values.ndim < 2:
        raise ValueError(f"expected weights (..., post, pre), got shape {values.shape}")
    return values, None


def _wrap(
    values: np.ndarray,
    template: xr.DataArray | None,
    name: str,
    attrs: dict[str, str],
    core: dict[str, np.ndarray] | None = None,
):
    """Wrap ``(*batch, *core)`` values like the input (a plain array stays plain)."""
    if template is None:
        return float(values) if np.ndim(values) == 0 else values
    core = core or {}
    return xr.DataArray(
        values,
        dims=(*template.dims, *core),
        coords={**template.coords, **core},
        name=name,
        attrs=attrs,
    )


def _units(W: Weights) -> str:
    return W.attrs.get("units", "1") if isinstance(W, xr.DataArray) else "1"


def _learning_dim(W: xr.DataArray, dim: str) -> None:
    if not isinstance(W, xr.DataArray):
        raise TypeError("weight-change statistics need a DataArray with a learning dim")
    if dim not in W.dims:
        raise ValueError(f"{W.name or 'the weights'} has no dim {dim!r} (dims: {W.dims})")
    if W.sizes[dim] == 0:
        raise ValueError(f"{W.name or 'the weights'} is empty along {dim!r}")


def weight_change(W: xr.DataArray, dim: str = "eval_trial") -> xr.DataArray:
    r"""The change of each weight since the first snapshot, :math:`\Delta W_k = W_k - W_0`.

    Parameters
    ----------
    W : DataArray
        Weight snapshots along ``dim`` (e.g. ``ds.W_rec``).
    dim : str
        Learning dim; position 0 is the reference :math:`W_0`.

    Returns
    -------
    DataArray
        Same dims as ``W``, in its units; zero at the first snapshot.
    """
    _learning_dim(W, dim)
    change = W - W.isel({dim: 0}, drop=True)
    name = W.name or "W"
    change.attrs = result_attrs(
        _units(W),
        f"change of {name}",
        f"{name} minus its value at the first {dim}",
    )
    return change.rename(f"delta_{name}")


def weight_change_norm(
    W: xr.DataArray,
    dim: str = "eval_trial",
    *,
    relative: bool = False,
    post_dim: str | None = None,
    pre_dim: str | None = None,
) -> xr.DataArray:
    r"""Frobenius norm of the weight change, :math:`\lVert W_k - W_0\rVert_F`.

    .. math:: \lVert \Delta W_k\rVert_F = \Big(\sum_{ij} (W_{k,ij} - W_{0,ij})^2\Big)^{1/2},
              \qquad \text{relative: } \lVert \Delta W_k\rVert_F / \lVert W_0\rVert_F

    Parameters
    ----------
    W : DataArray
        Weight snapshots along ``dim``.
    dim : str
        Learning dim (position 0: the initial weights).
    relative : bool
        Divide by :math:`\lVert W_0\rVert_F` (dimensionless; NaN if :math:`W_0 = 0`).
    post_dim, pre_dim : str, optional
        Row and column dims (default: inferred, see the module docstring).

    Returns
    -------
    DataArray
        (..., ``dim``), in the units of ``W`` (``"1"`` if ``relative``); NaN where a
        snapshot has non-finite entries.
    """
    _learning_dim(W, dim)
    values, template = _as_matrices(W, post_dim, pre_dim)
    axis = template.dims.index(dim)
    initial = np.take(values, [0], axis=axis)
    norm = np.sqrt(np.sum((values - initial) ** 2, axis=(-2, -1)))
    name = W.name or "W"
    if relative:
        base = np.sqrt(np.sum(initial**2, axis=(-2, -1)))
        norm = np.divide(norm, base, out=np.full(norm.shape, np.nan), where=base > 0)
        attrs = result_attrs(
            "1",
            f"relative change of {name}",
            f"||{name} - {name}_0||_F / ||{name}_0||_F, {name}_0 at the first {dim}",
        )
    else:
        attrs = result_attrs(
            _units(W),
            f"norm of the change of {name}",
            f"Frobenius norm ||{name} - {name}_0||_F, {name}_0 at the first {dim}",
        )
    return _wrap(norm, template, f"{name}_change_norm", attrs)


def weight_change_quantiles(
    W: xr.DataArray,
    q: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
    dim: str = "eval_trial",
    *,
    post_dim: str | None = None,
    pre_dim: str | None = None,
) -> xr.DataArray:
    r"""Quantiles of the magnitudes :math:`|W_{k,ij} - W_{0,ij}|` over all weights.

    As :func:`numpy.quantile` (linear interpolation) over the entries of one matrix.

    Parameters
    ----------
    W : DataArray
        Weight snapshots along ``dim``.
    q : sequence of float
        Quantiles in [0, 1].
    dim : str
        Learning dim (position 0: the initial weights).
    post_dim, pre_dim : str, optional
        Row and column dims (default: inferred).

    Returns
    -------
    DataArray
        (..., ``dim``, quantile), in the units of ``W``; NaN for non-finite snapshots.
    """
    _learning_dim(W, dim)
    q = np.asarray(q, dtype=float)
    if q.ndim != 1 or q.size == 0 or np.any((q < 0) | (q > 1)):
        raise ValueError(f"q must be a non-empty 1-D sequence of values in [0, 1], got {q}")
    values, template = _as_matrices(W, post_dim, pre_dim)
    axis = template.dims.index(dim)
    magnitude = np.abs(values - np.take(values, [0], axis=axis))
    flat = magnitude.reshape(*magnitude.shape[:-2], -1)
    result = np.moveaxis(np.quantile(flat, q, axis=-1), 0, -1)
    name = W.name or "W"
    attrs = result_attrs(
        _units(W),
        f"quantiles of |change of {name}|",
        f"numpy.quantile (linear) of |{name} - {name}_0| over all weights, {name}_0 at the "
        f"first {dim}",
    )
    return _wrap(result, template, f"{name}_change_quantile", attrs, {"quantile": q})


def weight_change_histogram(
    W: xr.DataArray,
    bins: int | Sequence[float] = 50,
    dim: str = "eval_trial",
    *,
    absolute: bool = True,
    post_dim: str | None = None,
    pre_dim: str | None = None,
) -> xr.DataArray:
    r"""Density of the weight changes :math:`|W_{k,ij} - W_{0,ij}|` (or signed) per snapshot.

    .. math:: p_b = \frac{\#\{\Delta w \in [e_b, e_{b+1})\}}{M\,(e_{b+1} - e_b)}

    over the :math:`M` entries of one matrix, as ``numpy.histogram(density=True)``
    (the last bin includes its right edge).  Integer ``bins`` span the finite range of all
    snapshots together (from 0 for magnitudes), so every snapshot shares the edges.

    Parameters
    ----------
    W : DataArray
        Weight snapshots along ``dim``.
    bins : int or sequence of float
        Number of bins, or increasing bin edges.
    dim : str
        Learning dim (position 0: the initial weights, whose histogram is a spike at 0).
    absolute : bool
        Histogram of the magnitudes (default) or of the signed changes.
    post_dim, pre_dim : str, optional
        Row and column dims (default: inferred).

    Returns
    -------
    DataArray
        (..., ``dim``, bin) in 1/(units of ``W``), with coordinates ``bin_lower`` and
        ``bin_upper``; NaN for non-finite snapshots.
    """
    _learning_dim(W, dim)
    values, template = _as_matrices(W, post_dim, pre_dim)
    axis = template.dims.index(dim)
    change = values - np.take(values, [0], axis=axis)
    if absolute:
        change = np.abs(change)
    flat = change.reshape(-1, change.shape[-2] * change.shape[-1])
    finite = flat[np.isfinite(flat)]
    if np.ndim(bins) == 0:
        low = 0.0 if absolute else (float(finite.min()) if finite.size else 0.0)
        high = float(finite.max()) if finite.size else 1.0
        if high <= low:
            high = low + 1.0
        edges = np.linspace(low, high, int(bins) + 1)
    else:
        edges = np.asarray(bins, dtype=float)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError("bin edges must be a 1-D increasing sequence of at least 2 values")
    density = np.full((flat.shape[0], edges.size - 1), np.nan)
    for k, row in enumerate(flat):
        if np.all(np.isfinite(row)):
            density[k] = np.histogram(row, bins=edges, density=True)[0]
    density = density.reshape(*change.shape[:-2], edges.size - 1)
    name = W.name or "W"
    what = f"|{name} - {name}_0|" if absolute else f"{name} - {name}_0"
    units = _units(W)
    attrs = result_attrs(
        "1" if units == "1" else f"1/({units})",
        f"density of {what}",
        f"numpy.histogram(density=True) of {what} over all weights per {dim}",
    )
    out = _wrap(
        density, template, f"{name}_change_density", attrs, {"bin": np.arange(edges.size - 1)}
    )
    return out.assign_coords(bin_lower=("bin", edges[:-1]), bin_upper=("bin", edges[1:]))


def sign_change_fraction(
    W: xr.DataArray,
    dim: str = "eval_trial",
    *,
    post_dim: str | None = None,
    pre_dim: str | None = None,
) -> xr.DataArray:
    r"""Fraction of weights whose sign is opposite to their initial sign.

    .. math:: s_k = \frac{\#\{ij : W_{k,ij}\, W_{0,ij} < 0\}}{\#\{ij : W_{0,ij} \ne 0\}}

    A weight that becomes exactly zero has not changed sign; initially zero weights
    (absent synapses) are left out.

    Parameters
    ----------
    W : DataArray
        Weight snapshots along ``dim``.
    dim : str
        Learning dim (position 0: the initial weights).
    post_dim, pre_dim : str, optional
        Row and column dims (default: inferred).

    Returns
    -------
    DataArray
        (..., ``dim``), dimensionless in [0, 1]; NaN for non-finite snapshots or if all
        initial weights are zero.
    """
    _learning_dim(W, dim)
    values, template = _as_matrices(W, post_dim, pre_dim)
    axis = template.dims.index(dim)
    initial = np.take(values, [0], axis=axis)
    flipped = np.sum(values * initial < 0, axis=(-2, -1))
    present = np.broadcast_to(np.sum(initial != 0, axis=(-2, -1)), flipped.shape)
    finite = np.all(np.isfinite(values), axis=(-2, -1)) & np.all(
        np.isfinite(initial), axis=(-2, -1)
    )
    fraction = np.divide(
        flipped, present, out=np.full(flipped.shape, np.nan), where=finite & (present > 0)
    )
    name = W.name or "W"
    attrs = result_attrs(
        "1",
        f"fraction of {name} that changed sign",
        f"#(w * w_0 < 0) / #(w_0 != 0) over the weights of {name}, w_0 at the first {dim}",
    )
    return _wrap(fraction, template, f"{name}_sign_change_fraction", attrs)


def dale_compliance(
    W: Weights,
    tol: float = 0.0,
    *,
    post_dim: str | None = None,
    pre_dim: str | None = None,
) -> float | np.ndarray | xr.DataArray:
    r"""Fraction of presynaptic units whose outgoing weights all have one sign (Dale's law).

    Presynaptic unit :math:`j` (a column of :math:`W`) complies if its outgoing weights,
    ignoring those with :math:`|W_{ij}| \le` ``tol``, are all positive or all negative:

    .. math:: D = \frac{1}{N_\text{pre}} \sum_j \Big[\neg\big(\exists i: W_{ij} > \epsilon
              \ \wedge\ \exists i: W_{ij} < -\epsilon\big)\Big]

    with :math:`\epsilon` = ``tol``.

    A unit without any weight above ``tol`` complies.  :math:`D = 1` for an E/I network
    with fixed signs per presynaptic unit; for a dense matrix of independent symmetric
    random weights with :math:`N_\text{post}` rows,
    :math:`E[D] = 2^{1 - N_\text{post}}`, essentially 0.

    Parameters
    ----------
    W : DataArray or array (..., post, pre)
        Weights (e.g. ``ds.W_rec``, all evaluations at once).
    tol : float
        Magnitudes up to ``tol`` count as absent synapses.
    post_dim, pre_dim : str, optional
        Row and column dims of a DataArray (default: inferred).

    Returns
    -------
    float, array or DataArray
        Dimensionless in [0, 1], over the batch dims; NaN for non-finite matrices.
    """
    if not tol >= 0:
        raise ValueError(f"tol must be non-negative, got {tol!r}")
    values, template = _as_matrices(W, post_dim, pre_dim)
    mixed = np.any(values > tol, axis=-2) & np.any(values < -tol, axis=-2)
    fraction = 1.0 - np.mean(mixed, axis=-1)
    fraction = np.where(np.all(np.isfinite(values), axis=(-2, -1)), fraction, np.nan)
    name = W.name if isinstance(W, xr.DataArray) and W.name else "W"
    attrs = result_attrs(
        "1",
        f"Dale compliance of {name}",
        f"fraction of presynaptic units whose outgoing weights in {name} (|w| > {tol:g}) "
        "all share one sign",
    )
    return _wrap(fraction, template, f"{name}_dale_compliance", attrs)


def _square(values: np.ndarray, name: str) -> None:
    if values.shape[-1] != values.shape[-2]:
        raise ValueError(f"{name} is not square (shape {values.shape[-2:]}): no eigenvalues")


def _eigenvalues(values: np.ndarray) -> np.ndarray:
    """Eigenvalues ``(..., n)`` by descending modulus (then angle); NaN for non-finite."""
    flat = values.reshape(-1, *values.shape[-2:])
    out = np.full(flat.shape[:-1], np.nan + 0j)
    for k, matrix in enumerate(flat):
        if np.all(np.isfinite(matrix)):
            lam = np.linalg.eigvals(matrix)
            out[k] = lam[np.lexsort((np.angle(lam), -np.abs(lam)))]
    return out.reshape(values.shape[:-1])


def spectral_radius(
    W: Weights, *, post_dim: str | None = None, pre_dim: str | None = None
) -> float | np.ndarray | xr.DataArray:
    r"""Spectral radius :math:`\rho(W) = \max_i |\lambda_i(W)|` of a square matrix.

    For the recurrent weights of a rate network with :math:`\phi'(0) = 1`,
    :math:`\tau\dot h = -h + W\phi(h)` linearised at :math:`h = 0` is unstable when
    :math:`\max_i \operatorname{Re}\lambda_i > 1`; i.i.d. weights of variance
    :math:`g^2/N` have their eigenvalues spread uniformly on a disc of radius
    :math:`g` for large :math:`N` (circular law; Sompolinsky et al. 1988, Rajan &
    Abbott 2006), so :math:`\rho \approx g` at initialisation.

    Parameters
    ----------
    W : DataArray or array (..., n, n)
        Square weights, e.g. ``ds.W_rec`` (all evaluations at once).
    post_dim, pre_dim : str, optional
        Row and column dims of a DataArray (default: inferred).

    Returns
    -------
    float, array or DataArray
        Over the batch dims, in the units of ``W``; NaN for non-finite matrices.
    """
    values, template = _as_matrices(W, post_dim, pre_dim)
    name = W.name if isinstance(W, xr.DataArray) and W.name else "W"
    _square(values, name)
    radius = np.abs(_eigenvalues(values)[..., 0])
    attrs = result_attrs(
        _units(W),
        f"spectral radius of {name}",
        f"largest eigenvalue modulus of {name} (numpy.linalg.eigvals)",
    )
    return _wrap(radius, template, f"{name}_spectral_radius", attrs)


def eigenvalues(
    W: Weights, *, post_dim: str | None = None, pre_dim: str | None = None
) -> np.ndarray | xr.DataArray:
    r"""Eigenvalues :math:`\lambda_i(W)` of a square matrix, by descending modulus.

    Ties in modulus (complex-conjugate pairs) are ordered by angle.  The result is complex
    (to write it to netCDF, store ``.real`` and ``.imag``).

    Parameters
    ----------
    W : DataArray or array (..., n, n)
        Square weights, e.g. ``ds.W_rec``.
    post_dim, pre_dim : str, optional
        Row and column dims of a DataArray (default: inferred).

    Returns
    -------
    array or DataArray
        (..., eigenvalue), complex, in the units of ``W``; NaN for non-finite matrices.
    """
    values, template = _as_matrices(W, post_dim, pre_dim)
    name = W.name if isinstance(W, xr.DataArray) and W.name else "W"
    _square(values, name)
    lam = _eigenvalues(values)
    attrs = result_attrs(
        _units(W),
        f"eigenvalues of {name}",
        f"eigenvalues of {name} (numpy.linalg.eigvals) by descending modulus, then angle",
    )
    return _wrap(
        lam, template, f"{name}_eigenvalues", attrs, {"eigenvalue": np.arange(lam.shape[-1])}
    )


def plasticity_statistics(
    ds: xr.Dataset,
    matrices: Sequence[str] | None = None,
    dim: str = "eval_trial",
    q: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
    dale_tol: float = 0.0,
) -> xr.Dataset:
    r"""All weight-change statistics of a run, per matrix, at each evaluation.

    Parameters
    ----------
    ds : Dataset
        A run with weight snapshots ``W_in``, ``W_rec``, ``W_out`` (``dim``, ...), or
        several runs along ``method``/``seed``.
    matrices : sequence of str, optional
        Variables to use (default: those of :data:`MATRICES` that are present).
    dim : str
        Learning dim; position 0 is the reference (initial weights).
    q : sequence of float
        Quantiles of :math:`|\Delta W|`.
    dale_tol : float
        ``tol`` of :func:`dale_compliance`.

    Returns
    -------
    Dataset
        ``change_norm`` and ``relative_change_norm``
        (:func:`weight_change_norm`), ``change_quantile`` (..., quantile)
        (:func:`weight_change_quantiles`), ``sign_change_fraction``, ``dale_compliance``,
        all (..., ``dim``, matrix); ``spectral_radius`` (..., ``dim``) of ``W_rec`` if
        present.  Units: those of the weights, or ``"1"``.
    """
    names = [m for m in MATRICES if m in ds] if matrices is None else list(matrices)
    missing = [m for m in names if m not in ds]
    if missing or not names:
        raise ValueError(
            f"plasticity_statistics: no weight matrices {missing or list(MATRICES)} in the "
            f"Dataset (variables: {', '.join(map(str, ds.data_vars))})"
        )
    per_matrix: dict[str, list[xr.DataArray]] = {
        "change_norm": [],
        "relative_change_norm": [],
        "change_quantile": [],
        "sign_change_fraction": [],
        "dale_compliance": [],
    }
    for name in names:
        W = ds[name].rename(name)
        per_matrix["change_norm"].append(weight_change_norm(W, dim))
        per_matrix["relative_change_norm"].append(weight_change_norm(W, dim, relative=True))
        per_matrix["change_quantile"].append(weight_change_quantiles(W, q, dim))
        per_matrix["sign_change_fraction"].append(sign_change_fraction(W, dim))
        per_matrix["dale_compliance"].append(dale_compliance(W, dale_tol))
    units = _units(ds[names[0]])
    descriptions = {
        "change_norm": (units, "norm of the weight change", "||W - W_0||_F"),
        "relative_change_norm": (
            "1",
            "relative weight change",
            "||W - W_0||_F / ||W_0||_F",
        ),
        "change_quantile": (units, "quantiles of |weight change|", "quantiles of |W - W_0|"),
        "sign_change_fraction": (
            "1",
            "fraction of weights that changed sign",
            "#(w * w_0 < 0) / #(w_0 != 0)",
        ),
        "dale_compliance": (
            "1",
            "Dale compliance",
            f"fraction of presynaptic units whose outgoing weights (|w| > {dale_tol:g}) "
            "share one sign",
        ),
    }
    data_vars = {}
    for key, parts in per_matrix.items():
        stacked = xr.concat(
            parts, dim=xr.Variable("matrix", names), join="exact", combine_attrs="drop"
        )
        u, long_name, how = descriptions[key]
        order = [d for d in stacked.dims if d not in ("matrix", "quantile")]
        data_vars[key] = (
            stacked.transpose(*order, "matrix", ...)
            .rename(key)
            .assign_attrs(result_attrs(u, long_name, f"{how}, W_0 at the first {dim}, per matrix"))
        )
    if "W_rec" in ds:
        data_vars["spectral_radius"] = spectral_radius(ds["W_rec"].rename("W_rec")).rename(
            "spectral_radius"
        )
    return xr.Dataset(
        data_vars, attrs={"description": f"weight-change statistics over {dim}, per matrix"}
    )


def alignment_summary(data: xr.Dataset | xr.DataArray, dim: str | None = None) -> xr.Dataset:
    r"""Summary of the update–gradient alignment over training.

    For the cosines :math:`\alpha_k` (:func:`bioperturb.metrics.alignment`) along
    ``dim``, ignoring NaN: the mean :math:`\bar\alpha`, standard deviation (1/(n−1)),
    standard error :math:`s/\sqrt n`, median, fraction :math:`\#(\alpha_k > 0)/n`, the
    first and last values and the count :math:`n`.

    Parameters
    ----------
    data : Dataset or DataArray
        A run with an ``alignment`` variable (align_trial, matrix) as training records
        it (or along ``eval_trial`` or ``trial``), or that variable.
    dim : str, optional
        Dim to summarise over (default: the first of ``align_trial``, ``eval_trial``,
        ``trial`` present).

    Returns
    -------
    Dataset
        ``mean``, ``std``, ``sem``, ``median``, ``fraction_positive``, ``first``,
        ``last`` (units ``"1"``) and ``count``, with the remaining dims (``matrix``,
        ``method``, ...).
    """
    if isinstance(data, xr.Dataset):
        if "alignment" not in data:
            raise ValueError("the Dataset has no 'alignment' variable")
        data = data["alignment"]
    if dim is None:
        dim = next((d for d in ALIGNMENT_DIMS if d in data.dims), None)
        if dim is None:
            raise ValueError(f"alignment has dims {data.dims}: none of {ALIGNMENT_DIMS}; pass dim=")
    if dim not in data.dims:
        raise ValueError(f"alignment has no dim {dim!r} (dims: {data.dims})")
    moved = data.transpose(..., dim)
    values = np.asarray(moved.values, dtype=float)
    template = moved.isel({dim: 0}, drop=True)
    valid = ~np.isnan(values)
    count = valid.sum(axis=-1)
    has = count > 0
    safe = np.where(valid, values, 0.0)
    mean = np.divide(safe.sum(axis=-1), count, out=np.full(count.shape, np.nan), where=has)
    squares = np.where(valid, (values - mean[..., None]) ** 2, 0.0).sum(axis=-1)
    std = np.sqrt(np.divide(squares, count - 1, out=np.full(count.shape, np.nan), where=count > 1))
    sem = np.divide(std, np.sqrt(count), out=np.full(count.shape, np.nan), where=count > 1)
    median = np.full(count.shape, np.nan)
    first = np.full(count.shape, np.nan)
    last = np.full(count.shape, np.nan)
    for index in zip(*np.nonzero(has), strict=True):
        row = values[index][valid[index]]
        median[index], first[index], last[index] = np.median(row), row[0], row[-1]
    positive = np.divide(
        np.sum(values > 0, axis=-1), count, out=np.full(count.shape, np.nan), where=has
    )

    def wrap(values, long_name, how, units="1"):
        return _wrap(values, template, long_name, result_attrs(units, long_name, how))

    over = f"over {dim}, NaN skipped"
    return xr.Dataset(
        {
            "mean": wrap(mean, "mean alignment", f"mean cosine {over}"),
            "std": wrap(std, "sd of alignment", f"standard deviation (1/(n-1)) {over}"),
            "sem": wrap(sem, "standard error of mean alignment", f"sd / sqrt(n) {over}"),
            "median": wrap(median, "median alignment", f"median {over}"),
            "fraction_positive": wrap(
                positive, "fraction of positive alignment", f"#(cosine > 0) / n {over}"
            ),
            "first": wrap(first, "first alignment", f"first non-NaN value along {dim}"),
            "last": wrap(last, "last alignment", f"last non-NaN value along {dim}"),
            "count": wrap(count, "number of alignment values", f"non-NaN values {over}"),
        },
        attrs={"description": "update-gradient alignment (cosine with -grad L) summarised"},
    )
