r"""Synaptic plasticity protocols: pairing, perturbation and delayed-reward experiments.

A *synaptic* protocol (``kind = "synaptic"`` at the top of the TOML file) is the
experiment a three-factor rule exists to answer, not a training run on a task: a
presynaptic and a postsynaptic event with a defined timing, repeated, then a reward
(neuromodulator) pulse after a delay; the result is the weight change as a function of the
timings. Every point of a grid over the timings is an independent *cell* (``n_pre``
presynaptic and ``n_post`` postsynaptic units, all-to-all synapses); all cells that share
the rule's parameters run side by side in one Brian2 network, one run.

Schedule of one cell (pairing k = 0 … n_pairings − 1; jitter drawn per event)::

    t_pre,k  = first_pairing + k · period            presynaptic event
    t_post,k = t_pre,k + pairing_dt                  postsynaptic event
    t_R      = max(t_pre, t_post of the last pairing) + reward_delay
    R(t)     = reward / reward_duration   for t_R ≤ t < t_R + reward_duration

Rules, and what the events are for them:

* perturbation rules (``td_anp``, ``np``, ``online_anp`` with its temporal baseline):
  each postsynaptic unit is the rate network's unit, τ dh/dt = −h + Σ_j w_ij u_j (a clean
  and a noisy twin, or one network); the postsynaptic event is a *kick* added to the
  perturbed state (``schedule.kick``), the presynaptic event a pulse of activity u
  (amplitude ``pre_amplitude``, length ``pre_duration``, low-passed with ``pre_tau``).
  The cells of one rule variant form a network in miniature (:class:`CellNetwork`:
  ``hidden``, one ``loss`` and one silent ``readout`` unit per cell, the synapses as
  ``W_in``) on which the rule's own :meth:`~bioperturb.rules.base.Rule.install` runs
  unchanged; its global sums and broadcasts join each cell's units to the cell's loss
  unit (``connect_global``). Only the global signal differs: the perturbed loss is the
  delivered reward, L̃_t − L_t = −R(t)·dt (a reward says the perturbation lowered the
  loss), so the dense signal is M_t = −c·R(t)·dt and, as in training,
  Δw = −η Σ_t M_t elig_t = η c Σ_t R(t) dt elig_t (``rule.lr`` = η).
* ``da_stdp`` (Izhikevich 2007, :mod:`bioperturb.rules.da_stdp`): the events are pre- and
  postsynaptic spikes, the reward drives the dopamine d (dd/dt = −d/τ_d + R(t)).

The result is an xarray Dataset with the grid as dimensions (``pairing_dt``,
``reward_delay``, ``n_pairings``, any grid over a rule parameter such as ``tau_e``), plus
``repetition`` and ``synapse``: ``dw`` (weight change per synapse), and per cell the
recorded ``eligibility`` (of its first synapse), ``modulator`` (the signal its first
postsynaptic unit receives), ``pre`` and ``post`` drive.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from bioperturb.rules.da_stdp import DopamineSTDP
from bioperturb.schema import ConfigError, from_mapping, param, to_mapping

__all__ = [
    "SynapticProtocol",
    "synaptic_figures",
    "write_synaptic",
    "load_synaptic",
    "is_synaptic",
    "run_synaptic",
    "fit_decay",
    "SYNAPTIC_RULES",
]

#: grid dimensions of the schedule (other grid keys are rule parameters)
SCHEDULE_GRID = ("pairing_dt", "reward_delay", "n_pairings")
#: what a synaptic cell's units provide to a rule's W_in product (besides the rule's own
#: group variables; ``h_n`` for twin rules)
CELL_POST_VARS = {"h", "r", "I_in", "noise_h"}
CELL_PRE_VARS = {"u", "u_prev"}
_TOP = {"kind", "name", "seed", "model", "rule", "schedule", "grid", "engine", "output"}


@dataclass(frozen=True)
class CellConfig:
    """``[model]``: one cell's units (perturbation rules) and the time step."""

    dt: float = param(0.001, unit="second", positive=True, doc="time step")
    tau: float = param(
        0.01,
        unit="second",
        positive=True,
        doc="τ of the postsynaptic rate unit (perturbation rules)",
    )
    n_pre: int = param(1, positive=True, doc="presynaptic units per cell")
    n_post: int = param(1, positive=True, doc="postsynaptic units per cell")
    w0: float = param(0.0, doc="initial weight of every synapse")
    sigma: float = param(
        0.1,
        positive=True,
        doc="σ that NP's normaliser assumes (σ_ξ² = 2σ² dt/τ); the perturbation itself is "
        "schedule.kick",
    )

    def check(self) -> None:
        if self.tau < self.dt:
            raise ValueError(f"tau: {self.tau} s is shorter than dt = {self.dt} s")


@dataclass(frozen=True)
class ScheduleConfig:
    """``[schedule]``: the events of one cell (values a ``[grid]`` may vary)."""

    duration: float = param(unit="second", positive=True, doc="length of one experiment")
    first_pairing: float = param(
        0.1, unit="second", nonnegative=True, doc="time of the first presynaptic event"
    )
    n_pairings: int = param(1, positive=True, doc="number of pre/post pairings")
    period: float = param(1.0, unit="second", positive=True, doc="time between pairings")
    pairing_dt: float = param(0.01, unit="second", doc="Δt = t_post − t_pre")
    pre_amplitude: float = param(
        1.0, doc="presynaptic activity during the pulse (perturbation rules)"
    )
    pre_duration: float = param(
        0.001,
        unit="second",
        positive=True,
        doc="length of the presynaptic pulse (perturbation rules)",
    )
    pre_tau: float = param(
        0.02,
        unit="second",
        nonnegative=True,
        doc="τ of the presynaptic low-pass, τ du/dt = −u + pulse (0: the square pulse)",
    )
    kick: float = param(0.1, doc="perturbation added to h̃ (h for one-network rules) at t_post")
    post_units: tuple[int, ...] = param(
        [], doc="postsynaptic units of a cell (0 … n_post − 1) that get the event; [] all"
    )
    reward: float = param(1.0, doc="amount of reward per delivery (∫R dt); 0: no reward")
    reward_delay: float = param(
        0.5, unit="second", doc="d: reward onset after the last pairing's later event"
    )
    reward_duration: float = param(
        0.001, unit="second", positive=True, doc="length of the reward pulse"
    )
    jitter: float = param(
        0.0, unit="second", nonnegative=True, doc="std of the Gaussian jitter of each event"
    )
    repetitions: int = param(1, positive=True, doc="independent repetitions (new jitter)")


