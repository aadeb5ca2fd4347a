r"""Spike-train statistics of spiking networks, in plain numpy.

Spike trains are ragged and given as two flat arrays of equal length, as a Brian2
``SpikeMonitor`` records them (``mon.i``, ``mon.t / second``): ``units`` (int index of the
neuron, 0 … n_units − 1) and ``times`` (spike time in seconds), in any order.  Results are
arrays over units (NaN where a unit has too few spikes for the statistic); rates are in
Hz, windows and times in seconds.

For a homogeneous Poisson process the ISI CV, the local variation LV and the Fano
factor are all 1; for a perfectly regular train CV = LV = 0.

References
----------
Softky, W. R. & Koch, C. (1993). The highly irregular firing of cortical cells is
inconsistent with temporal integration of random EPSPs. *Journal of Neuroscience*
13(1), 334–350.

Shinomoto, S., Shima, K. & Tanji, J. (2003). Differences in spiking patterns among
cortical neurons. *Neural Computation* 15(12), 2823–2842.

Nawrot, M. P., Boucsein, C., Rodriguez Molina, V., Riehle, A., Aertsen, A. & Rotter, S.
(2008). Measurement of variability dynamics in cortical spike trains. *Journal of
Neuroscience Methods* 169(2), 374–390.

Cohen, M. R. & Kohn, A. (2011). Measuring and interpreting neuronal correlations.
*Nature Neuroscience* 14(7), 811–819.
"""

from __future__ import annotations

import numpy as np

from bioperturb.metrics._util import pearson_matrix

__all__ = [
    "firing_rates",
    "spike_counts",
    "isi_cv",
    "isi_lv",
    "fano_factor",
    "spike_count_correlations",
]


def _trains(units, times, n_units: int) -> tuple[np.ndarray, np.ndarray]:
    units = np.asarray(units)
    times = np.asarray(times, dtype=float)
    if units.ndim != 1 or units.shape != times.shape:
        raise ValueError(
            f"units and times must be 1-D arrays of equal length, got {units.shape} and "
            f"{times.shape}"
        )
    if not (isinstance(n_units, (int, np.integer)) and n_units > 0):
        raise ValueError(f"n_units must be a positive integer, got {n_units!r}")
    if units.size and not np.all(np.equal(np.mod(units, 1), 0)):
        raise ValueError("units must be integer indices")
    units = units.astype(np.intp)
    if units.size and (units.min() < 0 or units.max() >= n_units):
        raise ValueError(
            f"unit indices must be in 0 … {n_units - 1}, got {units.min()} … {units.max()}"
        )
    if not np.all(np.isfinite(times)):
        raise ValueError("spike times must be finite")
    return units, times


