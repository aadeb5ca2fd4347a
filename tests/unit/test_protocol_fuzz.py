"""Protocols generated from the schema (issue 17): valid ones round-trip; mutated ones are
refused by the command line with exit 2 and one line, never a traceback, within a second.

Values are drawn from each field's declaration (:func:`bioperturb.schema.param`: type,
unit, bounds, choices) for the model, the task, the rule, training, engine and output
tables. Mutations break one field in a way the schema must catch: a wrong type, a wrong
unit, a wrong sign, an absurd size, an unknown key, or an abusive unit expression.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import tomllib
import typing

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bioperturb.cli import main
from bioperturb.config import protocol_from_mapping
from bioperturb.protocol import EngineConfig, OutputConfig, RateConfig, TrainingConfig
from bioperturb.rules import get_rule
from bioperturb.schema import ConfigError
from bioperturb.tasks import get_task
from tests.conftest import TINY

#: rate-network rules and tasks the generator combines (all run on the runtime engine)
RULES = ("td_anp", "np", "wp", "online_anp", "none")
TASKS = (
    "pattern",
    "delayed_match",
    "flip_flop",
    "copy",
    "perceptual_decision",
    "mackey_glass",
    "digits",
)
#: fields kept at the base protocol's value (where the run goes, how big it is)
FIXED = {
    "output.dir",
    "model.kind",
    "model.dt",  # 1 ms: every drawn duration is a whole number of steps
    "engine.name",
    "engine.codegen",
    "model.n_outputs",
}
DURATIONS = ("0 ms", "2 ms", "10 ms", "20 ms", "40 ms", "0.1 s")
RATES = ("1 Hz", "10 Hz", "40 Hz")
ABUSE = (
    "40 ms^9^9^9",
    "1/0 ms",
    "40 ms()",
    "40 ms.ms",
    "(" * 40 + "40 ms" + ")" * 40,
    "__import__('os').system('true')",
    "40 ms ** 99",
    "1e400 ms",
    "nan ms",
    "40 ms; 1",
    "40 parsecs",
    "",
)


def tables(rule: str, task: str) -> dict[str, type]:
    return {
        "model": RateConfig,
        "task": get_task(task).Params,
        "rule": get_rule(rule).Params,
        "training": TrainingConfig,
        "engine": EngineConfig,
        "output": OutputConfig,
    }


def fields_of(cls: type, table: str) -> list[tuple[str, dataclasses.Field, typing.Any]]:
    hints = typing.get_type_hints(cls)
    return [
        (f.name, f, hints[f.name])
        for f in dataclasses.fields(cls)
        if f"{table}.{f.name}" not in FIXED
    ]


def valid_value(f: dataclasses.Field, hint: typing.Any) -> st.SearchStrategy | None:
    """Values the field's declaration allows (cross-field rules may still refuse them)."""
    meta = f.metadata
    if meta.get("choices"):
        return st.sampled_from(meta["choices"])
    if hint is bool:
        return st.booleans()
    if meta.get("unit") == "second":
        return st.sampled_from(DURATIONS[1:] if meta.get("positive") else DURATIONS)
    if meta.get("unit") == "hertz":
        return st.sampled_from(RATES)
    if hint is int:
        return st.integers(1 if meta.get("positive") else 0, 6)
    if hint is float:  # (0, 1): probabilities, fractions and Adam's betas accept it too
        low = 0.01 if meta.get("positive") else 0.0
        return st.floats(low, 0.99, allow_nan=False).map(lambda x: round(x, 3))
    return None  # lists, free strings, optional values: keep the default


def base(rule: str, task: str, out: str) -> dict[str, typing.Any]:
    data = copy.deepcopy(TINY)
    data["rule"] = {"name": rule}
    data["task"] = {"name": task}
    data["training"].update(n_trials=1, eval_every=1)
    data["engine"] = {"name": "runtime", "codegen": "numpy"}
    data["output"].update(dir=out, figures=False, progress=False)
    return data


