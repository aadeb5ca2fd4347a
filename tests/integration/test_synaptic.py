"""Synaptic plasticity protocols (kind = "synaptic", bioperturb/synaptic.py).

The rules' maths in a synaptic experiment: a reward-delay curve is exponential with the
trace's time constant; no reward, or a reward before the pairing, changes nothing; the
DA-STDP window has the configured amplitudes and time constants; a twin rule's cell equals
a numpy computation of the same equations; and the synapse runs the very code the rule
runs in network training.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w

from bioperturb.cli import main
from bioperturb.synaptic import (
    build_drives,
    fit_decay,
    load_synaptic,
    run_synaptic,
    synaptic_from_mapping,
)

REPO = Path(__file__).resolve().parents[2]

BASE: dict[str, Any] = {
    "kind": "synaptic",
    "name": "syn",
    "seed": 3,
    "model": {"dt": "1 ms", "tau": "10 ms"},
    "rule": {"name": "td_anp", "normalise": "none", "scale": "one", "tau_e": "500 ms"},
    "schedule": {"duration": "2 s", "first_pairing": "100 ms", "pairing_dt": "10 ms"},
}
RULES = {
    "td_anp": {"name": "td_anp", "normalise": "none", "scale": "one", "tau_e": "500 ms"},
    "da_stdp": {"name": "da_stdp", "tau_c": "500 ms"},
    "online_anp": {"name": "online_anp", "scale": "one", "tau_e": "500 ms"},
}
#: online ANP's 1/(‖δ‖² + its average) grows without bound while a lone kick's δ decays
#: and u lasts: a square presynaptic pulse ends the product
SQUARE = {"pre_tau": "0 ms", "pre_duration": "5 ms", "pairing_dt": "2 ms"}


def protocol(name: str = "td_anp", **tables: dict[str, Any]):
    """The base protocol with ``name``'s rule; each table updates the one it names."""
    data = copy.deepcopy(BASE)
    data["rule"] = dict(RULES[name])
    for name, table in tables.items():
        data.setdefault(name, {}).update(table)
    return synaptic_from_mapping(data, "<test>")


def mean_dw(ds) -> np.ndarray:
    return ds["dw"].mean(["repetition", "synapse"]).values


@pytest.mark.parametrize("rule", ["td_anp", "da_stdp", "online_anp"])
def test_reward_delay_curve_is_exponential_with_the_trace_time_constant(rule):
    delays = ["200 ms", "400 ms", "700 ms", "1 s", "1.5 s"]
    square = {"schedule": SQUARE} if rule == "online_anp" else {}
    ds = run_synaptic(protocol(rule, grid={"schedule": {"reward_delay": delays}}, **square))
    _, tau = fit_decay(ds["reward_delay"].values, mean_dw(ds))
    assert tau == pytest.approx(0.5, rel=0.02)
    assert np.all(mean_dw(ds) > 0)  # a causal pairing and a reward: potentiation
    total = ds["modulator"].sum("time").values
    if rule == "td_anp":  # the recorded signal M_t = −c R(t) dt holds every reward once
        np.testing.assert_allclose(total, -1.0, rtol=1e-12)
    if rule == "online_anp":  # L − L̄ telescopes: a running baseline high-passes the reward
        assert np.abs(total).max() < 1e-12


@pytest.mark.parametrize("rule", ["td_anp", "da_stdp"])
def test_no_reward_changes_nothing(rule):
    schedule = {"reward": 0.0, "jitter": "2 ms", "repetitions": 2, "n_pairings": 3}
    ds = run_synaptic(protocol(rule, schedule={**schedule, "period": "200 ms"}))
    assert np.all(ds["dw"].values == 0.0)
    assert np.any(ds["eligibility"].values != 0.0)  # the pairing did leave a trace


@pytest.mark.parametrize("rule", ["td_anp", "da_stdp"])
def test_a_reward_before_the_pairing_changes_nothing(rule):
    """TD-ANP's signal is the reward of the step: exactly nothing. Dopamine outlives its
    pulse (τ_d), so for DA-STDP only what is left of it at the pairing acts: with c jumping
    at t_L and d = R e^(−(t − t_R)/τ_d), Δw ∝ ∫ c d dt gives
    Δw(before)/Δw(after) = exp(−gap/τ_d) / exp(−d_after/τ_c), to a few % at dt = 1 ms."""
    grid = {"schedule": {"reward_delay": ["-1400 ms", "100 ms"]}}
    ds = run_synaptic(protocol(rule, schedule={"first_pairing": "1.5 s"}, grid=grid))
    before, after = mean_dw(ds)
    assert after > 0
    if rule == "td_anp":
        assert before == 0.0
    else:  # reward at 0.11 s, the pairing's later spike at 1.51 s
        assert before / after == pytest.approx(np.exp(-1.4 / 0.2 + 0.1 / 0.5), rel=0.05)