def _intervals(units: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inter-spike intervals, in order, and the unit of each."""
    order = np.lexsort((times, units))
    units, times = units[order], times[order]
    same = units[1:] == units[:-1]
    return units[1:][same], np.diff(times)[same]


def _window(t_start: float, t_stop: float) -> None:
    if not t_stop > t_start:
        raise ValueError(f"t_stop ({t_stop!r} s) must be after t_start ({t_start!r} s)")


def firing_rates(units, times, n_units: int, t_start: float, t_stop: float) -> np.ndarray:
    r"""Mean firing rate of each unit, :math:`\nu_i = N_i / (t_\text{stop} - t_\text{start})`.

    Parameters
    ----------
    units : array of int
        Neuron index of each spike.
    times : array of float
        Spike times in seconds.
    n_units : int
        Number of neurons (silent ones get 0).
    t_start, t_stop : float
        Window in seconds; spikes in [t_start, t_stop) count.

    Returns
    -------
    ndarray (n_units,)
        Rates in Hz.
    """
    units, times = _trains(units, times, n_units)
    _window(t_start, t_stop)
    inside = (times >= t_start) & (times < t_stop)
    return np.bincount(units[inside], minlength=n_units) / (t_stop - t_start)


def spike_counts(
    units, times, n_units: int, t_start: float, t_stop: float, window: float
) -> np.ndarray:
    r"""Spike counts of each unit in consecutive windows.

    Windows :math:`[t_\text{start} + mw,\ t_\text{start} + (m+1)w)` for
    :math:`m = 0 \dots M-1`, :math:`M = \lfloor (t_\text{stop} - t_\text{start})/w \rfloor`
    (a remainder shorter than a window is left out; ratios within 1e-9 of an integer count
    as that integer).

    Parameters
    ----------
    units, times, n_units
        The spike trains (see :func:`firing_rates`).
    t_start, t_stop : float
        Range in seconds.
    window : float
        Window length :math:`w` in seconds.

    Returns
    -------
    ndarray (n_units, M) of int
    """
    units, times = _trains(units, times, n_units)
    _window(t_start, t_stop)
    if not window > 0:
        raise ValueError(f"window must be positive, got {window!r} s")
    ratio = (t_stop - t_start) / window
    n_windows = int(round(ratio)) if np.isclose(ratio, round(ratio), rtol=1e-9) else int(ratio)
    if n_windows < 1:
        raise ValueError(f"window ({window} s) is longer than t_stop − t_start")
    edges = t_start + window * np.arange(n_windows + 1)
    index = np.searchsorted(edges, times, side="right") - 1
    inside = (index >= 0) & (index < n_windows)
    flat = np.bincount(units[inside] * n_windows + index[inside], minlength=n_units * n_windows)
    return flat.reshape(n_units, n_windows)


def isi_cv(units, times, n_units: int) -> np.ndarray:
    r"""Coefficient of variation of the inter-spike intervals of each unit.

    .. math:: \mathrm{CV} = \frac{\sqrt{\frac{1}{n-1}\sum_k (I_k - \bar I)^2}}{\bar I}

    over the :math:`n` intervals :math:`I_k` of a unit (Softky & Koch 1993); 1 for a
    Poisson process, 0 for a regular train.  Its sampling error for a Poisson train is
    about :math:`1/\sqrt{n}`.  Sensitive to slow rate changes; see :func:`isi_lv`.

    Parameters
    ----------
    units, times, n_units
        The spike trains (see :func:`firing_rates`).

    Returns
    -------
    ndarray (n_units,)
        Dimensionless; NaN for units with fewer than 2 intervals (3 spikes).
    """
    units, times = _trains(units, times, n_units)
    isi_unit, isi = _intervals(units, times)
    n = np.bincount(isi_unit, minlength=n_units)
    mean = np.divide(
        np.bincount(isi_unit, weights=isi, minlength=n_units),
        n,
        out=np.zeros(n_units),
        where=n > 0,
    )
    squares = np.bincount(isi_unit, weights=(isi - mean[isi_unit]) ** 2, minlength=n_units)
    ok = (n >= 2) & (mean > 0)
    std = np.sqrt(np.divide(squares, n - 1, out=np.zeros(n_units), where=ok))
    return np.divide(std, mean, out=np.full(n_units, np.nan), where=ok)


def isi_lv(units, times, n_units: int) -> np.ndarray:
    r"""Local variation of the inter-spike intervals of each unit (Shinomoto et al. 2003).

    .. math:: \mathrm{LV} = \frac{3}{n-1}\sum_{k=1}^{n-1}
              \left(\frac{I_k - I_{k+1}}{I_k + I_{k+1}}\right)^2

    over the :math:`n` consecutive intervals :math:`I_k` of a unit.  It compares only
    neighbouring intervals, so unlike the CV it is insensitive to slow rate changes; 1 for
    a Poisson process (each term is then the square of a Uniform(−1, 1) variable), 0 for
    a regular train, < 1 for regular and > 1 for bursty firing.

    Parameters
    ----------
    units, times, n_units
        The spike trains (see :func:`firing_rates`).

    Returns
    -------
    ndarray (n_units,)
        Dimensionless; NaN for units with fewer than 2 intervals (3 spikes), or with two
        consecutive zero intervals.
    """
    units, times = _trains(units, times, n_units)
    isi_unit, isi = _intervals(units, times)
    neighbours = isi_unit[1:] == isi_unit[:-1]
    first, second = isi[:-1][neighbours], isi[1:][neighbours]
    pair_unit = isi_unit[1:][neighbours]
    total = first + second
    term = np.divide(first - second, total, out=np.full(total.shape, np.nan), where=total > 0) ** 2
    n_terms = np.bincount(pair_unit, minlength=n_units)
    sums = np.bincount(pair_unit, weights=term, minlength=n_units)
    return np.divide(3.0 * sums, n_terms, out=np.full(n_units, np.nan), where=n_terms > 0)


def fano_factor(
    units, times, n_units: int, t_start: float, t_stop: float, window: float
) -> np.ndarray:
    r"""Fano factor of the spike counts of each unit in consecutive windows.

    .. math:: F = \frac{\operatorname{Var}[N]}{\operatorname{E}[N]}

    with the :math:`M` window counts :math:`N_m` of :func:`spike_counts` and the unbiased
    (:math:`1/(M-1)`) variance.  1 for a Poisson process, whose estimate then scatters with
    standard deviation about :math:`\sqrt{2/(M-1)}`; counting over windows of one long
    train assumes a stationary rate (Nawrot et al. 2008 discuss estimation).

    Parameters
    ----------
    units, times, n_units
        The spike trains (see :func:`firing_rates`).
    t_start, t_stop : float
        Range in seconds.
    window : float
        Counting window in seconds.

    Returns
    -------
    ndarray (n_units,)
        Dimensionless; NaN for units without spikes, or with fewer than 2 windows.
    """
    counts = spike_counts(units, times, n_units, t_start, t_stop, window).astype(float)
    if counts.shape[1] < 2:
        return np.full(n_units, np.nan)
    mean = counts.mean(axis=1)
    variance = counts.var(axis=1, ddof=1)
    return np.divide(variance, mean, out=np.full(n_units, np.nan), where=mean > 0)


def spike_count_correlations(
    units, times, n_units: int, t_start: float, t_stop: float, window: float
) -> np.ndarray:
    r"""Spike-count (noise) correlations between all pairs of units.

    .. math:: r_{ij} = \frac{\operatorname{Cov}[N_i, N_j]}
              {\sqrt{\operatorname{Var}[N_i]\operatorname{Var}[N_j]}}

    Pearson correlation over the window counts of :func:`spike_counts` (Cohen & Kohn
    2011).  For independent trains the off-diagonal :math:`r_{ij}` scatter around 0 with
    standard deviation about :math:`1/\sqrt{M}` for :math:`M` windows.  The pairs
    :math:`i < j` are ``r[numpy.triu_indices(n_units, 1)]``.

    Parameters
    ----------
    units, times, n_units
        The spike trains (see :func:`firing_rates`).
    t_start, t_stop : float
        Range in seconds.
    window : float
        Counting window in seconds.

    Returns
    -------
    ndarray (n_units, n_units)
        Dimensionless, symmetric, 1 on the diagonal; NaN rows and columns for units whose
        count does not vary.
    """
    counts = spike_counts(units, times, n_units, t_start, t_stop, window).astype(float)
    return pearson_matrix(counts.T)
