"""The twin LIF network: exact identities, σ = 0, Dale's law, determinism, records."""

from __future__ import annotations

import numpy as np
import pytest

from bioperturb.config import ConfigError
from bioperturb.training import Trainer
from tests.conftest import make_protocol

#: a tiny LIF protocol: frozen Poisson inputs driving the pattern task
LIF_MODEL = {"preset": "lif_rnn", "n_hidden": 16, "input_scale": 4.0}
LIF = {
    "task__input": "poisson",
    "task__n_inputs": 20,
    "task__input_rate": "40 Hz",
    "task__duration": "80 ms",
}


def lif_protocol(**overrides):
    return make_protocol(model=LIF_MODEL, **{**LIF, **overrides})


def run(protocol):
    trainer = Trainer(protocol)
    return trainer, trainer.run(progress=False)


def test_lif_twins_coincide_without_noise_and_the_update_is_zero():
    trainer, ds = run(lif_protocol(model__sigma=0.0, training__lr=0.05))
    net = trainer.network
    assert ds["spike_unit"].size > 0, "the network must spike for this test to mean anything"
    for name, syn in net.synapses.items():
        assert np.all(np.asarray(syn.acc_last[:]) == 0.0), name
    w0, w1 = ds["W_rec"].isel(eval_trial=0), ds["W_rec"].isel(eval_trial=-1)
    assert np.array_equal(w0.values, w1.values)
    hidden = net.hidden
    assert np.array_equal(hidden.v[:], hidden.v_n[:])
    assert np.array_equal(hidden.h[:], hidden.h_n[:])


def test_lif_current_equals_weights_times_traces():
    """Exponential synapses and traces share τ_s and jump together: h = W r + U u."""
    import brian2

    trainer = Trainer(lif_protocol(training__lr=0.0))
    net = trainer.network
    net.net.run(50 * brian2.ms, namespace=net.namespace)
    w = net.get_weights()
    r, u = np.asarray(net.hidden.r[:]), np.asarray(net.inputs.u[:])
    assert r.max() > 0 and u.max() > 0
    np.testing.assert_allclose(net.hidden.h[:], w["W_rec"] @ r + w["W_in"] @ u, atol=1e-12)


def test_lif_dense_currents_match_event_driven_ones():
    """Decorrelation needs clock-driven currents; with D = I (η_d = 0) spikes are the same."""
    kw = dict(training__lr=0.0, model__sigma=0.0)
    _, event = run(lif_protocol(**kw))
    _, dense = run(
        lif_protocol(**kw, model__decorrelate=["input", "recurrent"], model__decor_lr=0.0)
    )
    assert event["spike_unit"].size > 0
    np.testing.assert_array_equal(event["spike_unit"], dense["spike_unit"])
    np.testing.assert_allclose(event["spike_time"], dense["spike_time"])
    np.testing.assert_allclose(event["output_y"], dense["output_y"], atol=1e-9)


def test_lif_same_seed_same_spikes_other_seed_other_noise():
    kw = dict(training__n_trials=2)
    _, a = run(lif_protocol(**kw))
    _, b = run(lif_protocol(**kw))
    np.testing.assert_array_equal(a["spike_unit"], b["spike_unit"])
    np.testing.assert_array_equal(a["spike_time"], b["spike_time"])
    np.testing.assert_array_equal(a["loss_noisy"], b["loss_noisy"])
    _, c = run(lif_protocol(**kw, seed=8))
    assert not np.array_equal(a["loss_noisy"], c["loss_noisy"])


def test_lif_dale_signs_hold_after_training():
    trainer, ds = run(
        lif_protocol(
            model__dale=True,
            training__lr=0.5,
            training__n_trials=4,
            training__optimizer="adam",
        )
    )
    signs = ds["cell_sign"].values
    assert (signs > 0).sum() == round(0.8 * 16)
    w = ds["W_rec"].values  # (eval_trial, post, pre)
    assert np.all(w * signs[None, None, :] >= 0)
    moved = np.abs(w[-1] - w[0]).max()
    assert moved > 0.1, "the weights must move for the sign test to mean anything"
    clipped = (w[-1] == 0).mean()
    assert 0 < clipped < 0.5, "some weights pinned at 0 by the projection, most alive"