@dataclass(frozen=True)
class EngineConfig:
    codegen: str = param("numpy", choices=("numpy", "cython"), doc="Brian2 code generation target")


@dataclass(frozen=True)
class OutputConfig:
    dir: str = param("results", doc="output folder")
    record_dt: float = param(
        0.005, unit="second", positive=True, doc="sampling step of the recorded traces"
    )


@dataclass(frozen=True)
class SynapticProtocol:
    """A validated synaptic protocol (see the module docstring)."""

    name: str
    seed: int
    model: CellConfig
    rule_name: str
    rule_table: dict[str, Any]
    lr: float
    schedule: ScheduleConfig
    grid: dict[str, tuple[tuple[str, str], tuple[Any, ...]]]
    engine: EngineConfig
    output: OutputConfig
    source: str = ""

    @property
    def dims(self) -> list[str]:
        return list(self.grid)

    def cells(self) -> list[dict[str, Any]]:
        """Every grid point as ``{dim: value}`` (row-major over :attr:`dims`)."""
        names = self.dims
        values = [self.grid[n][1] for n in names]
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]

    def variants(self) -> list[list[int]]:
        """Indices into :meth:`cells` grouped by the cells' rule parameters (one group per
        point of the ``[grid.rule]`` dimensions; one group without them)."""
        rule_dims = [d for d in self.dims if self.grid[d][0][0] == "rule"]
        groups: dict[tuple[Any, ...], list[int]] = {}
        for k, point in enumerate(self.cells()):
            groups.setdefault(tuple(point[d] for d in rule_dims), []).append(k)
        return list(groups.values())

    def schedule_at(self, point: Mapping[str, Any]) -> ScheduleConfig:
        changes = {d: v for d, v in point.items() if self.grid[d][0][0] == "schedule"}
        return dataclasses.replace(self.schedule, **changes)

    def rule_at(self, point: Mapping[str, Any]) -> Any:
        changes = {  # the TOML spelling of the grid's (SI) values
            d: _write(v, _unit_of("rule", self.rule_name, d))
            for d, v in point.items()
            if self.grid[d][0][0] == "rule"
        }
        return make_rule(self.rule_name, {**self.rule_table, **changes}, self.source)

    def to_toml(self) -> str:
        import tomli_w

        grid: dict[str, dict[str, list[Any]]] = {}
        for (table, key), values in self.grid.values():
            unit = _unit_of(table, self.rule_name, key)
            grid.setdefault(table, {})[key] = [_write(v, unit) for v in values]
        data = {
            "kind": "synaptic",
            "name": self.name,
            "seed": self.seed,
            "model": to_mapping(self.model),
            "rule": {
                "name": self.rule_name,
                **to_mapping(make_rule(self.rule_name, self.rule_table, self.source).params),
                "lr": self.lr,
            },
            "schedule": to_mapping(self.schedule),
            "grid": grid,
            "engine": to_mapping(self.engine),
            "output": to_mapping(self.output),
        }
        if self.rule_name in SYNAPTIC_RULES:  # its lr is one of its parameters
            data["rule"].pop("lr")
        return tomli_w.dumps(data)


def _write(value: Any, unit: str | None) -> Any:
    from bioperturb.schema import format_quantity

    return format_quantity(value, unit) if unit else value


# -- rules ------------------------------------------------------------------------------
#: rules that run only in synaptic protocols (not in the training registry ``RULES``)
SYNAPTIC_RULES: dict[str, type] = {DopamineSTDP.name: DopamineSTDP}


def rule_class(name: str) -> type:
    from bioperturb.rules import RULES

    if name in SYNAPTIC_RULES:
        return SYNAPTIC_RULES[name]
    return RULES[name]


def _params_class(name: str) -> type:
    return rule_class(name).Params


def _unit_of(table: str, rule_name: str, key: str) -> str | None:
    cls = ScheduleConfig if table == "schedule" else _params_class(rule_name)
    for f in dataclasses.fields(cls):
        if f.name == key:
            return f.metadata.get("unit")
    return None


def cell_support(rule: Any) -> str | None:
    """Why a perturbation rule cannot run in a synaptic cell (None when it can)."""
    from brian2.parsing.sympytools import str_to_sympy

    from bioperturb.rules.perturbation import PerturbationRule

    if not isinstance(rule, PerturbationRule):
        return "it is not a perturbation rule with a broadcast signal"
    if rule.noise != "white" or rule.noisy_weight != "w" or rule.per_condition:
        return "its exploration is not a perturbation of the units' states"
    if getattr(rule, "noise_gate", None) is not None:
        return "its perturbation is gated by the layers of a feed-forward stack"
    if getattr(rule, "trial", False):
        return "its per-time-point baselines need repeated trials (use baseline = 'temporal')"
    if rule.signal != "dense":
        return "the reward arrives as a pulse in time: it needs signal = 'dense'"
    have_post = CELL_POST_VARS | set(rule.group_equations("hidden").names)
    if rule.twin:
        have_post.add("h_n")
    names = {s.name for s in str_to_sympy(rule.PRODUCTS["W_in"]).free_symbols}
    missing = sorted(
        n
        for n in names
        if (n.endswith("_post") and n[:-5] not in have_post)
        or (n.endswith("_pre") and n[:-4] not in CELL_PRE_VARS)
    )
    if missing:
        return f"its product needs {', '.join(missing)}, which a synaptic cell does not provide"
    return None


