"""The Brian2 twin rate network and TD-ANP against their equations (numpy target)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from brian2 import StateMonitor

from bioperturb.dataset import read_dataset, write_dataset
from bioperturb.training import Trainer
from tests.conftest import make_protocol


def numpy_forward(weights, inputs, *, dt, tau, b=0.0):
    """Plain Euler loop of τ dh/dt = −h + W tanh(h) + U u + b; returns h_t, y_t for t < T."""
    n = weights["W_rec"].shape[0]
    h = np.zeros(n)
    hs, ys = [], []
    for u in inputs:
        r = np.tanh(h)
        hs.append(h.copy())
        ys.append(weights["W_out"] @ r)
        h = h + dt / tau * (-h + weights["W_rec"] @ r + weights["W_in"] @ u + b)
    return np.array(hs), np.array(ys)


def add_trace_monitors(trainer):
    """Monitor every state the rule uses, at every step, after the loss is computed."""
    net = trainer.network
    mons = {
        "hidden": StateMonitor(net.hidden, ["h", "h_n", "r"], record=True, when="start", order=6),
        "readout": StateMonitor(net.readout, ["y", "y_n"], record=True, when="start", order=6),
        "loss": StateMonitor(net.loss, ["L", "L_n"], record=True, when="start", order=6),
        "inputs": StateMonitor(net.inputs, ["u"], record=True, when="start", order=6),
    }
    net.net.add(*mons.values())
    return mons


def trial_rows(trainer, k):
    """Monitor indices of the steps of tape trial k (row 0 is the reset step)."""
    n = trainer.tape.n_steps
    return slice(1 + k * n, 1 + (k + 1) * n)


def test_noise_free_forward_matches_numpy_euler():
    trainer = Trainer(make_protocol(model__sigma=0.0, model__bias=0.1, training__n_trials=1))
    mons = add_trace_monitors(trainer)
    trainer.run()
    rows = trial_rows(trainer, 0)  # first evaluation trial, initial weights
    p = trainer.protocol.model
    h_ref, y_ref = numpy_forward(
        trainer.weights0, trainer.eval_set.inputs[0], dt=p.dt, tau=p.tau, b=0.1
    )
    h = mons["hidden"].h[:, rows].T
    y = mons["readout"].y[:, rows].T
    # Same float64 operations in a different summation order: errors of a few ulp that
    # the contracting dynamics keep from growing over the 60 steps.
    np.testing.assert_allclose(h, h_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(mons["hidden"].h_n[:, rows], mons["hidden"].h[:, rows])


def test_unit_readout_outputs_are_hidden_units_themselves():
    """output_init = "units" (Miconi 2017's output unit): y_k is the rate of hidden unit k,
    and the other matrices are the Gaussian run's (the readout is drawn either way)."""
    gaussian = Trainer(make_protocol(model__sigma=0.0, task__n_outputs=3, training__n_trials=1))
    trainer = Trainer(
        make_protocol(
            model__sigma=0.0, model__output_init="units", task__n_outputs=3, training__n_trials=1
        )
    )
    n_out = trainer.task.n_outputs
    assert n_out > 1
    expected = np.zeros((n_out, trainer.protocol.model.n_hidden))
    expected[np.arange(n_out), np.arange(n_out)] = 1.0
    np.testing.assert_array_equal(trainer.weights0["W_out"], expected)
    for name in ("W_in", "W_rec"):
        np.testing.assert_array_equal(trainer.weights0[name], gaussian.weights0[name])
    mons = add_trace_monitors(trainer)
    trainer.run()
    rows = trial_rows(trainer, 0)
    np.testing.assert_array_equal(mons["readout"].y[:, rows], mons["hidden"].r[:n_out, rows])
    assert np.ptp(mons["readout"].y[:, rows]) > 0.01  # the units move: not a trivial 0 = 0


def test_zero_noise_gives_exactly_zero_update():
    ds = Trainer(make_protocol(model__sigma=0.0, training__lr=10.0, training__n_trials=3)).run()
    for name in ("W_in", "W_rec", "W_out"):
        w = ds[name].values
        assert np.array_equal(w, np.broadcast_to(w[0], w.shape)), name
    np.testing.assert_array_equal(ds["loss"], ds["loss_noisy"])


def expected_td_anp(trainer, mons, k, weights):
    """The TD-ANP estimate of tape trial k from the recorded trajectories (numpy)."""
    rows = trial_rows(trainer, k)
    h, h_n, r = (getattr(mons["hidden"], v)[:, rows].T for v in ("h", "h_n", "r"))
    y, y_n = (getattr(mons["readout"], v)[:, rows].T for v in ("y", "y_n"))
    L, L_n = (getattr(mons["loss"], v)[0, rows] for v in ("L", "L_n"))
    u = mons["inputs"].u[:, rows].T
    n_in, n_hid, n_out = u.shape[1], h.shape[1], y.shape[1]
    c = math.sqrt(n_in + n_hid + n_out)
    m = trainer.train_trials.mask[0].sum()
    acc = {key: np.zeros_like(w) for key, w in weights.items()}
    for t in range(1, len(L)):
        dh, dy = h_n[t] - h[t], y_n[t] - y[t]
        gh = c / m * (L_n[t] - L[t]) / (dh @ dh + 1e-30)
        gy = c / m * (L_n[t] - L[t]) / (dy @ dy + 1e-30)
        acc["W_rec"] += gh * np.outer(dh, r[t - 1])
        acc["W_in"] += gh * np.outer(dh, u[t - 1])
        acc["W_out"] += gy * np.outer(dy, r[t])
    return acc


def test_td_anp_update_matches_its_formula():
    # eval, train, eval: the weight change over the training trial is −lr · acc.
    lr = 1.0
    trainer = Trainer(make_protocol(training__n_trials=1, training__eval_every=1, training__lr=lr))
    mons = add_trace_monitors(trainer)
    ds = trainer.run()
    before = {k: ds[k].values[0] for k in ("W_in", "W_rec", "W_out")}
    acc = expected_td_anp(trainer, mons, 1, before)
    for name, a in acc.items():
        assert np.abs(a).max() > 0, name
        change = ds[name].values[1] - before[name]
        # the change is −lr·acc computed in float64 from the same recorded values;
        # the subtraction W_after − W_before loses ~|W|/|ΔW| ulps.
        np.testing.assert_allclose(change, -lr * a, rtol=1e-9, atol=1e-13)


def test_same_seed_same_dataset_and_different_seed_differs():
    def run(seed):
        ds = Trainer(make_protocol(seed=seed)).run()
        return ds.drop_vars("wall_time").drop_attrs()

    a, b, c = run(5), run(5), run(6)
    xr.testing.assert_identical(a, b)
    assert not np.array_equal(a["loss_noisy"], c["loss_noisy"])


def test_netcdf_round_trip_is_identical(tmp_path):
    ds = Trainer(make_protocol()).run()
    path = write_dataset(ds, tmp_path / "run.nc")
    xr.testing.assert_identical(read_dataset(path), ds)
    assert not list(tmp_path.glob(".*tmp"))
    assert read_dataset(path)["wall_time"].attrs["units"] == "s"


def test_divergence_stops_with_status_and_keeps_records(tmp_path):
    ds = Trainer(make_protocol(training__lr=1e9, training__n_trials=6)).run()
    assert ds.attrs["status"] == "diverged"
    assert "max_weight" in ds.attrs["status_reason"] or "finite" in ds.attrs["status_reason"]
    assert 0 < ds.sizes["trial"] < 6
    assert ds.sizes["eval_trial"] >= 1
    xr.testing.assert_identical(read_dataset(write_dataset(ds, tmp_path / "d.nc")), ds)


def test_adam_and_clipping_move_weights_within_bound():
    step = 1e-3
    ds = Trainer(
        make_protocol(training__optimizer="adam", training__max_step=step, training__lr=1.0)
    ).run()
    change = np.abs(np.diff(ds["W_rec"].values, axis=0))
    n_trials = np.diff(ds["eval_trial"].values)
    assert change.max() > 0
    assert np.all(change <= step * n_trials[:, None, None] * (1 + 1e-12))


@pytest.mark.cython
def test_cython_target_matches_numpy_target():
    common = dict(model__sigma=0.0, training__n_trials=1)
    ds_np = Trainer(make_protocol(**common)).run()
    ds_cy = Trainer(make_protocol(engine__codegen="cython", **common)).run()
    np.testing.assert_allclose(ds_cy["loss"], ds_np["loss"], rtol=1e-12)
    np.testing.assert_allclose(ds_cy["activity"], ds_np["activity"], rtol=1e-12, atol=1e-14)


def test_trials_in_one_simulation_equal_one_run_per_trial():
    """The tape runs a block of training trials in one net.run: the same computation as
    one net.run per trial (trial-end optimiser steps and resets tick on the trial clock)."""

    class OneRunPerTrial(Trainer):
        max_block = 1

    protocol = make_protocol(
        training__n_trials=6,
        training__eval_every=6,
        training__optimizer="adam",
        output__alignment=False,
    )
    blocks, single = Trainer(protocol), OneRunPerTrial(protocol)
    assert blocks.block_length(1) == 6 and single.block_length(1) == 1
    a, b = blocks.run(), single.run()
    xr.testing.assert_identical(
        a.drop_vars("wall_time").drop_attrs(), b.drop_vars("wall_time").drop_attrs()
    )


def test_sparse_recurrent_weights_only_exist_where_connected():
    """model.p_connect < 1: absent synapses are not created, never learn, and BPTT keeps them 0."""
    from bioperturb.compare import reference_dataset

    protocol = make_protocol(
        model__p_connect=0.3,
        training__n_trials=3,
        training__lr=0.05,
        training__optimizer="adam",
        output__alignment=True,
        training__eval_every=1,
    )
    trainer = Trainer(protocol)
    ds = trainer.run()
    mask = trainer.network.masks["W_rec"]
    n = protocol.model.n_hidden
    assert len(trainer.network.synapses["W_rec"]) == mask.sum()
    assert 0.15 < mask.mean() < 0.45  # p = 0.3 on 12 × 12
    w = ds["W_rec"].values
    assert np.all(w[:, ~mask] == 0) and np.abs(w[-1] - w[0])[mask].max() > 0
    assert np.all(np.isfinite(ds["alignment"].values))
    bptt = reference_dataset(trainer)
    wb = bptt["W_rec"].values
    assert np.all(wb[:, ~mask] == 0) and np.abs(wb[-1] - wb[0])[mask].max() > 0
    # the recurrent gain is kept: entries scaled by 1/sqrt(p)
    dense = Trainer(make_protocol(training__n_trials=1)).weights0["W_rec"]
    assert w[0].shape == dense.shape == (n, n)
    np.testing.assert_allclose(
        w[0][mask], dense[mask] / np.sqrt(protocol.model.p_connect), rtol=1e-12
    )


def test_sparse_config_errors():
    from bioperturb.config import ConfigError

    with pytest.raises(ConfigError, match="model: p_connect must be in"):
        make_protocol(model__p_connect=1.5)
    with pytest.raises(ConfigError, match="model.p_connect: must be positive|p_connect"):
        make_protocol(model__p_connect=0.0)
    # the standalone engine runs sparse W_rec only through the fused C++
    make_protocol(model__p_connect=0.5, engine__name="standalone")
    with pytest.raises(ConfigError, match="engine.name: .standalone. runs sparse W_rec"):
        make_protocol(model__p_connect=0.5, engine__name="standalone", engine__fuse="off")