def test_lif_records_spikes_membrane_and_rates():
    trainer, ds = run(lif_protocol())
    n_eval, n_cond = ds.sizes["eval_trial"], ds.sizes["condition"]
    assert ds["membrane"].dims == ("eval_trial", "condition", "time", "unit")
    assert float(ds["membrane"].max()) <= trainer.protocol.model.v_th + 1e-12
    T = trainer.tape.n_steps * trainer.protocol.model.dt
    assert float(ds["spike_time"].min()) >= 0 and float(ds["spike_time"].max()) < T
    counts = np.zeros((n_eval, n_cond, ds.sizes["neuron"]))
    np.add.at(
        counts,
        (ds["spike_eval"].values, ds["spike_condition"].values, ds["spike_unit"].values),
        1,
    )
    np.testing.assert_allclose(ds["rate"].values, counts / T)
    # noise-free evaluations before any weight change are identical runs of the same input
    assert ds["rate"].attrs["units"] == "Hz"
    assert ds.attrs["engine"].startswith("brian2")


@pytest.mark.parametrize(
    "rule",
    [
        {"rule__name": "np"},
        {"rule__name": "online_anp"},
        {"rule__name": "online_anp", "rule__baseline": "trial", "training__n_trials": 4},
        {"rule__name": "td_anp", "rule__tau_e": "5 ms"},
        {"rule__name": "td_anp", "model__decorrelate": ["recurrent"]},
    ],
    ids=["np", "online_anp", "online_anp_trial", "td_anp_trace", "danp"],
)
def test_lif_other_rules_run_and_update(rule):
    trainer, ds = run(lif_protocol(**{"training__n_trials": 2, **rule}, model__sigma=0.3))
    assert ds.attrs["status"] == "completed"
    for name in ("W_in", "W_rec", "W_out"):
        w = ds[name].values
        assert np.all(np.isfinite(w)), name
        assert np.abs(w[-1] - w[0]).max() > 0, f"{name} did not move"


def test_lif_config_errors_are_one_line():
    with pytest.raises(ConfigError, match=r"model.tau: unknown key \(did you mean 'tau_m'"):
        lif_protocol(model__tau="10 ms")
    with pytest.raises(ConfigError, match="v_reset .* must be below v_th"):
        lif_protocol(model__v_reset=1.5)
    with pytest.raises(ConfigError, match="model.kind: unknown kind 'izhikevich'"):
        make_protocol(model__kind="izhikevich")
    with pytest.raises(
        ConfigError, match="engine.name: 'standalone' runs sparse W_rec .* Dale's law projects"
    ):
        lif_protocol(engine__name="standalone", model__p_connect=0.5, model__dale=True)
    with pytest.raises(ConfigError, match="task: input_rate: .* more than one spike per step"):
        lif_protocol(task__input_rate="2 kHz")