def test_da_stdp_window_has_the_configured_amplitudes_and_time_constants():
    from bioperturb.rules.da_stdp import DopamineSTDP, DopamineSTDPParams

    stdp = {"a_plus": 0.7, "a_minus": 1.2, "tau_plus": "15 ms", "tau_minus": "30 ms"}
    dts = [f"{v} ms" for v in (-60, -30, -10, -1, 0, 1, 10, 20, 45)]
    p = protocol(
        "da_stdp",
        rule=stdp,
        schedule={"reward_delay": "200 ms"},
        grid={"schedule": {"pairing_dt": dts}},
    )
    ds = run_synaptic(p)
    x = ds["pairing_dt"].values
    window = DopamineSTDP(
        DopamineSTDPParams(a_plus=0.7, a_minus=1.2, tau_plus=0.015, tau_minus=0.03)
    ).stdp(x)
    # the reward comes the same time after every pairing's later spike, so Δw ∝ STDP(Δt)
    got = mean_dw(ds)
    ref = got[list(x).index(0.01)] / window[list(x).index(0.01)]
    np.testing.assert_allclose(got, ref * window, rtol=1e-5)
    assert got[list(x).index(-0.01)] / got[list(x).index(0.01)] == pytest.approx(
        -1.2 / 0.7 * np.exp(-0.01 / 0.03 + 0.01 / 0.015), rel=1e-5
    )


def test_td_anp_window_takes_its_sign_from_kick_and_reward_not_from_the_order():
    """δ·u > 0 whichever event comes first; the acausal side falls with the membrane τ
    (10 ms: δ has decayed when u arrives), the causal side with τ_pre (20 ms)."""
    dts = ["-20 ms", "-10 ms", "10 ms", "20 ms"]
    ds = run_synaptic(protocol(grid={"schedule": {"pairing_dt": dts}}))
    minus20, minus10, plus10, plus20 = mean_dw(ds)
    assert min(minus20, minus10, plus10, plus20) > 0
    assert minus20 / minus10 < plus20 / plus10


def test_only_the_kicked_units_synapses_change():
    """Node perturbation credits the perturbed unit: with unit 0 of two kicked, the
    synapses onto unit 1 (δ = 0 there) do not change; with per-layer normalisation too."""
    p = protocol(
        rule={"normalise": "per_layer"},
        model={"n_pre": 3, "n_post": 2},
        schedule={"post_units": [0], "reward_delay": "100 ms"},
    )
    dw = run_synaptic(p)["dw"].values.reshape(2, 3)  # (post, pre): post-major synapses
    assert np.all(dw[0] > 0)
    assert np.all(dw[1] == 0.0)


def test_td_anp_cell_equals_numpy():
    """Known answer: two presynaptic and two postsynaptic units (per-layer ‖δ‖²,
    √(n_pre + n_post) scale, jittered events), the rule's equations stepped in numpy."""
    p = protocol(
        rule={"normalise": "per_layer", "scale": "sqrt_total", "tau_e": "80 ms"},
        model={"n_pre": 2, "n_post": 2, "w0": 0.3},
        schedule={"duration": "400 ms", "jitter": "3 ms", "reward_delay": "60 ms", "kick": 0.2},
    )
    ds = run_synaptic(p)
    m, s = p.model, p.schedule
    n_steps = round(s.duration / m.dt)
    drives = build_drives([s], m, False, np.random.default_rng(p.seed), n_steps + 1)
    lam, a, c = 1 - m.dt / 0.08, m.dt / m.tau, np.sqrt(4.0)
    w = np.full((2, 2), 0.3)
    h, h_n = np.zeros(2), np.zeros(2)
    u_prev, elig, acc = np.zeros(2), np.zeros((2, 2)), np.zeros((2, 2))
    for step in range(n_steps):
        u = drives.pre[step]
        delta = h_n - h
        nrm = 1.0 / (delta @ delta + 1e-30)
        elig = lam * elig + np.outer(nrm * delta, u_prev)
        acc += c * -drives.reward[step, 0] * elig
        drive = w @ u
        h, h_n = h + a * (-h + drive), h_n + a * (-h_n + drive)
        h_n = h_n + drives.post[step]
        u_prev = u
    np.testing.assert_allclose(ds["dw"].values.ravel(), (-acc).ravel(), rtol=1e-10)
    assert np.abs(acc).max() > 0