def make_rule(name: str, table: Mapping[str, Any], where: str) -> Any:
    """The rule object of ``name`` with the parameters ``table`` (validated)."""
    cls = rule_class(name)
    table = dict(table)
    if name not in SYNAPTIC_RULES and "train" in {f.name for f in dataclasses.fields(cls.Params)}:
        if "train" in table and list(table["train"]) != ["W_in"]:
            raise ConfigError(
                where, "rule.train", "set by a synaptic protocol: its synapses are W_in"
            )
        table["train"] = ["W_in"]
    params = from_mapping(cls.Params, table, where, "rule.")
    rule = cls(params)
    if name not in SYNAPTIC_RULES:
        why = cell_support(rule)
        if why is not None:
            supported = ", ".join(supported_rules())
            raise ConfigError(
                where,
                "rule.name",
                f"'{name}' cannot run in a synaptic protocol: {why} (supported: {supported})",
            )
    return rule


def supported_rules() -> list[str]:
    """Names of the rules a synaptic protocol runs (at their default parameters)."""
    from bioperturb.rules import RULES

    out = list(SYNAPTIC_RULES)
    for name in RULES.names():
        try:
            cls = RULES[name]
            if cell_support(cls(cls.Params())) is None:
                out.append(name)
        except Exception:  # a user's rule that cannot be built bare is simply not listed
            continue
    return sorted(out)


# -- loading ----------------------------------------------------------------------------
def is_synaptic(data: Mapping[str, Any]) -> bool:
    return isinstance(data, Mapping) and data.get("kind") == "synaptic"


def load_synaptic(path: str | Path, overrides: Mapping[str, Any] | None = None):
    """Read and validate a synaptic protocol; every problem is a one-line ConfigError."""
    from bioperturb.config import apply_override, read_toml_text

    where = str(path)
    data, _ = read_toml_text(Path(path), where)
    for key, value in (overrides or {}).items():
        apply_override(data, key, value, "--set")
    return synaptic_from_mapping(data, where)


def _table(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    table = data.get(key, {})
    if not isinstance(table, Mapping):
        raise ConfigError(where, key, "expected a table")
    return dict(table)


def synaptic_from_mapping(data: Mapping[str, Any], where: str) -> SynapticProtocol:
    if not is_synaptic(data):
        raise ConfigError(where, "kind", "a synaptic protocol needs kind = 'synaptic'")
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise ConfigError(where, unknown[0], f"unknown key (known: {', '.join(sorted(_TOP))})")
    from bioperturb.config import check_name_seed

    name, seed = check_name_seed(dict(data), where)
    model = from_mapping(CellConfig, _table(data, "model", where), where, "model.")
    rule_table = _table(data, "rule", where)
    rule_name = rule_table.pop("name", None)
    if not isinstance(rule_name, str):
        raise ConfigError(where, "rule.name", "required key is missing")
    try:
        rule_class(rule_name)
    except KeyError as err:
        raise ConfigError(where, "rule.name", str(err).strip("'\"")) from None
    lr = 1.0
    if rule_name not in SYNAPTIC_RULES:  # η of Δw = −η acc (da_stdp has its own lr)
        lr = rule_table.pop("lr", 1.0)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr):
            raise ConfigError(where, "rule.lr", f"expected a number, got {lr!r}")
    rule = make_rule(rule_name, rule_table, where)
    schedule = from_mapping(ScheduleConfig, _table(data, "schedule", where), where, "schedule.")
    grid = _grid(_table(data, "grid", where), schedule, rule_name, rule_table, where)
    protocol = SynapticProtocol(
        name=str(name),
        seed=seed,
        model=model,
        rule_name=rule_name,
        rule_table=rule_table,
        lr=float(lr),
        schedule=schedule,
        grid=grid,
        engine=from_mapping(EngineConfig, _table(data, "engine", where), where, "engine."),
        output=from_mapping(OutputConfig, _table(data, "output", where), where, "output."),
        source=where,
    )
    bad = [u for u in schedule.post_units if not 0 <= u < model.n_post]
    if bad:
        raise ConfigError(
            where,
            "schedule.post_units",
            f"unit {bad[0]} is not one of a cell's {model.n_post} postsynaptic units (0 … "
            f"{model.n_post - 1})",
        )
    _check_rule_model(rule, model, where)
    for point in protocol.cells():  # every grid point's timing fits in the experiment
        _check_timing(protocol.schedule_at(point), point, where)
    _check_memory(protocol, where)
    points = protocol.cells()
    for members in protocol.variants():  # each rule variant once, not once per cell
        protocol.rule_at(points[members[0]])
    return protocol


def memory_bytes(protocol: SynapticProtocol) -> int:
    """About how much memory a run needs: the drives (as numpy arrays and as Brian2's
    TimedArray copies), the recorded traces (monitors and Dataset) and the synapses."""
    m = protocol.model
    cells = len(protocol.cells()) * protocol.schedule.repetitions
    duration = max(protocol.schedule_at(p).duration for p in protocol.cells())
    steps = round(duration / m.dt) + 1
    samples = round(duration / protocol.output.record_dt) + 1
    drives = 2 * 8 * steps * cells * (m.n_pre + m.n_post + 1)
    traces = 8 * samples * cells * (2 + 4)
    synapses = 8 * 16 * cells * m.n_pre * m.n_post
    return drives + traces + synapses


def _check_memory(protocol: SynapticProtocol, where: str) -> None:
    from bioperturb.resources import human_bytes, physical_memory

    need, have = memory_bytes(protocol), physical_memory()
    if have is not None and need > have:
        raise ConfigError(
            where,
            "grid",
            f"the experiment would need about {human_bytes(need)} of memory, more than this "
            f"machine's {human_bytes(have)}: fewer grid points or repetitions, a shorter "
            "schedule.duration or a larger model.dt",
        )