def test_lif_compare_uses_a_rate_reference_and_plot_draws_a_raster(tmp_path):
    import xarray as xr

    from bioperturb.cli import main
    from bioperturb.compare import compare_protocol

    protocol = lif_protocol(training__n_trials=2, output__figures=False)
    ds, path = compare_protocol(protocol, out_dir=tmp_path, progress=False)
    assert list(ds["method"].values) == ["td_anp", "bptt", "bptt_surrogate"]
    bptt = ds.sel({"method": "bptt"})
    assert np.all(np.isfinite(bptt["eval_loss"])) and np.all(np.isnan(bptt["membrane"]))
    assert np.all(np.abs(bptt["activity"]) <= 1), "the reference's activity is tanh(h)"
    # the reference starts from rate-initialiser weights, not the LIF ones
    lif_w0 = ds.sel({"method": "td_anp"})["W_in"].isel(eval_trial=0)
    assert not np.allclose(bptt["W_in"].isel(eval_trial=0), lif_w0)
    with xr.open_dataset(path) as saved:
        assert "jax-reference" in saved.attrs["engines"]

    run = Trainer(lif_protocol(training__n_trials=2)).run(progress=False)
    from bioperturb.dataset import write_dataset

    nc = write_dataset(run, tmp_path / "lif.nc")
    assert main(["plot", str(nc), "--out", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig" / "lif_raster.png").is_file()


def test_lif_jax_twin_reproduces_brian2_spikes():
    """The surrogate-gradient reference runs the very same LIF dynamics (σ = 0)."""
    from bioperturb.reference.lif import LIFDynamics, lif_forward

    trainer, ds = run(
        lif_protocol(
            model__sigma=0.0, training__lr=0.0, training__n_trials=1, task__duration="200 ms"
        )
    )
    model = trainer.protocol.model
    dyn = LIFDynamics.from_model(model)
    v, r, y, s = lif_forward(trainer.weights0, dyn.input_spikes(trainer.eval_set.inputs), dyn)
    times, units = np.nonzero(s[0])
    first = ds["spike_eval"].values == 0
    brian = sorted(
        zip(
            np.rint(ds["spike_time"].values[first] / model.dt),
            ds["spike_unit"].values[first],
            strict=True,
        )
    )
    assert len(brian) > 50
    assert brian == sorted(zip(times, units, strict=True))
    steps = np.rint(ds["time"].values / model.dt).astype(int)
    np.testing.assert_allclose(y[0, steps], ds["output_y"].values[0, 0], atol=1e-12)
    np.testing.assert_allclose(
        v[0, steps][:, trainer.record_units], ds["membrane"].values[0, 0], atol=1e-12
    )


def test_lif_surrogate_gradient_is_finite_and_descends():
    from bioperturb.reference import BPTTTrainer
    from bioperturb.reference.lif import LIFDynamics

    trainer = Trainer(lif_protocol(training__lr=0.0, task__duration="200 ms"))
    model = trainer.protocol.model
    dyn = LIFDynamics.from_model(model)
    ev = trainer.eval_set
    spikes = dyn.input_spikes(ev.inputs)
    bptt = BPTTTrainer(
        trainer.weights0, dt=model.dt, tau=model.tau_m, optimizer="adam", lr=0.02, dynamics=dyn
    )
    losses = [bptt.step(spikes, ev.targets, ev.mask) for _ in range(15)]
    assert np.all(np.isfinite(losses))
    assert bptt.evaluate(spikes, ev.targets, ev.mask) < 0.5 * losses[0], losses


def test_lif_resume_is_identical(tmp_path):
    from tests.integration.test_checkpoint import resumed_runs_match

    protocol = lif_protocol(
        model__dale=True,
        training__n_trials=4,
        training__eval_every=2,
        training__checkpoint_every=1,
        training__optimizer="adam",
    )
    resumed_runs_match(protocol, tmp_path, resume_after=(1, 2))


def test_lif_conductance_synapses_twins_and_driving_forces():
    cond = {**LIF_MODEL, "synapse": "conductance", "input_scale": 1.0, "g": 0.2}
    trainer, ds = run(make_protocol(model={**cond, "sigma": 0.0}, **LIF, training__lr=0.05))
    assert ds["spike_unit"].size > 0
    hid = trainer.network.hidden
    assert np.array_equal(hid.v[:], hid.v_n[:])
    for name in ("W_in", "W_rec", "W_out"):
        assert np.array_equal(ds[name].values[0], ds[name].values[-1]), name
    assert np.all(hid.ge[:] >= 0) and np.all(hid.gi[:] >= 0)
    assert float(ds["membrane"].min()) > trainer.protocol.model.e_inh  # driving forces
    # with noise the rule learns through the same code
    _, noisy = run(make_protocol(model={**cond, "sigma": 0.3}, **LIF, training__n_trials=2))
    assert np.abs(noisy["W_rec"].values[-1] - noisy["W_rec"].values[0]).max() > 0
    with pytest.raises(ConfigError, match="decorrelate needs synapse = 'current'"):
        make_protocol(model={**cond, "decorrelate": ["input"]}, **LIF)
