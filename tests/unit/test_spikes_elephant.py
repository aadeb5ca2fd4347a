"""Cross-check of our spike-train statistics against Elephant on the same trains.

Elephant (the optional extra ``bioperturb[spikes]``) is the reference toolkit our users
know; bioperturb must not need it, so this test runs only where it is installed.
"""

from __future__ import annotations

import numpy as np
import pytest

from bioperturb.metrics import fano_factor, isi_cv, isi_lv

elephant_statistics = pytest.importorskip("elephant.statistics")
neo = pytest.importorskip("neo")
pq = pytest.importorskip("quantities")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

N_UNITS, T_STOP, RATE = 4, 40.0, 15.0


@pytest.fixture(scope="module")
def trains():
    rng = np.random.default_rng(2024)
    units, times = [], []
    for u in range(N_UNITS):
        n = rng.poisson(RATE * (u + 1) * T_STOP)
        t = np.sort(rng.uniform(0.0, T_STOP, n))
        units.append(np.full(n, u))
        times.append(t)
    return np.concatenate(units), np.concatenate(times)


def test_cv_and_lv_equal_elephant(trains):
    units, times = trains
    ours_cv, ours_lv = isi_cv(units, times, N_UNITS), isi_lv(units, times, N_UNITS)
    for u in range(N_UNITS):
        isi = elephant_statistics.isi(np.sort(times[units == u]))
        n = len(isi)
        # same intervals; Elephant's CV uses the population SD (1/n), ours the sample SD
        # (1/(n − 1)): they differ by the factor √(n/(n − 1)), otherwise only by round-off
        assert ours_cv[u] * np.sqrt((n - 1) / n) == pytest.approx(
            elephant_statistics.cv(isi), rel=1e-9
        )
        assert ours_lv[u] == pytest.approx(elephant_statistics.lv(isi), rel=1e-9)


def test_fano_factor_equals_elephant_over_windows(trains):
    units, times = trains
    window = 1.0
    n_windows = int(T_STOP / window)
    ours = fano_factor(units, times, N_UNITS, 0.0, T_STOP, window)
    for u in range(N_UNITS):
        t = np.sort(times[units == u])
        pieces = [
            neo.SpikeTrain(
                (t[(t >= k * window) & (t < (k + 1) * window)] - k * window) * pq.s,
                t_stop=window * pq.s,
            )
            for k in range(n_windows)
        ]
        theirs = elephant_statistics.fanofactor(pieces)
        # Elephant divides the variance by M, we by M − 1 (unbiased)
        assert ours[u] * (n_windows - 1) / n_windows == pytest.approx(theirs, rel=1e-9)
