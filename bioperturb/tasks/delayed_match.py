"""Delayed match-to-sample: report whether a test stimulus matches a remembered sample.

A sample stimulus s is shown, withdrawn for a delay, then a test stimulus t is shown; in the
decision period the network reports "match" (t = s) or "non-match" (t ≠ s) on two output
channels (Miller, Erickson & Desimone 1996; neurogym's DelayMatchSample).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bioperturb.schema import param
from bioperturb.tasks.base import Task, Trials, consecutive_periods, whole_steps

__all__ = ["DelayedMatchTask"]

_PERIODS = ("fixation", "sample", "delay", "test", "gap", "decision")


class DelayedMatchTask(Task):
    """Delayed match-to-sample with one-hot stimuli and two-choice output.

    Periods: fixation, sample, delay, test, gap (0 ms by default), decision.
    Inputs: channel 0 is the fixation cue (1 in every period but ``decision``; always 0
    with ``fixation_cue = false``), channels
    1 … n_stimuli carry the one-hot sample (``sample`` period) and test (``test`` period)
    stimuli.  Outputs: channel 0 = match, channel 1 = non-match; the target is 1 on the
    correct channel and 0 on the other during ``decision``, 0 on both elsewhere. With
    ``report = "sample"`` (delayed recall) there is one output per stimulus and the
    target is the sample's channel: memory without the match/non-match XOR.
    Condition label = sample · n_stimuli + test (see :meth:`decode`).
    Scored by accuracy: the answer is the output with the largest mean over the decision
    period (over every masked step with ``mask_all_periods``).
    """

    name: ClassVar[str] = "delayed_match"
    score: ClassVar[str | None] = "accuracy"

    @dataclass(frozen=True)
    class Params:
        fixation_duration: float = param(
            0.1, unit="second", nonnegative=True, doc="duration of the fixation period"
        )
        sample_duration: float = param(
            0.2, unit="second", positive=True, doc="duration of the sample stimulus"
        )
        delay_duration: float = param(
            0.3, unit="second", nonnegative=True, doc="duration of the memory delay"
        )
        test_duration: float = param(
            0.2, unit="second", positive=True, doc="duration of the test stimulus"
        )
        gap_duration: float = param(
            0.0,
            unit="second",
            nonnegative=True,
            doc="a wait between the test stimulus and the decision, no stimulus and the "
            "fixation cue still on (Miconi 2017's DNMS: 200 ms; 0: the decision follows "
            "the test at once)",
        )
        decision_duration: float = param(
            0.1, unit="second", positive=True, doc="duration of the decision period"
        )
        fixation_cue: bool = param(
            True,
            doc="input channel 0 is 1 until the decision (a go cue when it ends); false: "
            "channel 0 stays 0, as in Miconi 2017's DNMS, which has no such cue",
        )
        n_stimuli: int = param(2, positive=True, doc="number of distinct stimuli (one-hot)")
        match_prob: float = param(0.5, nonnegative=True, doc="probability of a match trial")
        input_noise: float = param(
            0.1, nonnegative=True, doc="std of Gaussian noise added per step to training inputs"
        )
        report: str = param(
            "match",
            choices=("match", "sample"),
            doc="'match': match / non-match on two outputs; 'sample': recall the sample "
            "(one output per stimulus; the test stimulus is then a distractor)",
        )
        mask_all_periods: bool = param(
            False, doc="count the loss in every period (else only during decision)"
        )
        delay_jitter: float = param(
            0.0,
            unit="second",
            nonnegative=True,
            doc="variable timing: each training trial's delay is delay_duration plus a "
            "whole number of steps drawn uniformly from [0, delay_jitter]; evaluation "
            "trials use the longest delay",
        )

        def check(self) -> None:
            """Cross-field constraints (raise ``ValueError("key: reason")``)."""
            if self.n_stimuli < 2:
                raise ValueError(
                    f"n_stimuli: needs at least 2 stimuli for non-match trials, got "
                    f"{self.n_stimuli!r}"
                )
            if not 0.0 <= self.match_prob <= 1.0:
                raise ValueError(f"match_prob: must lie in [0, 1], got {self.match_prob!r}")

    meta: ClassVar[dict[str, Any]] = {
        "description": (
            "Delayed match-to-sample: hold a one-hot sample stimulus in memory over a delay "
            "and report whether the test stimulus matches it."
        ),
        "reference": (
            "Miller EK, Erickson CA, Desimone R (1996) Neural mechanisms of visual working "
            "memory in prefrontal cortex of the macaque. J Neurosci 16(16):5154-5167. "
            "Task layout after NeuroGym's DelayMatchSample: Molano-Mazon M et al. (2022) "
            "NeuroGym: an open resource for developing and sharing neuroscience tasks. "
            "PsyArXiv, doi:10.31234/osf.io/aqc9n."
        ),
        "tags": ["working memory", "perceptual", "two-alternative", "supervised"],
    }

    def __init__(self, params: DelayedMatchTask.Params, dt: float):
        super().__init__(params, dt)
        params.check()
        consecutive_periods(params, _PERIODS, self.dt)  # each duration whole steps
        self._jitter = whole_steps(params.delay_jitter, self.dt, "delay_jitter")
        # every trial has the steps of the longest one (the shorter ones are padded)
        longest = dataclasses.replace(
            params, delay_duration=params.delay_duration + params.delay_jitter
        )
        self._periods, self._n_steps = consecutive_periods(longest, _PERIODS, self.dt)

    @property
    def n_inputs(self) -> int:
        return self.params.n_stimuli + 1

    @property
    def n_outputs(self) -> int:
        return 2 if self.params.report == "match" else self.params.n_stimuli

    @property
    def n_steps(self) -> int:
        return self._n_steps

    def decode(self, conditions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sample and test stimulus indices of condition labels."""
        return np.divmod(np.asarray(conditions), self.params.n_stimuli)

    def _trial_periods(self, extra: np.ndarray) -> dict[str, np.ndarray]:
        """Each trial's periods when its delay is ``extra`` steps shorter than the longest."""
        out = {}
        for name, (start, stop) in self._periods.items():
            shift = {"delay": (0, 1), "test": (1, 1), "gap": (1, 1), "decision": (1, 1)}.get(
                name, (0, 0)
            )
            out[name] = np.stack([start - shift[0] * extra, stop - shift[1] * extra], axis=1)
        return out

    def _batch(
        self,
        sample: np.ndarray,
        test: np.ndarray,
        noise: np.ndarray | None,
        shorter: np.ndarray | None = None,
    ) -> Trials:
        """Trials of ``sample``/``test``; ``shorter``: steps by which each trial's delay is
        shorter than the longest (variable timing; the trial's end is then padded)."""
        n = sample.shape[0]
        extra = np.zeros(n, dtype=np.int64) if shorter is None else shorter
        per = self._trial_periods(extra)
        step = np.arange(self._n_steps)

        def during(name: str) -> np.ndarray:  # (n, n_steps): the steps of each trial's period
            return (step >= per[name][:, :1]) & (step < per[name][:, 1:])

        inputs = np.zeros((n, self._n_steps, self.n_inputs))
        inputs[..., 0] = (step < per["decision"][:, :1]) * float(self.params.fixation_cue)
        inputs[during("sample"), :] += np.eye(self.n_inputs)[1 + sample].repeat(
            per["sample"][:, 1] - per["sample"][:, 0], axis=0
        )
        inputs[during("test"), :] += np.eye(self.n_inputs)[1 + test].repeat(
            per["test"][:, 1] - per["test"][:, 0], axis=0
        )
        if noise is not None:
            inputs += noise * (step < per["decision"][:, 1:])[..., None]
        answer = np.where(sample == test, 0, 1) if self.params.report == "match" else sample
        targets = np.zeros((n, self._n_steps, self.n_outputs))
        decision = during("decision")
        targets[decision] = np.eye(self.n_outputs)[answer].repeat(decision.sum(axis=1), axis=0)
        if self.params.mask_all_periods:
            mask = (step < per["decision"][:, 1:]).astype(float)
        else:
            mask = decision.astype(float)
        return Trials(
            inputs=inputs,
            targets=targets,
            mask=mask,
            periods=dict(self._periods),
            conditions=(sample * self.params.n_stimuli + test).astype(np.int64),
            dt=self.dt,
            trial_periods=per if shorter is not None else None,
        )

    def trials(self, rng: np.random.Generator, n: int) -> Trials:
        """``n`` training trials: uniform sample, match with probability ``match_prob``,
        otherwise a uniformly drawn different test stimulus; plus input noise."""
        k = self.params.n_stimuli
        sample = rng.integers(k, size=n)
        match = rng.random(n) < self.params.match_prob
        test = np.where(match, sample, (sample + rng.integers(1, k, size=n)) % k)
        noise = None
        if self.params.input_noise > 0:
            noise = self.params.input_noise * rng.standard_normal((n, self._n_steps, self.n_inputs))
        shorter = None
        if self._jitter:  # drawn last: without jitter the trials are those of before
            shorter = self._jitter - rng.integers(self._jitter + 1, size=n)
        return self._batch(sample, test, noise, shorter)

    def eval_trials(self) -> Trials:
        """Every (sample, test) pair once, noise-free, in condition order."""
        sample, test = self.decode(np.arange(self.params.n_stimuli**2))
        return self._batch(sample, test, None)
