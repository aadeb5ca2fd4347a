"""What a protocol is: its model, training, engine and output settings as frozen dataclasses.

A :class:`Protocol` holds one of each, plus the task's and the rule's own parameter
dataclasses (``Task.Params``, ``Rule.Params``). Reading a protocol from TOML, resolving
names and presets and checking its parts against each other is :mod:`bioperturb.config`'s
work, which sits above the engines, the model kinds and the registries; this module sits
below them, so that each of them can name these types without an import circle.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from bioperturb.schema import param, to_mapping

__all__ = [
    "RateConfig",
    "ModelConfig",
    "LIFConfig",
    "MLPConfig",
    "TrainingConfig",
    "EngineConfig",
    "OutputConfig",
    "Protocol",
    "MODELS_DIR",
    "DECORRELATE",
    "OLD_ENGINE_KEYS",
]

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"

#: where decorrelating lateral weights may sit: before W_in, before W_rec
DECORRELATE = ("input", "recurrent")
#: the initial readouts (``model.output_init``)
OUTPUT_INITS = ("gaussian", "units")


def _p_connect() -> Any:
    return param(
        1.0,
        positive=True,
        doc="connection probability of W_rec (1: all-to-all); absent synapses do not exist",
    )


def _n_outputs() -> Any:
    return param(None, doc="readout size (default: the task's n_outputs)")


def _output_init() -> Any:
    return param(
        "gaussian",
        choices=OUTPUT_INITS,
        doc="initial readout V: 'gaussian' (V ~ N(0, output_scale²/N)); 'units': output k is "
        "hidden unit k itself, V_kk = output_scale and 0 elsewhere (Miconi 2017's output unit; "
        "with W_out not in rule.train it stays so)",
    )


def _decorrelate() -> Any:
    return param(
        [],
        doc="decorrelating lateral weights before these forward weights: 'input' (û = D_in u "
        "before W_in), 'recurrent' (r̂ = D r before W_rec); see docs/rules/decorrelation.md",
    )


def _decor_lr() -> Any:
    return param(
        0.01,
        nonnegative=True,
        doc="η_d of the anti-Hebbian lateral rule ΔD_ij = −η_d ⟨x̂_i x̂_j⟩ (i ≠ j), per trial",
    )


def _check_network(model: Any) -> None:
    """The checks the rate and the LIF model share (connectivity, decorrelation)."""
    if model.p_connect > 1:
        raise ValueError(f"p_connect must be in (0, 1], got {model.p_connect}")
    for site in model.decorrelate:
        if site not in DECORRELATE:
            raise ValueError(
                f"decorrelate: unknown entry {site!r} (allowed: {', '.join(DECORRELATE)})"
            )
    if len(set(model.decorrelate)) != len(model.decorrelate):
        raise ValueError(f"decorrelate: duplicate entry in {list(model.decorrelate)}")


@dataclass(frozen=True)
class RateConfig:
    """A noisy leaky rate RNN: τ dh/dt = −h + W r̂ + U û + b + σ√(2τ) ξ, r = tanh(h), y = V r.

    r̂ = D r and û = D_in u with decorrelating lateral weights (``decorrelate``), else r, u.
    """

    kind: str = param("rate", choices=("rate",), doc="network type")
    n_hidden: int = param(100, positive=True, doc="number of recurrent units N")
    tau: float = param(0.01, unit="second", positive=True, doc="membrane time constant τ")
    dt: float = param(0.001, unit="second", positive=True, doc="Euler integration step")
    sigma: float = param(
        0.05,
        nonnegative=True,
        doc="noise amplitude: the noisy twin gets σ √(2 dt/τ) ξ per step, so without recurrence "
        "h_n − h has stationary std σ/√(1 − dt/(2τ)); recurrence amplifies it "
        "(docs/network.md)",
    )
    nonlinearity: str = param("tanh", choices=("tanh",), doc="rate function φ")
    g: float = param(1.2, nonnegative=True, doc="initial recurrent gain: W ~ N(0, g²/N)")
    input_scale: float = param(1.0, nonnegative=True, doc="initial U ~ N(0, input_scale²/n_in)")
    output_scale: float = param(1.0, nonnegative=True, doc="initial V ~ N(0, output_scale²/N)")
    output_init: str = _output_init()
    bias: float = param(0.0, doc="constant bias b of every unit")
    p_connect: float = _p_connect()
    n_outputs: int | None = _n_outputs()
    decorrelate: tuple[str, ...] = _decorrelate()
    decor_lr: float = _decor_lr()

    @property
    def state_gain(self) -> float:
        """∂h_t/∂(W x_{t−1}) of the Euler step: dt/τ (NP's estimate is scaled by it)."""
        return self.dt / self.tau

    def check(self) -> None:
        if self.dt > self.tau:
            raise ValueError(
                f"dt ({self.dt} s) must not exceed tau ({self.tau} s): Euler is unstable"
            )
        _check_network(self)


@dataclass(frozen=True)
class MLPConfig:
    """A feed-forward stack of noisy tanh layers read out linearly (docs/network-mlp.md).

    It is the rate network with τ = dt and a layered W_rec (networks/mlp.py): hidden layer
    1 receives the input, layer l + 1 only layer l, the readout only the last layer. One
    sample is held as input for a whole trial; after L steps the L layers have settled to

        h_1 = U û + b + ξ_1,   h_(l+1) = W_l r̂_l + b + ξ_(l+1),   r_l = tanh(h_l),  y = V r_L

    with one perturbation ξ per unit and trial, held for the trial (noisy twin only), so
    the loss steps see the static network of Dalm et al. (2024) exactly.
    """

    kind: str = param("mlp", choices=("mlp",), doc="network type")
    layers: tuple[int, ...] = param([64, 64], doc="sizes of the hidden layers, input side first")
    dt: float = param(
        0.001, unit="second", positive=True, doc="step; also τ, so a step is one layer's update"
    )
    sigma: float = param(
        0.05,
        nonnegative=True,
        doc="perturbation: every unit of the noisy twin gets σ √2 ξ (ξ ~ N(0, 1)), drawn "
        "once per trial and held (the rate network's per-step increment at τ = dt)",
    )
    nonlinearity: str = param("tanh", choices=("tanh",), doc="rate function φ")
    g: float = param(1.0, nonnegative=True, doc="initial W_l ~ N(0, g²/n_l), n_l its fan-in")
    input_scale: float = param(1.0, nonnegative=True, doc="initial U ~ N(0, input_scale²/n_in)")
    output_scale: float = param(
        1.0, nonnegative=True, doc="initial V ~ N(0, output_scale²/n_L) (last layer)"
    )
    bias: float = param(0.0, doc="constant bias b of every unit")
    n_outputs: int | None = _n_outputs()
    decorrelate: tuple[str, ...] = param(
        [],
        doc="decorrelating lateral weights: 'input' (û = D_in u before layer 1), 'recurrent' "
        "(r̂_l = D_l r_l within each hidden layer before the next; with both, every layer's "
        "input is decorrelated: DNP/DANP)",
    )
    decor_lr: float = _decor_lr()

    #: a feed-forward stack has no sparse W_rec beyond its layers and no unit readout
    p_connect = 1.0
    output_init = "gaussian"
    #: the noisy twin's perturbation is drawn once per trial (networks/rate.py)
    hold_noise = True

    @property
    def n_hidden(self) -> int:
        """All hidden units, the layers in order (one Brian2 group)."""
        return sum(self.layers)

    @property
    def tau(self) -> float:
        """τ = dt: the Euler step sets h to its input, so a layer has no memory."""
        return self.dt

    @property
    def state_gain(self) -> float:
        """∂h/∂(W x) = dt/τ = 1."""
        return 1.0

    @property
    def depth(self) -> int:
        """Number of hidden layers L (steps a sample needs to reach the readout)."""
        return len(self.layers)

    def check(self) -> None:
        if not self.layers:
            raise ValueError("layers: at least one hidden layer")
        bad = [n for n in self.layers if int(n) != n or n < 1]
        if bad:
            raise ValueError(f"layers: sizes must be positive integers, got {bad[0]!r}")
        _check_network(self)


@dataclass(frozen=True)
class LIFConfig:
    """A noisy LIF RNN with exponential current synapses (docs/network-spiking.md).

    Potentials are measured in units of the distance from rest to threshold (rest 0)::

        τ_m dv/dt = −v + h + b   (held at v_reset for t_ref after a spike; spike: v > v_th)
        τ_s dh/dt = −h,  h += w on each presynaptic spike  (h = W r + U u exactly)
        τ_s dr/dt = −r,  r += 1 on each own spike          (trace; presynaptic factor)
        y = V r                                             (leaky readout)
    """

    kind: str = param("lif", choices=("lif",), doc="network type")
    n_hidden: int = param(200, positive=True, doc="number of LIF neurons N")
    dt: float = param(0.001, unit="second", positive=True, doc="integration step")
    tau_m: float = param(0.02, unit="second", positive=True, doc="membrane time constant τ_m")
    tau_syn: float = param(
        0.01,
        unit="second",
        positive=True,
        doc="synaptic (and readout) time constant τ_s of currents and spike traces",
    )
    t_ref: float = param(0.002, unit="second", nonnegative=True, doc="refractory period")
    v_th: float = param(1.0, positive=True, doc="threshold (rest = 0)")
    v_reset: float = param(0.0, doc="reset potential")
    sigma: float = param(
        0.05,
        nonnegative=True,
        doc="noise current of the noisy twin: stationary std of h_n − h (an OU current, τ_s)",
    )
    g: float = param(1.0, nonnegative=True, doc="recurrent weight scale: W ~ N(0, g²/N)")
    input_scale: float = param(1.0, nonnegative=True, doc="U ~ N(0, input_scale²/n_in)")
    output_scale: float = param(1.0, nonnegative=True, doc="initial V ~ N(0, output_scale²/N)")
    output_init: str = _output_init()
    bias: float = param(0.5, doc="constant drive b (in threshold units)")
    p_connect: float = _p_connect()
    n_outputs: int | None = _n_outputs()
    input_coding: str = param(
        "spikes",
        choices=("spikes", "poisson"),
        doc="'spikes': the task's input u ≥ 0.5 at a step is a spike of that input neuron; "
        "'poisson': input neuron i fires with rate input_rate · max(u_i, 0)",
    )
    input_rate: float = param(
        100.0, unit="hertz", nonnegative=True, doc="Poisson rate per unit input ('poisson')"
    )
    synapse: str = param(
        "current",
        choices=("current", "conductance"),
        doc="'current': a spike adds w to the current h (h = W r + U u exactly); "
        "'conductance': w > 0 opens an excitatory, w < 0 an inhibitory conductance, "
        "h = g_e (E_exc − v) + g_i (E_inh − v)",
    )
    e_exc: float = param(4.67, doc="excitatory reversal potential E_exc (0 mV for rest −70, θ −55)")
    e_inh: float = param(-0.67, doc="inhibitory reversal potential E_inh (−80 mV likewise)")
    dale: bool = param(
        False, doc="Dale's law: excitatory and inhibitory neurons, W_rec signs kept in learning"
    )
    frac_exc: float = param(0.8, positive=True, doc="fraction of excitatory neurons (dale)")
    decorrelate: tuple[str, ...] = _decorrelate()
    decor_lr: float = _decor_lr()
    integration: str = param(
        "euler",
        choices=("euler", "exact"),
        doc="'euler': one Euler step per dt (the BPTT reference's too); 'exact': the "
        "exact propagators of the linear dynamics between spikes, as NEST's iaf_psc_exp "
        "(current synapses, no decorrelation)",
    )

    @property
    def state_gain(self) -> float:
        """∂h_t/∂(W x)_t: the synaptic current is W r itself, so a weight acts with gain 1."""
        return 1.0

    def propagators(self) -> dict[str, float]:
        """Per-step factors of the subthreshold dynamics (see docs/network-spiking.md)::

            v ← v + (p22 − 1)(v − b) + p21 h        (not refractory)
            h ← ps h,  r ← ps r,  u ← ps u

        Euler: p22 − 1 = −dt/τ_m, p21 = dt/τ_m, ps = 1 − dt/τ_s. Exact: p22 = e^(−dt/τ_m),
        ps = e^(−dt/τ_s), p21 = τ_s/(τ_s − τ_m) (e^(−dt/τ_s) − e^(−dt/τ_m)) (dt/τ_m e^(−dt/τ_m)
        when τ_s = τ_m).
        """
        return lif_propagators(self.dt, self.tau_m, self.tau_syn, self.integration)

    @property
    def tau(self) -> float:
        """The time constant of the noisy variable h (the synaptic current)."""
        return self.tau_syn

    def check(self) -> None:
        for name in ("tau_m", "tau_syn"):
            if self.dt > getattr(self, name):
                raise ValueError(f"dt ({self.dt} s) must not exceed {name}: Euler is unstable")
        if self.v_reset >= self.v_th:
            raise ValueError(f"v_reset ({self.v_reset}) must be below v_th ({self.v_th})")
        if self.synapse == "conductance":
            if not self.e_inh < self.v_reset < self.v_th < self.e_exc:
                raise ValueError("reversal potentials must satisfy e_inh < v_reset < v_th < e_exc")
            if self.decorrelate:
                raise ValueError("decorrelate needs synapse = 'current' (a conductance is ≥ 0)")
        if self.dale and not 0 < self.frac_exc < 1:
            raise ValueError(f"frac_exc must be between 0 and 1, got {self.frac_exc}")
        if self.integration == "exact" and (self.synapse != "current" or self.decorrelate):
            raise ValueError(
                "integration = 'exact' needs synapse = 'current' and no decorrelate (the "
                "current must be a decaying state variable)"
            )
        _check_network(self)


def lif_propagators(dt: float, tm: float, ts: float, integration: str) -> dict[str, float]:
    """:meth:`LIFConfig.propagators` of a time step ``dt`` and time constants τ_m, τ_s."""
    if integration == "euler":
        return {"p22m1": -dt / tm, "p21": dt / tm, "ps": 1.0 - dt / ts}
    if math.isclose(tm, ts, rel_tol=1e-9):
        p21 = dt / tm * math.exp(-dt / tm)
    else:
        p21 = ts / (ts - tm) * (math.exp(-dt / ts) - math.exp(-dt / tm))
    return {"p22m1": math.expm1(-dt / tm), "p21": p21, "ps": math.exp(-dt / ts)}


#: the former name of :class:`RateConfig` (kept for scripts written against it)
ModelConfig = RateConfig


@dataclass(frozen=True)
class TrainingConfig:
    """The trial loop and the optimiser that turns a rule's estimate into a weight change."""

    n_trials: int = param(200, positive=True, doc="number of training trials")
    eval_every: int = param(10, positive=True, doc="noise-free evaluation every k trials")
    optimizer: str = param("sgd", choices=("sgd", "adam"), doc="optimiser applied at trial end")
    lr: float = param(0.01, nonnegative=True, doc="learning rate η (0: frozen weights)")
    beta1: float = param(0.9, nonnegative=True, doc="Adam β1")
    beta2: float = param(0.999, nonnegative=True, doc="Adam β2")
    adam_eps: float = param(1e-8, positive=True, doc="Adam ε")
    max_step: float = param(
        0.0, nonnegative=True, doc="clip each weight change to ±max_step per trial (0: no clip)"
    )
    max_weight: float = param(
        1e3, positive=True, doc="a weight beyond ±max_weight marks the run as diverged"
    )
    checkpoint_every: int = param(
        0,
        nonnegative=True,
        doc="write <dir>/<name>.ckpt.npz every k training trials (0: never); see run --resume",
    )
    batch: int = param(
        1,
        positive=True,
        doc="training trials per weight update: the optimiser steps on the mean of their "
        "estimates (variance ÷ batch, trials × batch per update; trial counts stay trials "
        "simulated)",
    )
    repeat: bool = param(
        False,
        doc="the trials of a batch are one trial run batch times with fresh noise (batch "
        "noisy twins of one trial) instead of batch different trials",
    )
    antithetic: bool = param(
        False,
        doc="with repeat: the twins come in antithetic pairs, the second of a pair "
        "receiving exactly the negated node noise of the first (−ξ); runtime engine",
    )

    def check(self) -> None:
        if self.beta1 >= 1 or self.beta2 >= 1:
            raise ValueError("beta1 and beta2 must be below 1")
        if self.repeat and self.batch == 1:
            raise ValueError("repeat: true needs batch > 1 (the number of noisy repeats)")
        if self.antithetic and not (self.repeat and self.batch % 2 == 0):
            raise ValueError(
                "antithetic: true needs repeat = true and an even batch (pairs of twins of "
                "one trial)"
            )
        for name in ("n_trials", "eval_every", "checkpoint_every"):
            if getattr(self, name) % self.batch:
                raise ValueError(
                    f"batch: {self.batch} must divide training.{name} = {getattr(self, name)} "
                    f"(weights change only between batches)"
                )

    @property
    def batch_inv(self) -> float:
        """1 / batch: the optimiser's scale from the batch's summed estimate to its mean."""
        return 1.0 / self.batch


@dataclass(frozen=True)
class EngineConfig:
    """Which engine simulates the network, and its settings (docs/engines.md)."""

    name: str = param(
        "auto",
        choices=("auto", "runtime", "standalone"),
        doc="'auto': standalone where the protocol runs there, else runtime (said once, "
        "recorded in the run); 'runtime': Brian2 runtime mode (per-block net.run); "
        "'standalone': cpp_standalone, the network compiled once (cached per shape) and run "
        "per block of trials with run arguments",
    )
    codegen: str = param(
        "cython", choices=("cython", "numpy"), doc="Brian2 code-generation target (runtime mode)"
    )
    threads: int = param(
        1,
        positive=True,
        doc="OpenMP threads of the standalone engine (1: no OpenMP; >1 changes the noise streams)",
    )
    fuse: str = param(
        "auto",
        choices=("auto", "on", "off"),
        doc="standalone engine: W_rec's twin currents in one C++ pass and the rule's W_rec "
        "update as one matrix product per trial (docs/engines.md); 'auto' where the rule "
        "allows, 'on' fails where it does not, 'off' keeps Brian2's code",
    )
    check_memory: bool = param(
        True,
        doc="refuse, before any work, a run whose estimated memory (bioperturb.resources) "
        "exceeds this machine's physical memory; false: run anyway",
    )


#: engine settings that older protocols kept in [training] (still read, with a note)
OLD_ENGINE_KEYS = {"engine": "name", "codegen": "codegen", "threads": "threads", "fuse": "fuse"}


@dataclass(frozen=True)
class OutputConfig:
    """Where results go and what is recorded."""

    dir: str = param("results", doc="output directory (relative to the working directory)")
    record_dt: float = param(0.01, unit="second", positive=True, doc="sampling step of traces")
    n_record_units: int = param(
        10,
        nonnegative=True,
        doc="hidden units whose activity is kept (drawn from the run's seed; all of them when the "
        "network has fewer)",
    )
    figures: bool = param(True, doc="write PNG figures next to the .nc file")
    progress: bool = param(True, doc="show a progress bar")
    alignment: bool = param(
        True,
        doc="every eval_every trials, record the cosine of the rule's estimate with the exact "
        "BPTT gradient (JAX reference) on that training trial (rate models only: a LIF "
        "network has no exact gradient, so LIF runs skip it)",
    )


@dataclass(frozen=True)
class Protocol:
    """A fully resolved experiment."""

    name: str
    seed: int
    model: RateConfig | LIFConfig | MLPConfig
    task_name: str
    task: Any
    rule_name: str
    rule: Any
    training: TrainingConfig
    output: OutputConfig
    engine: EngineConfig = dataclasses.field(default_factory=EngineConfig)
    source: str = "<memory>"
    #: what resolving the protocol decided for the user (e.g. why engine 'auto' chose the
    #: runtime engine); not part of the protocol's identity or its TOML
    notes: tuple[str, ...] = dataclasses.field(default=(), compare=False)

    def to_toml(self) -> str:
        """The resolved protocol as TOML text (reloads to an equal Protocol)."""
        doc = {
            "name": self.name,
            "seed": self.seed,
            "model": to_mapping(self.model),
            "task": {"name": self.task_name, **to_mapping(self.task)},
            "rule": {"name": self.rule_name, **to_mapping(self.rule)},
            "training": to_mapping(self.training),
            "engine": to_mapping(self.engine),
            "output": to_mapping(self.output),
        }
        return tomli_w.dumps(doc)

    def replace(self, **changes: Any) -> Protocol:
        return dataclasses.replace(self, **changes)
