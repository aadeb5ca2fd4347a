"""Perceptual decision making: report which of two noisy inputs has the larger mean.

Two input channels carry evidence for two choices, means (1 ± c)/2 for a coherence c,
corrupted by independent Gaussian noise at every step; after the stimulus (and an optional
delay) the network reports the channel with the larger mean. The evidence has to be
integrated over time, as in the random-dot motion task (Britten et al. 1992) in the layout
of neurogym's PerceptualDecisionMaking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bioperturb.schema import param
from bioperturb.tasks.base import Task, Trials, consecutive_periods

__all__ = ["PerceptualDecisionTask"]

_PERIODS = ("fixation", "stimulus", "delay", "decision")


class PerceptualDecisionTask(Task):
    """Two-alternative evidence accumulation with Gaussian evidence noise.

    Inputs: channel 0 is the fixation cue (1 in every period but ``decision``), channels 1
    and 2 the evidence for choices 0 and 1: during ``stimulus`` (1 + c)/2 on the side's
    channel and (1 − c)/2 on the other, plus ``input_noise`` · N(0, 1) per step and
    channel; 0 elsewhere. Outputs: one per choice, target 1 on the side's channel during
    ``decision`` and 0 elsewhere; the loss counts during ``decision``.
    Condition label = coherence index · 2 + side (see :meth:`decode`). The noise is the task,
    so the evaluation set is noisy too: ``n_eval_per_condition`` trials per condition, drawn
    from ``eval_seed`` alone, in condition order. Scored by accuracy.
    """

    name: ClassVar[str] = "perceptual_decision"
    score: ClassVar[str | None] = "accuracy"

    @dataclass(frozen=True)
    class Params:
        fixation_duration: float = param(
            0.1, unit="second", nonnegative=True, doc="duration of the fixation period"
        )
        stimulus_duration: float = param(
            0.5, unit="second", positive=True, doc="duration of the evidence"
        )
        delay_duration: float = param(
            0.0, unit="second", nonnegative=True, doc="delay between stimulus and decision"
        )
        decision_duration: float = param(
            0.1, unit="second", positive=True, doc="duration of the decision period"
        )
        coherences: tuple[float, ...] = param(
            [0.032, 0.064, 0.128, 0.256, 0.512],
            doc="coherence levels c in (0, 1]: evidence means (1 ± c)/2",
        )
        input_noise: float = param(
            1.0, nonnegative=True, doc="std of the evidence noise per step and channel"
        )
        n_eval_per_condition: int = param(
            4, positive=True, doc="evaluation trials per (coherence, side) condition"
        )
        eval_seed: int = param(0, nonnegative=True, doc="seed of the fixed evaluation noise")

        def check(self) -> None:
            """Cross-field constraints (raise ``ValueError("key: reason")``)."""
            if not self.coherences:
                raise ValueError("coherences: needs at least one coherence level")
            bad = [c for c in self.coherences if not 0 < c <= 1]
            if bad:
                raise ValueError(f"coherences: each must lie in (0, 1], got {bad[0]!r}")

    meta: ClassVar[dict[str, Any]] = {
        "description": (
            "Perceptual decision making: integrate two noisy evidence streams and report the "
            "one with the larger mean."
        ),
        "reference": (
            "Britten KH, Shadlen MN, Newsome WT, Movshon JA (1992) The analysis of visual "
            "motion: a comparison of neuronal and psychophysical performance. J Neurosci "
            "12(12):4745-4765. "
            "Task layout after NeuroGym's PerceptualDecisionMaking: Molano-Mazon M et al. "
            "(2022) NeuroGym: an open resource for developing and sharing neuroscience "
            "tasks. PsyArXiv, doi:10.31234/osf.io/aqc9n."
        ),
        "tags": ["perceptual", "evidence accumulation", "two-alternative", "supervised"],
    }

    def __init__(self, params: PerceptualDecisionTask.Params, dt: float):
        super().__init__(params, dt)
        params.check()
        self._periods, self._n_steps = consecutive_periods(params, _PERIODS, self.dt)

    @property
    def n_inputs(self) -> int:
        return 3

    @property
    def n_outputs(self) -> int:
        return 2

    @property
    def n_steps(self) -> int:
        return self._n_steps

    @property
    def n_conditions(self) -> int:
        return 2 * len(self.params.coherences)

    def decode(self, conditions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coherence index and side (the right choice) of condition labels."""
        return np.divmod(np.asarray(conditions), 2)

    def _batch(self, conditions: np.ndarray, rng: np.random.Generator) -> Trials:
        n = conditions.shape[0]
        trial = np.arange(n)
        per = self._periods
        level, side = self.decode(conditions)
        coherence = np.asarray(self.params.coherences)[level]
        stimulus = slice(*per["stimulus"])
        n_stim = per["stimulus"][1] - per["stimulus"][0]
        inputs = np.zeros((n, self._n_steps, 3))
        inputs[:, : per["decision"][0], 0] = 1.0
        means = np.stack([(1 + coherence) / 2, (1 - coherence) / 2], axis=1)  # (n, [side, other])
        inputs[trial, stimulus, 1 + side] = means[:, :1]
        inputs[trial, stimulus, 2 - side] = means[:, 1:]
        inputs[:, stimulus, 1:] += self.params.input_noise * rng.standard_normal((n, n_stim, 2))
        targets = np.zeros((n, self._n_steps, 2))
        targets[trial, slice(*per["decision"]), side] = 1.0
        mask = np.zeros((n, self._n_steps))
        mask[:, slice(*per["decision"])] = 1.0
        return Trials(
            inputs=inputs,
            targets=targets,
            mask=mask,
            periods=dict(per),
            conditions=conditions.astype(np.int64),
            dt=self.dt,
        )

    def trials(self, rng: np.random.Generator, n: int) -> Trials:
        """``n`` training trials: coherence and side uniform, then the evidence noise."""
        return self._batch(rng.integers(self.n_conditions, size=n), rng)

    def eval_trials(self) -> Trials:
        """``n_eval_per_condition`` noisy trials per condition, in condition order, with
        noise drawn from ``eval_seed`` alone."""
        conditions = np.repeat(np.arange(self.n_conditions), self.params.n_eval_per_condition)
        return self._batch(conditions, np.random.default_rng(self.params.eval_seed))
