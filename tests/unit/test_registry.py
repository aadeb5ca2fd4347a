"""Open registries: decorator, entry points and import paths; their errors; what crosses
into other processes (paths, modules, the standalone kernel key). No network runs here."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
import tomllib
from collections.abc import Mapping

import pytest

import bioperturb
from bioperturb.cli import main
from bioperturb.config import protocol_from_mapping
from bioperturb.plugins import MODULES_ENV, child_env, kernel_sources, plugin_modules
from bioperturb.registry import Registry, RegistryError, UnknownName
from bioperturb.rules import RULES, get_rule, register_rule
from bioperturb.rules.td_anp import TDANP
from bioperturb.schema import ConfigError
from bioperturb.tasks import TASKS, get_task, register_task
from bioperturb.tasks.pattern import PatternTask
from tests.conftest import make_protocol, tiny_toml, write_distribution

pytestmark = pytest.mark.usefixtures("clean_registries")

BUILTIN_TASKS = {"pattern", "delayed_match", "flip_flop", "copy", "mackey_glass"}


def write_module(tmp_path, monkeypatch, name: str, source: str):
    """``<tmp_path>/<name>.py`` importable as ``name`` (dropped from sys.modules after)."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path / f"{name}.py"


PLUGIN = """
    from bioperturb.rules.td_anp import TDANP
    from bioperturb.tasks.pattern import PatternTask

    class MyTask(PatternTask):
        name = "my_task"

    class MyRule(TDANP):
        name = "my_rule"
"""


def test_registries_are_read_only_mappings_of_the_builtins():
    assert isinstance(TASKS, Mapping) and isinstance(TASKS, Registry)
    assert BUILTIN_TASKS <= set(TASKS) and "pattern" in TASKS and "nope" not in TASKS
    assert sorted(TASKS) == sorted(TASKS.names()) and len(TASKS) == len(TASKS.names())
    assert TASKS["pattern"] is PatternTask and get_rule("td_anp") is TDANP
    assert dict(RULES.items())["td_anp"] is TDANP
    assert TASKS.origin("pattern") == RULES.origin("td_anp") == "builtin"
    with pytest.raises(TypeError):
        TASKS["x"] = PatternTask  # type: ignore[index]
    assert bioperturb.register_task is register_task
    assert bioperturb.register_rule is register_rule
    assert TASKS.group == "bioperturb.tasks" and RULES.group == "bioperturb.rules"


def test_unknown_names_keep_the_did_you_mean_message():
    with pytest.raises(KeyError) as err:
        get_task("patern")
    assert str(err.value).startswith("unknown task 'patern' (did you mean 'pattern'? known: ")
    with pytest.raises(ConfigError, match=r"rule\.name: unknown rule 'td_anq' \(did you mean"):
        make_protocol(rule={"name": "td_anq"})


def test_decorator_registers_by_name_and_records_the_module():
    @register_task
    class Timing(PatternTask):
        name = "timing"

    @register_rule("my_anp")
    class MyANP(TDANP):
        pass

    assert TASKS["timing"] is Timing and get_rule("my_anp") is MyANP
    assert MyANP.name == "my_anp"  # set where the class had no name of its own
    assert TASKS.origin("timing") == f"registered in {__name__}"
    assert __name__ in plugin_modules()
    assert __name__ in child_env({})[MODULES_ENV].split(",")
    protocol = make_protocol(task={"name": "timing", "duration": "60 ms"}, rule={"name": "my_anp"})
    assert (protocol.task_name, protocol.rule_name) == ("timing", "my_anp")
    register_task(Timing)  # the same class again (a module imported twice): no clash


def test_name_clashes_name_both_classes():
    with pytest.raises(RegistryError, match="clashes with the builtin task 'pattern'") as err:

        @register_task
        class Pattern(PatternTask):
            name = "pattern"

    assert "bioperturb.tasks.pattern:PatternTask" in str(err.value)
    assert "<locals>.Pattern clashes" in str(err.value)

    @register_rule("twice")
    class A(TDANP):
        pass

    with pytest.raises(RegistryError, match=r"'twice' registered by .*A"):

        @register_rule("twice")
        class B(TDANP):
            pass

    with pytest.raises(RegistryError, match="has no 'name' of its own"):
        register_rule(type("Nameless", (TDANP,), {"__module__": __name__}))
    with pytest.raises(RegistryError, match="not a subclass of bioperturb.rules.base.Rule"):
        register_rule("x")(PatternTask)


