"""Static classification of a small data set that ships with scikit-learn: one sample held
as input for a whole trial, its class answered at the trial's end.

It is the feed-forward benchmark of Dalm, van Gerven & Ahmad (2024; node perturbation,
iterative and activity-based, with and without decorrelation, against backpropagation)
on data sets small enough for a laptop and read from files inside scikit-learn, so
nothing is downloaded at run time: the 8×8 handwritten digits (1,797 samples, 64
features, 10 classes; the paper used MNIST and CIFAR-10), the Wisconsin breast-cancer
data (569, 30, 2), wine (178, 13, 3) and iris (150, 4, 3). Meant for ``model.kind =
"mlp"`` (docs/network-mlp.md), which needs the input for one step per hidden layer before
the loss counts. scikit-learn is an optional extra (``pip install 'bioperturb[digits]'``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bioperturb.schema import param
from bioperturb.tasks.base import DATASETS, DataSetTask, consecutive_periods, load_dataset

__all__ = ["ClassifyTask"]


class ClassifyTask(DataSetTask):
    """Classify one sample of a shipped data set, held as input for the whole trial.

    Periods: ``stimulus`` (the sample alone, ``stimulus_duration``), ``response`` (the
    sample still held; the one-hot class is the target and alone counts in the loss).
    Features are standardised with the mean and standard deviation of the training part
    (``standardise``; else divided by the training part's largest absolute value) and
    scaled by ``input_scale``. The data set is split once, by ``split_seed``, into an
    evaluation part (``eval_fraction``, stratified by class; conditions 0 … n_eval − 1)
    and the rest, from which training trials draw with replacement (conditions −1).
    Scored by accuracy.
    """

    name: ClassVar[str] = "classify"

    @dataclass(frozen=True)
    class Params:
        dataset: str = param("digits", choices=tuple(DATASETS), doc="which scikit-learn data set")
        stimulus_duration: float = param(
            0.002,
            unit="second",
            positive=True,
            doc="input before the loss counts (an MLP needs one step per hidden layer)",
        )
        response_duration: float = param(
            0.001, unit="second", positive=True, doc="steps where the class is the target"
        )
        input_scale: float = param(1.0, positive=True, doc="scale of the standardised input")
        standardise: bool = param(
            True,
            doc="z-score each feature with the training part's mean and std (else divide by "
            "the training part's largest absolute value)",
        )
        eval_fraction: float = param(
            0.2, positive=True, doc="fraction of the data held out for evaluation"
        )
        split_seed: int = param(0, nonnegative=True, doc="seed of the train/evaluation split")

        def check(self) -> None:
            """Cross-field constraints (raise ``ValueError("key: reason")``)."""
            if not self.eval_fraction < 1:
                raise ValueError(f"eval_fraction: must be below 1, got {self.eval_fraction}")

    meta: ClassVar[dict[str, Any]] = {
        "description": (
            "Static classification of a shipped data set (digits, breast cancer, wine, "
            "iris): one sample held per trial, its class on one output per class."
        ),
        "reference": (
            "Dalm S, van Gerven M, Ahmad N (2024) Effective learning with node perturbation "
            "in multi-layer neural networks, arXiv:2310.00965. Data: Alpaydin & Kaynak "
            "(1998) UCI optical digits; Street, Wolberg & Mangasarian (1993) Wisconsin "
            "breast cancer; Aeberhard & Forina (1991) UCI wine; Fisher (1936) iris."
        ),
        "tags": ["classification", "static", "supervised", "multi-class", "data set"],
    }

    def __init__(self, params: ClassifyTask.Params, dt: float):
        super().__init__(params, dt)
        params.check()
        self._periods, self._n_steps = consecutive_periods(
            params, ("stimulus", "response"), self.dt
        )
        features, labels = load_dataset(params.dataset)
        self._classes = int(labels.max()) + 1
        rng = np.random.default_rng(params.split_seed)
        held = []
        for c in range(self._classes):  # stratified: the same fraction of every class
            members = rng.permutation(np.nonzero(labels == c)[0])
            held.append(members[: max(1, round(params.eval_fraction * members.size))])
        held = np.sort(np.concatenate(held))
        if held.size >= labels.size:
            raise ValueError(f"eval_fraction: {params.eval_fraction} leaves no training samples")
        #: indices (into the data set) of the evaluation samples, in data-set order
        self.eval_index = held
        #: indices of the samples training trials draw from
        self.train_index = np.setdiff1d(np.arange(labels.size), held)
        train = features[self.train_index]
        if params.standardise:
            centre, spread = train.mean(axis=0), train.std(axis=0)
        else:
            centre, spread = np.zeros(features.shape[1]), np.abs(train).max(axis=0)
        spread = np.where(spread > 0, spread, 1.0)  # constant features (digit borders) stay 0
        self._features = (features - centre) / spread * params.input_scale
        self._labels = labels

    @property
    def n_inputs(self) -> int:
        return self._features.shape[1]

    @property
    def n_outputs(self) -> int:
        return self._classes

    def _inputs(self, index: np.ndarray) -> np.ndarray:
        """The sample, held for the whole trial."""
        return np.repeat(self._features[index][:, None, :], self._n_steps, axis=1)
