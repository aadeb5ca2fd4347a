"""N-bit flip-flop: each output holds the sign of the last pulse on its input channel.

Each of ``n_bits`` input channels receives sparse pulses of +1 or −1 at random times;
output k must switch to the sign of a pulse on channel k when it arrives and hold it until
the next one (0 before the first). The network has to store n_bits bits indefinitely and
update each independently: 2^n_bits stable states (Sussillo & Barak 2013).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bioperturb.schema import param
from bioperturb.tasks.base import Task, Trials, whole_steps

__all__ = ["FlipFlopTask"]


class FlipFlopTask(Task):
    """The n-bit flip-flop with pulses on a grid of ``pulse_duration`` bins.

    Periods: ``settle`` (no pulses, loss masked) then ``flipflop`` (pulses, loss counted).
    The ``flipflop`` period is cut into bins of ``pulse_duration``; in each whole bin each
    channel independently carries a pulse with probability ``pulse_rate · pulse_duration``,
    of sign ±1 with equal probability. Target of output k: the sign of the latest pulse on
    channel k that has begun (0 before the first). Training trials have condition −1; the
    evaluation set is ``n_eval`` trials drawn from ``eval_seed`` (conditions 0 … n_eval − 1).
    Scored by the loss alone (``score = None``): the targets are levels, not a choice.
    """

    name: ClassVar[str] = "flip_flop"

    @dataclass(frozen=True)
    class Params:
        duration: float = param(1.0, unit="second", positive=True, doc="trial duration")
        settle_duration: float = param(
            0.05,
            unit="second",
            nonnegative=True,
            doc="initial period without pulses, loss masked",
        )
        n_bits: int = param(3, positive=True, doc="number of input channels and outputs")
        pulse_rate: float = param(
            4.0, unit="hertz", nonnegative=True, doc="mean rate of pulses on each channel"
        )
        pulse_duration: float = param(
            0.01, unit="second", positive=True, doc="duration of a pulse (and of a bin)"
        )
        n_eval: int = param(16, positive=True, doc="number of evaluation trials")
        eval_seed: int = param(0, nonnegative=True, doc="seed of the fixed evaluation trials")

        def check(self) -> None:
            """Cross-field constraints (raise ``ValueError("key: reason")``)."""
            if self.pulse_rate * self.pulse_duration > 1:
                raise ValueError(
                    f"pulse_rate: {self.pulse_rate!r} Hz x pulse_duration "
                    f"{self.pulse_duration!r} s exceeds one pulse per bin"
                )

    meta: ClassVar[dict[str, Any]] = {
        "description": (
            "N-bit flip-flop: sparse +1/-1 pulses on n_bits channels; each output must hold "
            "the sign of the last pulse on its channel."
        ),
        "reference": (
            "Sussillo D, Barak O (2013) Opening the black box: low-dimensional dynamics in "
            "high-dimensional recurrent neural networks. Neural Comput 25(3):626-649."
        ),
        "tags": ["working memory", "multistable", "supervised", "continuous output"],
    }

    def __init__(self, params: FlipFlopTask.Params, dt: float):
        super().__init__(params, dt)
        params.check()
        n_steps = whole_steps(params.duration, self.dt, "duration")
        n_settle = whole_steps(params.settle_duration, self.dt, "settle_duration")
        self._pulse_steps = whole_steps(params.pulse_duration, self.dt, "pulse_duration")
        self._periods = {"settle": (0, n_settle), "flipflop": (n_settle, n_steps)}
        self._n_steps = n_steps
        self._n_bins = (n_steps - n_settle) // self._pulse_steps
        if self._n_bins < 1:
            raise ValueError(
                f"duration: {params.duration!r} s leaves no pulse bin of "
                f"{params.pulse_duration!r} s after settle_duration = "
                f"{params.settle_duration!r} s"
            )

    @property
    def n_inputs(self) -> int:
        return self.params.n_bits

    @property
    def n_outputs(self) -> int:
        return self.params.n_bits

    @property
    def n_steps(self) -> int:
        return self._n_steps

    def _draw(self, rng: np.random.Generator, n: int, conditions: np.ndarray) -> Trials:
        """``n`` trials with pulses drawn from ``rng``."""
        p = self.params
        shape = (n, self._n_bins, p.n_bits)
        pulse = rng.random(shape) < p.pulse_rate * p.pulse_duration
        signs = np.where(pulse, np.where(rng.random(shape) < 0.5, -1.0, 1.0), 0.0)  # (n, bin, bit)
        start = self._periods["flipflop"][0]
        stop = start + self._n_bins * self._pulse_steps
        inputs = np.zeros((n, self._n_steps, p.n_bits))
        inputs[:, start:stop] = np.repeat(signs, self._pulse_steps, axis=1)
        # the state after each bin: the sign of the latest pulse so far (0 before any)
        latest = np.where(pulse, np.arange(self._n_bins)[None, :, None], -1)
        latest = np.maximum.accumulate(latest, axis=1)
        state = np.where(latest >= 0, np.take_along_axis(signs, np.maximum(latest, 0), axis=1), 0.0)
        targets = np.zeros_like(inputs)
        targets[:, start:stop] = np.repeat(state, self._pulse_steps, axis=1)
        targets[:, stop:] = state[:, -1:]  # a partial last bin: no pulse
        mask = np.zeros((n, self._n_steps))
        mask[:, start:] = 1.0
        return Trials(
            inputs=inputs,
            targets=targets,
            mask=mask,
            periods=dict(self._periods),
            conditions=conditions,
            dt=self.dt,
        )

    def trials(self, rng: np.random.Generator, n: int) -> Trials:
        """``n`` training trials with pulses drawn from ``rng`` (conditions −1)."""
        return self._draw(rng, n, np.full(n, -1, dtype=np.int64))

    def eval_trials(self) -> Trials:
        """``n_eval`` trials drawn from ``eval_seed`` alone (conditions 0 … n_eval − 1)."""
        rng = np.random.default_rng(self.params.eval_seed)
        return self._draw(rng, self.params.n_eval, np.arange(self.params.n_eval, dtype=np.int64))
