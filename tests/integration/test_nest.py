"""bioperturb's LIF network against NEST's ``iaf_psc_exp`` (the ``nest`` extra; CI installs
it with the ``test`` extra). Mapping of units and timing: tests/integration/nest_lif.py."""

from __future__ import annotations

import numpy as np
import pytest

from bioperturb.reference.lif import LIFDynamics
from bioperturb.training import Trainer
from tests.conftest import make_protocol
from tests.integration import nest_lif
from tests.integration.test_spiking import LIF, LIF_MODEL

pytest.importorskip("nest")


def bioperturb_lif(**model):
    """Membrane (steps, neurons), spikes [(step, neuron)], weights and input spikes of one
    noise-free evaluation trial of a 10-neuron exact-integration LIF network (W_rec = 0)."""
    model = {**LIF_MODEL, "n_hidden": 10, "g": 0.0, "sigma": 0.0, "integration": "exact", **model}
    protocol = make_protocol(
        model=model,
        rule={"name": "none"},
        seed=3,
        training__n_trials=1,
        training__eval_every=1,
        output__record_dt="1 ms",
        output__n_record_units=10,
        output__alignment=False,
        **{**LIF, "task__duration": "300 ms"},
    )
    trainer = Trainer(protocol)
    ds = trainer.run(progress=False)
    dt = protocol.model.dt
    first = ds["spike_eval"].values == 0
    spikes = sorted(
        zip(
            np.rint(ds["spike_time"].values[first] / dt).astype(int).tolist(),
            ds["spike_unit"].values[first].astype(int).tolist(),
            strict=True,
        )
    )
    s_in = LIFDynamics.from_model(protocol.model).input_spikes(trainer.eval_set.inputs)[0]
    return protocol.model, ds["membrane"].values[0, 0], spikes, trainer.weights0["W_in"], s_in


@pytest.mark.parametrize(
    "model",
    [
        {},
        {"t_ref": "0 ms", "bias": 0.8},
        {"t_ref": "3 ms", "v_reset": -0.2, "tau_m": "30 ms"},
        {"tau_m": "10 ms", "tau_syn": "10 ms"},  # τ_m = τ_s: the propagator's limit
    ],
    ids=["default", "no_refractory", "reset_below_rest", "equal_taus"],
)
def test_lif_matches_nest_iaf_psc_exp(model):
    m, v, spikes, w_in, s_in = bioperturb_lif(**model)
    keys = ("dt", "tau_m", "tau_syn", "t_ref", "v_th", "v_reset", "bias")
    nest = nest_lif.run({k: getattr(m, k) for k in keys}, w_in, s_in)
    assert len(spikes) > 20  # the neurons fire, and refractory periods and resets happen
    assert spikes == nest["spikes"]
    np.testing.assert_allclose(v, nest["v"], rtol=1e-9, atol=1e-12)


def test_euler_integration_differs_from_nest_by_its_step_error():
    # the default (Euler) network is not NEST's: the same trial, same inputs, differs
    m, v, _, w_in, s_in = bioperturb_lif(integration="euler")
    keys = ("dt", "tau_m", "tau_syn", "t_ref", "v_th", "v_reset", "bias")
    nest = nest_lif.run({k: getattr(m, k) for k in keys}, w_in, s_in)
    assert np.abs(v - nest["v"]).max() > 1e-3
