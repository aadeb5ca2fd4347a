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
import datetime
import math
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from bioperturb.modelspec import MODELS, model_family, model_spec
from bioperturb.protocol import (
    DECORRELATE,
    MODELS_DIR,
    OLD_ENGINE_KEYS,
    EngineConfig,
    LIFConfig,
    ModelConfig,
    OutputConfig,
    Protocol,
    RateConfig,
    TrainingConfig,
)
from bioperturb.schema import ConfigError, from_mapping

__all__ = [
    "RateConfig",
    "ModelConfig",
    "LIFConfig",
    "MODEL_KINDS",
    "TrainingConfig",
    "EngineConfig",
    "OutputConfig",
    "Protocol",
    "load_protocol",
    "protocol_from_mapping",
    "MODELS_DIR",
    "DECORRELATE",
]


class _ModelKinds(Mapping[str, type]):
    """``model.kind`` -> the config class of its ``[model]`` table: a live view of
    :data:`bioperturb.modelspec.MODELS` (kinds registered later appear in it)."""

    def __getitem__(self, kind: str) -> type:
        return MODELS[kind].config

    def __iter__(self) -> Iterator[str]:
        return iter(MODELS)

    def __len__(self) -> int:
        return len(MODELS)


#: config classes by ``model.kind`` (builtin, registered, entry points, import paths)
MODEL_KINDS: Mapping[str, type] = _ModelKinds()


def model_class(table: Any, where: str, key: str = "model.kind") -> type:
    """The config class of a ``[model]`` table's ``kind`` (default ``"rate"``)."""
    from bioperturb.registry import UnknownName

    kind = table.get("kind", "rate") if isinstance(table, dict) else "rate"
    known = ", ".join(MODEL_KINDS)
    if not isinstance(kind, str):
        raise ConfigError(where, key, f"unknown kind {kind!r} (known: {known})")
    try:
        return MODEL_KINDS[kind]
    except UnknownName as err:
        reason = str(err) if ":" in kind else f"unknown kind {kind!r} (known: {known})"
        raise ConfigError(where, key, reason) from None
    except ValueError as err:  # an import path that gives no ModelSpec, a name clash
        raise ConfigError(where, key, str(err)) from None


_TOP_KEYS = {"name", "seed", "model", "task", "rule", "training", "engine", "output"}


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
    path = _preset_path(preset, base_dir)
    if path is not None:
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
        where,
        "model.preset",
        f"unknown preset '{preset}' (a name, known: {', '.join(known)}; or a path to a .toml file)",
    )


def _preset_path(preset: str, base_dir: Path) -> Path | None:
    """The file of a model preset: a path, or a name looked up beside the protocol and in
    ``models/`` folders (the protocol's, its parent's, the shipped one); None if absent.

    Only ``.toml`` files are presets: a path to anything else is never opened.
    """
    if Path(preset).suffix not in ("", ".toml"):
        return None
    candidates = [base_dir / preset] if preset.endswith(".toml") else []
    candidates.append(base_dir / f"{preset}.toml")
    candidates += [d / f"{preset}.toml" for d in (base_dir / "models", base_dir.parent / "models")]
    candidates.append(MODELS_DIR / f"{preset}.toml")
    return next((path for path in candidates if path.is_file()), None)


#: longest run name in bytes: <name>_compare_accuracy.png and temp names stay below 255
MAX_NAME_BYTES = 200
#: largest seed: it is stored as a 64-bit netCDF attribute
MAX_SEED = 2**63 - 1


def check_name_seed(data: dict[str, Any], where: str) -> tuple[str, int]:
    """A protocol's ``name`` (it names the run's files) and ``seed``, validated."""
    name = data.get("name", Path(where).stem if where != "<memory>" else "run")
    if not isinstance(name, str) or not name or any(c in name for c in "/\\\0"):
        raise ConfigError(where, "name", "must be a non-empty string usable as a file name")
    if name.startswith(".") or not name.isprintable() or name != name.strip():
        raise ConfigError(
            where,
            "name",
            "must not start with '.' or a space, end with a space or hold control characters",
        )
    if len(name.encode()) > MAX_NAME_BYTES:
        raise ConfigError(
            where,
            "name",
            f"is {len(name.encode())} bytes long; at most {MAX_NAME_BYTES} (it names the "
            "run's files, whose names the file system limits to 255 bytes)",
        )
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(
            where, "seed", f"must be a non-negative integer below 2**63 (int64), got {seed!r}"
        )
    return name, seed


