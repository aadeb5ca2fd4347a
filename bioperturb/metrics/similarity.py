r"""Similarity of the hidden representations of two networks.

Two networks solving the same task (e.g. one trained by TD-ANP, one by BPTT) are
compared on the same evaluation inputs: each is a matrix of samples (condition × time)
by features (its hidden units, possibly a different number), and the measures below are
invariant to rotations of the units, so they compare representations, not unit labels.

References
----------
Kornblith, S., Norouzi, M., Lee, H. & Hinton, G. (2019). Similarity of neural network
representations revisited. *Proceedings of the 36th International Conference on Machine
Learning* (PMLR 97), 3519–3529.

Kriegeskorte, N., Mur, M. & Bandettini, P. (2008). Representational similarity analysis
— connecting the branches of systems neuroscience. *Frontiers in Systems Neuroscience*
2, 4.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from bioperturb.metrics._util import SAMPLE_DIMS, UNIT_DIM, activity_of, result_attrs, select_eval

__all__ = ["linear_cka", "rsa", "hidden_similarity"]


def _two_matrices(X, Y) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    if X.ndim != 2 or Y.ndim != 2:
        raise ValueError(f"expected (samples, features) matrices, got {X.shape} and {Y.shape}")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y need the same samples, got {X.shape[0]} and {Y.shape[0]}")
    return X, Y


def linear_cka(X, Y) -> float:
    r"""Linear centred kernel alignment (CKA) of two representations.

    With :math:`\tilde X, \tilde Y` the column-centred matrices (samples × features),

    .. math:: \mathrm{CKA}(X, Y) =
              \frac{\lVert \tilde Y^\top \tilde X\rVert_F^2}
                   {\lVert \tilde X^\top \tilde X\rVert_F\,\lVert \tilde Y^\top \tilde Y\rVert_F}
              = \frac{\mathrm{HSIC}(K, L)}{\sqrt{\mathrm{HSIC}(K, K)\,\mathrm{HSIC}(L, L)}}

    (Kornblith et al. 2019, eq. 5), with linear kernels :math:`K = XX^\top`,
    :math:`L = YY^\top`.  It lies in [0, 1], is 1 for identical representations, and is
    invariant to orthogonal transforms and isotropic scaling of either argument but not to
    arbitrary invertible linear maps.  For independent random data of :math:`n` samples and
    :math:`p, q` features it is of order :math:`\sqrt{pq}/n`.  The feature-space form is
    used when there are more samples than features, the Gram form otherwise; they are
    equal.

    Parameters
    ----------
    X : array (n_samples, p)
    Y : array (n_samples, q)
        The same samples in the same order; ``p`` and ``q`` may differ.

    Returns
    -------
    float
        Dimensionless; NaN if either representation is constant over samples.
    """
    X, Y = _two_matrices(X, Y)
    Xc = X - X.mean(axis=0)
    Yc = Y - Y.mean(axis=0)
    if X.shape[0] > X.shape[1] + Y.shape[1]:
        cross = np.sum((Yc.T @ Xc) ** 2)
        self_x = np.sqrt(np.sum((Xc.T @ Xc) ** 2))
        self_y = np.sqrt(np.sum((Yc.T @ Yc) ** 2))
    else:
        K = Xc @ Xc.T
        L = Yc @ Yc.T
        cross = np.sum(K * L)
        self_x = np.sqrt(np.sum(K * K))
        self_y = np.sqrt(np.sum(L * L))
    norm = self_x * self_y
    return float(cross / norm) if norm > 0 else float("nan")


def _undefined_rows(X: np.ndarray, metric: str) -> np.ndarray:
    """Rows whose distance to others is undefined under ``metric`` (NaN, or no spread)."""
    bad = ~np.all(np.isfinite(X), axis=1)
    if metric == "correlation":
        bad |= np.ptp(X, axis=1) == 0
    elif metric == "cosine":
        bad |= ~np.any(X != 0, axis=1)
    return bad


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import rankdata  # scipy.stats takes 0.5 s to import: only when needed

    rx = rankdata(x) - (x.size + 1) / 2
    ry = rankdata(y) - (y.size + 1) / 2
    norm = np.sqrt(np.sum(rx**2) * np.sum(ry**2))
    return float(np.sum(rx * ry) / norm) if norm > 0 else float("nan")


def rsa(X, Y, metric: str = "correlation") -> float:
    r"""Representational similarity: rank correlation of two dissimilarity matrices.

    Each representation gives a representational dissimilarity matrix (RDM) between its
    samples, :math:`D^X_{ab} = d(x_a, x_b)`; the default distance is the correlation
    distance :math:`d(x_a, x_b) = 1 - \mathrm{corr}(x_a, x_b)` between the population
    vectors of samples :math:`a, b`.  The score is Spearman's rank correlation of the
    upper triangles,

    .. math:: \mathrm{RSA}(X, Y) = \rho_S\big(\{D^X_{ab}\}_{a<b},\ \{D^Y_{ab}\}_{a<b}\big)

    (Kriegeskorte, Mur & Bandettini 2008), with tied ranks averaged.

    Parameters
    ----------
    X : array (n_samples, p)
    Y : array (n_samples, q)
        The same samples in the same order (at least 3); ``p`` and ``q`` may differ.
    metric : str
        Any :func:`scipy.spatial.distance.pdist` metric.

    Returns
    -------
    float
        Dimensionless, in [−1, 1]; NaN if either RDM is constant.

    Raises
    ------
    ValueError
        If some sample's distance is undefined: a non-finite row, a constant row for
        ``"correlation"``, or a zero row for ``"cosine"`` (e.g. the zero initial state of a
        network).  Drop those samples or use ``metric="euclidean"``.
    """
    from scipy.spatial.distance import pdist

    X, Y = _two_matrices(X, Y)
    if X.shape[0] < 3:
        raise ValueError(f"rsa needs at least 3 samples, got {X.shape[0]}")
    for label, M in (("X", X), ("Y", Y)):
        bad = np.flatnonzero(_undefined_rows(M, metric))
        if bad.size:
            raise ValueError(
                f"rsa: the {metric} distance is undefined for {bad.size} samples of {label} "
                f"(first: {bad[:5].tolist()}; non-finite or without spread); drop them or "
                "use metric='euclidean'"
            )
    return _spearman(pdist(X, metric=metric), pdist(Y, metric=metric))


def _stacked(ds: xr.Dataset | xr.DataArray, eval_trial: int | None, which: str) -> xr.DataArray:
    activity = select_eval(activity_of(ds), eval_trial)
    missing = [d for d in (*SAMPLE_DIMS, UNIT_DIM) if d not in activity.dims]
    if missing:
        raise ValueError(f"activity of {which} has dims {activity.dims}, missing {missing}")
    return activity


def _pair_similarity(A: np.ndarray, B: np.ndarray, metric: str) -> tuple[float, float, int]:
    keep = ~(_undefined_rows(A, metric) | _undefined_rows(B, metric))
    rsa_value = rsa(A[keep], B[keep], metric) if keep.sum() >= 3 else float("nan")
    return linear_cka(A, B), rsa_value, int(keep.sum())


def hidden_similarity(
    ds_a: xr.Dataset | xr.DataArray,
    ds_b: xr.Dataset | xr.DataArray,
    eval_trial: int | None = -1,
    *,
    metric: str = "correlation",
) -> xr.Dataset:
    r"""CKA and RSA between the hidden activity of two runs on the same evaluation set.

    The ``activity`` (eval_trial, condition, time, unit) of each run is taken at one
    evaluation and its (condition, time) pairs stacked as samples, giving matrices
    :math:`X` (samples × units of run a) and :math:`Y` (samples × units of run b); then
    :func:`linear_cka` (:math:`X, Y`) and :func:`rsa` (:math:`X, Y`, ``metric``).

    For RSA, samples whose distance is undefined in either run (for the correlation
    distance: a population vector without spread, such as a zero initial state) are
    dropped; ``rsa_samples`` says how many were used.  CKA uses all samples.  Other dims
    (``method``, ``seed``) are matched between the two runs by xarray broadcasting, so
    select with ``.sel({"method": ...})`` (not ``.sel(method=...)``, where
    ``method`` is the keyword of inexact matching) to compare two methods of one Dataset.

    Parameters
    ----------
    ds_a, ds_b : Dataset or DataArray
        Runs (or their ``activity``) with equal ``condition`` and ``time`` coordinates;
        the numbers of units may differ.
    eval_trial : int or None
        Position along ``eval_trial`` (default −1: the last evaluation); ``None`` keeps all
        evaluations.  Ignored for inputs without that dim (already selected, e.g. with
        ``ds.sel(eval_trial=500)``).
    metric : str
        Distance for the RDMs (see :func:`rsa`).

    Returns
    -------
    Dataset
        ``cka``, ``rsa`` (units ``"1"``) and ``rsa_samples`` (count).
    """
    A = _stacked(ds_a, eval_trial, "ds_a")
    B = _stacked(ds_b, eval_trial, "ds_b")
    for dim in SAMPLE_DIMS:
        if A.sizes[dim] != B.sizes[dim] or (
            dim in A.coords and dim in B.coords and not np.array_equal(A[dim], B[dim])
        ):
            raise ValueError(f"the two runs have different {dim!r} coordinates")
    A = _as_samples(A, "unit_a")
    B = _as_samples(B, "unit_b")
    cka, rsa_value, used = xr.apply_ufunc(
        _pair_similarity,
        A,
        B,
        kwargs={"metric": metric},
        input_core_dims=[["sample", "unit_a"], ["sample", "unit_b"]],
        output_core_dims=[[], [], []],
        vectorize=True,
        join="exact",
    )
    return xr.Dataset(
        {
            "cka": cka.assign_attrs(
                result_attrs(
                    "1",
                    "linear CKA of hidden activity",
                    "linear centred kernel alignment (Kornblith et al. 2019) of the two runs' "
                    "activity, samples = condition x time",
                )
            ),
            "rsa": rsa_value.assign_attrs(
                result_attrs(
                    "1",
                    "RSA of hidden activity",
                    f"Spearman correlation of the upper triangles of the {metric}-distance "
                    "RDMs over condition x time samples (Kriegeskorte et al. 2008)",
                )
            ),
            "rsa_samples": used.assign_attrs(
                result_attrs("1", "samples used for RSA", "condition x time samples kept")
            ),
        },
        attrs={"description": "similarity of hidden representations of two runs"},
    )


def _as_samples(activity: xr.DataArray, unit_name: str) -> xr.DataArray:
    stacked = activity.stack(sample=SAMPLE_DIMS, create_index=False)
    stacked = stacked.drop_vars([c for c in stacked.coords if "sample" in stacked[c].dims])
    return stacked.rename({UNIT_DIM: unit_name})
