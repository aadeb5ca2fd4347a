"""bioperturb's ``eprop`` rule against NEST 3.10's ``eprop_iaf_bsshslm_2020`` +
``eprop_readout_bsshslm_2020`` + ``eprop_synapse_bsshslm_2020`` through one numpy e-prop
with a switch per convention (tests/integration/eprop_reference.py): with NEST's switches
it gives NEST's weight changes, with ours our Brian2 rule's update. The mapping is in
docs/rules/eprop.md ("Differences from NEST's eprop_iaf_bsshslm_2020")."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.integration import nest_eprop
from tests.integration.eprop_reference import (
    bioperturb_conventions,
    eprop_nest_numpy,
    eprop_trial,
    forward,
    nest_conventions,
)
from tests.integration.test_eprop import estimates

pytest.importorskip("nest")

BASE = {
    "dt": 1.0,  # ms
    "tau_m": 10.0,
    "tau_out": 20.0,
    "tau_m_readout": 20.0,
    "v_th": 1.0,  # mV above E_L = 0
    "t_ref": 0.0,
    "bias": 0.3,  # pA = mV with C_m = τ_m
    "c_reg": 0.0,
    "f_target": 10.0,  # Hz
    "height": 0.3,  # bioperturb's triangle: γ/v_th
    "width": 1.0,  # v_th
    "learning_window": 60,
    "eta": 1e-3,
    "w_min": -100.0,
    "w_max": 100.0,
}
VARIANTS = {
    # NEST's defaults: spikes arrive at the step's end, no regularisation, no refractoriness
    "default": ({}, 1.0),
    # Bellec et al.'s (NEST's examples'): inputs scaled by 1 − e^(−dt/τ), rate
    # regularisation, a refractory period, the error only in the last 45 steps, averaged
    "bellec": (
        {
            "regular_spike_arrival": False,
            "c_reg": 2.0,
            "f_target": 20.0,
            "t_ref": 3.0,
            "learning_window": 45,
            "average_gradient": True,
            "eta": 0.05,
        },
        10.0,
    ),
}


def network(seed: int, scale: float, n_intervals: int = 2, T: int = 60):
    """Weights, feedback B, input spikes and targets of a 4-input, 6-neuron, 2-readout net."""
    rng = np.random.default_rng(seed)
    n_in, n, n_out = 4, 6, 2
    weights = {
        "W_in": scale * rng.normal(0.0, 1.0, (n, n_in)),
        "W_rec": scale * rng.normal(0.0, 0.5, (n, n)),
        "W_out": rng.normal(0.0, 0.5, (n_out, n)),
    }
    B = rng.normal(0.0, 1.0, (n, n_out))
    s_in = (rng.random((n_intervals, T, n_in)) < 0.15).astype(float)
    targets = rng.normal(0.0, 1.0, (n_intervals, T, n_out))
    return weights, B, s_in, targets


@pytest.fixture(scope="module", params=list(VARIANTS))
def nest_run(request):
    overrides, scale = VARIANTS[request.param]
    params = {**BASE, **overrides}
    weights, B, s_in, targets = network(1, scale)
    return params, (weights, B, s_in, targets), nest_eprop.run(params, weights, B, s_in, targets)


def test_nest_network_is_the_reference_forward_pass(nest_run):
    params, (weights, B, s_in, targets), nest = nest_run
    c = nest_conventions(params)
    first = forward(weights, s_in[0], c)
    assert first["z"].sum() > 10  # the network spikes
    want = sorted((0, int(t), int(i)) for t, i in zip(*np.nonzero(first["z"]), strict=True))
    assert [s for s in nest["spikes"] if s[0] == 0] == want
    np.testing.assert_allclose(nest["v"][0], first["v"], rtol=1e-9, atol=1e-12)


def test_nest_weight_changes_are_the_numpy_eprop(nest_run):
    params, net, nest = nest_run
    want = eprop_nest_numpy(*net, params)
    for name, dw in want.items():
        got = nest["after"][name] - nest["before"][name]
        assert np.abs(dw).max() > 1e-5, name  # a non-trivial update
        np.testing.assert_allclose(got, dw, rtol=1e-6, atol=1e-12, err_msg=name)


def test_nest_misses_the_last_learning_signal_when_an_input_spikes_early(nest_run):
    # an input spike in the next interval's first delivered step triggers the synapse's
    # update before the learning signal of the interval's last step has arrived
    params, (weights, B, s_in, targets), nest = nest_run
    assert s_in[1, 0].any()
    c = nest_conventions(params)
    mask = (np.arange(s_in.shape[1]) >= s_in.shape[1] - params["learning_window"]).astype(float)
    g = eprop_trial(weights, B, s_in[0], targets[0], mask, c)
    late = eprop_trial(weights, B, s_in[0], targets[0], mask, c, s_in[1, 0] > 0)
    changed = s_in[1, 0] > 0
    assert not np.allclose(late["W_in"][:, changed], g["W_in"][:, changed], rtol=1e-6)
    np.testing.assert_array_equal(late["W_in"][:, ~changed], g["W_in"][:, ~changed])


# --- the same numpy e-prop with bioperturb's switches is bioperturb's rule


@pytest.mark.parametrize(
    "model,rule",
    [
        ({}, {"reg_rate": 0.5, "target_rate": "20 Hz", "gamma": 0.4}),
        ({"integration": "exact", "t_ref": "2 ms"}, {"reset_eligibility": True}),
    ],
    ids=["euler_regularised", "exact_refractory_reset"],
)
def test_the_numpy_eprop_with_our_switches_is_our_rule(model, rule):
    from bioperturb.reference.lif import LIFDynamics

    trainer, est = estimates(rule, g=1.0, model=model)
    p, tt = trainer.protocol, trainer.train_trials
    c = bioperturb_conventions(p.model, p.rule)
    spikes = LIFDynamics.from_model(p.model).input_spikes(tt.inputs)
    B = trainer.experiment.rule.feedback_matrix(p.model.n_hidden, tt.targets.shape[2])
    for k in range(tt.n_trials):
        want = eprop_trial(trainer.weights0, B, spikes[k], tt.targets[k], tt.mask[k], c)
        for name, g in want.items():
            assert np.abs(g).max() > 1e-3, name
            np.testing.assert_allclose(est[name][k], g, rtol=1e-9, atol=1e-14, err_msg=name)


NEST_SWITCHES = (
    "synapse",
    "reset",
    "refractory",
    "readout_lag",
    "ebar_scale",
    "loss_norm",
    "esum_last_step",
)


@pytest.mark.parametrize("switch", NEST_SWITCHES)
def test_each_switch_to_nest_changes_our_update(switch):
    # every named difference matters on the same trial: set one switch as NEST has it
    # (the rest as ours) and the update moves
    weights, B, s_in, targets = network(2, 1.0, n_intervals=1)
    ours = bioperturb_conventions(
        dataclasses.replace(_Model(), t_ref=2e-3), _Rule(reg_rate=1.0, target_rate=20.0)
    )
    nest = nest_conventions({**BASE, "t_ref": 2.0, "c_reg": 1.0})
    flipped = dataclasses.replace(ours, **{switch: getattr(nest, switch)})
    mask = np.ones(s_in.shape[1])
    a = eprop_trial(weights, B, s_in[0], targets[0], mask, ours)
    b = eprop_trial(weights, B, s_in[0], targets[0], mask, flipped)
    assert forward(weights, s_in[0], ours)["z"].sum() > 10
    diff = max(np.abs(a[k] - b[k]).max() / np.abs(a[k]).max() for k in a)
    assert diff > 1e-5, switch  # well above the 1e-6 and 1e-9 of the comparisons


@dataclasses.dataclass(frozen=True)
class _Model:
    dt: float = 1e-3
    tau_m: float = 10e-3
    tau_syn: float = 5e-3
    integration: str = "exact"
    bias: float = 0.3
    v_th: float = 1.0
    v_reset: float = 0.0
    t_ref: float = 0.0


@dataclasses.dataclass(frozen=True)
class _Rule:
    reset_eligibility: bool = False
    gamma: float = 0.3
    reg_rate: float = 0.0
    target_rate: float = 10.0
