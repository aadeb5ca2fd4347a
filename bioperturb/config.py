"""Protocol configuration: model, task, rule, training and output, loaded from TOML.

A protocol file looks like::

    name = "pattern_anp_rate"
    seed = 1

    [model]
    preset = "rate_rnn"        # models/rate_rnn.toml, then the keys below override it
    n_hidden = 50

    [task]
    name = "pattern"
    duration = "1 s"

    [rule]
    name = "td_anp"

    [training]
    n_trials = 300
    lr = 0.05

    [output]
    dir = "results"

Physical quantities are written with Brian2 units ("10 ms"); they are stored as SI floats.
Every problem (bad TOML, unknown key, missing key, wrong unit, impossible value, unknown
task/rule/preset) raises :class:`~bioperturb.schema.ConfigError` with one line naming the
file, the key and the reason.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from bioperturb.schema import ConfigError, from_mapping, param, to_mapping

__all__ = [
    "ModelConfig",
    "LIFConfig",
    "MODEL_KINDS",
    "TrainingConfig",
    "OutputConfig",
    "Protocol",
    "load_protocol",
    "protocol_from_mapping",
    "MODELS_DIR",
    "DECORRELATE",
]

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"

#: where decorrelating lateral weights may sit: before W_in, before W_rec
DECORRELATE = ("input", "recurrent")


def _p_connect() -> Any:
    return param(
        1.0,
        positive=True,
        doc="connection probability of W_rec (1: all-to-all); absent synapses do not exist",
    )


def _n_outputs() -> Any:
    return param(None, doc="readout size (default: the task's n_outputs)")


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
class ModelConfig:
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

    @property
    def state_gain(self) -> float:
        """∂h_t/∂(W x)_t: the synaptic current is W r itself, so a weight acts with gain 1."""
        return 1.0

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
        _check_network(self)


#: model classes by ``model.kind``
MODEL_KINDS = {"rate": ModelConfig, "lif": LIFConfig}


def model_class(table: Any, where: str, key: str = "model.kind") -> type:
    kind = table.get("kind", "rate") if isinstance(table, dict) else "rate"
    if kind not in MODEL_KINDS:
        raise ConfigError(where, key, f"unknown kind {kind!r} (known: {', '.join(MODEL_KINDS)})")
    return MODEL_KINDS[kind]


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
    codegen: str = param(
        "cython", choices=("cython", "numpy"), doc="Brian2 code-generation target (runtime mode)"
    )
    engine: str = param(
        "runtime",
        choices=("runtime", "standalone"),
        doc="Brian2 runtime mode (interactive, per-block net.run), or cpp_standalone: the network "
        "compiled once (cached per shape) and run per block of trials with run arguments",
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
    checkpoint_every: int = param(
        0,
        nonnegative=True,
        doc="write <dir>/<name>.ckpt.npz every k training trials (0: never); see run --resume",
    )

    def check(self) -> None:
        if self.beta1 >= 1 or self.beta2 >= 1:
            raise ValueError("beta1 and beta2 must be below 1")


@dataclass(frozen=True)
class OutputConfig:
    """Where results go and what is recorded."""

    dir: str = param("results", doc="output directory (relative to the working directory)")
    record_dt: float = param(0.01, unit="second", positive=True, doc="sampling step of traces")
    n_record_units: int = param(10, nonnegative=True, doc="hidden units whose activity is kept")
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
    model: ModelConfig | LIFConfig
    task_name: str
    task: Any
    rule_name: str
    rule: Any
    training: TrainingConfig
    output: OutputConfig
    source: str = "<memory>"

    def to_toml(self) -> str:
        """The resolved protocol as TOML text (reloads to an equal Protocol)."""
        doc = {
            "name": self.name,
            "seed": self.seed,
            "model": to_mapping(self.model),
            "task": {"name": self.task_name, **to_mapping(self.task)},
            "rule": {"name": self.rule_name, **to_mapping(self.rule)},
            "training": to_mapping(self.training),
            "output": to_mapping(self.output),
        }
        return tomli_w.dumps(doc)

    def replace(self, **changes: Any) -> Protocol:
        return dataclasses.replace(self, **changes)


_TOP_KEYS = {"name", "seed", "model", "task", "rule", "training", "output"}


def read_toml_text(path: Path, where: str, kind: str = "TOML") -> tuple[dict[str, Any], str]:
    """(table, text) of a TOML file; every failure is a one-line :class:`ConfigError`.

    ``kind`` names the expected file in the message for a directory ("sweep TOML").
    """
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(where, "", "file not found") from None
    except PermissionError:
        raise ConfigError(where, "", "file not readable (permission denied)") from None
    except IsADirectoryError:
        raise ConfigError(where, "", f"is a directory, expected a {kind} file") from None
    except UnicodeDecodeError:
        raise ConfigError(where, "", "not a text file") from None
    except NotADirectoryError:
        reason = "cannot read file (a parent in the path is not a directory)"
        raise ConfigError(where, "", reason) from None
    except OSError as err:  # e.g. a symlink loop, an I/O error
        raise ConfigError(where, "", f"cannot read file ({err.strerror or err})") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(where, "", f"invalid TOML: {err}") from None


def _read_toml(path: Path, where: str) -> dict[str, Any]:
    return read_toml_text(path, where)[0]


def _resolve_model(table: Any, where: str, base_dir: Path) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(where, "model", "expected a table")
    table = dict(table)
    preset = table.pop("preset", None)
    if preset is None:
        return table
    if not isinstance(preset, str):
        raise ConfigError(where, "model.preset", "expected a preset name or a path")
    candidates = [base_dir / preset, base_dir / f"{preset}.toml"]
    candidates += [d / f"{preset}.toml" for d in (base_dir / "models", base_dir.parent / "models")]
    candidates.append(MODELS_DIR / f"{preset}.toml")
    for path in candidates:
        if path.is_file():
            data = _read_toml(path, str(path))
            unknown = set(data) - {"model"}
            if unknown:
                raise ConfigError(str(path), sorted(unknown)[0], "unknown key (expected [model])")
            base = data.get("model", {})
            # validate the preset itself
            from_mapping(model_class(base, str(path)), base, str(path), "model.")
            return {**base, **table}
    known = sorted(p.stem for p in MODELS_DIR.glob("*.toml"))
    raise ConfigError(
        where, "model.preset", f"unknown preset '{preset}' (known: {', '.join(known)})"
    )


def protocol_from_mapping(
    data: dict[str, Any], where: str = "<memory>", base_dir: Path | None = None
) -> Protocol:
    """Validate a parsed protocol table and resolve presets and defaults."""
    from bioperturb.rules import RULES
    from bioperturb.tasks import TASKS

    base_dir = base_dir or Path.cwd()
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(where, unknown[0], f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
    name = data.get("name", Path(where).stem if where != "<memory>" else "run")
    if not isinstance(name, str) or not name or any(c in name for c in "/\\\0"):
        raise ConfigError(where, "name", "must be a non-empty string usable as a file name")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(where, "seed", f"must be a non-negative integer, got {seed!r}")

    model_table = _resolve_model(data.get("model", {}), where, base_dir)
    model = from_mapping(model_class(model_table, where), model_table, where, "model.")

    task_table, task_name, task_cls = _named_table(data, "task", TASKS, where)
    task = from_mapping(task_cls.Params, task_table, where, "task.")
    rule_table, rule_name, rule_cls = _named_table(data, "rule", RULES, where)
    rule = from_mapping(rule_cls.Params, rule_table, where, "rule.")
    training = from_mapping(TrainingConfig, data.get("training", {}), where, "training.")
    output = from_mapping(OutputConfig, data.get("output", {}), where, "output.")

    protocol = Protocol(
        name, seed, model, task_name, task, rule_name, rule, training, output, source=where
    )
    _check_cross(protocol, task_cls, where)
    if getattr(training, "engine", "runtime") == "standalone":  # built by another process
        from bioperturb.plugins import check_portable

        check_portable(protocol, where, "the standalone build process")
    return protocol


def _named_table(data: dict[str, Any], key: str, registry: Any, where: str):
    """(table without name, name, class) of ``[task]`` / ``[rule]``.

    The name is one the registry resolves (:class:`bioperturb.registry.Registry`): a
    builtin or registered name, an entry point, or ``"package.module:Class"``.
    """
    if key not in data:
        raise ConfigError(where, key, "required table is missing")
    table = data[key]
    if not isinstance(table, dict):
        raise ConfigError(where, key, "expected a table")
    table = dict(table)
    name = table.pop("name", None)
    if name is None:
        raise ConfigError(where, f"{key}.name", "required key is missing")
    try:
        cls = registry[name]
    except (KeyError, ValueError) as err:  # unknown name, bad import path, name clash
        raise ConfigError(where, f"{key}.name", str(err)) from None
    return table, name, cls


def _check_cross(protocol: Protocol, task_cls: type, where: str) -> None:
    try:
        task = task_cls(protocol.task, protocol.model.dt)
        task.n_steps  # noqa: B018 - validates duration against dt
    except ValueError as err:
        raise ConfigError(where, "task", str(err)) from None
    n_out = protocol.model.n_outputs
    if n_out is not None and n_out != task.n_outputs:
        raise ConfigError(
            where, "model.n_outputs", f"{n_out} does not match the task's {task.n_outputs} outputs"
        )
    if getattr(protocol.rule, "apply", "trial_end") == "online" and (
        protocol.training.optimizer != "sgd"
    ):
        raise ConfigError(
            where, "rule.apply", "'online' applies plain SGD steps: set training.optimizer = 'sgd'"
        )
    _check_rule_support(protocol, where)
    if getattr(protocol.training, "engine", "runtime") == "standalone" and (
        protocol.model.kind != "rate"
    ):
        raise ConfigError(
            where,
            "training.engine",
            f"'standalone' runs rate networks; model.kind = '{protocol.model.kind}' needs "
            f"'runtime'",
        )
    if getattr(protocol.training, "engine", "runtime") == "standalone" and (
        protocol.model.p_connect < 1
    ):
        _check_sparse_standalone(protocol, where)
    if getattr(protocol.training, "fuse", "auto") == "on":
        _check_fusable(protocol, where)
    if protocol.output.record_dt < protocol.model.dt:
        raise ConfigError(where, "output.record_dt", "must not be smaller than model.dt")
    step = round(protocol.output.record_dt / protocol.model.dt)
    if not math.isclose(step * protocol.model.dt, protocol.output.record_dt) or (
        task.n_steps % step
    ):
        raise ConfigError(
            where,
            "output.record_dt",
            f"must be a whole number of model.dt steps that divides the trial's "
            f"{task.n_steps} steps",
        )


def _check_rule_support(protocol: Protocol, where: str) -> None:
    """The rule runs on this model kind and engine (``Rule.model_kinds``, ``.standalone``)."""
    from bioperturb.rules import get_rule

    rule_cls = get_rule(protocol.rule_name)
    name = protocol.rule_name
    if protocol.model.kind not in rule_cls.model_kinds:
        raise ConfigError(
            where,
            "rule.name",
            f"'{name}' runs on model.kind = {' or '.join(map(repr, rule_cls.model_kinds))}, "
            f"not '{protocol.model.kind}'",
        )
    if protocol.training.engine == "standalone" and not rule_cls.standalone:
        raise ConfigError(
            where,
            "training.engine",
            f"rule '{name}' is not built into standalone programs; use engine = 'runtime'",
        )
    check_model = getattr(protocol.rule, "check_model", None)
    if check_model is not None:  # the rule's parameters against the model's (e.g. dt)
        try:
            check_model(protocol.model)
        except ValueError as err:
            key, _, reason = str(err).partition(": ")
            raise ConfigError(where, f"rule.{key}", reason) from None


def _check_fusable(protocol: Protocol, where: str) -> None:
    """``training.fuse = "on"``: the standalone engine must be able to fuse W_rec fully."""
    from bioperturb.networks.fused import protocol_fusion

    if protocol.training.engine != "standalone":
        raise ConfigError(where, "training.fuse", "'on' needs training.engine = 'standalone'")
    plan = protocol_fusion(protocol)
    if plan.reason:
        raise ConfigError(where, "training.fuse", f"'on' is impossible here: {plan.reason}")


def _check_sparse_standalone(protocol: Protocol, where: str) -> None:
    """Sparse W_rec on the standalone engine: only the fused C++ skips absent synapses."""
    from bioperturb.networks.fused import protocol_fusion

    plan = protocol_fusion(protocol)
    if not plan.complete:
        raise ConfigError(
            where,
            "training.engine",
            f"'standalone' runs sparse W_rec (model.p_connect < 1) only fully fused, not "
            f"here: {plan.reason}; use engine = 'runtime'"
            + (" or drop fuse = 'off'" if protocol.training.fuse == "off" else ""),
        )


def load_protocol(path: str | Path, overrides: dict[str, Any] | None = None) -> Protocol:
    """Load, validate and resolve a protocol TOML file.

    ``overrides`` maps dotted keys (``"rule.lr"``) to values applied before validation.
    """
    path = Path(path)
    where = str(path)
    data = _read_toml(path, where)
    for dotted, value in (overrides or {}).items():
        apply_override(data, dotted, value, where)
    return protocol_from_mapping(data, where, path.resolve().parent)


def apply_override(data: dict[str, Any], dotted: str, value: Any, where: str) -> None:
    """Set ``data[a][b] = value`` for ``dotted = "a.b"``, creating tables as needed."""
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(where, dotted, f"'{part}' is not a table")
        node = child
    node[parts[-1]] = value
