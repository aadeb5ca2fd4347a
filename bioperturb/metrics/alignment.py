r"""Alignment of a learning rule's weight update with the true gradient.

A perturbation rule's update :math:`\Delta W` estimates a descent direction; its quality
is the cosine with the negative gradient :math:`-\nabla_W L` given by the BPTT
reference at the same weights (1: gradient descent, 0: no better than a random
direction in high dimension, < 0: ascent).  Cosines are reported per weight matrix and
for all parameters together (the matrices flattened and concatenated: meaningful as the
update's direction only when each matrix's estimate has the gradient's scale, as NP's and
BPTT's do; TD-ANP's per-layer normalisation gives its matrices unrelated scales), the measure used
to compare online learning rules for RNNs with BPTT by Marschall, Cho & Savin (2020).

References
----------
Marschall, O., Cho, K. & Savin, C. (2020). A unified framework of online learning
algorithms for training recurrent neural networks. *Journal of Machine Learning
Research* 21(135), 1–34.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from bioperturb.metrics._util import result_attrs

__all__ = ["cosine", "alignment"]

ArrayLike = np.ndarray | xr.DataArray
Cosine = float | xr.DataArray


def _dot_and_norms(
    a: ArrayLike, b: ArrayLike, keep: Sequence[str], name: str | None
) -> tuple[object, object, object]:
    where = f" of {name!r}" if name is not None else ""
    if isinstance(a, xr.DataArray) or isinstance(b, xr.DataArray):
        if not isinstance(a, xr.DataArray):
            a = b.copy(data=np.asarray(a))
        if not isinstance(b, xr.DataArray):
            b = a.copy(data=np.asarray(b))
        if set(a.dims) != set(b.dims):
            raise ValueError(f"dims{where} differ: {a.dims} vs {b.dims}")
        missing = [d for d in keep if d not in a.dims]
        if missing:
            raise ValueError(f"keep dims {missing} are not dims{where} {a.dims}")
        a, b = xr.align(a, b, join="exact")
        reduce = [d for d in a.dims if d not in keep]
        return (a * b).sum(reduce), (a * a).sum(reduce), (b * b).sum(reduce)
    if keep:
        raise TypeError("keep= needs DataArrays (plain arrays are flattened entirely)")
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"shapes{where} differ: {a.shape} vs {b.shape}")
    return np.vdot(a, b), np.vdot(a, a), np.vdot(b, b)


def _ratio(dot, aa, bb) -> Cosine:
    norm = np.sqrt(aa) * np.sqrt(bb)
    if isinstance(norm, xr.DataArray):
        return (dot / norm.where(norm > 0)).clip(-1.0, 1.0)
    return float(np.clip(dot / norm, -1.0, 1.0)) if norm > 0 else float("nan")


def cosine(
    a: ArrayLike | Mapping[str, ArrayLike],
    b: ArrayLike | Mapping[str, ArrayLike],
    *,
    keep: Sequence[str] = (),
) -> Cosine | dict[str, Cosine]:
    r"""Cosine similarity of two arrays, or of two dicts of arrays per weight matrix.

    .. math:: \cos(a, b) = \frac{\langle a, b\rangle}{\lVert a\rVert\,\lVert b\rVert}
              = \frac{\sum_k a_k b_k}{\sqrt{\sum_k a_k^2}\sqrt{\sum_k b_k^2}}

    For dicts ``{"W_in": ..., "W_rec": ..., ...}`` the result has one cosine per key and
    ``"all"``: the cosine of the flattened concatenation of all matrices,

    .. math:: \cos_\text{all} = \frac{\sum_m \langle a_m, b_m\rangle}
              {\sqrt{\sum_m \lVert a_m\rVert^2}\sqrt{\sum_m \lVert b_m\rVert^2}}.

    A zero vector has no direction: its cosine is NaN.

    Parameters
    ----------
    a, b : array, DataArray, or dict of them
        Same shapes (per key).  DataArrays must have the same dims and coordinates.  A
        plain array paired with a DataArray takes the DataArray's dims.
    keep : sequence of str
        DataArray dims *not* summed over (e.g. ``("eval_trial",)`` or ``("sample",)``):
        one cosine per index.  All other dims are flattened into the vectors.

    Returns
    -------
    float, DataArray, or dict of them
        Dimensionless cosines in [−1, 1].
    """
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)):
            raise TypeError("cosine: pass two dicts of arrays, or two arrays")
        if set(a) != set(b):
            raise ValueError(
                f"cosine: matrices differ: only in a: {sorted(set(a) - set(b))}, "
                f"only in b: {sorted(set(b) - set(a))}"
            )
        if "all" in a:
            raise ValueError("cosine: 'all' is reserved for the combined cosine")
        parts = {name: _dot_and_norms(a[name], b[name], keep, name) for name in a}
        out = {name: _ratio(*terms) for name, terms in parts.items()}
        out["all"] = _ratio(*(sum(terms[i] for terms in parts.values()) for i in range(3)))
        return out
    return _ratio(*_dot_and_norms(a, b, keep, None))


def alignment(
    update: Mapping[str, ArrayLike],
    gradient: Mapping[str, ArrayLike],
    *,
    keep: Sequence[str] = (),
) -> xr.Dataset:
    r"""Cosine between a rule's update and the negative loss gradient, per weight matrix.

    .. math:: \alpha_m = \cos(\Delta W_m, -\nabla_{W_m} L), \qquad
              \alpha_\text{all} = \cos(\Delta W, -\nabla_W L)

    with :math:`\Delta W` all matrices flattened and concatenated (see :func:`cosine`).
    :math:`\alpha = 1` for gradient descent; a node-perturbation update averaged over
    enough noise samples approaches 1 for small noise.

    Parameters
    ----------
    update : dict of array or DataArray
        The rule's update per matrix, e.g. ``{"W_in": ..., "W_rec": ..., "W_out": ...}``.
    gradient : dict of array or DataArray
        :math:`\nabla_W L` at the same weights, same keys and shapes.
    keep : sequence of str
        DataArray dims to keep (e.g. ``("eval_trial",)``), see :func:`cosine`.

    Returns
    -------
    Dataset
        One variable per matrix plus ``"all"``, units ``"1"``.  ``.to_dataarray("matrix")``
        gives the ``alignment`` (…, matrix) variable of the data model.
    """
    negative = {
        name: -g if isinstance(g, xr.DataArray) else -np.asarray(g, dtype=float)
        for name, g in gradient.items()
    }
    cosines = cosine(update, negative, keep=keep)
    data_vars = {}
    for name, value in cosines.items():
        what = "all weights, flattened and concatenated" if name == "all" else name
        attrs = result_attrs(
            "1",
            f"update-gradient alignment ({name})",
            f"cosine between the update and -dL/dW over {what}",
        )
        if isinstance(value, xr.DataArray):
            data_vars[name] = value.rename(name).assign_attrs(attrs)
        else:
            data_vars[name] = xr.DataArray(value, name=name, attrs=attrs)
    return xr.Dataset(
        data_vars,
        attrs={"description": "cosine between a learning rule's update and -grad L"},
    )