def _check_rule_model(rule: Any, model: CellConfig, where: str) -> None:
    decay = getattr(rule, "trace_decay", None)
    if decay is not None:
        try:
            decay("W_in", model.dt)
        except ValueError as err:
            raise ConfigError(where, "rule", str(err).removeprefix("rule.")) from None


def _grid(table, schedule, rule_name, rule_table, where):
    """``[grid.schedule]`` / ``[grid.rule]`` tables → {dim: ((table, key), values)}."""
    out: dict[str, tuple[tuple[str, str], tuple[Any, ...]]] = {}
    for section in table:
        if section not in ("schedule", "rule"):
            raise ConfigError(
                where, f"grid.{section}", "unknown table (known: grid.schedule, grid.rule)"
            )
        sub = table[section]
        if not isinstance(sub, Mapping):
            raise ConfigError(where, f"grid.{section}", "expected a table")
        for key, spec in sub.items():
            full = f"grid.{section}.{key}"
            if section == "schedule" and key not in SCHEDULE_GRID:
                raise ConfigError(
                    where, full, f"not a grid dimension (known: {', '.join(SCHEDULE_GRID)})"
                )
            if section == "rule" and key in ("name", "lr"):
                raise ConfigError(where, full, "not a rule parameter a grid can vary")
            if key in out:
                raise ConfigError(where, full, f"'{key}' is already a grid dimension")
            raw = _grid_values(spec, where, full)
            values = []
            cls = ScheduleConfig if section == "schedule" else _params_class(rule_name)
            base = to_mapping(schedule) if section == "schedule" else rule_table
            for k, value in enumerate(raw):
                try:
                    obj = from_mapping(cls, {**base, key: value}, where, f"{section}.")
                except ConfigError as err:
                    raise ConfigError(where, f"{full}[{k}]", err.reason) from None
                values.append(getattr(obj, key))
            if len(set(values)) < len(values):
                raise ConfigError(where, full, "a value is listed twice")
            out[key] = ((section, key), tuple(values))
    return out


def _grid_values(spec: Any, where: str, key: str) -> list[Any]:
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(where, key, "the list is empty")
        return spec
    if isinstance(spec, Mapping):
        extra = sorted(set(spec) - {"start", "stop", "num"})
        if extra or len(spec) != 3:
            raise ConfigError(where, key, "a range is a table {start, stop, num}")
        from bioperturb.schema import parse_quantity

        num = spec["num"]
        if not isinstance(num, int) or isinstance(num, bool) or num < 1:
            raise ConfigError(where, f"{key}.num", f"must be a positive integer, got {num!r}")
        start, stop = spec["start"], spec["stop"]
        if isinstance(start, str) or isinstance(stop, str):
            unit = "second"
            try:
                a, b = parse_quantity(start, unit), parse_quantity(stop, unit)
            except ValueError as err:
                raise ConfigError(where, key, str(err)) from None
            return [f"{float(v)!r} second" for v in np.linspace(a, b, num)]
        return [float(v) for v in np.linspace(float(start), float(stop), num)]
    raise ConfigError(where, key, "expected a list of values or a table {start, stop, num}")


def _check_timing(s: ScheduleConfig, point: Mapping[str, Any], where: str) -> None:
    at = ", ".join(f"{k} = {v:g}" for k, v in point.items())
    at = f" (at {at})" if at else ""
    first = s.first_pairing + min(0.0, s.pairing_dt) - 3 * s.jitter
    last = s.first_pairing + (s.n_pairings - 1) * s.period + max(0.0, s.pairing_dt)
    if first < 0:
        raise ConfigError(
            where,
            "schedule.first_pairing",
            f"the first event would come before t = 0 (first_pairing + pairing_dt − 3·jitter "
            f"= {first:g} s{at})",
        )
    if s.n_pairings > 1 and s.period <= abs(s.pairing_dt):
        raise ConfigError(
            where,
            "schedule.period",
            f"pairings overlap: period {s.period:g} s ≤ |pairing_dt| {abs(s.pairing_dt):g} s{at}",
        )
    t_r = last + s.reward_delay
    end = max(last + 3 * s.jitter + s.pre_duration, t_r + s.reward_duration)
    if t_r < 0:
        raise ConfigError(where, "schedule.reward_delay", f"the reward would come before t = 0{at}")
    if end > s.duration:
        raise ConfigError(
            where,
            "schedule.duration",
            f"{s.duration:g} s is too short: the schedule ends at {end:g} s{at}",
        )


# -- the experiment's drives ------------------------------------------------------------
@dataclass
class Drives:
    """Per-step inputs of all cells of one block: (steps, units) arrays."""

    pre: np.ndarray  # presynaptic activity u (perturbation rules) or spikes (0/1)
    post: np.ndarray  # kick on h̃ or h (perturbation rules) or postsynaptic spikes (0/1)
    reward: np.ndarray  # (steps, cells): R(t)·dt, the reward delivered in each step


def event_times(s: ScheduleConfig, rng: np.random.Generator, shape: tuple[int, ...]):
    """(t_pre, t_post, t_reward): pairing times (…, n_pairings) and reward onsets (…)."""
    k = np.arange(s.n_pairings)
    t_pre = s.first_pairing + k * s.period + s.jitter * rng.standard_normal((*shape, len(k)))
    t_post = t_pre + s.pairing_dt + s.jitter * rng.standard_normal(t_pre.shape)
    ref = s.first_pairing + (s.n_pairings - 1) * s.period + max(0.0, s.pairing_dt)
    return t_pre, t_post, np.full(shape, ref + s.reward_delay)


def _step(t: np.ndarray, dt: float) -> np.ndarray:
    return np.rint(np.asarray(t) / dt).astype(int)


