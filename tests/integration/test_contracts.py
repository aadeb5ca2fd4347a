"""Contracts every task and every rule must keep, builtin or user's (docs/extending.md).

Parametrised over the registries as they stand at collection, plus the worked examples of
docs/examples (named by import path). Tasks: shapes and dtypes of the trials, masks in
[0, 1], the same trials from the same rng, a deterministic evaluation set. Rules: with the
rule's ``silent`` overrides (its exploration off) a trial changes no weight, on the runtime
engine and, where the rule and the model kind allow it, on the standalone engine (the
protocols are those of tests/integration/test_standalone.py, so the programs are shared).
"""

from __future__ import annotations

import numpy as np
import pytest

from bioperturb.rules import RULES, get_rule
from bioperturb.tasks import TASKS, Trials, get_task
from bioperturb.training import Trainer
from tests.conftest import EXAMPLES, kept_registries, make_protocol, on_rule_network

TASK_NAMES = [*TASKS.names(), "interval_task:IntervalTask"]
RULE_NAMES = [*RULES.names(), "my_rule:RateANP"]
DT = 1e-3


@pytest.fixture(autouse=True)
def examples_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    with kept_registries():
        yield


def _standalone_rate_rule(name: str) -> bool:
    """At collection (before any fixture): does the rule run on the standalone rate engine?"""
    with pytest.MonkeyPatch.context() as patch, kept_registries():
        patch.syspath_prepend(str(EXAMPLES))
        rule = get_rule(name)
        return rule.standalone and "rate" in rule.model_kinds


def assert_trials(trials: Trials, task, n: int) -> None:
    assert isinstance(trials, Trials) and trials.n_trials == n
    assert trials.inputs.shape == (n, task.n_steps, task.n_inputs)
    assert trials.targets.shape == (n, task.n_steps, task.n_outputs)
    assert trials.mask.shape == (n, task.n_steps)
    assert trials.conditions.shape == (n,)
    assert np.issubdtype(trials.conditions.dtype, np.integer)
    for array in (trials.inputs, trials.targets, trials.mask):
        assert array.dtype == np.float64 and np.all(np.isfinite(array))
    assert np.all((trials.mask >= 0) & (trials.mask <= 1)) and trials.mask.any()
    assert trials.dt == task.dt
    for start, stop in trials.periods.values():
        assert 0 <= start <= stop <= task.n_steps


def assert_same_trials(a: Trials, b: Trials) -> None:
    for name in ("inputs", "targets", "mask", "conditions"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.periods == b.periods


@pytest.mark.parametrize("name", TASK_NAMES)
def test_task_contract(name):
    cls = get_task(name)
    task = cls(cls.Params(), DT)
    trials = task.trials(np.random.default_rng(3), 3)
    assert_trials(trials, task, 3)
    assert_same_trials(trials, task.trials(np.random.default_rng(3), 3))
    evals = task.eval_trials()
    assert_trials(evals, task, evals.n_trials)
    assert_same_trials(evals, cls(cls.Params(), DT).eval_trials())


def silent(name: str, **overrides):
    """The shared tiny protocol with the rule's exploration switched off (a LIF network
    for a rule that does not run on the rate network)."""
    keys = {k.replace(".", "__"): v for k, v in get_rule(name).silent.items()}
    return make_protocol(
        rule={"name": name},
        **on_rule_network(
            name, **{"training__lr": 1.0, "output__alignment": False, **overrides, **keys}
        ),
    )


def assert_no_update(ds) -> None:
    for matrix in ("W_in", "W_rec", "W_out"):
        w = ds[matrix].values
        assert np.array_equal(w, np.broadcast_to(w[0], w.shape)), matrix
    assert ds.attrs["status"] == "completed"


@pytest.mark.parametrize("name", RULE_NAMES)
def test_rule_silent_gives_no_update(name):
    ds = Trainer(silent(name, training__n_trials=2, training__eval_every=2)).run(progress=False)
    assert_no_update(ds)


@pytest.mark.slow
@pytest.mark.standalone
@pytest.mark.parametrize(
    "name",
    [n for n in RULE_NAMES if _standalone_rate_rule(n)],
)
def test_rule_silent_gives_no_update_standalone(name):
    protocol = silent(name, training__n_trials=5, training__eval_every=2, engine__name="standalone")
    assert_no_update(Trainer(protocol).run(progress=False))