def test_the_synapse_runs_the_rules_training_code():
    """One rule object, one code: a synaptic cell installs the rule object with its own
    install(), so the synapse's per-step code is the one it runs on W_in in training."""
    from bioperturb.engines.runtime import RuntimeEngine
    from bioperturb.experiment import Experiment
    from bioperturb.synaptic import _rule_block
    from tests.conftest import make_protocol

    rule = {"name": "td_anp", "tau_e": "50 ms", "train": ["W_in"]}
    exp = Experiment(make_protocol(rule=rule))
    training = RuntimeEngine(exp).network.synapses["W_in"]
    (trained,) = [o for o in training.contained_objects if o.name == "rule_step_w_in"]
    p = protocol()
    drives = build_drives([p.schedule], p.model, False, np.random.default_rng(0), 2001)
    objs, *_ = _rule_block(exp.rule, p.model, drives, 1.0, 0.005)
    cell = {o.name: o for o in objs}
    assert cell["rule_step_w_in"].abstract_code == trained.abstract_code
    assert "elig = 0.98 * elig" in trained.abstract_code
    # the rule's global sum and broadcast, joined within each cell
    assert {"anp_sum_hidden", "rule_broadcast_hidden", "rule_trial_loss"} <= set(cell)


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "syn.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def edited(**tables: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    for name, value in tables.items():
        if value is None:
            data.pop(name, None)
        elif name != "rule" and isinstance(value, dict) and isinstance(data.get(name), dict):
            data[name].update(value)
        else:
            data[name] = value
    return data


@pytest.mark.parametrize(
    "data, key, reason",
    [
        (edited(colour="red"), "colour", "unknown key"),
        (edited(schedule={"pairng_dt": "1 ms"}), "schedule.pairng_dt", "did you mean"),
        (
            edited(grid={"schedule": {"pairing_dt": ["1 ms", "5"]}}),
            "grid.schedule.pairing_dt[1]",
            "expected s",
        ),
        (edited(grid={"schedule": {"period": ["1 s"]}}), "grid.schedule.period", "not a grid"),
        (edited(rule={"name": "miconi"}), "rule.name", "cannot run in a synaptic protocol"),
        (edited(rule={"name": "online_anp", "baseline": "trial"}), "rule.name", "temporal"),
        (edited(rule={"name": "td_anp", "train": ["W_rec"]}), "rule.train", "W_in"),
        (
            edited(rule={"name": "td_anp", "signal": "trial_end", "tau_e": "1 s"}),
            "rule.name",
            "dense",
        ),
        (
            edited(schedule={"duration": "300 ms", "reward_delay": "1 s"}),
            "schedule.duration",
            "too short",
        ),
        (edited(schedule={"pairing_dt": "-200 ms"}), "schedule.first_pairing", "before t = 0"),
        (edited(rule={"name": "td_anp", "tau_e": "0.5 ms"}), "rule", "shorter than dt"),
        (edited(model={"n_post": 0}), "model.n_post", "positive"),
        (edited(schedule={"post_units": [1]}), "schedule.post_units", "not one of"),
        (edited(rule={"name": "da_stdp", "lr": 1.0}), "rule.lr", "unit"),
        (
            edited(
                schedule={"duration": "10000 s"},
                grid={"schedule": {"reward_delay": {"start": "0 s", "stop": "1 s", "num": 100}}},
            ),
            "grid",
            "memory",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_bad_synaptic_protocol_is_one_line_and_exit_2(tmp_path, capsys, data, key, reason):
    path = write(tmp_path, data)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert f"{path}: {key}" in err and reason in err
    assert not (tmp_path / "out").exists()


def test_compare_refuses_a_synaptic_protocol(tmp_path, capsys):
    path = write(tmp_path, BASE)
    assert main(["compare", str(path)]) == 2
    assert "kind: a synaptic protocol" in capsys.readouterr().err


def test_shipped_synaptic_protocol_runs_and_plots(tmp_path, capsys):
    import xarray as xr

    path = REPO / "protocols" / "synaptic" / "da_stdp_distal_reward.toml"
    assert main(["run", str(path), "--out", str(tmp_path), "--quiet"]) == 0
    result = tmp_path / "da_stdp_distal_reward.nc"
    with xr.open_dataset(result) as ds:
        assert ds.attrs["kind"] == "synaptic"
        assert dict(ds["dw"].sizes) == {
            "pairing_dt": 21,
            "reward_delay": 6,
            "repetition": 1,
            "synapse": 1,
        }
        assert ds["pairing_dt"].attrs["units"] == "second"
        assert all("units" in ds[v].attrs for v in [*ds.data_vars, "time"])
        resolved = tomllib.loads(ds.attrs["protocol"])
    again, orig = synaptic_from_mapping(resolved, "<resolved>"), load_synaptic(path)
    assert (again.model, again.schedule, again.rule_at({}).params) == (
        orig.model,
        orig.schedule,
        orig.rule_at({}).params,
    )
    for dim in orig.dims:
        np.testing.assert_allclose(again.grid[dim][1], orig.grid[dim][1], rtol=1e-12)
    assert main(["plot", str(result), "--out", str(tmp_path)]) == 0
    names = {p.name for p in tmp_path.glob("*.png")}
    assert names == {f"da_stdp_distal_reward_{f}.png" for f in ("window", "reward_delay", "traces")}


def test_every_shipped_synaptic_protocol_loads():
    paths = sorted((REPO / "protocols" / "synaptic").glob("*.toml"))
    assert len(paths) >= 2
    for path in paths:
        p = load_synaptic(path)
        assert p.cells()