def build_drives(
    schedules: list[ScheduleConfig], model: CellConfig, spiking: bool, rng, n_steps: int
) -> Drives:
    """The drives of cells with the given schedules (one per cell), in cell order."""
    dt, n_pre, n_post = model.dt, model.n_pre, model.n_post
    n_cells = len(schedules)
    pre = np.zeros((n_steps, n_cells * n_pre))
    post = np.zeros((n_steps, n_cells * n_post))
    reward = np.zeros((n_steps, n_cells))
    for c, s in enumerate(schedules):
        t_pre, t_post, t_r = event_times(s, rng, (max(n_pre, n_post),))
        r0 = _step(t_r[0], dt)
        r1 = max(r0 + 1, _step(t_r[0] + s.reward_duration, dt))
        reward[r0:r1, c] = s.reward / (r1 - r0)  # ∫R dt = reward, whatever the steps
        for j in range(n_pre):
            col = c * n_pre + j
            for start in _step(t_pre[j], dt):
                if spiking:
                    pre[start, col] = 1.0
                else:
                    stop = max(start + 1, start + _step(s.pre_duration, dt))
                    pre[start:stop, col] = s.pre_amplitude
            if not spiking and s.pre_tau > 0:
                pre[:, col] = _low_pass(pre[:, col], dt / s.pre_tau)
        for i in s.post_units or range(n_post):
            col = c * n_post + i
            for start in _step(t_post[i], dt):
                post[start, col] = 1.0 if spiking else post[start, col] + s.kick
    return Drives(pre=pre, post=post, reward=reward)


def _low_pass(x: np.ndarray, a: float) -> np.ndarray:
    """Exact step of τ du/dt = −u + x for x constant within a step (a = dt/τ)."""
    from scipy.signal import lfilter

    keep = math.exp(-a)
    return lfilter([1.0 - keep], [1.0, -keep], x)


# -- Brian2 blocks ----------------------------------------------------------------------
def _cell_index(n_cells: int, per_cell: int) -> np.ndarray:
    return np.repeat(np.arange(n_cells), per_cell)


def _synapse_pairs(n_cells: int, n_pre: int, n_post: int) -> tuple[np.ndarray, np.ndarray]:
    """(pre, post) unit indices of every cell's all-to-all synapses, cell by cell,
    postsynaptic unit major: synapse s of cell c is (post s // n_pre, pre s % n_pre)."""
    c, i, j = np.meshgrid(np.arange(n_cells), np.arange(n_post), np.arange(n_pre), indexing="ij")
    return (c * n_pre + j).ravel(), (c * n_post + i).ravel()


class CellNetwork:
    """What a rule's :meth:`~bioperturb.rules.base.Rule.install` asks of a network, for a
    block of independent cells: the ``hidden`` (postsynaptic units), ``readout`` (one
    silent unit per cell) and ``loss`` (one unit per cell) groups, the plastic synapses as
    ``W_in``, the clocks, and :meth:`connect_global`, which joins each cell's units to its
    own loss unit where a network joins all of them to its one loss unit."""

    def __init__(self, hidden, readout, loss, syn, clock, trial_clock, n_post: int):
        self.hidden, self.readout, self.loss = hidden, readout, loss
        self.synapses = {"W_in": syn}
        self.batched: tuple[str, ...] = ()
        self.clock, self.trial_clock = clock, trial_clock
        n_cells = len(loss)
        self._cell = {
            hidden.name: _cell_index(n_cells, n_post),
            readout.name: np.arange(n_cells),
        }

    def schedule_summed(self, syn: Any, var: str, order: int) -> None:
        _at(syn, var, "start", order)

    def connect_global(self, syn: Any) -> None:
        if syn.source is self.loss:
            syn.connect(i=self._cell[syn.target.name], j=np.arange(len(syn.target)))
        elif syn.target is self.loss:
            syn.connect(i=np.arange(len(syn.source)), j=self._cell[syn.source.name])
        else:
            raise ValueError(f"{syn.name}: a global sum or broadcast joins the loss group")


def _rule_block(rule: Any, model: CellConfig, drives: Drives, lr: float, rec_dt: float):
    """The Brian2 objects of the cells of one perturbation-rule variant: the rule's own
    equations and :meth:`install`, on cells instead of a network."""
    from brian2 import Clock, Equations, NeuronGroup, StateMonitor, Synapses, TimedArray, second

    dt = model.dt
    n_steps = drives.reward.shape[0]
    n_cells = drives.reward.shape[1]
    n_pre, n_post = model.n_pre, model.n_post
    ns: dict[str, Any] = {
        "pre_drive": TimedArray(drives.pre, dt=dt * second),
        "kick_at": TimedArray(drives.post, dt=dt * second),
        "reward_at": TimedArray(drives.reward, dt=dt * second),
        "noise_at": TimedArray(np.ones(1), dt=dt * second),
        "tau": model.tau * second,
        "sigma": model.sigma,
        "state_gain": dt / model.tau,
        "lr": lr,
    }
    ns.update(rule.namespace(n_pre, n_post, 0))
    clock = Clock(dt=dt * second, name="cell_step")
    # the whole experiment is one trial: the trial-end operations tick only at t = 0
    trial_clock = Clock(dt=(n_steps + 1) * dt * second, name="cell_trial")
    twin = rule.twin  # a clean and a noisy twin, or one network whose h is kicked
    kicked = "h_n" if twin else "h"
    states = ["dh/dt = (-h + I_in) / tau : 1"]
    if twin:
        states.append("dh_n/dt = (-h_n + I_in) / tau : 1")
    hidden_eqs = Equations(
        "\n".join(states) + "\nr = tanh(h) : 1\nI_in : 1\nnoise_h : 1\nmod_cum : 1"
    )
    hidden = NeuronGroup(
        n_cells * n_post,
        hidden_eqs + rule.group_equations("hidden"),
        method="euler",
        clock=clock,
        name="hidden",
    )
    readout = NeuronGroup(
        n_cells,
        Equations("y : 1" + ("\ny_n : 1" if twin else "")) + rule.group_equations("readout"),
        clock=clock,
        name="readout",
    )
    # the global signal: the loss difference is the delivered reward, L̃_t − L_t = −R(t) dt
    pert, base = rule.LOSSES
    loss_rule = rule.group_equations("loss")
    loss_eqs = [f"{pert} = -reward_at(t, i) : 1", "M_inv : 1"]
    if base not in loss_rule.names:
        loss_eqs.append(f"{base} : 1")
    loss = NeuronGroup(
        n_cells, loss_rule + Equations("\n".join(loss_eqs)), clock=clock, name="loss"
    )
    loss.M_inv = 1.0  # one reward pulse is the trial's signal: no 1/M averaging
    pre = NeuronGroup(n_cells * n_pre, "u : 1\nu_prev : 1", clock=clock, name="inputs")
    syn_eqs = rule.synapse_equations() + Equations("w : 1\nI_in_post = w * u_pre : 1 (summed)")
    syn = Synapses(pre, hidden, syn_eqs, clock=clock, name="w_in")
    i, j = _synapse_pairs(n_cells, n_pre, n_post)
    syn.connect(i=i, j=j)
    syn.w = model.w0
    _at(syn, "I_in", "groups", -1)
    cells = CellNetwork(hidden, readout, loss, syn, clock, trial_clock, n_post)
    objs = [pre, hidden, readout, loss, syn, *rule.install(cells)]  # the rule, unchanged
    objs += [
        pre.run_regularly("u = pre_drive(t, i)", when="start", order=-3),
        pre.run_regularly("u_prev = u", when="after_groups", order=1),
        hidden.run_regularly(
            f"noise_h = kick_at(t, i)\n{kicked} += noise_h", when="after_groups", order=0
        ),
        # the signal is a pulse that sampling would miss: record its running sum
        hidden.run_regularly("mod_cum += gate", when="start", order=5),
    ]
    first = np.arange(n_cells) * n_pre * n_post
    mon_e = StateMonitor(syn, "elig", record=first, dt=rec_dt * second)
    mon_m = StateMonitor(hidden, "mod_cum", record=np.arange(n_cells) * n_post, dt=rec_dt * second)
    objs += [mon_e, mon_m]

    def dw() -> np.ndarray:
        if rule.online:  # the rule changed w every step
            return np.asarray(syn.w[:]) - model.w0
        return -lr * np.asarray(syn.acc[:])

    return objs, ns, dw, mon_e, mon_m