def test_import_paths_resolve_and_round_trip(tmp_path, monkeypatch):
    write_module(tmp_path, monkeypatch, "bp_paths_demo", PLUGIN)
    name = "bp_paths_demo:MyRule"
    assert name in RULES and RULES.origin(name) == "import path"
    protocol = make_protocol(
        task={"name": "bp_paths_demo:MyTask", "duration": "60 ms"}, rule={"name": name}
    )
    assert protocol.rule_name == name and get_rule(name).__qualname__ == "MyRule"
    again = protocol_from_mapping(tomllib.loads(protocol.to_toml()), "<test>")
    assert again == protocol and again.task_name == "bp_paths_demo:MyTask"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("bp_no_such_module:X", "module 'bp_no_such_module' not found"),
        ("bp_errors_demo:Missing", "module 'bp_errors_demo' has no attribute 'Missing'"),
        ("bp_errors_demo:MyTask", "class bp_errors_demo:MyTask is not a subclass of"),
        ("bp_errors_demo:TDANP.name", "str 'td_anp' is not a subclass"),
        ("bp_broken_demo:X", "importing 'bp_broken_demo' failed: ZeroDivisionError"),
        (":X", "expected 'package.module:Class'"),
    ],
)
def test_bad_import_paths_are_one_line_config_errors(tmp_path, monkeypatch, capsys, name, reason):
    write_module(tmp_path, monkeypatch, "bp_errors_demo", PLUGIN)
    write_module(tmp_path, monkeypatch, "bp_broken_demo", "1 / 0\n")
    with pytest.raises((KeyError, ValueError), match=reason):
        RULES[name]
    path = tmp_path / "bad.toml"
    path.write_text(tiny_toml(rule__name=name))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"bioperturb: error: {path}: rule.name: "), err
    assert reason in err[0]


def test_entry_points_are_found_lazily_and_name_their_distribution(tmp_path, monkeypatch, capsys):
    write_module(tmp_path, monkeypatch, "bp_ep_demo", PLUGIN)
    write_distribution(
        tmp_path,
        "bp-ep-demo",
        {"bioperturb.tasks": {"ep_task": "bp_ep_demo:MyTask"}, "bioperturb.rules": {}},
    )
    assert "ep_task" in TASKS.names() and "bp_ep_demo" not in sys.modules  # not loaded yet
    assert TASKS["ep_task"].__qualname__ == "MyTask"
    assert TASKS.origin("ep_task") == "entry point bp-ep-demo"
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "ep_task" in out and "[entry point bp-ep-demo]" in out and "[builtin]" in out
    protocol = make_protocol(task={"name": "ep_task", "duration": "60 ms"})
    assert protocol.task_name == "ep_task"
    monkeypatch.undo()  # off sys.path: the entry point is gone again
    assert "ep_task" not in TASKS


def test_an_entry_point_clashing_with_a_builtin_is_an_error_naming_both(tmp_path, monkeypatch):
    write_distribution(tmp_path, "bp-clash", {"bioperturb.rules": {"td_anp": "bp_x:Rule"}})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RegistryError) as err:
        RULES["td_anp"]
    message = str(err.value)
    assert "bp-clash" in message and "bp_x:Rule" in message
    assert "builtin rule 'td_anp' (bioperturb.rules.td_anp:TDANP)" in message
    with pytest.raises(ConfigError, match="rule.name: entry point"):
        make_protocol()
    monkeypatch.undo()
    assert RULES["td_anp"] is TDANP


def test_a_new_registry_on_another_group():
    models = Registry("model", None, "bioperturb.test_models", {"rate": dict})
    assert models["rate"] is dict and models.origin("rate") == "builtin"
    with pytest.raises(UnknownName, match="unknown model 'lif' .known: rate."):
        models["lif"]


def test_kernel_key_follows_a_user_rule_source(tmp_path, monkeypatch):
    from bioperturb.engines.standalone.program import KernelSpec

    path = write_module(tmp_path, monkeypatch, "bp_key_demo", PLUGIN)

    def key(**overrides):
        protocol = make_protocol(engine__name="standalone", **overrides)
        return KernelSpec(protocol, 1, 1, 60, 4, 4).key()

    assert kernel_sources(make_protocol()) == {}  # builtins: the package's sources only
    before = key(rule={"name": "bp_key_demo:MyRule"})
    assert before == key(rule={"name": "bp_key_demo:MyRule"}) != key()
    path.write_text(path.read_text() + "\n# an edit of the rule's file\n")
    assert key(rule={"name": "bp_key_demo:MyRule"}) != before


def test_classes_in_main_are_refused_for_other_processes(tmp_path):
    from bioperturb.sweep import load_sweep

    @register_rule("main_rule")
    class Local(TDANP):
        pass

    Local.__module__ = "__main__"
    assert "__main__" not in plugin_modules()
    make_protocol(rule={"name": "main_rule"})  # fine in this process
    with pytest.raises(ConfigError, match="rule.name: rule 'main_rule' is class .*Local defined"):
        make_protocol(rule={"name": "main_rule"}, engine__name="standalone")
    (tmp_path / "base.toml").write_text(tiny_toml(rule__name="main_rule"))
    (tmp_path / "sweep.toml").write_text('base = "base.toml"\n[grid]\nseed = [0, 1]\n')
    with pytest.raises(ConfigError) as err:
        load_sweep(tmp_path / "sweep.toml")
    assert "sweep.toml: rule.name:" in str(err.value) and "import path" in str(err.value)


def test_child_env_passes_this_process_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    env = child_env({"PYTHONPATH": "/elsewhere"})
    paths = env["PYTHONPATH"].split(":")
    assert paths[0] == str(tmp_path) and paths[-1] == "/elsewhere"
    assert not any("site-packages" in p or "lib-dynload" in p for p in paths)


def test_trials_params_are_dataclasses():
    # the Params of a task named by import path are filled from the [task] table as usual
    cls = TASKS["bioperturb.tasks.pattern:PatternTask"]
    assert cls is PatternTask and dataclasses.is_dataclass(cls.Params)
