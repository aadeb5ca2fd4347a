"""Pattern generation: produce a fixed sum of sinusoids after a cue.

The target of output ``k`` is

    y*_k(t) = A_k Σ_c sin(2π f_kc t + φ_kc),   t measured from the end of the cue,

with frequencies f_kc ~ U[freq_min, freq_max] and phases φ_kc ~ U[0, 2π) drawn once from
``pattern_seed`` (the pattern belongs to the task, not to the trial), and A_k chosen so that
max_t |y*_k(t)| = ``amplitude`` on the sampled time grid.  The network must generate the
pattern autonomously (Sussillo & Abbott 2009; Laje & Buonomano 2013), triggered by a brief
cue pulse, or driven by a frozen random or constant input, or by frozen Poisson spike
trains (``input = "poisson"``: 100 inputs at 10 Hz and a sum of sinusoids over 1 s is the
classic spiking benchmark of Nicola & Clopath 2017 and Bellec et al. 2020).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.signal import lfilter

from bioperturb.schema import param
from bioperturb.tasks.base import Task, Trials, whole_steps

__all__ = ["PatternTask"]


class PatternTask(Task):
    """Generate a fixed temporal pattern (sum of sinusoids) on every trial.

    Periods: ``cue`` (only with ``input = "pulse"``, loss masked) then ``pattern``.
    Training trials differ only by the optional input noise; the evaluation set is one
    noise-free trial with condition 0.

    Attributes
    ----------
    frequencies : ndarray, shape (n_outputs, n_components), hertz
        Frequencies f_kc of the target components.
    phases : ndarray, shape (n_outputs, n_components), radians
        Phases φ_kc of the target components at the start of the pattern period.
    gains : ndarray, shape (n_outputs,)
        Normalisation A_k that sets the peak absolute target to ``amplitude``.
    """

    name: ClassVar[str] = "pattern"

    @dataclass(frozen=True)
    class Params:
        duration: float = param(1.0, unit="second", positive=True, doc="trial duration")
        n_outputs: int = param(1, positive=True, doc="number of target signals (outputs)")
        n_components: int = param(3, positive=True, doc="sinusoids summed in each target")
        freq_min: float = param(1.0, unit="hertz", positive=True, doc="lowest component frequency")
        freq_max: float = param(4.0, unit="hertz", positive=True, doc="highest component frequency")
        amplitude: float = param(0.8, positive=True, doc="peak absolute value of each target")
        pattern_seed: int = param(
            0, nonnegative=True, doc="seed of the frozen target (and random input) pattern"
        )
        input: str = param(
            "pulse",
            choices=("pulse", "random", "constant", "poisson"),
            doc="input: a cue pulse at the start, a frozen smooth random signal, a constant, "
            "or frozen Poisson spike trains (1 at a step with a spike, else 0)",
        )
        n_inputs: int = param(1, positive=True, doc="number of input channels")
        input_amplitude: float = param(
            1.0, nonnegative=True, doc="pulse height, random-input std, or constant level"
        )
        pulse_duration: float = param(
            0.05, unit="second", positive=True, doc="duration of the cue pulse (input = pulse)"
        )
        input_timescale: float = param(
            0.05, unit="second", positive=True, doc="correlation time of the random input"
        )
        input_noise: float = param(
            0.0, nonnegative=True, doc="std of Gaussian noise added per step to training inputs"
        )
        input_rate: float = param(
            10.0, unit="hertz", positive=True, doc="rate of the frozen Poisson inputs (poisson)"
        )
        input_correlation: float = param(
            0.0,
            nonnegative=True,
            doc="random input: share ρ of each channel's variance from one common signal "
            "(pairwise correlation ≈ ρ)",
        )

        def check(self) -> None:
            """Cross-field constraints (raise ``ValueError("key: reason")``)."""
            if not self.freq_min < self.freq_max:
                raise ValueError(
                    f"freq_min: must be below freq_max ({self.freq_min!r} Hz >= "
                    f"{self.freq_max!r} Hz)"
                )
            if not self.input_correlation < 1:
                raise ValueError(
                    f"input_correlation: must be below 1, got {self.input_correlation!r}"
                )
            if self.input_correlation > 0 and self.input != "random":
                raise ValueError(
                    f"input_correlation: only for input = 'random' (got input = '{self.input}')"
                )
            if self.input == "pulse" and not self.pulse_duration < self.duration:
                raise ValueError(
                    f"pulse_duration: must be shorter than duration ({self.pulse_duration!r} s "
                    f">= {self.duration!r} s)"
                )

    meta: ClassVar[dict[str, Any]] = {
        "description": (
            "Pattern generation: after a brief cue (or under a frozen random, constant or "
            "Poisson-spike input) produce a fixed target made of a sum of sinusoids with "
            "random frequencies and phases."
        ),
        "reference": (
            "Sussillo D, Abbott LF (2009) Generating coherent patterns of activity from "
            "chaotic neural networks. Neuron 63(4):544-557. "
            "Laje R, Buonomano DV (2013) Robust timing and motor patterns by taming chaos in "
            "recurrent neural networks. Nat Neurosci 16(7):925-933. "
            "Used with perturbation learning in: Garcia Fernandez J, Keemink S, van Gerven M "
            "(2024) Gradient-free training of recurrent neural networks using random "
            "perturbations. Front Neurosci 18:1439155."
        ),
        "tags": ["timing", "pattern generation", "supervised", "continuous output", "spiking"],
    }

    def __init__(self, params: PatternTask.Params, dt: float):
        super().__init__(params, dt)
        params.check()
        self._n_steps = whole_steps(params.duration, self.dt, "duration")
        nyquist = 1.0 / (2.0 * self.dt)
        if not params.freq_max < nyquist:
            raise ValueError(
                f"freq_max: {params.freq_max!r} Hz is not below the Nyquist frequency "
                f"1/(2 dt) = {nyquist!r} Hz"
            )
        if params.input == "pulse":
            n_cue = whole_steps(params.pulse_duration, self.dt, "pulse_duration")
            self._periods = {"cue": (0, n_cue), "pattern": (n_cue, self._n_steps)}
        else:
            n_cue = 0
            self._periods = {"pattern": (0, self._n_steps)}

        target_seed, input_seed = np.random.SeedSequence(params.pattern_seed).spawn(2)
        pattern_rng = np.random.default_rng(target_seed)
        shape = (params.n_outputs, params.n_components)
        self.frequencies = pattern_rng.uniform(params.freq_min, params.freq_max, size=shape)
        self.phases = pattern_rng.uniform(0.0, 2.0 * np.pi, size=shape)
        t = np.arange(self._n_steps - n_cue) * self.dt
        waves = np.sin(
            2.0 * np.pi * self.frequencies[:, :, None] * t + self.phases[:, :, None]
        ).sum(axis=1)
        self.gains = params.amplitude / np.abs(waves).max(axis=1)
        for array in (self.frequencies, self.phases, self.gains):
            array.flags.writeable = False

        self._targets = np.zeros((self._n_steps, params.n_outputs))
        self._targets[n_cue:] = (self.gains[:, None] * waves).T
        self._mask = np.ones(self._n_steps)
        self._mask[:n_cue] = 0.0
        self._inputs = self._make_inputs(n_cue, np.random.default_rng(input_seed))

    def _make_inputs(self, n_cue: int, input_rng: np.random.Generator) -> np.ndarray:
        p = self.params
        shape = (self._n_steps, p.n_inputs)
        if p.input == "pulse":
            inputs = np.zeros(shape)
            inputs[:n_cue] = p.input_amplitude
            return inputs
        if p.input == "constant":
            return np.full(shape, p.input_amplitude)
        if p.input == "poisson":  # one frozen spike pattern, the classic spiking benchmark
            if p.input_rate * self.dt >= 1:
                raise ValueError(
                    f"input_rate: {p.input_rate!r} Hz gives more than one spike per step of "
                    f"{self.dt!r} s"
                )
            return (input_rng.random(shape) < p.input_rate * self.dt).astype(float)
        # Frozen Ornstein-Uhlenbeck noise (exact AR(1) discretisation, stationary start),
        # standardised per channel to zero mean and std input_amplitude.
        smooth = self._ou(input_rng, p.n_inputs)
        rho = p.input_correlation
        if rho > 0:  # drawn after the channels: ρ = 0 leaves the inputs as they were
            common = self._ou(input_rng, 1)
            smooth = np.sqrt(1 - rho) * smooth / smooth.std(axis=0)
            smooth += np.sqrt(rho) * common / common.std(axis=0)
            smooth -= smooth.mean(axis=0)
        return p.input_amplitude * smooth / smooth.std(axis=0)

    def _ou(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` frozen OU channels with zero mean over the trial."""
        decay = np.exp(-self.dt / self.params.input_timescale)
        white = rng.standard_normal((self._n_steps + 1, n))
        smooth, _ = lfilter(
            [np.sqrt(1.0 - decay**2)], [1.0, -decay], white[1:], axis=0, zi=decay * white[:1]
        )
        return smooth - smooth.mean(axis=0)

    @property
    def n_inputs(self) -> int:
        return self.params.n_inputs

    @property
    def n_outputs(self) -> int:
        return self.params.n_outputs

    @property
    def n_steps(self) -> int:
        return self._n_steps

    def _batch(self, n: int, noise: np.ndarray | None) -> Trials:
        inputs = np.repeat(self._inputs[None], n, axis=0)
        if noise is not None:
            inputs += noise
        return Trials(
            inputs=inputs,
            targets=np.repeat(self._targets[None], n, axis=0),
            mask=np.repeat(self._mask[None], n, axis=0),
            periods=dict(self._periods),
            conditions=np.zeros(n, dtype=np.int64),
            dt=self.dt,
        )

    def trials(self, rng: np.random.Generator, n: int) -> Trials:
        """``n`` training trials; ``rng`` only draws the input noise (if ``input_noise > 0``)."""
        noise = None
        if self.params.input_noise > 0:
            shape = (n, self._n_steps, self.params.n_inputs)
            noise = self.params.input_noise * rng.standard_normal(shape)
        return self._batch(n, noise)

    def eval_trials(self) -> Trials:
        """One noise-free trial (condition 0)."""
        return self._batch(1, None)