def _spike_block(rule: Any, model: CellConfig, drives: Drives, tag: str, rec_dt):
    from brian2 import NeuronGroup, StateMonitor, Synapses, TimedArray, second

    dt = model.dt
    n_cells = drives.reward.shape[1]
    n_pre, n_post = model.n_pre, model.n_post
    post_reward = np.repeat(drives.reward, n_post, axis=1)
    ns: dict[str, Any] = {
        "pre_spike": TimedArray(drives.pre, dt=dt * second),
        "post_spike": TimedArray(drives.post, dt=dt * second),
        "reward_at": TimedArray(post_reward, dt=dt * second),
        **rule.namespace(),
    }
    pre = NeuronGroup(
        n_cells * n_pre,
        "",
        threshold="pre_spike(t, i) > 0.5",
        reset="",
        name=f"pre_{tag}",
        namespace=ns,
        dt=dt * second,
    )
    post = NeuronGroup(
        n_cells * n_post,
        rule.post_equations(),
        threshold="post_spike(t, i) > 0.5",
        reset="",
        method="exact",
        name=f"post_{tag}",
        namespace=ns,
        dt=dt * second,
    )
    # the reward enters d once per step: dd/dt = −d/τ_d + R(t), R(t)·dt per step
    kick = post.run_regularly("da += reward_at(t, i)", when="start", order=0)
    syn = Synapses(
        pre,
        post,
        rule.synapse_equations(),
        on_pre=rule.on_pre,
        on_post=rule.on_post,
        method="euler",
        name=f"w_{tag}",
        namespace=ns,
        dt=dt * second,
    )
    i, j = _synapse_pairs(n_cells, n_pre, n_post)
    syn.connect(i=i, j=j)
    syn.w = model.w0
    first = np.arange(n_cells) * n_pre * n_post
    mon_e = StateMonitor(syn, rule.eligibility, record=first, dt=rec_dt * second)
    mon_m = StateMonitor(
        post, rule.modulator, record=np.arange(n_cells) * n_post, dt=rec_dt * second
    )

    def dw() -> np.ndarray:
        return np.asarray(syn.w[:]) - model.w0

    return [pre, post, kick, syn, mon_e, mon_m], None, dw, mon_e, mon_m


def _at(syn: Any, var: str, when: str, order: int) -> None:
    updater = syn.summed_updaters[f"{var}_post"]
    updater.when, updater.order = when, order


# -- running ----------------------------------------------------------------------------
def run_synaptic(protocol: SynapticProtocol, progress: bool = False) -> xr.Dataset:
    """Run every cell of ``protocol``; return the result Dataset. All cells that share the
    rule's parameters run side by side in one Brian2 network and one ``run``."""
    import brian2
    from brian2 import Network, second

    brian2.prefs.codegen.target = protocol.engine.codegen
    model, sched = protocol.model, protocol.schedule
    spiking = protocol.rule_name in SYNAPTIC_RULES
    points = protocol.cells()
    reps = sched.repetitions
    duration = max(protocol.schedule_at(p).duration for p in points)
    n_steps = int(round(duration / model.dt))
    rng = np.random.default_rng(protocol.seed)
    blocks, nets = [], []
    for b, members in enumerate(protocol.variants()):  # one block per rule variant
        schedules = [protocol.schedule_at(points[k]) for k in members for _ in range(reps)]
        drives = build_drives(schedules, model, spiking, rng, n_steps + 1)
        rule = protocol.rule_at(points[members[0]])
        rec_dt = protocol.output.record_dt
        if spiking:
            objs, ns, dw, mon_e, mon_m = _spike_block(rule, model, drives, f"b{b}", rec_dt)
        else:  # a rule's objects have fixed names: one network per rule variant
            objs, ns, dw, mon_e, mon_m = _rule_block(rule, model, drives, protocol.lr, rec_dt)
        nets.append((Network(*objs), ns))
        blocks.append((members, drives, dw, mon_e, mon_m))
    started = time.perf_counter()
    for net, ns in nets:
        net.run(n_steps * model.dt * second, namespace=ns, report="text" if progress else None)
        if abs(float(net.t / second) - n_steps * model.dt) > model.dt / 2:  # Ctrl-C
            raise KeyboardInterrupt(f"the simulation stopped at {float(net.t / second):g} s")
    wall = time.perf_counter() - started
    return _dataset(protocol, blocks, points, n_steps, wall)


