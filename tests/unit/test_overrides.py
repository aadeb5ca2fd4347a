"""Dotted overrides (``--set``, sweep grids): value parsing and switching a rule, task or model.

An override that switches ``rule.name``, ``task.name``, ``model.preset`` or ``model.kind``
drops the keys the file wrote for the old choice that the new one does not take, with
one note; a key no choice takes (a typo) still fails as an unknown key.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bioperturb.config import LIFConfig, RateConfig, load_protocol, parse_override
from bioperturb.schema import ConfigError

PROTOCOL = """\
name = "switch"
seed = 1
[model]
preset = "rate_rnn"
n_hidden = 8
tau = "10 ms"
[task]
name = "pattern"
duration = "40 ms"
pulse_duration = "10 ms"
[rule]
name = "td_anp"
normalise = "per_layer"
tau_e_out = "0 ms"
[training]
n_trials = 2
[output]
record_dt = "2 ms"
"""


def write(tmp_path: Path, text: str = PROTOCOL) -> Path:
    path = tmp_path / "protocol.toml"
    path.write_text(text)
    return path


def load(tmp_path: Path, overrides: dict, text: str = PROTOCOL):
    notes: list[str] = []
    protocol = load_protocol(write(tmp_path, text), overrides, note=notes.append)
    return protocol, notes


@pytest.mark.parametrize(
    ("item", "key", "value"),
    [
        ("training.lr=1e-3", "training.lr", 1e-3),
        ("training.n_trials=40", "training.n_trials", 40),
        ("output.figures=false", "output.figures", False),
        ("rule.name=np", "rule.name", "np"),
        ('rule.name="np"', "rule.name", "np"),
        ("rule.name='np'", "rule.name", "np"),
        ("task.duration=40 ms", "task.duration", "40 ms"),
        ('task.duration="40 ms"', "task.duration", "40 ms"),
        ('rule.train=["W_out"]', "rule.train", ["W_out"]),
        ("model.decorrelate=[]", "model.decorrelate", []),
        (" training.lr = 0.5 ", "training.lr", 0.5),
        ("output.dir=results/a=b", "output.dir", "results/a=b"),
        ("name=2026-01-01", "name", "2026-01-01"),  # a TOML date stays the text written
        ("seed=3", "seed", 3),
    ],
)
def test_set_values_parse_as_toml_values_else_strings(item, key, value):
    assert parse_override(item) == (key, value)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("rule.name", "KEY=VALUE"),
        ("=np", "empty key"),
        (" =np", "empty key"),
        ("rule..name=np", "bad key"),
        (".name=np", "bad key"),
        ("rule.name=", "empty value"),
        ('rule.train=["W_out"', "invalid TOML value"),
        ('rule.name="np', "invalid TOML value"),
    ],
)
def test_malformed_set_items_say_why(item, reason):
    with pytest.raises(ValueError, match=reason) as info:
        parse_override(item)
    assert "\n" not in str(info.value)


def test_switching_the_rule_drops_the_old_rules_keys_with_one_note(tmp_path):
    p, notes = load(tmp_path, {"rule.name": "wp"})
    assert p.rule_name == "wp"
    assert notes == ["rule.name = 'wp' does not take rule.normalise, rule.tau_e_out; dropped"]
    p, notes = load(tmp_path, {"rule.name": "np"})
    assert p.rule_name == "np" and p.rule.tau_e_out == 0.0  # np takes tau_e_out: kept
    assert notes == ["rule.name = 'np' does not take rule.normalise; dropped"]


def test_note_goes_to_stderr_by_default(tmp_path, capsys):
    load_protocol(write(tmp_path), {"rule.name": "np"})
    err = capsys.readouterr().err
    assert err == "note: rule.name = 'np' does not take rule.normalise; dropped\n"


def test_no_switch_no_note(tmp_path):
    _, notes = load(tmp_path, {"rule.name": "td_anp", "training.lr": 0.5})
    assert notes == []


def test_a_typo_in_the_file_still_fails_with_or_without_a_switch(tmp_path):
    typo = PROTOCOL.replace('tau_e_out = "0 ms"', 'tau_e_outt = "0 ms"')
    for overrides in ({}, {"rule.name": "np"}, {"rule.name": "td_anp"}):
        with pytest.raises(ConfigError, match="rule.tau_e_outt: unknown key"):
            load(tmp_path, overrides, typo)


def test_keys_written_next_to_the_name_in_the_file_still_fail(tmp_path):
    # the file itself says np, with a key only td_anp takes: an error, not a note
    text = PROTOCOL.replace('name = "td_anp"', 'name = "np"')
    with pytest.raises(ConfigError, match="rule.normalise: unknown key"):
        load(tmp_path, {}, text)


def test_a_key_set_by_an_override_is_never_dropped(tmp_path):
    with pytest.raises(ConfigError, match="rule.normalise: unknown key"):
        load(tmp_path, {"rule.name": "np", "rule.normalise": "none"})


def test_an_unknown_new_name_is_reported_not_dropped_around(tmp_path):
    with pytest.raises(ConfigError, match="rule.name: unknown rule 'xyz'"):
        load(tmp_path, {"rule.name": "xyz"})


def test_switching_the_task_drops_its_old_keys(tmp_path):
    p, notes = load(tmp_path, {"task.name": "delayed_match"})
    assert p.task_name == "delayed_match"
    assert notes == [
        "task.name = 'delayed_match' does not take task.duration, task.pulse_duration; dropped"
    ]


def test_switching_the_model_preset_drops_the_rate_models_keys(tmp_path):
    p, notes = load(tmp_path, {"model.preset": "lif_rnn"})
    assert isinstance(p.model, LIFConfig) and p.model.n_hidden == 8  # shared key kept
    assert notes == ["model.preset = 'lif_rnn' does not take model.tau; dropped"]


def test_switching_the_model_kind_drops_the_old_kinds_keys(tmp_path):
    text = PROTOCOL.replace('preset = "rate_rnn"\n', "")
    p, notes = load(tmp_path, {"model.kind": "lif"}, text)
    assert isinstance(p.model, LIFConfig)
    assert notes == ["model.kind = 'lif' does not take model.tau; dropped"]


def test_the_files_own_kind_goes_with_its_preset(tmp_path):
    text = PROTOCOL.replace('preset = "rate_rnn"', 'preset = "rate_rnn"\nkind = "rate"')
    p, notes = load(tmp_path, {"model.preset": "lif_rnn"}, text)
    assert isinstance(p.model, LIFConfig)
    assert notes == ["model.preset = 'lif_rnn' does not take model.tau, model.kind; dropped"]
    p, notes = load(tmp_path, {"model.preset": "rate_rnn"}, text)
    assert isinstance(p.model, RateConfig) and notes == []


def test_overridden_values_are_in_the_resolved_protocol(tmp_path):
    p, _ = load(tmp_path, {"rule.name": "np", "training.lr": 1e-3, "task.duration": "60 ms"})
    text = p.to_toml()
    assert 'name = "np"' in text and "lr = 0.001" in text and 'duration = "60.0 ms"' in text
    q, _ = load(tmp_path, {"rule.name": "np", "training.lr": 2e-3, "task.duration": "60 ms"})
    assert q.to_toml() != text  # what --resume compares
