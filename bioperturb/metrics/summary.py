r"""Tables of statistics of several runs, side by side.

:func:`summary_statistics` (learning, hidden activity, plasticity and cost of one run) and
:func:`comparison_statistics` (each method of a compare file against its BPTT reference)
are pure Dataset → Dataset functions, vectorised over ``method``/``seed``.
:func:`summary_table` and :func:`comparison_table` lay them out as a
:class:`pandas.DataFrame` with one row per statistic (its label ends with the units in
brackets) and one column per run; a Dataset with a ``method`` dim gives one column per
method, and other extra dims (``seed``, sweep parameters) are summarised by their median.
:func:`bioperturb.report.write_table` writes a table as markdown and CSV.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from bioperturb.metrics._util import result_attrs
from bioperturb.metrics.activity import pairwise_correlations, participation_ratio
from bioperturb.metrics.learning import (
    final_loss,
    time_to_threshold,
    trials_to_accuracy,
    trials_to_threshold,
)
from bioperturb.metrics.plasticity import (
    MATRICES,
    alignment_summary,
    sign_change_fraction,
    spectral_radius,
    weight_change_norm,
)
from bioperturb.metrics.similarity import hidden_similarity

__all__ = [
    "THRESHOLDS",
    "ACCURACY_LEVEL",
    "summary_statistics",
    "summary_table",
    "comparison_statistics",
    "comparison_table",
    "row_label",
]

#: Fractions of the initial evaluation loss at which sample efficiency is reported.
THRESHOLDS: tuple[float, ...] = (0.3, 0.1, 0.05)
#: Evaluation accuracy at which sample efficiency is reported (runs with ``eval_accuracy``).
ACCURACY_LEVEL = 0.9
#: The statistics of runs scored besides their loss: ``eval_accuracy`` (classification
#: tasks), ``eval_sequence_accuracy`` (sequence recall), ``eval_nrmse`` (forecasting).
_SCORE_STATISTICS = (
    "final_eval_accuracy",
    f"trials_to_{100 * ACCURACY_LEVEL:g}pct_accuracy",
    "final_eval_sequence_accuracy",
    "final_eval_nrmse",
)

_ACTIVITY_DIMS = ("condition", "time", "unit")


def row_label(da: xr.DataArray) -> str:
    """``"long_name [units]"``: how a statistic is labelled in a table."""
    return f"{da.attrs.get('long_name', da.name)} [{da.attrs.get('units', '1')}]"


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g} %"


def _nanmean(da: xr.DataArray, dims: Sequence[str]) -> xr.DataArray:
    """Mean skipping NaN, NaN (without a warning) where there is no value."""
    valid = da.notnull()
    return da.where(valid, 0.0).sum(dims) / valid.sum(dims).where(valid.sum(dims) > 0)


def _with(da: xr.DataArray, units: str, long_name: str, description: str) -> xr.DataArray:
    drop = [c for c in da.coords if c not in da.dims]
    return da.drop_vars(drop).assign_attrs(result_attrs(units, long_name, description))


def summary_statistics(ds: xr.Dataset, thresholds: Sequence[float] = THRESHOLDS) -> xr.Dataset:
    r"""Learning, activity, plasticity and cost statistics of a run, one value per run.

    Variables (each present only if the Dataset has what it needs):

    * ``initial_eval_loss``, ``final_eval_loss``: ``eval_loss`` at the first and last
      evaluation (:func:`~bioperturb.metrics.final_loss`);
    * ``trials_to_<p>pct``: :func:`~bioperturb.metrics.trials_to_threshold` of
      ``eval_loss`` for each fraction in ``thresholds``;
    * ``final_eval_accuracy`` (last non-NaN ``eval_accuracy``) and
      ``trials_to_90pct_accuracy`` (:func:`~bioperturb.metrics.trials_to_accuracy` at
      :data:`ACCURACY_LEVEL`), if the run has ``eval_accuracy`` (classification tasks);
    * ``final_eval_sequence_accuracy`` (last non-NaN ``eval_sequence_accuracy``), if the
      run has it (sequence recall);
    * ``final_eval_nrmse`` (last non-NaN ``eval_nrmse``, lower is better), if the run has
      it (forecasting);
    * ``participation_ratio``, ``mean_abs_correlation`` (mean of :math:`|r_{ij}|` over
      pairs), ``activity_mean``, ``activity_std`` (over condition × time × unit, 1/n):
      hidden ``activity`` at the last evaluation;
    * ``spectral_radius_initial``, ``spectral_radius_final``: :math:`\rho(W_\text{rec})`
      at the first and last evaluation;
    * ``change_norm_<W>``, ``relative_change_<W>``, ``sign_changes_<W>`` per weight
      matrix, first → last evaluation (:mod:`~bioperturb.metrics.plasticity`);
    * ``mean_wall_time``: mean ``wall_time`` per training trial; ``trials_done``;
    * ``alignment_<matrix>``: mean update–gradient alignment over training, if the run
      has ``alignment``.

    Parameters
    ----------
    ds : Dataset
        A run (docs/data-model.md), or several along ``method``/``seed``.
    thresholds : sequence of float
        Fractions of the initial evaluation loss.

    Returns
    -------
    Dataset
        Scalars per run (dims: the run's extra dims), each with ``units`` and
        ``long_name``; the variable order is the row order of :func:`summary_table`.
    """
    out: dict[str, xr.DataArray] = {}
    if "eval_loss" in ds:
        loss = ds["eval_loss"]
        out["initial_eval_loss"] = _with(
            loss.isel(eval_trial=0, drop=True),
            loss.attrs.get("units", "1"),
            "initial evaluation loss",
            "eval_loss at the first evaluation (before training)",
        )
        out["final_eval_loss"] = _with(
            final_loss(loss, "eval_trial"),
            loss.attrs.get("units", "1"),
            "final evaluation loss",
            "last non-NaN eval_loss",
        )
        for fraction in thresholds:
            out[f"trials_to_{100 * fraction:g}pct"] = _with(
                trials_to_threshold(loss, fraction, "eval_trial"),
                "1",
                f"training trials to {_percent(fraction)} of initial eval. loss",
                f"first evaluation with eval_loss <= {fraction:g} x its initial value; NaN if "
                "never",
            )
    if "eval_accuracy" in ds:
        acc = ds["eval_accuracy"]
        final, trials = _SCORE_STATISTICS[:2]
        out[final] = _with(
            final_loss(acc, "eval_trial"),
            "1",
            "final evaluation accuracy",
            "last non-NaN eval_accuracy (fraction of evaluation conditions answered right)",
        )
        out[trials] = _with(
            trials_to_accuracy(acc, ACCURACY_LEVEL, "eval_trial"),
            "1",
            f"training trials to {_percent(ACCURACY_LEVEL)} eval. accuracy",
            f"first evaluation with eval_accuracy >= {ACCURACY_LEVEL:g}; NaN if never",
        )
    if "eval_sequence_accuracy" in ds:
        out["final_eval_sequence_accuracy"] = _with(
            final_loss(ds["eval_sequence_accuracy"], "eval_trial"),
            "1",
            "final evaluation sequence accuracy",
            "last non-NaN eval_sequence_accuracy (fraction of recalled symbols right)",
        )
    if "eval_nrmse" in ds:
        out["final_eval_nrmse"] = _with(
            final_loss(ds["eval_nrmse"], "eval_trial"),
            "1",
            "final evaluation NRMSE (lower is better)",
            "last non-NaN eval_nrmse (RMS error / target standard deviation)",
        )
    if "activity" in ds:
        activity = ds["activity"].isel(eval_trial=-1, drop=True)
        last = "last eval."
        out["participation_ratio"] = _with(
            participation_ratio(activity),
            "1",
            f"participation ratio of hidden activity ({last})",
            "(tr C)^2 / ||C||_F^2 of the unit covariance over condition x time",
        )
        pairs = abs(pairwise_correlations(activity))
        out["mean_abs_correlation"] = _with(
            _nanmean(pairs, ["pair"]),
            "1",
            f"mean |pairwise correlation| of hidden units ({last})",
            "mean over unit pairs of |Pearson r| over condition x time",
        )
        units = ds["activity"].attrs.get("units", "1")
        out["activity_mean"] = _with(
            activity.mean(_ACTIVITY_DIMS, skipna=False),
            units,
            f"mean hidden activity ({last})",
            "mean over condition x time x unit",
        )
        out["activity_std"] = _with(
            activity.std(_ACTIVITY_DIMS, skipna=False),
            units,
            f"sd of hidden activity ({last})",
            "standard deviation (1/n) over condition x time x unit",
        )
    if "W_rec" in ds:
        radius = spectral_radius(ds["W_rec"].rename("W_rec"))
        units = ds["W_rec"].attrs.get("units", "1")
        for label, position in (("initial", 0), ("final", -1)):
            out[f"spectral_radius_{label}"] = _with(
                radius.isel(eval_trial=position, drop=True),
                units,
                f"spectral radius of W_rec, {label}",
                f"max |eigenvalue| of W_rec at the {'first' if position == 0 else 'last'} "
                "evaluation",
            )
    ends = {"eval_trial": [0, -1]}
    for name in MATRICES:
        if name not in ds:
            continue
        W = ds[name].isel(ends).rename(name)
        units = ds[name].attrs.get("units", "1")
        out[f"change_norm_{name}"] = _with(
            weight_change_norm(W).isel(eval_trial=-1, drop=True),
            units,
            f"‖Δ{name}‖_F, first → last eval.",
            f"Frobenius norm of {name}(last evaluation) - {name}(first)",
        )
        out[f"relative_change_{name}"] = _with(
            weight_change_norm(W, relative=True).isel(eval_trial=-1, drop=True),
            "1",
            f"‖Δ{name}‖_F / ‖{name}‖_F, first → last eval.",
            f"Frobenius norm of the change of {name} relative to its initial norm",
        )
        out[f"sign_changes_{name}"] = _with(
            sign_change_fraction(W).isel(eval_trial=-1, drop=True),
            "1",
            f"fraction of {name} that changed sign",
            f"#(w * w_0 < 0) / #(w_0 != 0) for {name}, first -> last evaluation",
        )
    if "wall_time" in ds:
        out["mean_wall_time"] = _with(
            _nanmean(ds["wall_time"], ["trial"]),
            ds["wall_time"].attrs.get("units", "s"),
            "mean wall-clock time per training trial",
            "mean of wall_time over the training trials (incl. the update)",
        )
    if "loss" in ds:
        out["trials_done"] = _with(
            ds["loss"].notnull().sum("trial"),
            "1",
            "training trials done",
            "number of recorded training trials",
        )
    if "alignment" in ds:
        mean = alignment_summary(ds)["mean"]
        for matrix in mean["matrix"].values:
            out[f"alignment_{matrix}"] = _with(
                mean.sel({"matrix": matrix}, drop=True),
                "1",
                f"mean update-gradient alignment, {matrix}",
                f"mean over training of cos(update, -dL/dW) for {matrix}",
            )
    return xr.Dataset(out, attrs={"description": "summary statistics of a run"})


def comparison_statistics(
    ds: xr.Dataset, reference: str = "bptt", thresholds: Sequence[float] = THRESHOLDS
) -> xr.Dataset:
    r"""Sample efficiency of each method of a compare file, and its similarity to the reference.

    * ``initial_eval_loss``, ``final_eval_loss``;
    * ``trials_to_<p>pct`` and ``time_to_<p>pct`` (training wall-clock seconds,
      :func:`~bioperturb.metrics.time_to_threshold`) for each fraction of ``thresholds``;
    * ``final_eval_accuracy`` and ``trials_to_90pct_accuracy``, if the runs have
      ``eval_accuracy``; ``final_eval_sequence_accuracy`` and ``final_eval_nrmse``, if
      they have those scores (see :func:`summary_statistics`);
    * ``mean_wall_time`` per training trial;
    * ``cka``, ``rsa``: :func:`~bioperturb.metrics.hidden_similarity` of each method's
      hidden activity with the reference method's at the last evaluation (1 for the
      reference itself).

    Parameters
    ----------
    ds : Dataset
        Runs along a ``method`` dim (``bioperturb compare``), one of them ``reference``.
    reference : str
        The method the others are compared with.
    thresholds : sequence of float
        Fractions of the initial evaluation loss.

    Returns
    -------
    Dataset
        Per method (and other extra dims).
    """
    if "method" not in ds.dims:
        raise ValueError("comparison_statistics needs a Dataset with a 'method' dim")
    methods = [str(m) for m in ds["method"].values]
    if reference not in methods:
        raise ValueError(f"reference method {reference!r} not in the methods {methods}")
    summary = summary_statistics(ds, thresholds)
    out = {k: summary[k] for k in ("initial_eval_loss", "final_eval_loss") if k in summary}
    for fraction in thresholds:
        key = f"{100 * fraction:g}pct"
        out[f"trials_to_{key}"] = summary[f"trials_to_{key}"]
        out[f"time_to_{key}"] = _with(
            time_to_threshold(ds, fraction),
            "s",
            f"training time to {_percent(fraction)} of initial eval. loss",
            f"training wall-clock time before the first evaluation with eval_loss <= "
            f"{fraction:g} x its initial value; NaN if never",
        )
    out.update({k: summary[k] for k in _SCORE_STATISTICS if k in summary})
    out["mean_wall_time"] = summary["mean_wall_time"]
    if "activity" in ds:
        similarity = hidden_similarity(ds, ds.sel({"method": reference}, drop=True))
        out["cka"] = _with(
            similarity["cka"],
            "1",
            f"linear CKA of hidden activity with {reference} (last eval.)",
            similarity["cka"].attrs["description"],
        )
        out["rsa"] = _with(
            similarity["rsa"],
            "1",
            f"RSA of hidden activity with {reference} (last eval.)",
            similarity["rsa"].attrs["description"],
        )
    return xr.Dataset(out, attrs={"description": f"methods compared with {reference}"})


def _columns(datasets: Mapping[str, xr.Dataset]) -> list[tuple[str, xr.Dataset]]:
    """(column label, Dataset) per run; a ``method`` dim is split into columns."""
    items = dict(datasets)
    if not items:
        raise ValueError("no datasets given")
    columns = []
    for name, ds in items.items():
        if "method" in ds.dims:
            for method in ds["method"].values:
                label = str(method) if len(items) == 1 else f"{name}: {method}"
                columns.append((label, ds.sel({"method": method})))
        else:
            columns.append((str(name), ds))
    return columns


def _table(
    datasets: Mapping[str, xr.Dataset] | xr.Dataset,
    statistics: Callable[[xr.Dataset], xr.Dataset],
    description: str,
) -> pd.DataFrame:
    if isinstance(datasets, xr.Dataset):
        datasets = {str(datasets.attrs.get("rule", "run")): datasets}
    items = dict(datasets)
    rows: dict[str, None] = {}
    columns: dict[str, dict[str, float]] = {}
    for label, stats in _columns({name: statistics(ds) for name, ds in items.items()}):
        if label in columns:
            raise ValueError(f"two runs are labelled {label!r}")
        values = {}
        for var in stats.data_vars.values():
            flat = np.asarray(var.values, dtype=float).ravel()
            flat = flat[~np.isnan(flat)]
            values[row_label(var)] = float(np.median(flat)) if flat.size else float("nan")
            rows.setdefault(row_label(var), None)
        columns[label] = values
    frame = pd.DataFrame(columns, index=list(rows), dtype=float)
    frame.index.name = "statistic"
    frame.attrs["description"] = description
    return frame


def summary_table(
    datasets: Mapping[str, xr.Dataset] | xr.Dataset, thresholds: Sequence[float] = THRESHOLDS
) -> pd.DataFrame:
    """The :func:`summary_statistics` of several runs side by side.

    Parameters
    ----------
    datasets : dict of label -> Dataset, or one Dataset
        Runs keyed by column label (one Dataset: labelled by its ``rule`` attribute,
        else ``"run"``).  A Dataset with a ``method`` dim gives one column per
        method (``"label: method"`` when several Datasets are given); other extra dims are
        summarised by the median over them (NaN skipped).
    thresholds : sequence of float
        Fractions of the initial evaluation loss for the trials-to-threshold rows.

    Returns
    -------
    pandas.DataFrame
        Rows: statistics labelled ``"long name [units]"`` (index name ``statistic``),
        columns: runs; NaN where a run lacks what a statistic needs or never reached a
        threshold.
    """
    return _table(
        datasets,
        lambda ds: summary_statistics(ds, thresholds),
        "summary statistics of runs (bioperturb.metrics.summary_statistics)",
    )


def comparison_table(
    datasets: Mapping[str, xr.Dataset] | xr.Dataset,
    reference: str = "bptt",
    thresholds: Sequence[float] = THRESHOLDS,
) -> pd.DataFrame:
    """The :func:`comparison_statistics` of one or more compare files side by side.

    Parameters
    ----------
    datasets : dict of label -> Dataset, or one Dataset
        Compare files (each with a ``method`` dim including ``reference``); columns are
        the methods (``"label: method"`` when several files are given).
    reference : str
        The method the others are compared with.
    thresholds : sequence of float
        Fractions of the initial evaluation loss.

    Returns
    -------
    pandas.DataFrame
        As :func:`summary_table`.
    """
    return _table(
        datasets,
        lambda ds: comparison_statistics(ds, reference, thresholds),
        f"methods compared with {reference} (bioperturb.metrics.comparison_statistics)",
    )