def _dataset(protocol, blocks, points, n_steps, wall) -> xr.Dataset:
    model, reps = protocol.model, protocol.schedule.repetitions
    spiking = protocol.rule_name in SYNAPTIC_RULES
    n_syn = model.n_pre * model.n_post
    shape = [len(protocol.grid[d][1]) for d in protocol.dims]
    n_rec = None
    dw = np.full((len(points), reps, n_syn), np.nan)
    rec_step = max(1, int(round(protocol.output.record_dt / model.dt)))
    for members, drives, dw_fn, mon_e, mon_m in blocks:
        values = dw_fn().reshape(len(members), reps, n_syn)
        e = np.asarray(getattr(mon_e, mon_e.record_variables[0])).reshape(len(members), reps, -1)
        if n_rec is None:
            n_rec = e.shape[-1]
            elig = np.full((len(points), reps, n_rec), np.nan)
            mod, pre, post = (np.full_like(elig, np.nan) for _ in range(3))
        m = np.asarray(getattr(mon_m, mon_m.record_variables[0]))
        if not spiking:  # running sums → sums over the bins ending at each sample
            m = np.diff(m, axis=1, prepend=0.0)
        m = m.reshape(len(members), reps, -1)
        # row s of a drive acts in the step at s·dt; monitors sample at the start of a step
        first_pre = drives.pre[:, :: model.n_pre]
        first_pre = _bins(first_pre, rec_step, n_rec) if spiking else first_pre[::rec_step]
        first_post = _bins(drives.post[:, :: model.n_post], rec_step, n_rec)
        first_pre, first_post = first_pre[:n_rec].T, first_post.T
        for slot, k in enumerate(members):
            dw[k], elig[k], mod[k] = values[slot], e[slot], m[slot]
            pre[k] = first_pre[slot * reps : (slot + 1) * reps]
            post[k] = first_post[slot * reps : (slot + 1) * reps]
    dims = protocol.dims
    grid_shape = (*shape, reps)
    time_axis = np.arange(n_rec) * rec_step * model.dt
    coords: dict[str, Any] = {d: list(protocol.grid[d][1]) for d in dims}
    coords.update(repetition=np.arange(reps), synapse=np.arange(n_syn), time=time_axis)
    ds = xr.Dataset(
        {
            "dw": ([*dims, "repetition", "synapse"], dw.reshape(*grid_shape, n_syn)),
            "eligibility": ([*dims, "repetition", "time"], elig.reshape(*grid_shape, n_rec)),
            "modulator": ([*dims, "repetition", "time"], mod.reshape(*grid_shape, n_rec)),
            "pre": ([*dims, "repetition", "time"], pre.reshape(*grid_shape, n_rec)),
            "post": ([*dims, "repetition", "time"], post.reshape(*grid_shape, n_rec)),
        },
        coords=coords,
    )
    ds["dw"].attrs.update(long_name="weight change per synapse", units="1")
    ds["eligibility"].attrs["long_name"] = (
        "eligibility c of the first synapse"
        if spiking
        else "eligibility trace of the first synapse"
    )
    ds["modulator"].attrs["long_name"] = (
        "dopamine d at the first postsynaptic unit"
        if spiking
        else "signal M_t = −c·R(t)·dt at the first postsynaptic unit, summed over each bin"
    )
    ds["pre"].attrs["long_name"] = (
        "presynaptic spikes of the first unit, per bin" if spiking else "presynaptic activity u"
    )
    ds["post"].attrs["long_name"] = (
        "postsynaptic spikes of the first unit, per bin"
        if spiking
        else "kicks on the perturbed state (h̃, or h), summed per bin"
    )
    for var in ("eligibility", "modulator", "pre", "post", "repetition", "synapse"):
        ds[var].attrs["units"] = "1"
    ds["time"].attrs.update(units="second", long_name="time in the experiment")
    for d in dims:
        unit = _unit_of(protocol.grid[d][0][0], protocol.rule_name, d)
        if unit:
            ds[d].attrs["units"] = unit
    ds.attrs.update(
        kind="synaptic",
        name=protocol.name,
        rule=protocol.rule_name,
        protocol=protocol.to_toml(),
        n_steps=n_steps,
        wall_time_s=wall,
        brian2_target=protocol.engine.codegen,
    )
    return ds


def _bins(x: np.ndarray, width: int, n: int) -> np.ndarray:
    """Sums of (steps, units) ``x`` over the n bins ending before rows 0, w, 2w, …: bin k
    holds rows (k − 1)·w … k·w − 1, as the differences of a running sum that a monitor
    samples at the start of step k·w do."""
    sums = np.concatenate([np.zeros((1, *x.shape[1:])), np.cumsum(x, axis=0)])
    return np.diff(sums[::width][:n], axis=0, prepend=np.zeros((1, *x.shape[1:])))


def write_synaptic(protocol: SynapticProtocol, ds: xr.Dataset, out_dir: Path) -> Path:
    from bioperturb.dataset import write_dataset

    out_dir.mkdir(parents=True, exist_ok=True)
    return write_dataset(ds, out_dir / f"{protocol.name}.nc")


