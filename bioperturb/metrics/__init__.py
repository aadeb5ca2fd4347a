"""Metrics: pure functions from runs (xarray Datasets / DataArrays) to results.

Every result carries ``units`` and ``long_name``/``description`` attributes saying what
it is and how it was computed.  The equations and citations are in docs/metrics.md and in
each function's docstring.

- :mod:`~bioperturb.metrics.learning`: sample efficiency (trials to threshold, final and
  relative loss, loss against wall time), accuracy of classification tasks, sequence
  accuracy and NRMSE;
- :mod:`~bioperturb.metrics.alignment`: cosine of an update with −∇L;
- :mod:`~bioperturb.metrics.similarity`: CKA and RSA between two networks;
- :mod:`~bioperturb.metrics.activity`: dimensionality, correlations, sparseness, PCA;
- :mod:`~bioperturb.metrics.spikes`: ISI CV and LV, Fano factor, count correlations;
- :mod:`~bioperturb.metrics.plasticity`: weight changes, sign changes, Dale compliance,
  spectrum of the recurrent weights, alignment summary;
- :mod:`~bioperturb.metrics.summary`: one table of the statistics of several runs.
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
    accuracy,
    final_loss,
    learning_curve_vs_time,
    nrmse,
    relative_loss,
    sequence_accuracy,
    time_to_threshold,
    trials_to_accuracy,
    trials_to_threshold,
)
from bioperturb.metrics.plasticity import (
    alignment_summary,
    dale_compliance,
    eigenvalues,
    plasticity_statistics,
    sign_change_fraction,
    spectral_radius,
    weight_change,
    weight_change_histogram,
    weight_change_norm,
    weight_change_quantiles,
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
from bioperturb.metrics.summary import (
    comparison_statistics,
    comparison_table,
    summary_statistics,
    summary_table,
)

__all__ = [
    "trials_to_threshold",
    "final_loss",
    "relative_loss",
    "learning_curve_vs_time",
    "accuracy",
    "sequence_accuracy",
    "nrmse",
    "trials_to_accuracy",
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
    "weight_change",
    "weight_change_norm",
    "weight_change_quantiles",
    "weight_change_histogram",
    "sign_change_fraction",
    "dale_compliance",
    "spectral_radius",
    "eigenvalues",
    "plasticity_statistics",
    "alignment_summary",
    "time_to_threshold",
    "summary_statistics",
    "summary_table",
    "comparison_statistics",
    "comparison_table",
]