def protocol_from_mapping(
    data: dict[str, Any], where: str = "<memory>", base_dir: Path | None = None
) -> Protocol:
    """Validate a parsed protocol table and resolve presets and defaults."""
    from bioperturb.rules import RULES
    from bioperturb.tasks import TASKS

    base_dir = base_dir or Path.cwd()
    if data.get("kind") == "synaptic":
        raise ConfigError(
            where,
            "kind",
            "a synaptic protocol (kind = 'synaptic') runs with 'bioperturb run'; compare and "
            "sweep take training protocols (docs/synaptic.md)",
        )
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(where, unknown[0], f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
    name, seed = check_name_seed(data, where)

    model_table = _resolve_model(data.get("model", {}), where, base_dir)
    model = from_mapping(model_class(model_table, where), model_table, where, "model.")

    task_table, task_name, task_cls = _named_table(data, "task", TASKS, where)
    task = from_mapping(task_cls.Params, task_table, where, "task.")
    rule_table, rule_name, rule_cls = _named_table(data, "rule", RULES, where)
    rule = from_mapping(rule_cls.Params, rule_table, where, "rule.")
    training_table, engine_table = _engine_tables(data, where)
    training = from_mapping(TrainingConfig, training_table, where, "training.")
    engine = from_mapping(EngineConfig, engine_table, where, "engine.")
    output = from_mapping(OutputConfig, data.get("output", {}), where, "output.")

    protocol = resolve_engine(
        Protocol(
            name, seed, model, task_name, task, rule_name, rule, training, output, engine, where
        )
    )
    _check_cross(protocol, task_cls, where)
    if protocol.engine.name == "standalone":  # built by another process
        from bioperturb.plugins import check_portable

        check_portable(protocol, where, "the standalone build process")
    return protocol


def _engine_tables(data: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """([training], [engine]) with the engine keys older protocols kept in [training] moved.

    ``training.engine``/``codegen``/``threads``/``fuse`` are read as ``engine.name``/…
    with a one-line deprecation note; the same key in both tables is an error.
    """
    training, engine = data.get("training", {}), data.get("engine", {})
    if not isinstance(training, dict) or not isinstance(engine, dict):
        return training, engine  # from_mapping names the table that is not one
    old = [key for key in OLD_ENGINE_KEYS if key in training]
    if not old:
        return training, engine
    training, engine = dict(training), dict(engine)
    for key in old:
        new = OLD_ENGINE_KEYS[key]
        if new in engine:
            raise ConfigError(
                where, f"training.{key}", f"given twice: also as engine.{new}; keep engine.{new}"
            )
        engine[new] = training.pop(key)
    import warnings

    moved = ", ".join(f"training.{k} -> engine.{OLD_ENGINE_KEYS[k]}" for k in old)
    warnings.warn(
        f"{where}: engine settings now live in an [engine] table ({moved})",
        FutureWarning,
        stacklevel=3,
    )
    return training, engine


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
    from bioperturb import resources

    resources.check_trial_length(protocol, where)
    try:
        task = task_cls(protocol.task, protocol.model.dt)
        task.n_steps  # noqa: B018 - validates duration against dt
    except ValueError as err:
        raise ConfigError(where, "task", str(err)) from None
    if task.n_steps > resources.MAX_TRIAL_STEPS:
        raise ConfigError(
            where,
            "model.dt",
            f"a trial would have {task.n_steps:,} steps (at most "
            f"{resources.MAX_TRIAL_STEPS:,}): use a larger model.dt or shorter periods",
        )
    n_out = protocol.model.n_outputs
    if n_out is not None and n_out != task.n_outputs:
        raise ConfigError(
            where, "model.n_outputs", f"{n_out} does not match the task's {task.n_outputs} outputs"
        )
    if getattr(protocol.model, "output_init", "gaussian") == "units" and (
        task.n_outputs > protocol.model.n_hidden
    ):
        raise ConfigError(
            where,
            "model.output_init",
            f"'units' reads each of the task's {task.n_outputs} outputs from its own hidden "
            f"unit: n_hidden = {protocol.model.n_hidden} is too small",
        )
    if getattr(protocol.model, "hold_noise", False):  # a feed-forward stack must settle
        from bioperturb.networks.mlp import check_settled
        from bioperturb.rules import get_rule

        try:
            check_settled(protocol.model, task.eval_trials().mask)
        except ValueError as err:
            raise ConfigError(where, "model.layers", str(err).split(": ", 1)[1]) from None
        if protocol.training.antithetic:
            raise ConfigError(
                where,
                "training.antithetic",
                "a feed-forward stack draws one perturbation per trial; pairs are not built",
            )
        noise = getattr(get_rule(protocol.rule_name), "noise", "white")
        if noise != "white":
            raise ConfigError(
                where,
                "rule.name",
                f"'{protocol.rule_name}' perturbs with {noise!r}; a feed-forward stack holds "
                "one white perturbation per trial",
            )
    if getattr(protocol.rule, "apply", "trial_end") == "online" and (
        protocol.training.optimizer != "sgd"
    ):
        raise ConfigError(
            where, "rule.apply", "'online' applies plain SGD steps: set training.optimizer = 'sgd'"
        )
    _check_rule_support(protocol, where)
    _check_engine(protocol, where)
    n_cond = task.eval_trials().n_trials
    need = resources.estimate(protocol, task.n_steps, task.n_inputs, task.n_outputs, n_cond)
    resources.check_memory(protocol, need, where)
    if protocol.output.record_dt < protocol.model.dt:
        raise ConfigError(where, "output.record_dt", "must not be smaller than model.dt")
    if protocol.output.record_dt > task.n_steps * protocol.model.dt * (1 + 1e-9):
        raise ConfigError(
            where,
            "output.record_dt",
            f"must not be longer than a trial ({task.n_steps * protocol.model.dt:g} s)",
        )
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


def resolve_engine(protocol: Protocol) -> Protocol:
    """``engine.name = "auto"`` made concrete: ``"standalone"`` where the protocol runs there
    (its model kind, rule, connectivity and plugins), else ``"runtime"`` with a note on why
    (:attr:`Protocol.notes`). Other names are returned unchanged."""
    from bioperturb.engines import get_engine
    from bioperturb.plugins import check_portable

    if protocol.engine.name != "auto":
        return protocol
    trial = protocol.replace(engine=dataclasses.replace(protocol.engine, name="standalone"))
    where = protocol.source
    try:
        if "standalone" not in model_spec(protocol.model.kind).engines:
            raise ConfigError(where, "model.kind", f"'{protocol.model.kind}' runs on runtime only")
        get_engine("standalone").check_protocol(trial, where)
        check_portable(trial, where, "the standalone build process")
    except ConfigError as err:
        why = err.reason.split("; use ")[0]
        note = f"engine 'auto' runs '{protocol.name}' on the runtime engine ({why})"
        return protocol.replace(
            engine=dataclasses.replace(protocol.engine, name="runtime"),
            notes=(*protocol.notes, note),
        )
    return trial


def _check_engine(protocol: Protocol, where: str) -> None:
    """The engine runs this model kind, and accepts the protocol (``Engine.check_protocol``)."""
    from bioperturb.engines import get_engine

    spec = model_spec(protocol.model.kind)
    name = protocol.engine.name
    if protocol.engine.fuse == "on" and name != "standalone":
        raise ConfigError(where, "engine.fuse", "'on' needs engine.name = 'standalone'")
    if name not in spec.engines:
        raise ConfigError(
            where,
            "engine.name",
            f"'{name}' does not run model.kind = '{protocol.model.kind}' (use "
            f"{' or '.join(map(repr, spec.engines))})",
        )
    get_engine(name).check_protocol(protocol, where)


def _check_rule_support(protocol: Protocol, where: str) -> None:
    """The rule runs on this model kind and engine (``Rule.model_kinds``, ``.standalone``)."""
    from bioperturb.rules import get_rule

    rule_cls = get_rule(protocol.rule_name)
    name = protocol.rule_name
    kind = protocol.model.kind
    if kind not in rule_cls.model_kinds and model_family(kind) not in rule_cls.model_kinds:
        raise ConfigError(
            where,
            "rule.name",
            f"'{name}' runs on model.kind = {' or '.join(map(repr, rule_cls.model_kinds))}, "
            f"not '{protocol.model.kind}'",
        )
    check_model = getattr(protocol.rule, "check_model", None)
    if check_model is not None:  # the rule's parameters against the model's (e.g. dt)
        try:
            check_model(protocol.model)
        except ValueError as err:
            key, _, reason = str(err).partition(": ")
            raise ConfigError(where, f"rule.{key}", reason) from None
    if protocol.training.antithetic and not rule_cls.node_noise:
        raise ConfigError(
            where,
            "training.antithetic",
            f"rule '{name}' injects no node noise: there is no ξ to negate",
        )
    if protocol.training.batch > 1 and getattr(rule_cls(protocol.rule), "online", False):
        raise ConfigError(
            where,
            "training.batch",
            f"rule '{name}' with apply = 'online' changes the weights every step; "
            f"batches need apply = 'trial_end'",
        )


def load_protocol(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    *,
    note: Callable[[str], None] | None = None,
) -> Protocol:
    """Load, validate and resolve a protocol TOML file.

    ``overrides`` maps dotted keys (``"rule.lr"``) to values applied before validation
    (see :func:`apply_overrides`: an override that switches the rule, task or model
    drops the file's keys the new choice does not take, with a note). ``note`` receives
    those notes (default: :func:`print_note`, one line on stderr each).
    """
    path = Path(path)
    where = str(path)
    data = _read_toml(path, where)
    base_dir = path.resolve().parent
    apply_overrides(data, overrides or {}, where, base_dir, note=note)
    return protocol_from_mapping(data, where, base_dir)


def print_note(text: str) -> None:
    """Print a one-line note on stderr (``note: ...``)."""
    print(f"note: {text}", file=sys.stderr, flush=True)


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


#: the keys that choose which keys their table takes (``rule.name``: the rule's Params)
SWITCH_KEYS = ("rule.name", "task.name", "model.preset", "model.kind")


def apply_overrides(
    data: dict[str, Any],
    overrides: dict[str, Any],
    where: str,
    base_dir: Path | None = None,
    *,
    note: Callable[[str], None] | None = None,
) -> None:
    """Apply dotted ``overrides`` (``--set``, a sweep's grid point) to a parsed protocol.

    An override that switches ``rule.name``, ``task.name``, ``model.preset`` or
    ``model.kind`` to another value drops the keys the file wrote for the old choice that
    the new one does not take (``rule.tau_e_out`` when ``td_anp`` becomes ``wp``), with one
    ``note`` per switched table, instead of failing on them as unknown keys. Keys the old
    choice did not take either (typos) and keys set by an override are kept, so they still
    fail validation as usual.
    """
    base_dir = base_dir or Path.cwd()
    tables = {key.partition(".")[0] for key in overrides if key in SWITCH_KEYS}
    before = {t: dict(data[t]) for t in tables if isinstance(data.get(t), dict)}
    for dotted, value in overrides.items():
        apply_override(data, dotted, value, where)
    for table, old in before.items():
        new = data.get(table)
        ours = {k.partition(".")[2] for k in overrides if k.partition(".")[0] == table}
        switched = [
            key
            for key in ours
            if f"{table}.{key}" in SWITCH_KEYS and isinstance(new, dict)
            if old.get(key) != new.get(key)
        ]
        if not switched:
            continue
        # what the new choice takes: judged from the switching keys alone for a model
        # (a preset's own kind wins over the kind the file wrote for the old preset)
        chosen = {k: v for k, v in new.items() if k in ours} if table == "model" else new
        old_keys, new_keys = _keys_taken(old, table, base_dir), _keys_taken(chosen, table, base_dir)
        if old_keys is None or new_keys is None:
            continue  # an unknown name or preset: validation reports it
        drop = [k for k in old if k not in ours and k in old_keys and k not in new_keys]
        if table == "model" and "kind" in old and "kind" not in ours:
            if old["kind"] != _model_table(chosen, base_dir).get("kind", "rate"):
                drop.append("kind")  # the file's kind belonged to the old preset
        if not drop:
            continue
        for key in drop:
            del new[key]
        choice = ", ".join(f"{table}.{key} = {new[key]!r}" for key in sorted(switched))
        dropped = ", ".join(f"{table}.{key}" for key in drop)
        (note or print_note)(f"{choice} does not take {dropped}; dropped")


def _model_table(table: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """A model table merged over its preset's (``{}`` for a preset not found)."""
    table = dict(table)
    preset = table.pop("preset", None)
    if preset is None:
        return table
    path = _preset_path(preset, base_dir) if isinstance(preset, str) else None
    try:
        base = tomllib.loads(path.read_text()).get("model", {}) if path else None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        base = None
    return {**base, **table} if isinstance(base, dict) else {}


def _keys_taken(table: dict[str, Any], name: str, base_dir: Path) -> set[str] | None:
    """The keys a [rule], [task] or [model] table may hold for the choice it makes
    (None where the choice is unknown)."""
    if name == "model":
        merged = _model_table(table, base_dir) if "preset" in table else table
        found = merged or "preset" not in table  # {}: a preset that was not found
        kind = merged.get("kind", "rate")
        try:
            cls = MODEL_KINDS[kind] if found and isinstance(kind, str) else None
        except (KeyError, ValueError):  # unknown: model_class says so
            cls = None
        extra = {"preset"}
    else:
        from bioperturb.rules import RULES
        from bioperturb.tasks import TASKS

        registry = RULES if name == "rule" else TASKS
        choice = table.get("name")
        cls = registry[choice].Params if isinstance(choice, str) and choice in registry else None
        extra = {"name"}
    if cls is None:
        return None
    return {f.name for f in dataclasses.fields(cls)} | extra


def parse_override(text: str) -> tuple[str, Any]:
    """``"training.lr=1e-3"`` -> ``("training.lr", 0.001)`` (the command line's ``--set``).

    The value is read as a TOML value (number, boolean, quoted string, array, inline
    table); text that is none of these is a string as written (``rule.name=np``,
    ``task.duration=40 ms``). Raises ``ValueError`` with the reason for a malformed item.
    """
    key, eq, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not eq:
        raise ValueError("expected KEY=VALUE, e.g. training.lr=1e-3")
    if not key:
        raise ValueError("empty key before '='")
    if any(not part or part != part.strip() for part in key.split(".")):
        raise ValueError(f"bad key '{key}': expected dotted names like training.lr")
    if not raw:
        raise ValueError(f"empty value for '{key}' (write {key}='' for an empty string)")
    try:
        doc = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError as err:
        if raw[0] in "[{\"'":  # written as a TOML array, table or string, but not one
            raise ValueError(f"invalid TOML value ({err})") from None
        return key, raw
    value = doc["v"]
    if len(doc) != 1 or isinstance(value, (datetime.date, datetime.time)):
        return key, raw  # a date-like word or more than one value: keep the text
    return key, value


def blame_override(err: ConfigError, overrides: dict[str, Any], where: str) -> tuple[str, str]:
    """(override key, reason) when ``err``, raised loading ``where`` with ``overrides``, is
    about one of them (the key itself, a key below or above it); else ("", "").

    The reason quotes the overriding value unless the key itself is unknown.
    """
    if err.where != where or not err.key:
        return "", ""
    for key, value in overrides.items():
        if err.key == key or err.key.startswith(f"{key}.") or key.startswith(f"{err.key}."):
            if err.reason.startswith("unknown key"):
                return key, err.reason
            return key, f"value {value!r}: {err.reason}"
    return "", ""