# -- analysis ---------------------------------------------------------------------------
def fit_decay(delay: np.ndarray, dw: np.ndarray) -> tuple[float, float]:
    """(A, τ) of dw = A exp(−d/τ), least squares on the points with d ≥ 0 and dw ≠ 0."""
    from scipy.optimize import curve_fit

    d, y = np.asarray(delay, dtype=float), np.asarray(dw, dtype=float)
    keep = (d >= 0) & (y != 0) & np.isfinite(y)
    d, y = d[keep], y[keep]
    if len(d) < 3:
        raise ValueError("fit_decay: needs at least 3 delays ≥ 0 with a non-zero change")
    slope, icpt = np.polyfit(d, np.log(np.abs(y)), 1)  # start from the log-linear fit
    sign = np.sign(y[0])

    def model(x, a, tau):
        return a * np.exp(-x / tau)

    (a, tau), _ = curve_fit(model, d, y, p0=(sign * math.exp(icpt), -1.0 / slope))
    return float(a), float(tau)


# -- figures ----------------------------------------------------------------------------
_SCALE = {"second": (1e3, "ms")}


def _axis(ds: xr.Dataset, dim: str) -> tuple[np.ndarray, str]:
    factor, unit = _SCALE.get(ds[dim].attrs.get("units", ""), (1.0, ""))
    label = dim.replace("_", " ") + (f" ({unit})" if unit else "")
    return np.asarray(ds[dim].values, dtype=float) * factor, label


def _value_label(ds: xr.Dataset, dim: str, value: float, spaced: bool = False) -> str:
    """``dim = value unit`` with times in ms."""
    factor, unit = _SCALE.get(ds[dim].attrs.get("units", ""), (1.0, ""))
    name = dim.replace("_", " ") if spaced else dim
    return f"{name} = {value * factor:g}{(' ' + unit) if unit else ''}"


def _curves(ds: xr.Dataset, x_dim: str):
    """Mean Δw (over synapses and repetitions) against ``x_dim``, one curve per value of
    the first other grid dimension (the remaining ones at their first value)."""
    mean = ds["dw"].mean("synapse")
    others = [d for d in mean.dims if d not in (x_dim, "repetition")]
    if others[1:]:
        mean = mean.isel({d: 0 for d in others[1:]})
    spread = mean.std("repetition") if mean.sizes["repetition"] > 1 else None
    mean = mean.mean("repetition")
    if not others:
        return [("", mean.values, None if spread is None else spread.values)]
    line_dim = others[0]
    out = []
    for k in range(mean.sizes[line_dim]):
        label = _value_label(ds, line_dim, float(ds[line_dim].values[k]), spaced=True)
        sd = None if spread is None else spread.isel({line_dim: k}).values
        out.append((label, mean.isel({line_dim: k}).values, sd))
    return out


def _window_figure(ds: xr.Dataset):
    from matplotlib.figure import Figure

    x, xlabel = _axis(ds, "pairing_dt")
    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.add_subplot()
    for label, y, sd in _curves(ds, "pairing_dt"):
        ax.plot(x, y, "o-", ms=3, label=label or None)
        if sd is not None:
            ax.fill_between(x, y - sd, y + sd, alpha=0.2)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.axvline(0, color="0.6", lw=0.8)
    ax.set(
        xlabel=f"{xlabel}, t_post − t_pre", ylabel="Δw", title=f"{ds.attrs['rule']}: timing window"
    )
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return fig


def _delay_figure(ds: xr.Dataset):
    from matplotlib.figure import Figure

    x, xlabel = _axis(ds, "reward_delay")
    d = np.asarray(ds["reward_delay"].values, dtype=float)
    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.add_subplot()
    fine = np.linspace(max(d.min(), 0.0), d.max(), 200)
    factor = _SCALE["second"][0]  # reward_delay is in seconds, its axis in ms
    for label, y, sd in _curves(ds, "reward_delay"):
        (line,) = ax.plot(x, y, "o", ms=4)
        if sd is not None:
            ax.errorbar(x, y, yerr=sd, fmt="none", color=line.get_color())
        try:
            a, tau = fit_decay(d, y)
            ax.plot(
                fine * factor,
                a * np.exp(-fine / tau),
                "-",
                color=line.get_color(),
                label=f"{label}{'; ' if label else ''}fit τ = {tau * 1e3:.4g} ms",
            )
        except (ValueError, RuntimeError):
            line.set_label(label or None)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set(xlabel=xlabel, ylabel="Δw", title=f"{ds.attrs['rule']}: reward delay")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return fig


def _traces_figure(ds: xr.Dataset, point: Mapping[str, int] | None = None):
    from matplotlib.figure import Figure

    point = point or {d: ds.sizes[d] // 2 for d in ds["dw"].dims if d not in ("synapse",)}
    point = {**point, "repetition": 0}
    cell = ds.isel(point)
    t = np.asarray(ds["time"].values) * 1e3
    fig = Figure(figsize=(6.5, 6), layout="constrained")
    axes = fig.subplots(4, 1, sharex=True)
    for ax, var in zip(axes, ("pre", "post", "eligibility", "modulator"), strict=True):
        ax.plot(t, cell[var].values, lw=1)
        ax.set_ylabel(var, fontsize=8)
        ax.set_title(ds[var].attrs.get("long_name", ""), fontsize=7, loc="left")
    axes[-1].set_xlabel("time (ms)")
    where = ", ".join(
        _value_label(ds, d, float(cell[d].values))
        for d in ds["dw"].dims
        if d not in ("synapse", "repetition")
    )
    fig.suptitle(
        f"{ds.attrs['rule']}: one cell ({where}); Δw = {float(cell['dw'].mean()):.4g}", fontsize=8
    )
    return fig


def synaptic_figures(ds: xr.Dataset):
    """(name, make-figure) pairs of a synaptic result: the timing window, the
    reward-delay curve (each where the grid has that dimension) and one cell's traces."""
    if "pairing_dt" in ds.dims and ds.sizes["pairing_dt"] > 1:
        yield "window", lambda: _window_figure(ds)
    if "reward_delay" in ds.dims and ds.sizes["reward_delay"] > 1:
        yield "reward_delay", lambda: _delay_figure(ds)
    yield "traces", lambda: _traces_figure(ds)
