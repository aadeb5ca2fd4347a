"""Figures from run Datasets (see docs/data-model.md).

Every function returns a :class:`matplotlib.figure.Figure`.  Figures are made without
pyplot, so they hold no global state (safe in loops and dask workers, nothing to close);
in Jupyter the returned figure displays itself, elsewhere write it with
:func:`save_figure`.  Axes are labelled with units, and every method has one colour
everywhere (:data:`PALETTE`, the colour-blind-safe Okabe–Ito palette).
"""

from __future__ import annotations

import os
import tempfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from bioperturb.metrics.activity import pca_trajectories
from bioperturb.metrics.learning import learning_curve_vs_time

__all__ = [
    "PALETTE",
    "method_color",
    "plot_learning_curves",
    "plot_activity",
    "plot_weight_changes",
    "plot_pca",
    "save_figure",
]

#: Colour of each learning method (Okabe & Ito 2008, colour-blind safe).
PALETTE: dict[str, str] = {
    "bptt": "#000000",
    "td_anp": "#D55E00",
    "anp": "#E69F00",
    "online_anp": "#CC79A7",
    "np": "#0072B2",
    "wp": "#009E73",
}
_OTHER_COLORS = ("#56B4E9", "#999999", "#F0E442", "#882255", "#44AA99", "#332288")

WEIGHT_MATRICES = ("W_in", "W_rec", "W_out")


def method_color(method: str) -> str:
    """Colour of a method: from :data:`PALETTE`, else a fixed colour derived from its name."""
    key = str(method).lower()
    if key in PALETTE:
        return PALETTE[key]
    return _OTHER_COLORS[zlib.crc32(key.encode()) % len(_OTHER_COLORS)]


def _label(da: xr.DataArray, fallback: str) -> str:
    name = da.attrs.get("long_name", fallback)
    return f"{name} [{da.attrs.get('units', '1')}]"


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.get_figure(root=True), ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _runs(
    datasets: Mapping[str, xr.Dataset] | xr.Dataset, label: str = "run"
) -> list[tuple[str, str, xr.Dataset]]:
    """(label, colour key, Dataset) per run; a ``method`` dim is split into runs."""
    items = {label: datasets} if isinstance(datasets, xr.Dataset) else dict(datasets)
    runs = []
    for name, ds in items.items():
        if "method" in ds.dims:
            for method in ds["method"].values:
                shown = str(method) if len(items) == 1 else f"{name}: {method}"
                runs.append((shown, str(method), ds.sel({"method": method})))
        else:
            runs.append((str(name), str(name), ds))
    return runs


def _single_run(ds: xr.Dataset, what: str) -> None:
    extra = [d for d in ("method", "seed") if d in ds.dims]
    if extra:
        raise ValueError(
            f"{what} shows one run; select it first, e.g. ds.sel({{{extra[0]!r}: ...}})"
        )


def _summary(da: xr.DataArray, dim: str):
    """Median over all dims but ``dim``, with the 25–75 % band (None if nothing to reduce)."""
    extra = [d for d in da.dims if d != dim]
    if not extra:
        return da, None
    band = da.quantile([0.25, 0.75], dim=extra)
    return da.median(extra), band


def plot_learning_curves(
    datasets: Mapping[str, xr.Dataset] | xr.Dataset,
    x: Literal["trial", "wall_time"] = "trial",
    log: bool = True,
    ax: Axes | None = None,
) -> Figure:
    """Training loss (thin line) and evaluation loss (markers) of several runs.

    Parameters
    ----------
    datasets : dict of label -> Dataset, or one Dataset
        Runs keyed by method label (the label picks the colour, see :func:`method_color`).
        A Dataset with a ``method`` dim is split into its methods.  Other extra dims
        (``seed``, sweep parameters) are summarised by the median, with the 25–75 % band
        shaded for the evaluation loss.
    x : {"trial", "wall_time"}
        Horizontal axis: training trials done, or cumulative wall-clock seconds of
        training (see :func:`bioperturb.metrics.learning_curve_vs_time`; with extra dims
        the median elapsed time).
    log : bool
        Logarithmic loss axis.
    ax : Axes, optional
        Draw into these axes instead of a new figure.

    Returns
    -------
    Figure
    """
    if x not in ("trial", "wall_time"):
        raise ValueError(f"x must be 'trial' or 'wall_time', got {x!r}")
    fig, ax = _new_axes(ax, (6.0, 4.0))
    units = "1"
    for label, key, ds in _runs(datasets):
        color = method_color(key)
        if "loss" not in ds and "eval_loss" not in ds:
            raise ValueError(f"run {label!r} has neither 'loss' nor 'eval_loss'")
        if "loss" in ds:
            loss, _ = _summary(ds["loss"], "trial")
            units = ds["loss"].attrs.get("units", units)
            if x == "trial":
                xs = ds["trial"].values
            else:
                xs = _summary(ds["wall_time"].cumsum("trial"), "trial")[0].values
            ax.plot(xs, loss.values, color=color, lw=0.6, alpha=0.4)
        if "eval_loss" in ds:
            loss, band = _summary(ds["eval_loss"], "eval_trial")
            units = ds["eval_loss"].attrs.get("units", units)
            if x == "trial":
                xs = ds["eval_trial"].values
            else:
                elapsed = learning_curve_vs_time(ds)["elapsed"]
                xs = _summary(elapsed, "eval_trial")[0].values
            ax.plot(xs, loss.values, "o-", color=color, ms=3.5, lw=1.2, label=label)
            if band is not None:
                ax.fill_between(xs, band[0].values, band[1].values, color=color, alpha=0.2)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("training trials done [1]" if x == "trial" else "training wall-clock time [s]")
    ax.set_ylabel(f"loss [{units}]")
    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], color="0.4", lw=0.6, alpha=0.6, label="training trial (clean pass)"),
        Line2D([], [], color="0.4", marker="o", ms=3.5, lw=1.2, label="evaluation (no noise)"),
    ]
    ax.legend(handles=handles, frameon=False, fontsize="small")
    return fig


