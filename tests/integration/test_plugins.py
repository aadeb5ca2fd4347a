"""User tasks and rules in every process: the standalone build and dask sweep workers.

A throwaway plugin distribution (a ``*.dist-info`` with ``entry_points.txt`` on a
temporary sys.path entry, which importlib.metadata finds like an installed one) exposes
the worked examples of docs/examples under entry points; another module registers one
more task by decorator only (no entry point imports it: sweep workers and the build
process find it because they import the modules of decorator-registered classes).
Protocols name them by entry point, by import path and by decorator name and run on the
standalone engine and in a sweep on two dask workers. All of them share
one compiled program with tests/integration/test_contracts.py (same rule class, same
shapes: a user rule is keyed by its class and source, not by the name used).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
import tomllib

import numpy as np
import pytest
import tomli_w
import xarray as xr

from bioperturb.cli import main
from bioperturb.config import protocol_from_mapping
from bioperturb.dataset import read_dataset
from bioperturb.plugins import child_env
from bioperturb.sweep import load_sweep
from bioperturb.training import Trainer
from tests.conftest import BASE, EXAMPLES, kept_registries, write_distribution

pytestmark = [pytest.mark.slow, pytest.mark.standalone]

PLUGIN = '''
"""A throwaway plugin: the worked examples of docs/examples under entry points."""
from interval_task import IntervalTask
from my_rule import RateANP

__all__ = ["IntervalTask", "RateANP"]
'''

#: a module no entry point names: another process finds its task only by importing it
DECORATED = '''
from interval_task import IntervalTask

from bioperturb import register_task


@register_task("bp_demo_decorated")
class Decorated(IntervalTask):
    """Registered by the decorator only."""
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    (root / "bp_demo_plugin.py").write_text(PLUGIN)
    (root / "bp_demo_decorated.py").write_text(DECORATED)
    write_distribution(
        root,
        "bp-demo-plugin",
        {
            "bioperturb.tasks": {"bp_demo_interval": "bp_demo_plugin:IntervalTask"},
            "bioperturb.rules": {"bp_demo_rule": "bp_demo_plugin:RateANP"},
        },
    )
    with pytest.MonkeyPatch.context() as mp, kept_registries():
        mp.syspath_prepend(str(EXAMPLES))
        mp.syspath_prepend(str(root))
        mp.delitem(sys.modules, "bp_demo_plugin", raising=False)
        mp.delitem(sys.modules, "bp_demo_decorated", raising=False)
        import bp_demo_decorated  # noqa: F401 - registers "bp_demo_decorated"

        yield root


def protocol_table(task: str, rule: str) -> dict:
    """The tiny protocol of tests/conftest.py on the standalone engine, on the interval task
    (60 steps, 1 input, 1 output, 2 evaluation trials: the shapes of the pattern task)."""
    data = copy.deepcopy(BASE)
    data["name"] = "plugins"
    data["task"] = {"name": task, "duration": "60 ms", "longest": "30 ms"}
    data["rule"] = {"name": rule}
    data["training"].update(n_trials=5, eval_every=2)
    data["engine"] = {"name": "standalone"}
    data["output"]["alignment"] = False
    return data


def comparable(ds: xr.Dataset) -> xr.Dataset:
    return ds.drop_vars("wall_time").drop_attrs()


def assert_learned_on_standalone(ds: xr.Dataset) -> None:
    assert ds.attrs["status"] == "completed" and "cpp_standalone" in ds.attrs["engine"]
    assert ds.attrs["engine"].endswith("fused-currents+gemm")  # the user rule fuses too
    assert np.abs(ds["W_rec"].values[-1] - ds["W_rec"].values[0]).max() > 1e-8


def test_entry_points_on_the_standalone_engine(plugin, tmp_path, capsys):
    path = tmp_path / "ep.toml"
    path.write_text(tomli_w.dumps(protocol_table("bp_demo_interval", "bp_demo_rule")))
    assert main(["run", str(path), "--out", str(tmp_path), "--quiet"]) == 0
    assert "completed" in capsys.readouterr().out
    ds = read_dataset(tmp_path / "plugins.nc")
    assert_learned_on_standalone(ds)
    config = tomllib.loads(ds.attrs["config"])
    assert (config["task"]["name"], config["rule"]["name"]) == ("bp_demo_interval", "bp_demo_rule")


def test_import_paths_on_the_standalone_engine(plugin):
    table = protocol_table("interval_task:IntervalTask", "my_rule:RateANP")
    protocol = protocol_from_mapping(table, "<test>")
    assert_learned_on_standalone(Trainer(protocol).run(progress=False))
    again = protocol_from_mapping(tomllib.loads(protocol.to_toml()), "<test>")
    assert again.rule_name == "my_rule:RateANP" and again.task_name == table["task"]["name"]


def test_the_build_process_finds_every_kind_of_plugin(plugin, tmp_path):
    """What ``python -m bioperturb.engines.standalone build`` does before compiling: import the
    parent's plugin modules, parse the kernel's protocol; here for all three namings."""
    from bioperturb.engines.standalone.program import KernelSpec

    specs = []
    for task, rule in [
        ("bp_demo_interval", "bp_demo_rule"),
        ("bp_demo_decorated", "my_rule:RateANP"),
    ]:
        protocol = protocol_from_mapping(protocol_table(task, rule), "<test>")
        spec = KernelSpec(protocol, 1, 1, 60, 4, 4)
        specs.append({"spec": spec.to_json(), "key": spec.key()})
    (tmp_path / "specs.json").write_text(json.dumps(specs))
    script = textwrap.dedent(f"""
        import json
        import tomllib
        from bioperturb import plugins
        from bioperturb.config import protocol_from_mapping
        from bioperturb.engines.standalone.program import KernelSpec
        plugins.load_plugin_modules()
        for item in json.load(open({str(tmp_path / "specs.json")!r})):
            read = lambda text: protocol_from_mapping(tomllib.loads(text), "<build>")
            spec = KernelSpec.from_json(item["spec"], read)
            p = spec.protocol
            assert spec.key() == item["key"], "another program in the build process"
            print(p.task_name, p.rule_name)
        """)
    env = child_env()
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [
        "bp_demo_interval",
        "bp_demo_rule",
        "bp_demo_decorated",
        "my_rule:RateANP",
    ]
    assert "bp_demo_decorated" in env["BIOPERTURB_PLUGIN_MODULES"].split(",")


def test_plugins_in_a_two_worker_sweep(plugin, tmp_path, capsys):
    (tmp_path / "base.toml").write_text(
        tomli_w.dumps(protocol_table("bp_demo_interval", "bp_demo_rule"))
    )
    (tmp_path / "sweep.toml").write_text(
        'base = "base.toml"\n[grid]\n'
        'task.name = ["bp_demo_interval", "bp_demo_decorated"]\n'
        'rule.name = ["bp_demo_rule", "my_rule:RateANP"]\n'
        "[sweep]\nworkers = 2\n"
    )
    out = tmp_path / "out"
    assert main(["sweep", str(tmp_path / "sweep.toml"), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr()
    assert "4 completed" in printed.out, printed.out + printed.err
    # a worker computed what this process computes
    point = load_sweep(tmp_path / "sweep.toml", out=out).points[-1]
    assert point.values == {"task.name": "bp_demo_decorated", "rule.name": "my_rule:RateANP"}
    direct = Trainer(protocol_from_mapping(tomllib.loads(point.toml))).run(progress=False)
    xr.testing.assert_identical(
        comparable(read_dataset(out / "runs" / f"{point.hash}.nc")), comparable(direct)
    )
