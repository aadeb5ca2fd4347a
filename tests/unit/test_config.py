"""Protocol loading and validation: every bad input gives one clear line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bioperturb.config import load_protocol, protocol_from_mapping
from bioperturb.schema import ConfigError, format_quantity, parse_quantity
from tests.conftest import make_protocol

REPO = Path(__file__).resolve().parents[2]

GOOD = """
name = "cfg"
seed = 1
[model]
preset = "rate_rnn"
n_hidden = 20
[task]
name = "pattern"
duration = "200 ms"
[rule]
name = "td_anp"
[training]
n_trials = 4
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "protocol.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_protocol(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


def test_good_protocol_resolves_preset_and_units(tmp_path):
    p = load_protocol(write(tmp_path, GOOD))
    assert p.model.n_hidden == 20  # override
    assert p.model.tau == pytest.approx(0.01)  # from models/rate_rnn.toml
    assert p.task.duration == pytest.approx(0.2)
    assert p.training.n_trials == 4


def test_resolved_toml_round_trips(tmp_path):
    p = load_protocol(write(tmp_path, GOOD))
    again = load_protocol(write(tmp_path, p.to_toml()))
    assert again.replace(source="") == p.replace(source="")


@pytest.mark.parametrize(
    ("edit", "key", "reason"),
    [
        (("[model]", "[model]\nn_hiden = 3"), "model.n_hiden", "did you mean 'n_hidden'"),
        (("[training]", "[training]\nbogus = 1"), "training.bogus", "unknown key"),
        (('name = "td_anp"', 'name = "td_anq"'), "rule.name", "did you mean 'td_anp'"),
        (('name = "pattern"', 'name = "patern"'), "task.name", "unknown task"),
        (('duration = "200 ms"', 'duration = "200 mV"'), "task.duration", "dimensions"),
        (('duration = "200 ms"', "duration = 200"), "task.duration", "needs a unit"),
        (('duration = "200 ms"', 'duration = "-5 ms"'), "task.duration", "positive"),
        (("n_hidden = 20", "n_hidden = -3"), "model.n_hidden", "positive"),
        (("n_hidden = 20", "n_hidden = 2.5"), "model.n_hidden", "integer"),
        (("[model]", '[model]\ntau = "-10 ms"'), "model.tau", "positive"),
        (("[model]", '[model]\ntau = "0.5 ms"'), "model", "must not exceed tau"),
        (('preset = "rate_rnn"', 'preset = "nope"'), "model.preset", "unknown preset"),
        (('name = "pattern"\n', 'name = "pattern"\nduration = "1 s"\n'), "", "invalid TOML"),
        (("n_trials = 4", 'n_trials = "many"'), "training.n_trials", "integer"),
        (("n_trials = 4", "n_trials = 4\noptimizer = 'rmsprop'"), "training.optimizer", "one of"),
        (('duration = "200 ms"', 'duration = "200.5 ms"'), "task", "whole number"),
        (
            ("n_hidden = 20\n[task]", "n_hidden = 2\noutput_init = 'units'\n[task]\nn_outputs = 3"),
            "model.output_init",
            "too small",
        ),
        (("n_hidden = 20", "n_hidden = 20\noutput_init = 'unit'"), "model.output_init", "one of"),
    ],
)
def test_bad_protocols_name_file_key_and_reason(tmp_path, edit, key, reason):
    old, new = edit
    assert old in GOOD
    message = error_of(tmp_path, GOOD.replace(old, new, 1))
    assert f": {key}:" in message or (key == "" and reason in message)
    assert reason in message