def plot_activity(
    ds: xr.Dataset, eval_trial: int = -1, condition: int = 0, max_units: int = 50
) -> Figure:
    """Hidden activity (heatmap) and readout against target for one evaluation trial.

    Parameters
    ----------
    ds : Dataset
        One run with ``activity``, ``output_y`` and ``target`` (``eval_mask`` optional:
        time steps outside the loss are shaded).
    eval_trial : int
        Position along ``eval_trial`` (−1: the last evaluation).
    condition : int
        Position along ``condition``.
    max_units : int
        Show at most the first ``max_units`` sampled units.

    Returns
    -------
    Figure
    """
    _single_run(ds, "plot_activity")
    missing = [v for v in ("activity", "output_y", "target") if v not in ds]
    if missing:
        raise ValueError(f"plot_activity needs {missing} in the Dataset")
    at = {"condition": condition}
    activity = ds["activity"].isel(eval_trial=eval_trial, **at).isel(unit=slice(0, max_units))
    output = ds["output_y"].isel(eval_trial=eval_trial, **at)
    target = ds["target"].isel(**at)
    time = ds["time"].values
    time_units = ds["time"].attrs.get("units", "s")

    fig = Figure(figsize=(7.0, 5.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    values = activity.transpose("unit", "time").values
    if np.nanmin(values) < 0:
        limit = float(np.nanmax(np.abs(values))) or 1.0
        style = {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit}
    else:
        style = {"cmap": "viridis"}
    mesh = top.pcolormesh(time, np.arange(values.shape[0]), values, shading="nearest", **style)
    fig.colorbar(mesh, ax=top, label=_label(ds["activity"], "rate r"))
    top.set_ylabel("sampled unit [1]")
    top.set_title(
        f"condition {int(ds['condition'][condition])}, after "
        f"{int(ds['eval_trial'][eval_trial])} training trials"
    )

    for k in range(output.sizes["output"]):
        color = f"C{k}"
        bottom.plot(time, output.isel(output=k).values, color=color, lw=1.2)
        bottom.plot(time, target.isel(output=k).values, color=color, lw=1.2, ls="--")
    handles = [
        Line2D([], [], color="0.2", lw=1.2, label="readout y"),
        Line2D([], [], color="0.2", lw=1.2, ls="--", label="target y*"),
    ]
    if "eval_mask" in ds:
        masked = ds["eval_mask"].isel(**at).values == 0
        bottom.fill_between(
            time,
            0,
            1,
            where=masked,
            transform=bottom.get_xaxis_transform(),
            color="0.9",
            step="mid",
        )
        handles.append(Patch(color="0.9", label="not in the loss"))
    bottom.legend(handles=handles, frameon=False, fontsize="small")
    bottom.set_xlabel(f"time [{time_units}]")
    bottom.set_ylabel(_label(ds["output_y"], "output"))
    return fig


def plot_weight_changes(
    ds: xr.Dataset, matrices: tuple[str, ...] = WEIGHT_MATRICES, bins: int = 50
) -> Figure:
    r"""Histograms of the weight change from the first to the last evaluation, per matrix.

    Plots :math:`W(\text{last}) - W(\text{first})` of each matrix present; a Dataset with
    a ``method`` dim gets one outline histogram per method, in its colour, all on the same
    bins.  Other extra dims (``seed``) are pooled.

    Parameters
    ----------
    ds : Dataset
        A run with ``W_in``/``W_rec``/``W_out`` (eval_trial, ...) and at least two
        evaluations.
    matrices : tuple of str
        Variables to show (those missing are skipped).
    bins : int
        Number of bins per histogram.

    Returns
    -------
    Figure
    """
    present = [name for name in matrices if name in ds]
    if not present:
        raise ValueError(f"plot_weight_changes: none of {list(matrices)} in the Dataset")
    if ds.sizes.get("eval_trial", 0) < 2:
        raise ValueError("plot_weight_changes needs at least two evaluations (eval_trial)")
    runs = _runs(ds) if "method" in ds.dims else [("", "", ds)]
    fig = Figure(figsize=(3.2 * len(present), 3.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(present)))
    for ax, name in zip(axes, present, strict=True):
        changes = {}
        for label, key, run in runs:
            weights = run[name]
            change = (weights.isel(eval_trial=-1) - weights.isel(eval_trial=0)).values.ravel()
            changes[label, key] = change[np.isfinite(change)]
        pooled = np.concatenate(list(changes.values()))
        edges = np.histogram_bin_edges(pooled, bins=bins) if pooled.size else bins
        for (label, key), change in changes.items():
            stats = f"sd {np.std(change):.3g}" if change.size else "no finite values"
            ax.hist(
                change,
                bins=edges,
                histtype="step" if label else "stepfilled",
                color=method_color(key) if label else "0.4",
                label=f"{label} ({stats})" if label else stats,
            )
        ax.set_xlabel(f"Δ{name} [{ds[name].attrs.get('units', '1')}]")
        ax.set_ylabel("number of weights [1]")
        ax.set_title(
            f"{name}: after {int(ds['eval_trial'][-1])} − after {int(ds['eval_trial'][0])} trials",
            fontsize="small",
        )
        ax.legend(frameon=False, fontsize="small")
    return fig


def plot_pca(ds: xr.Dataset, eval_trial: int = -1, n_components: int = 3) -> Figure:
    """Hidden-state trajectories on the first two principal components, and the scree plot.

    Parameters
    ----------
    ds : Dataset
        One run with ``activity`` (see :func:`bioperturb.metrics.pca_trajectories`).
    eval_trial : int
        Position along ``eval_trial`` (−1: the last evaluation).
    n_components : int
        Components computed (and shown in the scree plot), at least 2.

    Returns
    -------
    Figure
    """
    _single_run(ds, "plot_pca")
    if n_components < 2:
        raise ValueError(f"plot_pca needs n_components >= 2, got {n_components}")
    pca = pca_trajectories(ds, n_components=n_components, eval_trial=eval_trial)
    trajectory = pca["trajectory"]
    ratio = pca["explained_variance_ratio"]
    units = trajectory.attrs.get("units", "1")

    fig = Figure(figsize=(8.0, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(2, 1))
    n_conditions = trajectory.sizes["condition"]
    colors = [f"C{k % 10}" for k in range(n_conditions)]
    for k in range(n_conditions):
        path = trajectory.isel(condition=k)
        pc1, pc2 = path.sel(pc=1).values, path.sel(pc=2).values
        left.plot(pc1, pc2, color=colors[k], lw=1.2, label=f"condition {int(path['condition'])}")
        left.plot(pc1[0], pc2[0], "o", color=colors[k], ms=4)
        left.plot(pc1[-1], pc2[-1], "s", color=colors[k], ms=4)
    left.set_xlabel(f"PC1 ({100 * float(ratio.sel(pc=1)):.0f} % var.) [{units}]")
    left.set_ylabel(f"PC2 ({100 * float(ratio.sel(pc=2)):.0f} % var.) [{units}]")
    left.set_title("trajectories (○ start, □ end)", fontsize="small")
    if n_conditions <= 10:
        left.legend(frameon=False, fontsize="small")

    pcs = ratio["pc"].values
    right.bar(pcs, 100 * ratio.values, color="0.6", label="per component")
    right.plot(pcs, 100 * np.cumsum(ratio.values), "o-", color="0.2", ms=3.5, label="cumulative")
    right.set_xticks(pcs)
    right.set_xlabel("principal component [1]")
    right.set_ylabel("explained variance [%]")
    right.legend(frameon=False, fontsize="small")
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Write ``fig`` atomically: to a temporary file beside ``path``, then rename.

    The format follows the suffix (``.png`` by default, also ``.pdf``, ``.svg``); raster
    formats use ``dpi`` (150).  A reader never sees a half-written file, and a failure
    leaves no temporary file behind.  Missing parent folders are created.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        fig.savefig(temporary, format=path.suffix.lstrip("."), dpi=dpi)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
