"""Task interface: a task turns its parameters and a seed into trials as arrays.

A trial is a sequence of ``n_steps`` Euler steps of length ``dt`` with inputs
``u`` (n_steps, n_inputs), targets ``y*`` (n_steps, n_outputs) and a loss mask
(n_steps,) that is 1 where the loss counts.  Trials are built from named periods
(fixation, stimulus, delay, response, ...) in the style of neurogym.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "Trials",
    "Task",
    "DataSetTask",
    "DATASETS",
    "load_dataset",
    "whole_steps",
    "consecutive_periods",
]


@dataclass(frozen=True)
class Trials:
    """A batch of trials, all of the same length.

    Attributes
    ----------
    inputs : ndarray, shape (n_trials, n_steps, n_inputs), float64
    targets : ndarray, shape (n_trials, n_steps, n_outputs), float64
    mask : ndarray, shape (n_trials, n_steps), float64, 1 where the loss counts
    periods : dict name -> (start_step, stop_step), half-open: the layout of every trial
        or, where the timing varies per trial, of the longest one
    conditions : ndarray, shape (n_trials,), int, the condition label of each trial
    dt : float, step in seconds
    trial_periods : dict name -> ndarray (n_trials, 2) of each trial's own (start, stop),
        for tasks whose timing varies per trial (None where every trial has ``periods``);
        a trial shorter than ``n_steps`` is padded at its end with steps that have no
        input, no target and no loss
    """

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    periods: dict[str, tuple[int, int]]
    conditions: np.ndarray
    dt: float
    trial_periods: dict[str, np.ndarray] | None = None

    def periods_of(self, index: int) -> dict[str, tuple[int, int]]:
        """The periods of trial ``index`` (its own where the timing varies per trial)."""
        if self.trial_periods is None:
            return dict(self.periods)
        return {
            name: (int(a[index, 0]), int(a[index, 1])) for name, a in self.trial_periods.items()
        }

    @property
    def n_trials(self) -> int:
        return self.inputs.shape[0]

    @property
    def n_steps(self) -> int:
        return self.inputs.shape[1]

    def __getitem__(self, index) -> Trials:
        """Select trials (an int keeps a trial axis of length 1)."""
        sel = np.atleast_1d(np.arange(self.n_trials)[index])
        own = None
        if self.trial_periods is not None:
            own = {name: a[sel] for name, a in self.trial_periods.items()}
        return Trials(
            self.inputs[sel],
            self.targets[sel],
            self.mask[sel],
            dict(self.periods),
            self.conditions[sel],
            self.dt,
            own,
        )


class Task:
    """Base class of all tasks.

    Subclasses set ``name``, ``Params`` (a dataclass declared with
    :func:`bioperturb.schema.param`), ``meta`` (description, reference, tags) and
    implement :meth:`trials` and :meth:`eval_trials`.

    ``score`` says how a run on the task is scored besides its loss: ``"accuracy"`` for
    tasks whose answer is the output channel with the largest mean over the loss-masked
    steps (the run's Dataset then holds ``eval_accuracy``, see
    :func:`bioperturb.metrics.accuracy`); ``"sequence"`` for tasks that answer one symbol
    per slot (:attr:`slots`; ``eval_sequence_accuracy``, see
    :func:`bioperturb.metrics.sequence_accuracy`); ``"nrmse"`` for forecasting tasks
    (``eval_nrmse``, see :func:`bioperturb.metrics.nrmse`); ``None`` (the default) for
    other regression tasks, scored by the loss alone.
    """

    name: ClassVar[str]
    Params: ClassVar[type]
    meta: ClassVar[dict[str, Any]] = {}
    score: ClassVar[str | None] = None

    def __init__(self, params: Any, dt: float):
        self.params = params
        self.dt = float(dt)

    @property
    def n_inputs(self) -> int:
        raise NotImplementedError

    @property
    def n_outputs(self) -> int:
        raise NotImplementedError

    @property
    def n_steps(self) -> int:
        raise NotImplementedError

    @property
    def slots(self) -> list[tuple[int, int]]:
        """Steps [start, stop) of each answer slot, in order (tasks scored by ``"sequence"``)."""
        raise NotImplementedError

    def trials(self, rng: np.random.Generator, n: int) -> Trials:
        """``n`` training trials drawn with ``rng``."""
        raise NotImplementedError

    def eval_trials(self) -> Trials:
        """The fixed, deterministic evaluation set (one trial per condition, or a seeded
        set of trials for tasks whose trials are random sequences)."""
        raise NotImplementedError


#: data set name → scikit-learn loader
DATASETS = {
    "digits": "load_digits",
    "breast_cancer": "load_breast_cancer",
    "wine": "load_wine",
    "iris": "load_iris",
}


@functools.cache
def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, d) and labels (n,) of a shipped data set, in its order (read-only);
    ``ValueError("name: …")`` if scikit-learn is not installed."""
    try:
        import sklearn.datasets
    except ImportError:
        raise ValueError(
            f"name: this task reads the {name} data set from scikit-learn, which is not "
            "installed: pip install 'bioperturb[digits]'"
        ) from None
    data = getattr(sklearn.datasets, DATASETS[name])()
    features = np.asarray(data.data, dtype=np.float64)
    labels = np.asarray(data.target, dtype=np.int64)
    features.setflags(write=False)
    labels.setflags(write=False)
    return features, labels


