"""Metrics: pure functions from runs (xarray Datasets / DataArrays) to results.

Every result carries ``units`` and ``long_name``/``description`` attributes saying what
it is and how it was computed.  The equations and citations are in docs/metrics.md and in
each function's docstring.

- :mod:`~bioperturb.metrics.learning`: sample efficiency (trials to threshold, final and
  relative loss, loss against wall time);
- :mod:`~bioperturb.metrics.alignment`: cosine of an update with −∇L;
- :mod:`~bioperturb.metrics.similarity`: CKA and RSA between two networks;
- :mod:`~bioperturb.metrics.activity`: dimensionality, correlations, sparseness, PCA;
- :mod:`~bioperturb.metrics.spikes`: ISI CV and LV, Fano factor, count correlations.
"""

from bioperturb.metrics.activity import (
    activity_distribution,
    pairwise_correlations,
    participation_ratio,
    pca_trajectories,
    sparseness,
)
from bioperturb.metrics.alignment import alignment, cosine
from bioperturb.metrics.learning import (
    final_loss,
    learning_curve_vs_time,
    relative_loss,
    trials_to_threshold,
)
from bioperturb.metrics.similarity import hidden_similarity, linear_cka, rsa
from bioperturb.metrics.spikes import (
    fano_factor,
    firing_rates,
    isi_cv,
    isi_lv,
    spike_count_correlations,
    spike_counts,
)

__all__ = [
    "trials_to_threshold",
    "final_loss",
    "relative_loss",
    "learning_curve_vs_time",
    "cosine",
    "alignment",
    "linear_cka",
    "rsa",
    "hidden_similarity",
    "participation_ratio",
    "pairwise_correlations",
    "activity_distribution",
    "sparseness",
    "pca_trajectories",
    "firing_rates",
    "spike_counts",
    "isi_cv",
    "isi_lv",
    "fano_factor",
    "spike_count_correlations",
]
