"""Interval timing: a 20 ms cue of size k/n asks for a step to 1 at longest·k/n after it."""

from dataclasses import dataclass

import numpy as np

from bioperturb import register_task
from bioperturb.schema import param
from bioperturb.tasks.base import Task, Trials, whole_steps


@register_task
class IntervalTask(Task):
    name = "interval"
    meta = {"description": "interval timing: step up to 1 an interval (coded by the cue) later"}
    n_inputs = n_outputs = 1  # plain attributes in place of the base class's properties
    n_steps = 0

    @dataclass(frozen=True)
    class Params:
        duration: float = param(0.3, unit="second", positive=True, doc="trial duration")
        longest: float = param(0.2, unit="second", positive=True, doc="longest interval")
        n_intervals: int = param(2, positive=True, doc="number of intervals n")

    def __init__(self, params, dt):
        super().__init__(params, dt)
        self.n_steps, self.cue = whole_steps(params.duration, dt, "duration"), round(0.02 / dt)

    def trials(self, rng, n, conditions=None):
        c = rng.integers(self.params.n_intervals, size=n) if conditions is None else conditions
        k, t = (c + 1) / self.params.n_intervals, np.arange(self.n_steps)
        go = self.cue + np.round(k * self.params.longest / self.dt)
        inputs = np.where(t < self.cue, k[:, None], 0.0)[:, :, None]
        targets = (t >= go[:, None]).astype(float)[:, :, None]
        periods = {"cue": (0, self.cue), "wait": (self.cue, self.n_steps)}
        return Trials(inputs, targets, (t >= self.cue) * np.ones((n, 1)), periods, c, self.dt)

    def eval_trials(self):
        return self.trials(None, self.params.n_intervals, np.arange(self.params.n_intervals))
