"""Figures from run Datasets (see docs/data-model.md).

Every function returns a :class:`matplotlib.figure.Figure`.  Figures are made without
pyplot, so they hold no global state (safe in loops and dask workers, nothing to close);
in Jupyter the returned figure displays itself, elsewhere write it with
:func:`save_figure`.  Axes are labelled with units, and every method has one colour
everywhere (:data:`PALETTE`, the colour-blind-safe Okabe–Ito palette).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from bioperturb.metrics.activity import pca_trajectories
from bioperturb.metrics.learning import learning_curve_vs_time
from bioperturb.metrics.plasticity import (
    ALIGNMENT_DIMS,
    eigenvalues,
    sign_change_fraction,
    spectral_radius,
    weight_change_norm,
)
from bioperturb.metrics.similarity import hidden_similarity

__all__ = [
    "PALETTE",
    "method_color",
    "plot_learning_curves",
    "plot_activity",
    "plot_raster",
    "plot_weight_changes",
    "plot_pca",
    "plot_learning_comparison",
    "plot_accuracy",
    "plot_spectrum",
    "plot_weight_drift",
    "plot_alignment",
    "plot_similarity",
    "save_figure",
]

#: Colour of each learning method (Okabe & Ito 2008, colour-blind safe).
PALETTE: dict[str, str] = {
    "bptt": "#000000",
    "bptt_surrogate": "#555555",
    "td_anp": "#D55E00",
    "anp": "#E69F00",
    "online_anp": "#CC79A7",
    "np": "#0072B2",
    "wp": "#009E73",
}
_OTHER_COLORS = ("#56B4E9", "#882255", "#44AA99", "#332288", "#999933", "#999999")

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
    """(label, colour key, Dataset) per run; a ``method`` dim is split into runs.

    A single Dataset without a ``method`` dim is labelled by its ``rule`` attribute, else
    by ``label``.  A run's colour key is its method; a run labelled otherwise (e.g. by
    file name) takes its ``rule`` attribute's colour if no other run has that rule.
    """
    if isinstance(datasets, xr.Dataset):
        items = {str(datasets.attrs.get("rule", label)): datasets}
    else:
        items = dict(datasets)
    rules = [
        str(ds.attrs.get("rule", "")).lower() for ds in items.values() if "method" not in ds.dims
    ]
    runs = []
    for name, ds in items.items():
        if "method" in ds.dims:
            for method in ds["method"].values:
                shown = str(method) if len(items) == 1 else f"{name}: {method}"
                runs.append((shown, str(method), ds.sel({"method": method})))
        else:
            rule = str(ds.attrs.get("rule", "")).lower()
            unique = rule in PALETTE and rules.count(rule) == 1
            key = rule if unique and str(name).lower() not in PALETTE else str(name)
            runs.append((str(name), key, ds))
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


def _positive_if_log(ax: Axes, xs: np.ndarray) -> np.ndarray:
    """``xs`` with values <= 0 as NaN (not drawn) when the x axis is logarithmic."""
    if ax.get_xscale() != "log":
        return xs
    xs = np.asarray(xs, dtype=float)
    return np.where(xs > 0, xs, np.nan)


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
        Draw into these axes instead of a new figure.  If its x axis is already
        logarithmic, points at x <= 0 (the evaluation before training, at 0 s) are left
        out.

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
                # trial k starts after the wall time of trials 0 … k-1, like eval_trial = k
                before = ds["wall_time"].cumsum("trial") - ds["wall_time"]
                xs = _summary(before, "trial")[0].values
            ax.plot(_positive_if_log(ax, xs), loss.values, color=color, lw=0.6, alpha=0.4)
        if "eval_loss" in ds:
            loss, band = _summary(ds["eval_loss"], "eval_trial")
            units = ds["eval_loss"].attrs.get("units", units)
            if x == "trial":
                xs = ds["eval_trial"].values
            else:
                elapsed = learning_curve_vs_time(ds)["elapsed"]
                xs = _summary(elapsed, "eval_trial")[0].values
            xs = _positive_if_log(ax, xs)
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
    name = "synaptic trace r" if "spike_unit" in ds else "rate r = tanh(h)"
    fig.colorbar(mesh, ax=top, label=f"{name} [{ds['activity'].attrs.get('units', '1')}]")
    top.set_ylabel("sampled unit [1]")
    top.yaxis.set_major_locator(MaxNLocator(integer=True))
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
    masked = ds["eval_mask"].isel(**at).values == 0 if "eval_mask" in ds else np.zeros(0, bool)
    if masked.any():
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
    bottom.set_ylabel(f"readout y [{ds['output_y'].attrs.get('units', '1')}]")
    return fig


def plot_raster(
    ds: xr.Dataset, eval_trial: int = -1, condition: int = 0, n_membrane: int = 3
) -> Figure:
    """Spike raster, membrane potentials and readout of one evaluation trial of a LIF run.

    Parameters
    ----------
    ds : Dataset
        One spiking run (``spike_unit``, ``spike_time``, ``spike_eval``,
        ``spike_condition``, ``membrane``, ``output_y``, ``target``; ``cell_sign`` colours
        excitatory and inhibitory neurons under Dale's law).
    eval_trial, condition : int
        Positions along ``eval_trial`` and ``condition`` (−1: the last evaluation).
    n_membrane : int
        Membrane traces of this many sampled neurons.

    Returns
    -------
    Figure
    """
    _single_run(ds, "plot_raster")
    missing = [v for v in ("spike_unit", "spike_time", "membrane", "output_y") if v not in ds]
    if missing:
        raise ValueError(f"plot_raster needs a spiking run; {missing} not in the Dataset")
    ev = np.arange(ds.sizes["eval_trial"])[eval_trial]
    cond = np.arange(ds.sizes["condition"])[condition]
    pick = (ds["spike_eval"].values == ev) & (ds["spike_condition"].values == cond)
    units = ds["spike_unit"].values[pick]
    times = ds["spike_time"].values[pick]
    n_neurons = int(ds.sizes.get("neuron", units.max() + 1 if units.size else 1))
    time = ds["time"].values
    duration = float(time[-1] + (time[1] - time[0] if time.size > 1 else 0.0))

    fig = Figure(figsize=(7.0, 6.0), layout="constrained")
    raster, membrane, readout = fig.subplots(3, 1, sharex=True, height_ratios=(3, 1.2, 1.2))
    if "cell_sign" in ds:
        inhibitory = ds["cell_sign"].values[units] < 0
        for sel, color, label in ((~inhibitory, "#0072B2", "E"), (inhibitory, "#D55E00", "I")):
            raster.scatter(times[sel], units[sel], s=1.5, color=color, marker="|", label=label)
        raster.legend(frameon=False, fontsize="small", loc="upper right", markerscale=4)
    else:
        raster.scatter(times, units, s=1.5, color="0.1", marker="|")
    raster.set_ylim(-0.5, n_neurons - 0.5)
    raster.set_ylabel("neuron [1]")
    rate = units.size / max(n_neurons, 1) / duration if duration > 0 else float("nan")
    raster.set_title(
        f"condition {int(ds['condition'][cond])}, after {int(ds['eval_trial'][ev])} training "
        f"trials: {units.size} spikes, mean rate {rate:.1f} Hz"
    )
    v = ds["membrane"].isel(eval_trial=ev, condition=cond)
    for k in range(min(n_membrane, v.sizes["unit"])):
        membrane.plot(time, v.isel(unit=k).values, lw=0.8, label=f"neuron {int(v['unit'][k])}")
    membrane.set_ylabel("v [threshold units]")
    membrane.legend(frameon=False, fontsize="x-small", loc="upper right")
    out = ds["output_y"].isel(eval_trial=ev, condition=cond)
    target = ds["target"].isel(condition=cond)
    for k in range(out.sizes["output"]):
        readout.plot(time, out.isel(output=k).values, color=f"C{k}", lw=1.2)
        readout.plot(time, target.isel(output=k).values, color=f"C{k}", lw=1.2, ls="--")
    readout.legend(
        handles=[
            Line2D([], [], color="0.2", lw=1.2, label="readout y"),
            Line2D([], [], color="0.2", lw=1.2, ls="--", label="target y*"),
        ],
        frameon=False,
        fontsize="small",
    )
    readout.set_ylabel("readout y [1]")
    readout.set_xlabel(f"time [{ds['time'].attrs.get('units', 's')}]")
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
        Largest number of bins per histogram; fewer (2√n, at least 5) for a matrix of
        n weights per run, so that small matrices (``W_out``) get readable bars.

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
        per_run = max(pooled.size // max(len(changes), 1), 1)
        n_bins = int(np.clip(2 * np.sqrt(per_run), 5, bins))
        edges = np.histogram_bin_edges(pooled, bins=n_bins) if pooled.size else n_bins
        for (label, key), change in changes.items():
            stats = f"sd {np.std(change):.3g}" if change.size else "no finite values"
            ax.hist(
                change,
                bins=edges,
                histtype="step" if label else "stepfilled",
                color=method_color(key) if label else "0.4",
                lw=1.2,
                label=f"{label} ({stats})" if label else stats,
            )
        ax.set_ylim(top=1.35 * ax.get_ylim()[1])
        ax.set_xlabel(f"Δ{name} [{ds[name].attrs.get('units', '1')}]")
        ax.set_ylabel("number of weights [1]")
        ax.set_title(
            f"{name}: trial {int(ds['eval_trial'][0])} → {int(ds['eval_trial'][-1])}",
            fontsize="medium",
        )
        ax.legend(frameon=False, fontsize="small", loc="upper left")
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


Runs = Mapping[str, xr.Dataset] | xr.Dataset


def _run_legend(
    fig: Figure, runs: list[tuple[str, str, xr.Dataset]], extra: Sequence[Line2D] = ()
) -> None:
    """One legend for the whole figure, above the panels: a line per run in its colour."""
    handles = [
        Line2D([], [], color=method_color(key), lw=1.5, label=label) for label, key, _ in runs
    ]
    handles += list(extra)
    fig.legend(
        handles=handles, loc="outside upper center", ncols=min(len(handles), 6), frameon=False
    )


def plot_learning_comparison(datasets: Runs, log: bool = True) -> Figure:
    """Learning curves against training trials (left) and training wall-clock time (right).

    Both panels as :func:`plot_learning_curves` (one colour per method, evaluation loss
    as markers, training loss as a thin line), sharing the loss axis.  The time axis is
    logarithmic when the runs' total training times differ more than tenfold (a BPTT
    step costs far less than a Brian2 trial); the evaluation before training (at 0 s)
    is then left out of that panel.

    Parameters
    ----------
    datasets : dict of label -> Dataset, or one Dataset
        As for :func:`plot_learning_curves`.
    log : bool
        Logarithmic loss axis.

    Returns
    -------
    Figure
    """
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    by_trial, by_time = fig.subplots(1, 2, sharey=True)
    plot_learning_curves(datasets, x="trial", log=log, ax=by_trial)
    totals = [
        float(ds["wall_time"].sum("trial")) for _, _, ds in _runs(datasets) if "wall_time" in ds
    ]
    spread = max(totals) / min(totals) if totals and min(totals) > 0 else 1.0
    if spread > 10:
        by_time.set_xscale("log")
    plot_learning_curves(datasets, x="wall_time", log=log, ax=by_time)
    by_trial.get_legend().remove()
    by_time.set_ylabel("")
    by_trial.set_title("by training trials", fontsize="medium")
    by_time.set_title(
        "by training time" + (" (log scale)" if spread > 10 else ""), fontsize="medium"
    )
    return fig


def _over_training(da: xr.DataArray, dim: str = "eval_trial"):
    """x values, median curve and 25–75 % band (or None) of ``da`` along ``dim``."""
    line, band = _summary(da, dim)
    return da[dim].values, line.transpose(dim).values, band


def plot_accuracy(datasets: Runs, ax: Axes | None = None) -> Figure:
    """Evaluation accuracy over training, one line per run, chance level dashed.

    ``eval_accuracy`` (:func:`bioperturb.metrics.accuracy`) against training trials done,
    one colour per method; other extra dims (``seed``, sweep parameters) are summarised
    by the median with the 25–75 % band.  Chance, 1 / n_outputs (the length of the
    ``output`` dim), is a dashed grey line, one per distinct number of outputs.

    Parameters
    ----------
    datasets : dict of label -> Dataset, or one Dataset
        Runs, as for :func:`plot_learning_curves`; those without ``eval_accuracy`` (tasks
        scored by the loss alone) are left out.
    ax : Axes, optional
        Draw into these axes instead of a new figure.

    Returns
    -------
    Figure
    """
    runs = [run for run in _runs(datasets) if "eval_accuracy" in run[2]]
    if not runs:
        raise ValueError("plot_accuracy: no run has an 'eval_accuracy' variable")
    fig, ax = _new_axes(ax, (6.0, 4.0))
    for n_outputs in sorted({ds.sizes["output"] for _, _, ds in runs}):
        ax.axhline(1 / n_outputs, color="0.5", ls="--", lw=1.0, label=f"chance (1/{n_outputs})")
    for label, key, ds in runs:
        color = method_color(key)
        xs, line, band = _over_training(ds["eval_accuracy"])
        ax.plot(xs, line, "o-", color=color, ms=3.5, lw=1.2, label=label)
        if band is not None:
            ax.fill_between(xs, band[0].values, band[1].values, color=color, alpha=0.2)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training trials done [1]")
    ax.set_ylabel(_label(runs[0][2]["eval_accuracy"], "evaluation accuracy"))
    ax.legend(frameon=False, fontsize="small", loc="lower right")
    return fig


def plot_spectrum(datasets: Runs, matrix: str = "W_rec") -> Figure:
    r"""Spectral radius of the recurrent weights over training, and their eigenvalues.

    Left: :math:`\rho(W)` (:func:`bioperturb.metrics.spectral_radius`) at each
    evaluation, one colour per run.  Right: the eigenvalues in the complex plane before
    training (open grey circles, only when all runs start from the same weights) and
    after training (dots in the run's colour), with the unit circle and the line
    :math:`\operatorname{Re}\lambda = 1` beyond which the zero state of
    :math:`\tau\dot h = -h + W\tanh(h)` is unstable.

    Parameters
    ----------
    datasets : dict of label -> Dataset, or one Dataset
        Runs with a square ``matrix`` (eval_trial, post, pre); a ``method`` dim is split
        into runs, other extra dims are summarised (median and 25–75 % band on the left,
        pooled eigenvalues on the right).
    matrix : str
        The recurrent weight variable.

    Returns
    -------
    Figure
    """
    runs = _runs(datasets)
    missing = [label for label, _, ds in runs if matrix not in ds]
    if missing:
        raise ValueError(f"plot_spectrum: runs {missing} have no {matrix!r}")
    fig = Figure(figsize=(9.0, 4.0), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(1.3, 1))
    units = "1"
    initial = [ds[matrix].isel(eval_trial=0).values for _, _, ds in runs]
    shared_start = all(np.array_equal(initial[0], w, equal_nan=True) for w in initial)
    for k, (label, key, ds) in enumerate(runs):
        W = ds[matrix].rename(matrix)
        units = W.attrs.get("units", units)
        color = method_color(key)
        xs, line, band = _over_training(spectral_radius(W))
        left.plot(xs, line, "o-", color=color, ms=3.5, lw=1.2, label=label)
        if band is not None:
            left.fill_between(xs, band[0].values, band[1].values, color=color, alpha=0.2)
        if k == 0 and shared_start:
            start = np.ravel(eigenvalues(W.isel(eval_trial=0)).values)
            right.scatter(
                start.real,
                start.imag,
                s=14,
                facecolors="none",
                edgecolors="0.55",
                lw=0.7,
                label="before training",
            )
        end = np.ravel(eigenvalues(W.isel(eval_trial=-1)).values)
        right.scatter(
            end.real,
            end.imag,
            s=9,
            color=color,
            alpha=0.8,
            lw=0,
            label=f"after {int(ds['eval_trial'][-1])} trials ({label})",
        )
    left.axhline(1.0, color="0.6", lw=0.8, ls=":", label="ρ = 1")
    left.set_xlabel("training trials done [1]")
    left.set_ylabel(f"spectral radius ρ({matrix}) [{units}]")
    left.legend(frameon=False, fontsize="small", loc="best")
    angle = np.linspace(0, 2 * np.pi, 200)
    right.plot(np.cos(angle), np.sin(angle), color="0.6", lw=0.8, ls=":", label="|λ| = 1")
    right.axvline(1.0, color="0.3", lw=0.8, ls="--", label="Re λ = 1")
    right.set_aspect("equal", adjustable="datalim")
    right.set_xlabel(f"Re λ [{units}]")
    right.set_ylabel(f"Im λ [{units}]")
    right.set_title(f"eigenvalues of {matrix}", fontsize="medium")
    right.legend(frameon=False, fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def plot_weight_drift(datasets: Runs, matrices: tuple[str, ...] = WEIGHT_MATRICES) -> Figure:
    r"""Weight change over training per matrix: relative Frobenius norm and sign changes.

    Top row: :math:`\lVert W_k - W_0\rVert_F / \lVert W_0\rVert_F`; bottom row: the
    percentage of weights whose sign is opposite to their initial sign
    (:func:`bioperturb.metrics.weight_change_norm`,
    :func:`bioperturb.metrics.sign_change_fraction`), one column per matrix, one colour
    per run.

    Parameters
    ----------
    datasets : dict of label -> Dataset, or one Dataset
        Runs with weight snapshots (eval_trial, ...); a ``method`` dim is split into runs,
        other extra dims summarised by the median and 25–75 % band.
    matrices : tuple of str
        Variables to show (those missing in every run are skipped).

    Returns
    -------
    Figure
    """
    runs = _runs(datasets)
    present = [m for m in matrices if any(m in ds for _, _, ds in runs)]
    if not present:
        raise ValueError(f"plot_weight_drift: none of {list(matrices)} in the runs")
    fig = Figure(figsize=(3.3 * len(present), 5.2), layout="constrained")
    axes = np.asarray(fig.subplots(2, len(present), sharex=True, squeeze=False))
    for column, name in enumerate(present):
        top, bottom = axes[:, column]
        for _, key, ds in runs:
            if name not in ds:
                continue
            W = ds[name].rename(name)
            color = method_color(key)
            for ax, values, scale in (
                (top, weight_change_norm(W, relative=True), 1.0),
                (bottom, sign_change_fraction(W), 100.0),
            ):
                xs, line, band = _over_training(values)
                ax.plot(xs, scale * line, "o-", color=color, ms=3, lw=1.2)
                if band is not None:
                    ax.fill_between(
                        xs, scale * band[0].values, scale * band[1].values, color=color, alpha=0.2
                    )
        top.set_title(name, fontsize="medium")
        top.set_ylabel(f"‖Δ{name}‖_F / ‖{name}(0)‖_F [1]")
        bottom.set_ylabel(f"{name} with flipped sign [%]")
        bottom.set_xlabel("training trials done [1]")
        for ax in (top, bottom):
            ax.set_ylim(bottom=0)
    _run_legend(fig, runs)
    return fig


def plot_alignment(datasets: Runs, smooth: int | None = None) -> Figure:
    r"""Update–gradient alignment :math:`\cos(\Delta W, -\nabla L)` over training.

    One panel per matrix of the ``alignment`` variable (including ``all``), one colour per
    run, a grey line at 0 (a random direction).  Against ``align_trial`` (as training
    records it: the trial after each evaluation, at the weights before its update) or
    ``eval_trial`` the values are drawn with markers; along every training ``trial``
    (noisy single-trial estimates) as a thin line with its running mean over ``smooth``
    trials on top.  The x axis is the number of training trials done before the update.

    Parameters
    ----------
    datasets : dict of label -> Dataset, or one Dataset
        Runs with ``alignment`` (align_trial, eval_trial or trial; matrix, ...).
    smooth : int, optional
        Running-mean window in trials (default: 1/20 of the trials, at least 1).

    Returns
    -------
    Figure
    """
    runs = [run for run in _runs(datasets) if "alignment" in run[2]]
    if not runs:
        raise ValueError("plot_alignment: no run has an 'alignment' variable")
    matrices = list(dict.fromkeys(str(m) for _, _, ds in runs for m in ds["matrix"].values))
    fig = Figure(figsize=(3.2 * len(matrices), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(matrices), sharey=True))
    windows: set[int] = set()
    for ax, matrix in zip(axes, matrices, strict=True):
        ax.axhline(0.0, color="0.6", lw=0.8)
        for _, key, ds in runs:
            if matrix not in ds["matrix"].values:
                continue
            da = ds["alignment"].sel({"matrix": matrix}, drop=True)
            dim = next(d for d in ALIGNMENT_DIMS if d in da.dims)
            color = method_color(key)
            xs, line, band = _over_training(da, dim)
            if dim != "trial":
                ax.plot(xs, line, "o-", color=color, ms=3, lw=1.2)
            else:
                window = smooth or max(1, line.size // 20)
                kernel = np.ones(window) / window
                ax.plot(xs, line, color=color, lw=0.5, alpha=0.35)
                if line.size >= window:
                    ax.plot(xs[window - 1 :], np.convolve(line, kernel, "valid"), color=color)
                    windows.add(window)
            if band is not None:
                ax.fill_between(xs, band[0].values, band[1].values, color=color, alpha=0.2)
        ax.set_title(matrix, fontsize="medium")
        ax.set_xlabel("training trials done [1]")
    axes[0].set_ylabel("cos(rule estimate, ∇L) [1]")
    extra = []
    if windows:
        extra = [
            Line2D([], [], color="0.4", lw=0.5, alpha=0.6, label="single trial"),
            Line2D([], [], color="0.4", lw=1.5, label=f"running mean ({max(windows)} trials)"),
        ]
    _run_legend(fig, runs, extra)
    return fig


def plot_similarity(ds: xr.Dataset, reference: str = "bptt") -> Figure:
    """Similarity of each method's hidden activity to the reference's over training.

    Linear CKA (left) and RSA (right) of :func:`bioperturb.metrics.hidden_similarity`
    between each method and ``reference`` at every evaluation, one colour per method.

    Parameters
    ----------
    ds : Dataset
        Runs along a ``method`` dim, one of them ``reference``, with ``activity``.
    reference : str
        The method the others are compared with.

    Returns
    -------
    Figure
    """
    if "method" not in ds.dims or reference not in ds["method"].values:
        raise ValueError(f"plot_similarity needs a 'method' dim with {reference!r}")
    similarity = hidden_similarity(ds, ds.sel({"method": reference}, drop=True), eval_trial=None)
    fig = Figure(figsize=(8.0, 3.4), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    others = [m for m in ds["method"].values if m != reference]
    for ax, name, label in zip(
        axes, ("cka", "rsa"), ("linear CKA", "RSA (Spearman ρ)"), strict=True
    ):
        for method in others:
            xs, line, band = _over_training(similarity[name].sel({"method": method}, drop=True))
            ax.plot(xs, line, "o-", color=method_color(method), ms=3.5, lw=1.2, label=method)
            if band is not None:
                ax.fill_between(
                    xs, band[0].values, band[1].values, color=method_color(method), alpha=0.2
                )
        ax.set_ylim(0.0 if name == "cka" else min(0.0, ax.get_ylim()[0]), 1.02)
        ax.set_xlabel("training trials done [1]")
        ax.set_ylabel(f"{label} with {reference} [1]")
        ax.legend(frameon=False, fontsize="small")
    fig.suptitle(
        f"hidden activity compared with {reference} (condition × time samples)", fontsize="medium"
    )
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
    from bioperturb.dataset import atomic_write

    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=dpi))
