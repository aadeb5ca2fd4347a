r"""Mackey–Glass forecasting: predict the chaotic series ``horizon`` samples ahead.

The Mackey–Glass delay differential equation (Mackey & Glass 1977)

.. math:: \frac{dx}{dt} = \beta \frac{x(t - \tau_d)}{1 + x(t - \tau_d)^n} - \gamma x(t)

is chaotic for :math:`\tau_d = 17` (β = 0.2, γ = 0.1, n = 10), the classic benchmark of
chaotic time-series prediction with recurrent networks (Jaeger & Haas 2004). The network
sees the present value x(t) and must output the future value x(t + horizon): a true
forecast, unlike a delayed-recall target x(t − horizon).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.signal import lfilter

from bioperturb.schema import param
from bioperturb.tasks.base import Task, Trials, whole_steps

__all__ = ["MackeyGlassTask", "mackey_glass_series"]


def _whole(value: float, step: float, key: str) -> int:
    """``value / step`` as a whole number (within 1e-9 relative), else ``ValueError``."""
    ratio = value / step
    n = round(ratio)
    if abs(ratio - n) > 1e-9 * max(ratio, 1.0):
        raise ValueError(
            f"{key}: {value!r} is not a whole number of integration steps of {step!r} "
            f"({ratio:.6g} steps)"
        )
    return n


def mackey_glass_series(
    n_samples: int,
    sample_step: float,
    integration_step: float,
    beta: float,
    gamma: float,
    exponent: float,
    tau_d: float,
    initial_value: float,
    transient: float,
) -> np.ndarray:
    r"""Samples x(transient + j · sample_step), j = 0 … n_samples − 1, of the Mackey–Glass
    equation with the constant history x(t) = ``initial_value`` for t ≤ 0.

    Integrated with step h = ``integration_step`` by the exponential trapezoidal rule: the
    decay −γx is exact and the delayed term g(t) = β x(t−τ_d) / (1 + x(t−τ_d)^n) is taken
    by the trapezoidal rule,

    .. math:: x_{k+1} = e^{-\gamma h} x_k + \frac{h}{2}\left(e^{-\gamma h} g_k + g_{k+1}\right),
              \qquad g_k = \frac{\beta x_{k-D}}{1 + x_{k-D}^n},\quad D = \tau_d / h,

    (second order in h). g over the next D steps depends only on values already known, so
    each stretch of D steps is one linear recursion (``scipy.signal.lfilter``).
    All times are in the equation's own units; ``tau_d``, ``sample_step`` and
    ``transient`` must be whole multiples of ``integration_step``.

    Returns
    -------
    ndarray, shape (n_samples,)
    """
    delay = _whole(tau_d, integration_step, "tau_d")
    per_sample = _whole(sample_step, integration_step, "sample_step")
    first = _whole(transient, integration_step, "transient")
    if delay < 1:
        raise ValueError(f"tau_d: must be at least one integration step, got {tau_d!r}")
    n_steps = first + (n_samples - 1) * per_sample
    decay = np.exp(-gamma * integration_step)
    # x[i] is x at time (i - delay) h: the history fills x[0 … delay]
    x = np.empty(delay + 1 + n_steps + delay)
    x[: delay + 1] = initial_value
    done = 0
    while done < n_steps:
        past = x[done : done + delay + 1]  # x at times (k - delay) h, k = done … done + delay
        g = beta * past / (1.0 + past**exponent)
        drive = 0.5 * integration_step * (decay * g[:-1] + g[1:])
        now = delay + done
        x[now + 1 : now + 1 + delay], _ = lfilter([1.0], [1.0, -decay], drive, zi=[decay * x[now]])
        done += delay
    return x[delay + first : delay + n_steps + 1 : per_sample].copy()


class MackeyGlassTask(Task):
    """Forecast the normalised Mackey–Glass series ``horizon`` samples ahead.

    One network step is ``sample_step`` time units of the equation. A long series is
    integrated once (:func:`mackey_glass_series`) and normalised to zero mean and unit
    variance over its training part; a trial is a window of ``n_steps`` samples z_s … with
    input u_t = z_{s+t} and target y*_t = z_{s+t+horizon}. Training windows start anywhere
    in the first ``train_samples`` samples (inputs and targets inside them); the evaluation
    set is ``n_eval`` consecutive, non-overlapping windows of the held-out samples after
    them. Periods: ``washout`` (loss masked) then ``forecast``. Training trials have
    condition −1, evaluation windows 0 … n_eval − 1. Scored by NRMSE.

    Attributes
    ----------
    series : ndarray, shape (train_samples + n_eval · (n_steps + horizon),)
        The normalised series z (read-only).
    offset, scale : float
        Mean and standard deviation of x over the training part: z = (x − offset) / scale.
    """

    name: ClassVar[str] = "mackey_glass"
    score: ClassVar[str | None] = "nrmse"

    @dataclass(frozen=True)
    class Params:
        duration: float = param(0.5, unit="second", positive=True, doc="trial duration")
        washout_duration: float = param(
            0.1,
            unit="second",
            nonnegative=True,
            doc="initial part of each trial with the loss masked",
        )
        horizon: int = param(15, positive=True, doc="forecast horizon, in samples")
        sample_step: float = param(
            1.0, positive=True, doc="Mackey-Glass time units per sample (per network step)"
        )
        integration_step: float = param(
            0.01, positive=True, doc="integration step h, Mackey-Glass time units"
        )
        beta: float = param(0.2, positive=True, doc="production rate β")
        gamma: float = param(0.1, positive=True, doc="decay rate γ")
        exponent: float = param(10.0, positive=True, doc="Hill exponent n")
        tau_d: float = param(17.0, positive=True, doc="delay τ_d, Mackey-Glass time units")
        initial_value: float = param(1.2, positive=True, doc="constant history x(t ≤ 0)")
        transient: float = param(
            500.0, nonnegative=True, doc="initial stretch discarded, Mackey-Glass time units"
        )
        train_samples: int = param(
            10000, positive=True, doc="samples of the training part of the series"
        )
        n_eval: int = param(8, positive=True, doc="number of held-out evaluation windows")

    meta: ClassVar[dict[str, Any]] = {
        "description": (
            "Mackey-Glass forecasting: from the present value of the chaotic series predict "
            "its value horizon samples ahead."
        ),
        "reference": (
            "Mackey MC, Glass L (1977) Oscillation and chaos in physiological control "
            "systems. Science 197(4300):287-289. "
            "Jaeger H, Haas H (2004) Harnessing nonlinearity: predicting chaotic systems and "
            "saving energy in wireless communication. Science 304(5667):78-80."
        ),
        "tags": ["forecasting", "chaotic time series", "supervised", "continuous output"],
    }

    def __init__(self, params: MackeyGlassTask.Params, dt: float):
        super().__init__(params, dt)
        self._n_steps = whole_steps(params.duration, self.dt, "duration")
        n_wash = whole_steps(params.washout_duration, self.dt, "washout_duration")
        if not n_wash < self._n_steps:
            raise ValueError(
                f"washout_duration: must be shorter than duration ({params.washout_duration!r}"
                f" s >= {params.duration!r} s)"
            )
        self._periods = {"washout": (0, n_wash), "forecast": (n_wash, self._n_steps)}
        self._span = self._n_steps + params.horizon  # samples a window touches
        if params.train_samples < self._span:
            raise ValueError(
                f"train_samples: {params.train_samples!r} is shorter than a window "
                f"(n_steps + horizon = {self._span})"
            )
        raw = mackey_glass_series(
            params.train_samples + params.n_eval * self._span,
            params.sample_step,
            params.integration_step,
            params.beta,
            params.gamma,
            params.exponent,
            params.tau_d,
            params.initial_value,
            params.transient,
        )
        train = raw[: params.train_samples]
        self.offset = float(train.mean())
        self.scale = float(train.std())
        self.series = (raw - self.offset) / self.scale
        self.series.flags.writeable = False

    @property
    def n_inputs(self) -> int:
        return 1

    @property
    def n_outputs(self) -> int:
        return 1

    @property
    def n_steps(self) -> int:
        return self._n_steps

    def _windows(self, starts: np.ndarray, conditions: np.ndarray) -> Trials:
        n = starts.shape[0]
        index = starts[:, None] + np.arange(self._n_steps)
        mask = np.zeros((n, self._n_steps))
        mask[:, slice(*self._periods["forecast"])] = 1.0
        return Trials(
            inputs=self.series[index][..., None],
            targets=self.series[index + self.params.horizon][..., None],
            mask=mask,
            periods=dict(self._periods),
            conditions=conditions,
            dt=self.dt,
        )

    def trials(self, rng: np.random.Generator, n: int) -> Trials:
        """``n`` training windows, starts uniform over the training part (conditions −1)."""
        starts = rng.integers(self.params.train_samples - self._span + 1, size=n)
        return self._windows(starts, np.full(n, -1, dtype=np.int64))

    def eval_trials(self) -> Trials:
        """The ``n_eval`` held-out windows after the training part, in order."""
        n = self.params.n_eval
        starts = self.params.train_samples + self._span * np.arange(n)
        return self._windows(starts, np.arange(n, dtype=np.int64))