class DataSetTask(Task):
    """A classification task over a fixed data set, split into training and evaluation.

    Training trials draw samples uniformly with replacement from ``train_index``
    (conditions −1); the evaluation set is ``eval_index`` in that order (conditions 0 …
    n_eval − 1). Each trial's one-hot class is the target over the ``response`` period,
    where alone the loss counts. A subclass sets ``_periods`` (with ``"response"``),
    ``_n_steps``, ``_labels`` (per sample), ``train_index``, ``eval_index`` and
    :attr:`n_outputs`, and implements :meth:`_inputs`.
    """

    score: ClassVar[str | None] = "accuracy"
    _periods: dict[str, tuple[int, int]]
    _n_steps: int
    _labels: np.ndarray
    train_index: np.ndarray
    eval_index: np.ndarray

    @property
    def n_steps(self) -> int:
        return self._n_steps

    def _inputs(self, index: np.ndarray) -> np.ndarray:
        """Inputs (len(index), n_steps, n_inputs) of the samples ``index``."""
        raise NotImplementedError

    def labels(self, trials: Trials) -> np.ndarray:
        """The class (n_trials,) of each trial, read from its targets."""
        return trials.targets[:, self._periods["response"][0]].argmax(axis=-1)

    def _batch(self, index: np.ndarray, conditions: np.ndarray) -> Trials:
        n = index.size
        targets = np.zeros((n, self._n_steps, self.n_outputs))
        mask = np.zeros((n, self._n_steps))
        resp = slice(*self._periods["response"])
        targets[np.arange(n), resp, self._labels[index]] = 1.0
        mask[:, resp] = 1.0
        return Trials(
            inputs=self._inputs(index),
            targets=targets,
            mask=mask,
            periods=dict(self._periods),
            conditions=conditions,
            dt=self.dt,
        )

    def trials(self, rng: np.random.Generator, n: int) -> Trials:
        """``n`` training trials, samples drawn uniformly with replacement from the
        training part (conditions −1)."""
        index = self.train_index[rng.integers(self.train_index.size, size=n)]
        return self._batch(index, np.full(n, -1, dtype=np.int64))

    def eval_trials(self) -> Trials:
        """The held-out samples in ``eval_index`` order (conditions 0 … n_eval − 1)."""
        n = self.eval_index.size
        return self._batch(self.eval_index, np.arange(n, dtype=np.int64))


def whole_steps(duration: float, dt: float, key: str) -> int:
    """Number of steps of length ``dt`` in ``duration``.

    Raises ``ValueError("key: reason")`` unless ``dt`` is positive, ``duration`` is not
    negative and ``duration / dt`` is a whole number within 1e-9 relative.
    """
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt: must be a positive number of seconds, got {dt!r}")
    if not (np.isfinite(duration) and duration >= 0):
        raise ValueError(f"{key}: must be a non-negative duration, got {duration!r} s")
    steps = duration / dt
    n = round(steps)
    if abs(steps - n) > 1e-9 * steps:
        raise ValueError(
            f"{key}: {duration!r} s is not a whole number of steps of dt = {dt!r} s "
            f"({steps:.6g} steps)"
        )
    return n


def consecutive_periods(
    params: Any, names: tuple[str, ...], dt: float
) -> tuple[dict[str, tuple[int, int]], int]:
    """({name: (start, stop)}, total steps) of periods laid end to end, in ``names`` order.

    Each period lasts ``params.<name>_duration`` seconds, a whole number of steps
    (:func:`whole_steps`, whose ``ValueError`` names the ``<name>_duration`` key).
    """
    periods: dict[str, tuple[int, int]] = {}
    start = 0
    for name in names:
        key = f"{name}_duration"
        stop = start + whole_steps(getattr(params, key), dt, key)
        periods[name] = (start, stop)
        start = stop
    return periods, start
