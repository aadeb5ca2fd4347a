"""Standard figures and statistics tables of result files.

:func:`plot_result` is ``bioperturb plot RESULT.nc``: the standard figures of a run, or of
a compare file with a ``method`` dim (see docs/figures.md).  :func:`compare_report` and
:func:`stats_report` are the analysis scripts ``analysis/compare_bptt.py`` and
``analysis/stats_table.py``; :func:`write_table` writes a statistics table
(:func:`bioperturb.metrics.summary_table`) as markdown and CSV.

Problems with the input (a missing file, a file that is not a bioperturb result, an
unwritable folder) raise :class:`bioperturb.schema.ConfigError`, reported by the command
line on one line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from bioperturb import plotting
from bioperturb.dataset import read_dataset
from bioperturb.metrics.summary import comparison_table, summary_table
from bioperturb.schema import ConfigError

__all__ = [
    "load_result",
    "run_labels",
    "standard_figures",
    "plot_result",
    "table_markdown",
    "write_table",
    "compare_report",
    "stats_report",
]

log = logging.getLogger(__name__)

#: Dims of the data model (docs/data-model.md); any other dim (``method``, ``seed``, sweep
#: parameters) indexes runs.
RUN_DIMS = (
    "trial",
    "eval_trial",
    "align_trial",
    "time",
    "condition",
    "unit",
    "post",
    "pre",
    "input",
    "output",
    "matrix",
)


def load_result(path: str | os.PathLike) -> xr.Dataset:
    """Read a result file fully into memory, checking that it is a bioperturb run.

    Raises
    ------
    ConfigError
        If the file is missing, is not netCDF, or has no ``eval_loss`` variable.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "", "no such file")
    try:
        ds = read_dataset(path)
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ConfigError(
            str(path), "", f"not a netCDF file that xarray can read ({reason})"
        ) from err
    if "eval_loss" not in ds or "eval_trial" not in ds.dims:
        raise ConfigError(
            str(path),
            "",
            "not a bioperturb result: no 'eval_loss' over 'eval_trial' (see docs/data-model.md)",
        )
    return ds


def run_labels(paths: Sequence[str | os.PathLike]) -> list[str]:
    """A label per file: its stem, or ``folder/stem`` where stems repeat."""
    paths = [Path(p) for p in paths]
    stems = [p.stem for p in paths]
    labels = [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]
    if len(set(labels)) < len(labels):
        raise ConfigError(", ".join(map(str, paths)), "", "two files have the same name")
    return labels


def _single_runs(ds: xr.Dataset) -> Iterator[tuple[str, xr.Dataset]]:
    """(suffix, one run) per method; other run dims at their first index."""
    extra = {d: 0 for d in ds.dims if d not in RUN_DIMS and d != "method"}
    ds = ds.isel(extra)
    if "method" not in ds.dims:
        yield "", ds
        return
    for method in ds["method"].values:
        yield f"_{method}", ds.sel({"method": method}, drop=True)


def _pca_figure(run: xr.Dataset) -> Figure:
    n = min(3, run.sizes["unit"], run.sizes["condition"] * run.sizes["time"])
    return plotting.plot_pca(run, n_components=n)


def _titled(fig: Figure, prefix: str) -> Figure:
    """Prefix the first panel's title (e.g. with the method)."""
    if prefix:
        ax = fig.axes[0]
        ax.set_title(prefix + ax.get_title(), fontsize=ax.title.get_fontsize())
    return fig