def test_missing_required_table_and_name(tmp_path):
    assert "task: required table is missing" in error_of(
        tmp_path, GOOD.replace('[task]\nname = "pattern"\nduration = "200 ms"\n', "")
    )
    assert "rule.name: required key is missing" in error_of(
        tmp_path, GOOD.replace('name = "td_anp"', "")
    )


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_protocol(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_protocol(tmp_path)


def test_unknown_top_level_key():
    with pytest.raises(ConfigError, match="<x>: trainig: unknown key"):
        protocol_from_mapping({"trainig": {}}, "<x>")


@pytest.mark.parametrize(
    ("text", "unit", "value"),
    [("10 ms", "second", 0.01), ("1.5 s", "second", 1.5), ("4 Hz", "hertz", 4.0), (3, "1", 3.0)],
)
def test_quantities_parse_and_format_round_trip(text, unit, value):
    assert parse_quantity(text, unit) == pytest.approx(value)
    assert parse_quantity(format_quantity(value, unit), unit) == pytest.approx(value)


def test_shipped_protocols_load():
    paths = sorted((REPO / "protocols").glob("*.toml"))
    assert paths, "no protocols shipped"
    for path in paths:
        load_protocol(path)


# -- the standalone engine's fused W_rec (bioperturb/engines/standalone/fused.py) ------------------
@pytest.mark.parametrize(
    "rule, overrides, expected",
    [
        ("td_anp", {}, (True, True)),
        ("td_anp", {"rule__tau_e": "5 ms", "rule__signal": "trial_end"}, (True, True)),
        ("np", {}, (True, True)),
        ("online_anp", {}, (True, True)),
        ("online_anp", {"rule__baseline": "trial"}, (True, True)),
        ("none", {}, (True, False)),
        ("td_anp", {"rule__train": ["W_in", "W_out"]}, (True, False)),
        ("td_anp", {"rule__apply": "online", "training__optimizer": "sgd"}, (True, False)),
        ("wp", {}, (False, False)),
        ("td_anp", {"model__p_connect": 0.5}, (True, True)),  # sparse: C++ skips absent
    ],
)
def test_fusion_plan(rule, overrides, expected):
    from bioperturb.engines.standalone.fused import fusion_plan
    from bioperturb.rules import get_rule

    p = make_protocol(rule__name=rule, **overrides)
    plan = fusion_plan(p.model, get_rule(p.rule_name)(p.rule))
    assert (plan.currents, plan.batched) == expected
    assert plan.sparse == (p.model.p_connect < 1)
    # a plan that leaves W_rec's plastic update to Brian2 says why
    assert bool(plan.reason) == (
        not plan.batched and "W_rec" in getattr(p.rule, "train", ()) and rule != "none"
    )


@pytest.mark.parametrize(
    "rule, overrides, expected",
    [
        ("td_anp", {}, (True, True)),
        ("np", {"rule__tau_e": "5 ms", "rule__signal": "trial_end"}, (True, True)),
        ("td_anp", {"rule__train": ["W_in", "W_out"]}, (False, True)),
        ("td_anp", {"rule__apply": "online", "training__optimizer": "sgd"}, (False, False)),
        ("eprop", {}, (False, False)),
        ("none", {}, (False, False)),
    ],
)
def test_fusion_plan_of_a_spiking_network(rule, overrides, expected):
    """LIF: the currents stay event-driven (the plan says so); a separable trial-end update
    of W_rec and of W_in (as many inputs as units in the LIF benchmarks) is fused."""
    from bioperturb.engines.standalone.fused import fusion_plan
    from bioperturb.rules import get_rule

    lif = {"preset": "lif_rnn", "n_hidden": 12}
    p = make_protocol(lif, rule__name=rule, **overrides)
    plan = fusion_plan(p.model, get_rule(p.rule_name)(p.rule))
    assert (plan.batched, plan.batched_in) == expected
    assert not plan.currents and "event-driven" in plan.reason and not plan.complete
    assert plan.active == any(expected) and not plan.spikes
    # sparse: W_rec in slots, its spikes propagated by the C++, complete where the rule's
    # W_rec update is a trial-end product (or W_rec is not trained)
    p = make_protocol({**lif, "p_connect": 0.5}, rule__name=rule, **overrides)
    plan = fusion_plan(p.model, get_rule(p.rule_name)(p.rule))
    w_rec_stays = "W_rec" in getattr(p.rule, "train", ()) and not expected[0]
    assert plan.complete == plan.spikes == (not w_rec_stays) and plan.sparse
    assert bool(plan.reason) == w_rec_stays


def test_separable_products_split_into_post_and_pre_factors():
    """The fused GEMM needs p_ij = a_j b_i; the factors are hidden-group expressions."""
    from bioperturb.rules import get_rule

    def factors(name, **overrides):
        p = make_protocol(rule__name=name, **overrides)
        return get_rule(name)(p.rule).separable_product("W_rec")

    assert factors("td_anp") == ("nrm*(-h + h_n)", "r_prev")
    assert factors("np") == ("inv_var*noise_h", "r_prev")
    assert factors("online_anp") == ("nrm*(h - hbar)", "rbar")
    assert factors("online_anp", rule__baseline="trial") == ("nrm*(h - hbar)", "rpbar")
    assert factors("wp") is None  # no product: the twin sees w + ψ


def test_engine_keys_of_older_protocols_are_read_with_a_one_line_note(tmp_path):
    import brian2  # noqa: F401  (its first import reroutes warnings to its logger)

    old = GOOD + 'engine = "standalone"\nthreads = 2\nfuse = "off"\n'
    with pytest.warns(FutureWarning, match=r"training\.engine -> engine\.name") as info:
        protocol = load_protocol(write(tmp_path, old))
    assert len(info) == 1 and "\n" not in str(info[0].message)
    assert (protocol.engine.name, protocol.engine.threads, protocol.engine.fuse) == (
        "standalone",
        2,
        "off",
    )
    assert "engine" not in protocol.to_toml().split("[training]")[1].split("[")[0]
    # the same setting in both places is refused, naming the old key
    both = GOOD.replace("n_trials = 4", 'n_trials = 4\nengine = "runtime"') + (
        '[engine]\nname = "runtime"\n'
    )
    with pytest.raises(ConfigError, match="training.engine: given twice"):
        load_protocol(write(tmp_path, both))


def test_result_and_checkpoint_of_an_older_protocol_count_as_the_same_run():
    from bioperturb.checkpoint import check_same_protocol, protocol_difference

    now = make_protocol(engine={"name": "runtime", "codegen": "numpy"})
    settings = 'name = "runtime"\ncodegen = "numpy"\nthreads = 1\nfuse = "auto"\n'
    assert f"[engine]\n{settings}" in now.to_toml()
    old = (
        now.to_toml()
        .replace("check_memory = true\n", "")  # older protocols did not have it either
        .replace(f"[engine]\n{settings}", "")
        .replace("[training]\n", "[training]\n" + settings.replace("name =", "engine ="))
    )
    assert protocol_difference(old, now) is None
    check_same_protocol(old, now, "ckpt")  # no error
    other = old.replace('codegen = "numpy"', 'codegen = "cython"')
    assert protocol_difference(other, now) == ("engine.codegen", "cython", "numpy")
    with pytest.raises(ConfigError, match="engine.codegen"):
        check_same_protocol(other, now, "ckpt")


@pytest.mark.parametrize(
    ("text", "engine", "why"),
    [
        (GOOD, "standalone", None),
        (
            GOOD.replace('name = "td_anp"', 'name = "miconi"'),
            "runtime",
            "rule 'miconi' is not built",
        ),
        (GOOD.replace('"rate_rnn"', '"lif_rnn"'), "standalone", None),
        (
            GOOD.replace('"rate_rnn"', '"lif_rnn"').replace(
                "n_hidden = 20", "n_hidden = 20\np_connect = 0.5\ndale = true"
            ),
            "runtime",
            "Dale's law projects W_rec per presynaptic neuron",
        ),
        (GOOD + '[engine]\nname = "runtime"\n', "runtime", None),
        (
            GOOD.replace("n_hidden = 20", "n_hidden = 20\np_connect = 0.5")
            + '[engine]\nfuse = "off"\n',
            "runtime",
            "runs sparse W_rec (model.p_connect < 1) only fully fused",
        ),
    ],
    ids=["rate", "rule", "lif", "lif_sparse_dale", "explicit", "sparse_unfused"],
)
def test_engine_auto_is_standalone_where_the_protocol_runs_there(tmp_path, text, engine, why):
    protocol = load_protocol(write(tmp_path, text))
    assert protocol.engine.name == engine
    if why is None:
        assert protocol.notes == ()
    else:
        (note,) = protocol.notes
        assert note.startswith("engine 'auto' runs 'cfg' on the runtime engine (") and why in note
    # the TOML holds the engine that was chosen, and reads back to the same protocol
    data = __import__("tomllib").loads(protocol.to_toml())
    assert protocol_from_mapping(data, protocol.source) == protocol


def test_lif_unit_readout_keeps_the_other_weights_and_dale_signs():
    """The LIF initialiser reads output k from neuron k too, after the same draws."""
    from dataclasses import replace

    import numpy as np

    from bioperturb.networks.spiking import init_spiking_weights
    from bioperturb.protocol import LIFConfig

    model = LIFConfig(n_hidden=10, dale=True, output_scale=0.2)
    drawn = [
        init_spiking_weights(np.random.default_rng(3), 2, 10, 3, m)
        for m in (model, replace(model, output_init="units"))
    ]
    np.testing.assert_array_equal(drawn[1]["W_out"], 0.2 * np.eye(3, 10))
    for name in ("W_in", "W_rec"):
        np.testing.assert_array_equal(drawn[0][name], drawn[1][name])


def test_sparse_slots_hold_every_probable_draw_and_refuse_more():
    """A sparse W_rec's slots (resources.sparse_slots): the expected count + 8 sd, so the
    program is the seed's; a draw with more synapses than slots is a one-line error."""
    from types import SimpleNamespace

    from bioperturb.engines.standalone import StandaloneNetwork
    from bioperturb.resources import sparse_slots

    assert sparse_slots(10_000, 10_000, 0.05) < 1.004 * 0.05 * 10_000**2  # ∝ synapses
    assert sparse_slots(12, 12, 0.99) == 144  # never more than the full matrix
    counts = np.random.default_rng(0).binomial(400 * 400, 0.1, size=100_000)
    assert counts.max() < sparse_slots(400, 400, 0.1)
    kernel = SimpleNamespace(
        synapse_order=lambda obj: (np.zeros(4, int), np.zeros(4, int)),
        meta={"synapses": {"w_rec": {"slots": 3}}},
    )
    net = StandaloneNetwork(kernel, {"W_rec": (2, 2)}, {}, {"W_rec": "w_rec"})
    net.masks = {"W_rec": np.ones((2, 2), bool)}
    with pytest.raises(ValueError, match="4 synapses, more than the 3 slots"):
        net.cells("w_rec")