@st.composite
def protocols(draw):
    rule, task = draw(st.sampled_from(RULES)), draw(st.sampled_from(TASKS))
    data = base(rule, task, "results")
    for table, cls in tables(rule, task).items():
        for name, f, hint in fields_of(cls, table):
            value = valid_value(f, hint)
            if value is not None and draw(st.booleans()):
                data[table][name] = draw(value)
    return data


FUZZ = settings(
    max_examples=150,
    deadline=1000,  # ms: every verdict within a second
    derandomize=True,  # the same examples in every CI run
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def test_generated_tables_cover_every_schema_field():
    """The generator knows how to draw every field it does not keep fixed."""
    for rule in RULES:
        for task in TASKS:
            for table, cls in tables(rule, task).items():
                for name, f, hint in fields_of(cls, table):
                    if valid_value(f, hint) is None:
                        assert isinstance(f.default, str | type(None)) or (
                            f.default_factory is not dataclasses.MISSING
                        ), f"{table}.{name}"


@FUZZ
@given(protocols())
def test_valid_protocols_round_trip_and_invalid_ones_are_config_errors(data):
    try:
        protocol = protocol_from_mapping(data, "<fuzz>")
    except ConfigError as err:  # a combination the cross-checks refuse: a clear reason
        assert err.reason and "\n" not in str(err)
        return
    text = protocol.to_toml()
    again = protocol_from_mapping(tomllib.loads(text), "<fuzz again>")
    assert again.to_toml() == text
    assert dataclasses.replace(again, source=protocol.source) == protocol


@st.composite
def mutations(draw):
    """(table, key, bad value, what kind of break) for one field of a valid protocol."""
    rule, task = draw(st.sampled_from(RULES)), draw(st.sampled_from(TASKS))
    kind = draw(st.sampled_from(["type", "unit", "sign", "size", "unknown", "abuse", "choice"]))
    candidates = []
    for table, cls in tables(rule, task).items():
        for name, f, hint in fields_of(cls, table):
            meta = f.metadata
            unit = meta.get("unit")
            if kind == "type" and (hint in (int, float, bool) or unit):
                candidates.append((table, name, draw(st.sampled_from([[1], {"a": 1}]))))
            elif kind == "unit" and unit == "second":
                candidates.append((table, name, "5 mV"))
            elif kind == "unit" and unit == "hertz":
                candidates.append((table, name, "5 ms"))
            elif kind == "sign" and (meta.get("positive") or meta.get("nonnegative")):
                bad = f"-5 {'ms' if unit == 'second' else 'Hz'}" if unit else -3
                candidates.append((table, name, bad))
            elif kind == "abuse" and unit:
                candidates.append((table, name, draw(st.sampled_from(ABUSE))))
            elif kind == "choice" and meta.get("choices"):
                candidates.append((table, name, "no_such_choice"))
    if kind == "size":
        candidates = [
            ("model", "n_hidden", 10**15),
            ("training", "n_trials", 10**15),
            ("output", "n_record_units", 10**15),
        ]
    if kind == "unknown":
        table = draw(st.sampled_from(["model", "task", "rule", "training", "engine", "output"]))
        key = "zz_" + draw(st.text("abcdefghij_", min_size=1, max_size=8))
        candidates = [(table, key, 1)]
    table, key, value = draw(st.sampled_from(candidates))
    return rule, task, table, key, value, kind


@FUZZ
@given(mutations())
def test_mutated_protocols_give_exit_2_and_one_line(tmp_path, capsys, mutation):
    rule, task, table, key, value, kind = mutation
    shutil.rmtree(tmp_path / "out", ignore_errors=True)  # (tmp_path is shared by examples)
    data = base(rule, task, str(tmp_path / "out"))
    data[table][key] = value
    path = tmp_path / "fuzz.toml"
    path.write_text(tomli_w.dumps(data))
    capsys.readouterr()
    rc = main(["run", str(path), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, (kind, table, key, value, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"bioperturb: error: {path}: "), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", ABUSE)
def test_each_abusive_unit_expression_is_one_clear_error(tmp_path, capsys, text):
    data = base("td_anp", "pattern", str(tmp_path / "out"))
    data["task"]["duration"] = text
    path = tmp_path / "abuse.toml"
    path.write_text(tomli_w.dumps(data))
    assert main(["run", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "task.duration" in err, err
