"""The ``ds.bp`` accessor: metrics and plots of a run Dataset as methods.

Importing :mod:`bioperturb` registers it::

    import bioperturb
    ds = xr.open_dataset("results/td_anp.nc")
    ds.bp.trials_to_threshold(fraction=0.05)
    ds.bp.participation_ratio()
    ds.bp.plot_learning_curve()

Each method is a thin wrapper around a function of :mod:`bioperturb.metrics` or
:mod:`bioperturb.plotting`, applied to the variable of the data model it names
(``eval_loss`` for the learning metrics, ``activity`` of the last evaluation for the
activity statistics).  ``eval_trial`` arguments are positions (−1: the last
evaluation; ``None``: all); to choose by trials done, select first:
``ds.sel(eval_trial=500).bp.participation_ratio()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import xarray as xr

from bioperturb import metrics
from bioperturb.metrics._util import activity_of, select_eval

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["BioperturbAccessor"]


@xr.register_dataset_accessor("bp")
class BioperturbAccessor:
    """Metrics and plots of one run (or of runs stacked along ``method``/``seed``)."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def _variable(self, name: str) -> xr.DataArray:
        if name not in self._ds:
            raise ValueError(f"the Dataset has no {name!r} variable")
        return self._ds[name]

    def _activity(self, eval_trial: int | None) -> xr.DataArray:
        return select_eval(activity_of(self._ds), eval_trial)

    # learning -------------------------------------------------------------------------

    def trials_to_threshold(
        self, fraction: float = 0.05, variable: str = "eval_loss", interpolate: bool = False
    ) -> xr.DataArray:
        """Trials until ``variable`` falls to ``fraction`` of its initial value.

        See :func:`bioperturb.metrics.trials_to_threshold`.
        """
        return metrics.trials_to_threshold(
            self._variable(variable), fraction, interpolate=interpolate
        )

    def final_loss(self, variable: str = "eval_loss", n_last: int = 1) -> xr.DataArray:
        """Mean of the last ``n_last`` values of ``variable``; see
        :func:`bioperturb.metrics.final_loss`."""
        return metrics.final_loss(self._variable(variable), n_last=n_last)

    def relative_loss(self, variable: str = "eval_loss") -> xr.DataArray:
        """``variable`` divided by its initial value; see
        :func:`bioperturb.metrics.relative_loss`."""
        return metrics.relative_loss(self._variable(variable))

    def learning_curve_vs_time(self) -> xr.Dataset:
        """``eval_loss`` with the elapsed training wall time; see
        :func:`bioperturb.metrics.learning_curve_vs_time`."""
        return metrics.learning_curve_vs_time(self._ds)

    # hidden activity ------------------------------------------------------------------

    def participation_ratio(self, eval_trial: int | None = -1) -> xr.DataArray:
        """Participation ratio of ``activity``; see
        :func:`bioperturb.metrics.participation_ratio`."""
        return metrics.participation_ratio(self._activity(eval_trial))

    def pairwise_correlations(self, eval_trial: int | None = -1) -> xr.DataArray:
        """Correlations of all pairs of sampled units; see
        :func:`bioperturb.metrics.pairwise_correlations`."""
        return metrics.pairwise_correlations(self._activity(eval_trial))

    def activity_distribution(
        self, bins: int | np.ndarray = 50, eval_trial: int | None = -1
    ) -> xr.DataArray:
        """Density of activity values; see :func:`bioperturb.metrics.activity_distribution`."""
        return metrics.activity_distribution(self._activity(eval_trial), bins)

    def sparseness(
        self,
        kind: Literal["lifetime", "population"] = "population",
        eval_trial: int | None = -1,
    ) -> xr.DataArray:
        """Vinje–Gallant sparseness of ``activity`` (needs non-negative rates); see
        :func:`bioperturb.metrics.sparseness`."""
        return metrics.sparseness(self._activity(eval_trial), kind)

    def pca(self, n_components: int = 3, eval_trial: int | None = -1) -> xr.Dataset:
        """PCA trajectories of ``activity``; see :func:`bioperturb.metrics.pca_trajectories`."""
        return metrics.pca_trajectories(self._ds, n_components, eval_trial)

    def similarity(
        self, other: xr.Dataset, eval_trial: int | None = -1, metric: str = "correlation"
    ) -> xr.Dataset:
        """CKA and RSA of this run's activity with ``other``'s; see
        :func:`bioperturb.metrics.hidden_similarity`."""
        return metrics.hidden_similarity(self._ds, other, eval_trial, metric=metric)

    # plasticity -----------------------------------------------------------------------

    def _weights(self, matrix: str) -> xr.DataArray:
        return self._variable(matrix).rename(matrix)

    def plasticity(self, matrices: Sequence[str] | None = None) -> xr.Dataset:
        """All weight-change statistics per matrix and evaluation; see
        :func:`bioperturb.metrics.plasticity_statistics`."""
        return metrics.plasticity_statistics(self._ds, matrices)

    def weight_change_norm(self, matrix: str = "W_rec", relative: bool = False) -> xr.DataArray:
        """``||W_k - W_0||_F`` over evaluations; see
        :func:`bioperturb.metrics.weight_change_norm`."""
        return metrics.weight_change_norm(self._weights(matrix), relative=relative)

    def weight_change_quantiles(
        self, matrix: str = "W_rec", q: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95)
    ) -> xr.DataArray:
        """Quantiles of ``|W_k - W_0|``; see :func:`bioperturb.metrics.weight_change_quantiles`."""
        return metrics.weight_change_quantiles(self._weights(matrix), q)

    def weight_change_histogram(
        self, matrix: str = "W_rec", bins: int = 50, absolute: bool = True
    ) -> xr.DataArray:
        """Density of ``|W_k - W_0|``; see :func:`bioperturb.metrics.weight_change_histogram`."""
        return metrics.weight_change_histogram(self._weights(matrix), bins, absolute=absolute)

    def sign_changes(self, matrix: str = "W_rec") -> xr.DataArray:
        """Fraction of weights with flipped sign; see
        :func:`bioperturb.metrics.sign_change_fraction`."""
        return metrics.sign_change_fraction(self._weights(matrix))

    def dale_compliance(self, matrix: str = "W_rec", tol: float = 0.0) -> xr.DataArray:
        """Fraction of presynaptic units with one outgoing sign; see
        :func:`bioperturb.metrics.dale_compliance`."""
        return metrics.dale_compliance(self._weights(matrix), tol)

    def spectral_radius(self, matrix: str = "W_rec") -> xr.DataArray:
        """Spectral radius at each evaluation; see :func:`bioperturb.metrics.spectral_radius`."""
        return metrics.spectral_radius(self._weights(matrix))

    def eigenvalues(self, matrix: str = "W_rec") -> xr.DataArray:
        """Eigenvalues at each evaluation; see :func:`bioperturb.metrics.eigenvalues`."""
        return metrics.eigenvalues(self._weights(matrix))

    def alignment_summary(self) -> xr.Dataset:
        """Summary of ``alignment`` over training; see
        :func:`bioperturb.metrics.alignment_summary`."""
        return metrics.alignment_summary(self._ds)

    def summary(self) -> xr.Dataset:
        """Summary statistics of the run; see :func:`bioperturb.metrics.summary_statistics`."""
        return metrics.summary_statistics(self._ds)

    # plots ----------------------------------------------------------------------------

    def plot_learning_curve(
        self,
        ax: Axes | None = None,
        x: Literal["trial", "wall_time"] = "trial",
        log: bool = True,
        label: str | None = None,
    ) -> Figure:
        """Training and evaluation loss; see :func:`bioperturb.plotting.plot_learning_curves`.

        ``label`` (default: the ``method`` attribute, else ``"run"``) names the run and picks
        its colour; a ``method`` dim is split into its methods.
        """
        from bioperturb.plotting import plot_learning_curves

        name = label or str(self._ds.attrs.get("method", "run"))
        runs = self._ds if "method" in self._ds.dims else {name: self._ds}
        return plot_learning_curves(runs, x=x, log=log, ax=ax)

    def plot_activity(self, eval_trial: int = -1, condition: int = 0) -> Figure:
        """Activity heatmap and readout; see :func:`bioperturb.plotting.plot_activity`."""
        from bioperturb.plotting import plot_activity

        return plot_activity(self._ds, eval_trial=eval_trial, condition=condition)

    def plot_weight_changes(self) -> Figure:
        """Weight-change histograms; see :func:`bioperturb.plotting.plot_weight_changes`."""
        from bioperturb.plotting import plot_weight_changes

        return plot_weight_changes(self._ds)

    def plot_pca(self, eval_trial: int = -1) -> Figure:
        """PCA trajectories; see :func:`bioperturb.plotting.plot_pca`."""
        from bioperturb.plotting import plot_pca

        return plot_pca(self._ds, eval_trial=eval_trial)

    def plot_spectrum(self) -> Figure:
        """Spectral radius over training and eigenvalues of ``W_rec``; see
        :func:`bioperturb.plotting.plot_spectrum`."""
        from bioperturb.plotting import plot_spectrum

        return plot_spectrum(self._ds)

    def plot_weight_drift(self) -> Figure:
        """Relative weight change and sign changes over training; see
        :func:`bioperturb.plotting.plot_weight_drift`."""
        from bioperturb.plotting import plot_weight_drift

        return plot_weight_drift(self._ds)

    def plot_alignment(self) -> Figure:
        """Update-gradient alignment over training; see
        :func:`bioperturb.plotting.plot_alignment`."""
        from bioperturb.plotting import plot_alignment

        return plot_alignment(self._ds)