def standard_figures(ds: xr.Dataset) -> Iterator[tuple[str, Callable[[], Figure]]]:
    """The standard figures of a run or compare file, as (name, figure factory) pairs.

    Names: ``learning``, ``accuracy`` (with ``eval_accuracy``: tasks scored by
    accuracy), ``activity[_<method>]``, ``raster[_<method>]`` (spiking runs),
    ``pca[_<method>]``,
    ``weight_changes``, ``weight_drift``, ``spectrum``, ``alignment`` (with an
    ``alignment`` variable) and ``similarity`` (compare files with a ``bptt`` method).
    Figures are made only when called, so a caller can write and drop them one by one.
    """
    yield "learning", lambda: plotting.plot_learning_comparison(ds)
    if "eval_accuracy" in ds:
        yield "accuracy", lambda: plotting.plot_accuracy(ds)
    for suffix, run in _single_runs(ds):
        title = f"{suffix[1:]}: " if suffix else ""
        if all(v in run for v in ("activity", "output_y", "target")):

            def activity(run=run, title=title):
                return _titled(plotting.plot_activity(run), title)

            yield f"activity{suffix}", activity
        if "spike_unit" in run and "membrane" in run:

            def raster(run=run, title=title):
                return _titled(plotting.plot_raster(run), title)

            yield f"raster{suffix}", raster
        if "activity" in run and run.sizes["unit"] >= 2:

            def pca(run=run, title=title):
                return _titled(_pca_figure(run), title)

            yield f"pca{suffix}", pca
    if any(m in ds for m in plotting.WEIGHT_MATRICES) and ds.sizes["eval_trial"] >= 2:
        yield "weight_changes", lambda: plotting.plot_weight_changes(ds)
        yield "weight_drift", lambda: plotting.plot_weight_drift(ds)
    if "W_rec" in ds:
        yield "spectrum", lambda: plotting.plot_spectrum(ds)
    if "alignment" in ds:
        yield "alignment", lambda: plotting.plot_alignment(ds)
    if "method" in ds.dims and "bptt" in ds["method"].values and "activity" in ds:
        if ds.sizes["method"] > 1:
            yield "similarity", lambda: plotting.plot_similarity(ds)


def _output_dir(out_dir: str | os.PathLike) -> Path:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(str(out), "", f"cannot create the output directory ({err})") from err
    if not os.access(out, os.W_OK):
        raise ConfigError(str(out), "", "output directory is not writable")
    return out


def _save_all(
    figures: Iterator[tuple[str, Callable[[], Figure]]], out: Path, stem: str
) -> list[Path]:
    written = []
    for name, make in figures:
        try:
            fig = make()
        except ValueError as err:
            log.warning("%s_%s: figure skipped: %s", stem, name, err)
            continue
        written.append(plotting.save_figure(fig, out / f"{stem}_{name}.png"))
    return written


def plot_result(path: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Write the standard figures of a result file as ``<out_dir>/<stem>_<figure>.png``.

    Parameters
    ----------
    path : path
        A run written by ``bioperturb run`` or a compare file (``bioperturb compare``).
    out_dir : path, optional
        Folder for the PNG files (default: the result file's folder).

    Returns
    -------
    list of Path
        The files written (see :func:`standard_figures` for the names).  A figure the data
        cannot support (e.g. PCA of a diverged run) is skipped with a logged warning.
    """
    if _is_synaptic_file(path):
        from bioperturb.synaptic import synaptic_figures

        ds = read_dataset(path)
        out = _output_dir(Path(path).parent if out_dir is None else out_dir)
        return _save_all(synaptic_figures(ds), out, Path(path).stem)
    ds = load_result(path)
    if not ds.sizes.get("eval_trial", 0):
        status = ds.attrs.get("status", "?")
        reason = ds.attrs.get("status_reason", "")
        raise ConfigError(
            str(path),
            "",
            f"nothing to plot: the run recorded no evaluation (status {status}"
            + (f": {reason})" if reason else ")"),
        )
    out = _output_dir(Path(path).parent if out_dir is None else out_dir)
    return _save_all(standard_figures(ds), out, Path(path).stem)


def _is_synaptic_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a readable result of a synaptic protocol (kind = "synaptic")."""
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            return ds.attrs.get("kind") == "synaptic"
    except (OSError, ValueError):
        return False  # load_result reports the problem


def _cell(value: float, digits: int) -> str:
    if np.isnan(value):
        return "–"
    if float(value).is_integer() and abs(value) < 10**digits:
        return str(int(value))
    return f"{value:.{digits}g}"


def table_markdown(table: pd.DataFrame, digits: int = 4, title: str | None = None) -> str:
    """A statistics table as a GitHub-flavoured markdown table (``–``: not available).

    Numbers are shown with ``digits`` significant digits, whole numbers as integers.
    """

    def text(value) -> str:
        return str(value).replace("|", "\\|")

    header = [text(table.index.name or ""), *map(text, table.columns)]
    lines = [f"# {title}", ""] if title else []
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" + "---:|" * len(table.columns))
    for label, row in table.iterrows():
        cells = [_cell(float(v), digits) for v in row.to_numpy()]
        lines.append("| " + " | ".join([text(label), *cells]) + " |")
    return "\n".join(lines) + "\n"


def _write_text(path: Path, text: str) -> Path:
    from bioperturb.dataset import write_text

    return write_text(path, text)


def write_table(
    table: pd.DataFrame, path: str | os.PathLike, title: str | None = None
) -> list[Path]:
    """Write ``table`` as ``<path>.md`` (:func:`table_markdown`) and ``<path>.csv``.

    Each file is written atomically (temporary file, then rename).  The CSV keeps full
    precision, an empty cell where a value is not available.

    Returns
    -------
    list of Path
        The markdown and CSV files.
    """
    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".md", ".csv") else base
    base.parent.mkdir(parents=True, exist_ok=True)
    md = _write_text(base.with_name(base.name + ".md"), table_markdown(table, title=title))
    csv = _write_text(base.with_name(base.name + ".csv"), table.to_csv())
    return [md, csv]


def compare_report(
    paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike, reference: str = "bptt"
) -> list[Path]:
    """Rule against BPTT: what ``analysis/compare_bptt.py`` writes.

    For each compare file ``<stem>.nc``: ``<stem>_learning.png`` (loss against trials and
    against training wall time, one colour per method), ``<stem>_accuracy.png`` (if it
    has ``eval_accuracy``) and ``<stem>_similarity.png`` (CKA and RSA of each method's
    hidden activity with the reference over training); for all files together
    ``compare_bptt.md`` and ``compare_bptt.csv``
    (:func:`bioperturb.metrics.comparison_table`: final loss, trials and training time
    to 30/10/5 % of the initial loss, final accuracy and trials to 90 % accuracy where
    there is ``eval_accuracy``, final sequence accuracy and final NRMSE (lower is better)
    where there are ``eval_sequence_accuracy`` and ``eval_nrmse``, CKA and RSA with the
    reference at the last evaluation).

    Returns
    -------
    list of Path
        The files written.
    """
    labels = run_labels(paths)
    datasets = {}
    for label, path in zip(labels, paths, strict=True):
        ds = load_result(path)
        if "method" not in ds.dims or reference not in ds["method"].values:
            raise ConfigError(
                str(path), "", f"not a compare file: no 'method' dim with {reference!r}"
            )
        datasets[label] = ds
    out = _output_dir(out_dir)
    written = []
    for label, ds in datasets.items():
        stem = label.replace("/", "_")

        def figures(ds=ds):
            yield "learning", lambda: plotting.plot_learning_comparison(ds)
            if "eval_accuracy" in ds:
                yield "accuracy", lambda: plotting.plot_accuracy(ds)
            if "activity" in ds and ds.sizes["method"] > 1:
                yield "similarity", lambda: plotting.plot_similarity(ds, reference)

        written += _save_all(figures(), out, stem)
    table = comparison_table(datasets, reference)
    written += write_table(table, out / "compare_bptt", title=f"Methods compared with {reference}")
    return written


def stats_report(paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> list[Path]:
    """Statistics of several runs side by side: what ``analysis/stats_table.py`` writes.

    ``stats_table.md`` and ``stats_table.csv`` (:func:`bioperturb.metrics.summary_table`,
    one column per run, or per method of a compare file), and the figures
    ``stats_learning.png``, ``stats_accuracy.png`` (if some run has ``eval_accuracy``),
    ``stats_weight_drift.png`` and ``stats_spectrum.png`` with all runs together.

    Returns
    -------
    list of Path
        The files written.
    """
    labels = run_labels(paths)
    datasets = {label: load_result(path) for label, path in zip(labels, paths, strict=True)}
    out = _output_dir(out_dir)

    def figures():
        yield "learning", lambda: plotting.plot_learning_comparison(datasets)
        if any("eval_accuracy" in ds for ds in datasets.values()):
            yield "accuracy", lambda: plotting.plot_accuracy(datasets)
        if all(any(m in ds for m in plotting.WEIGHT_MATRICES) for ds in datasets.values()):
            yield "weight_drift", lambda: plotting.plot_weight_drift(datasets)
        if all("W_rec" in ds for ds in datasets.values()):
            yield "spectrum", lambda: plotting.plot_spectrum(datasets)

    written = _save_all(figures(), out, "stats")
    table = summary_table(datasets)
    written += write_table(table, out / "stats_table", title="Statistics of the runs")
    return written
