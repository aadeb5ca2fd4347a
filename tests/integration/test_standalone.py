"""The cpp_standalone engine: one compiled program, the same results as the runtime engine.

Every test that runs a program is marked ``slow`` and ``standalone``: the first build of a
network shape compiles C++ for tens of seconds (later builds reuse the cached binary in
``$BIOPERTURB_STANDALONE_CACHE``). Most tests share one program: the protocols below
differ only in values that the program takes as run arguments (seed, σ, η, b, weights).
"""

from __future__ import annotations

import dataclasses
import shutil

import brian2
import numpy as np
import pytest
import xarray as xr
from brian2.devices.device import RuntimeDevice

from bioperturb.engines.standalone import Kernel, StandaloneEngine, get_kernel
from bioperturb.training import Trainer
from tests.conftest import LIF_SMALL, make_protocol

pytestmark = [pytest.mark.slow, pytest.mark.standalone]

#: one network shape for most tests: 12 units, 60-step trials, TD-ANP, SGD, 1 condition
SHARED = dict(training__n_trials=5, training__eval_every=2)


def comparable(ds: xr.Dataset) -> xr.Dataset:
    return ds.drop_vars("wall_time").drop_attrs()


def standalone(**overrides):
    return make_protocol(**{**SHARED, "engine__name": "standalone", **overrides})


def runtime(**overrides):
    return make_protocol(**{**SHARED, **overrides})


def assert_same_run(a: xr.Dataset, b: xr.Dataset, rtol: float = 1e-9) -> None:
    """Equal up to float reassociation (the standalone C++ is built with -ffast-math)."""
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        if name == "wall_time":
            continue
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=rtol, atol=1e-12)


@pytest.fixture(scope="module")
def shared_runs():
    """One standalone and one runtime run of the shared protocol (with noise, σ = 0.05)."""
    return Trainer(standalone()).run(), Trainer(runtime()).run()


def test_trainer_dispatches_on_engine():
    trainer = Trainer(standalone())
    assert isinstance(trainer.engine, StandaloneEngine)
    assert "cpp_standalone" in trainer.engine.description


def test_standalone_matches_runtime_with_noise(shared_runs):
    """Same seed, same noise: one thread draws numpy's legacy MT19937 / polar-method stream."""
    sa, rt = shared_runs
    assert sa.attrs["status"] == rt.attrs["status"] == "completed"
    assert "cpp_standalone" in sa.attrs["engine"] and "runtime" in rt.attrs["engine"]
    assert sa.attrs["engine"].endswith("fused-currents+gemm")  # engine.fuse = "auto"
    assert np.all(sa["loss_noisy"].values != sa["loss"].values)  # the noise was on
    assert_same_run(sa, rt)
    moved = np.abs(sa["W_rec"].values[-1] - sa["W_rec"].values[0]).max()
    assert moved > 1e-6  # the weights learned
    assert "alignment" in sa  # alignment trials end a block; their estimates were read


def test_first_use_says_it_compiles_and_the_bar_shows_the_cost(monkeypatch, capsys):
    """A cold program is announced before the wait and its build time heads the bar."""
    import bioperturb.engines.standalone as sa_engine

    monkeypatch.setattr(sa_engine, "is_cached", lambda spec: False)
    trainer = Trainer(standalone(output__progress=True))
    err = capsys.readouterr().err
    assert "compiling the standalone program for this network shape" in err
    # the build time if this test built the program, else (built earlier) nothing
    assert not trainer.engine.startup or trainer.engine.startup.startswith("program compiled in ")
    trainer.engine.startup = "program compiled in 41 s"
    trainer.run()
    assert "test (program compiled in 41 s)" in capsys.readouterr().err


def test_zero_noise_gives_exactly_zero_update_standalone():
    ds = Trainer(standalone(model__sigma=0.0, training__lr=10.0)).run()
    for name in ("W_in", "W_rec", "W_out"):
        w = ds[name].values
        assert np.array_equal(w, np.broadcast_to(w[0], w.shape)), name
    np.testing.assert_array_equal(ds["loss"], ds["loss_noisy"])


def test_seed_lr_sigma_bias_change_without_recompiling(shared_runs):
    """Values that differ between runs are run arguments: one program serves them all."""
    first = Trainer(standalone())
    changes = dict(
        seed=11, model__sigma=0.1, model__bias=0.05, training__lr=0.03, training__optimizer="sgd"
    )
    other = Trainer(standalone(**changes))
    assert other.engine.kernel is first.engine.kernel
    ds = other.run()
    assert not np.allclose(ds["loss"], shared_runs[0]["loss"])
    assert_same_run(ds, Trainer(runtime(**changes)).run())


def test_any_block_split_gives_the_same_run(shared_runs):
    """State and random state pass between blocks exactly: one trial per block is identical."""

    class OneTrialBlocks(Trainer):
        max_block = 1

    ds = OneTrialBlocks(standalone()).run()
    xr.testing.assert_identical(comparable(ds), comparable(shared_runs[0]))


class Copying(Trainer):
    """Keeps a copy of every checkpoint, named by the number of trials done."""

    copies = None

    def save_checkpoint(self, path):
        out = super().save_checkpoint(path)
        shutil.copy(out, self.copies / f"after{len(self.records.loss)}.npz")
        return out


def test_resume_is_identical(tmp_path, shared_runs):
    protocol = standalone(training__checkpoint_every=1)
    trainer = Copying(protocol)
    trainer.copies = tmp_path
    trainer.checkpoint_path = tmp_path / "run.ckpt.npz"
    reference = comparable(trainer.run())
    xr.testing.assert_identical(reference.drop_attrs(), comparable(shared_runs[0]).drop_attrs())
    for k in (1, 2, 5):
        again = Trainer(protocol)
        again.restore(tmp_path / f"after{k}.npz")
        assert again.position > 0 and len(again.records.loss) == k
        xr.testing.assert_identical(comparable(again.run()), reference)


#: sparse W_rec (the program of test_every_rule_matches_runtime[sparse])
SPARSE = {
    "model__p_connect": 0.4,
    "rule__tau_e": "4 ms",
    "model__decorrelate": ["recurrent"],
    "task__duration": "300 ms",
}

#: a spiking network on the standalone engine (one program): Poisson inputs, Dale's law,
#: Adam, a drive that makes the neurons fire
LIF = dict(
    model={**LIF_SMALL, "input_coding": "poisson", "dale": True},
    model__bias=1.1,
    training__optimizer="adam",
)


@pytest.fixture(scope="module")
def lif_runs():
    """One standalone and one runtime run of the LIF protocol."""
    return Trainer(standalone(**LIF)).run(), Trainer(runtime(**LIF)).run()


def test_lif_matches_runtime_spike_for_spike(lif_runs):
    """Brian2's own code for every LIF object (nothing fused) in one program: the same
    membrane, the same spikes (unit and step), the same learning as the runtime engine."""
    sa, rt = lif_runs
    # the currents stay event-driven; TD-ANP's W_rec and W_in updates are trial-end GEMMs
    assert sa.attrs["engine"].endswith("-fused-gemm+gemm_in") and "runtime" in rt.attrs["engine"]
    assert sa.sizes["spike"] > 50 and "membrane" in sa
    assert np.all(sa["loss_noisy"].values != sa["loss"].values)  # the noise was on
    assert_same_run(sa, rt)
    assert np.abs(sa["W_rec"].values[-1] - sa["W_rec"].values[0]).max() > 1e-6


def test_sparse_lif_matches_runtime_with_w_rec_in_slots():
    """A sparse LIF W_rec lives in slots (no Brian2 indices): the C++ adds each spike's row
    to its targets' currents (bp_spikes) and forms the update; the run is the runtime's."""
    overrides = dict(
        model={**LIF_SMALL, "n_hidden": 20, "p_connect": 0.4, "input_coding": "poisson"},
        model__bias=1.1,
        training__optimizer="adam",
    )
    trainer = Trainer(standalone(**overrides))
    sa = trainer.run()
    rt_trainer = Trainer(runtime(**overrides))
    rt = rt_trainer.run()
    assert sa.attrs["engine"].endswith("-fused-sparse-spikes+gemm+gemm_in")
    assert sa.sizes["spike"] > 50
    assert_same_run(sa, rt)
    absent = ~rt_trainer.network.masks["W_rec"]
    assert absent.any() and np.all(sa["W_rec"].values[:, absent] == 0)
    assert np.abs(sa["W_rec"].values[-1] - sa["W_rec"].values[0]).max() > 1e-6
    meta = trainer.engine.kernel.meta
    assert meta["synapses"][meta["matrices"]["W_rec"]]["slots"] < 20 * 20


def test_eprop_on_the_standalone_engine_matches_runtime():
    """A rule with a per-neuron signal: Brian2's own code for everything (unfused)."""
    overrides = dict(LIF, rule__name="eprop")
    sa = Trainer(standalone(**overrides)).run()
    assert sa.attrs["engine"].endswith("-unfused")
    assert_same_run(sa, Trainer(runtime(**overrides)).run())


def test_lif_resume_and_any_block_split_are_identical(tmp_path, lif_runs):
    class OneTrialBlocks(Trainer):
        max_block = 1

    reference = comparable(lif_runs[0])
    xr.testing.assert_identical(comparable(OneTrialBlocks(standalone(**LIF)).run()), reference)
    protocol = standalone(**LIF, training__checkpoint_every=1)
    trainer = Copying(protocol)
    trainer.copies = tmp_path
    trainer.checkpoint_path = tmp_path / "run.ckpt.npz"
    trainer.run()
    for k in (2, 3):
        again = Trainer(protocol)
        again.restore(tmp_path / f"after{k}.npz")
        xr.testing.assert_identical(comparable(again.run()).drop_attrs(), reference.drop_attrs())


def test_runtime_checkpoint_is_refused_by_the_standalone_engine(tmp_path):
    from bioperturb.schema import ConfigError

    trainer = Trainer(runtime())
    trainer.run()
    path = trainer.save_checkpoint(tmp_path / "rt.npz")
    with pytest.raises(ConfigError):
        Trainer(standalone()).restore(path)


def test_checkpoint_with_other_sizes_is_refused(tmp_path):
    """A checkpoint whose arrays do not fit the program (e.g. a sparse W_rec stored densely by
    an older version) is a one-line config error, not a failure inside the program."""
    from bioperturb.schema import ConfigError

    trainer = Trainer(standalone())
    trainer.run()
    path = trainer.save_checkpoint(tmp_path / "sa.npz")
    with np.load(path, allow_pickle=False) as data:
        arrays = dict(data)
    key = next(k for k in arrays if k.startswith("state/") and k.endswith("/w"))
    arrays[key] = arrays[key][:-1]
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ConfigError, match="values, the program holds"):
        Trainer(standalone()).restore(bad)


def test_divergence_is_reported():
    ds = Trainer(standalone(training__lr=1e9, training__n_trials=6)).run()
    assert ds.attrs["status"] == "diverged"
    assert 0 < ds.sizes["trial"] < 6


def test_runtime_runs_are_unchanged_after_a_standalone_run():
    """The standalone device is active only while a program is generated."""
    before = Trainer(runtime(seed=3)).run()
    Trainer(standalone(seed=3)).run()
    assert isinstance(brian2.get_device(), RuntimeDevice)
    after = Trainer(runtime(seed=3)).run()
    xr.testing.assert_identical(comparable(before), comparable(after))


def test_build_cache_compiles_a_shape_once():
    kernel = Trainer(standalone()).engine.kernel
    assert kernel is get_kernel(kernel.spec)  # one kernel per key in a process
    binary = kernel.build_dir / "main"
    stamp = binary.stat().st_mtime_ns
    again = Kernel(kernel.spec)  # what another process does: finds the cached program
    assert again.key == kernel.key and again.run_dir != kernel.run_dir
    assert not again.built and binary.stat().st_mtime_ns == stamp

    # values are run arguments; structure is another program
    def key(**overrides):
        return dataclasses.replace(kernel.spec, protocol=standalone(**overrides)).key()

    assert key(seed=9, model__sigma=0.2, model__g=0.5, training__lr=1.0) == kernel.key
    assert key(model__n_hidden=13) != kernel.key
    assert key(rule__tau_e="5 ms") != kernel.key
    assert key(engine__fuse="off") != kernel.key
    assert key(engine__fuse="on") == kernel.key  # TD-ANP fuses fully either way


#: a trace, Adam, clipping and no alignment trials (a program several tests share)
ADAM_NO_ALIGNMENT = {
    "rule__tau_e": "5 ms",
    "training__optimizer": "adam",
    "training__max_step": 1e-3,
    "output__alignment": False,
}


@pytest.mark.parametrize(
    "overrides",
    [
        {"rule__name": "none"},
        {"rule__name": "np"},
        {"rule__name": "wp"},
        {"rule__name": "online_anp"},
        # no alignment: W_rec keeps no acc_last (test_fused_w_rec_stores_only_what_is_read)
        ADAM_NO_ALIGNMENT,
        # batches of noisy repeats (the program of the case above: batch is a run argument)
        {
            **ADAM_NO_ALIGNMENT,
            "training__n_trials": 4,
            "training__batch": 2,
            "training__repeat": True,
        },
        {"rule__signal": "trial_end"},
        {
            "rule__apply": "online",
            "model__decorrelate": ["input", "recurrent"],
            "training__lr": 1e-3,
        },
        {"rule__name": "online_anp", "rule__baseline": "trial"},
        {
            "rule__name": "online_anp",
            "rule__baseline": "trial",
            "rule__signal": "trial_end",
            "rule__tau_e": "30 ms",
        },
        {"model__decorrelate": ["recurrent"], "rule__tau_e": "3 ms"},
        # 16 units: whole 4 x 8 tiles of the fused GEMM (12 units also run its edges)
        {"model__n_hidden": 16, "rule__signal": "trial_end", "rule__tau_e": "4 ms"},
        {"engine__fuse": "off"},
        # RFLO: a per-neuron signal, its random feedback matrix part of the initial state
        {"rule__name": "rflo", "training__optimizer": "adam"},
        # sparse W_rec: stored in slots, only the existing synapses' (fused C++)
        # (300 steps: the sparse update runs in blocks of 128 steps)
        SPARSE,
    ],
    ids=[
        "none",
        "np",
        "wp",
        "online_anp",
        "trace-adam-clip",
        "trace-adam-clip-batch",
        "trial_end",
        "online-decorrelate",
        "online_anp-trial",
        "online_anp-trial-trial_end",
        "decorrelate-trace",
        "tiles-trial_end-trace",
        "unfused",
        "rflo",
        "sparse",
    ],
)
def test_every_rule_matches_runtime(overrides):
    """Each rule's own state (traces, baselines, moments, D, w_pert) carries between blocks,
    and the fused W_rec (one pass for both currents, the trial's update as one matrix
    product: bioperturb/engines/standalone/fused.py) gives the runtime engine's per-step results."""
    sa = Trainer(standalone(**overrides)).run()
    rt_trainer = Trainer(runtime(**overrides))
    rt = rt_trainer.run()
    # 300-step trials: the reassociated sums (~1e-16) grow through the recurrent dynamics
    # and Adam to a few 1e-9 by the last evaluation
    assert_same_run(sa, rt, rtol=1e-7 if "task__duration" in overrides else 1e-9)
    # what is fused: WP's twin sees w + ψ; online SGD changes W_rec every step
    if overrides.get("rule__name") == "wp" or overrides.get("engine__fuse") == "off":
        expect = "unfused"
    elif (
        overrides.get("rule__name") in ("none", "rflo") or overrides.get("rule__apply") == "online"
    ):
        expect = "fused-currents"
    else:
        expect = "fused-currents+gemm"
    if "model__p_connect" in overrides:
        expect = expect.replace("fused-", "fused-sparse-")
        # absent synapses stay exactly 0 (their estimate is never formed)
        absent = ~rt_trainer.network.masks["W_rec"]
        assert np.all(sa["W_rec"].values[:, absent] == 0)
    assert sa.attrs["engine"].endswith(expect)


def test_sparse_w_rec_state_follows_the_synapses_not_n_squared():
    """The program of test_every_rule_matches_runtime[sparse]: W_rec's per-synapse arrays
    have the program's slots (the expected count + 8 sd, independent of the seed), the
    existing synapses first in increasing cell i·N + j, the unused slots 0 throughout."""
    from bioperturb.resources import sparse_slots

    trainer = Trainer(standalone(**SPARSE))
    net, meta = trainer.engine.network, trainer.engine.kernel.meta
    obj = meta["matrices"]["W_rec"]
    n, p = trainer.protocol.model.n_hidden, trainer.protocol.model.p_connect
    slots = meta["synapses"][obj]["slots"]
    assert slots == sparse_slots(n, n, p) < n * n
    n_exist = int(net.masks["W_rec"].sum())
    cells = net.cells(obj)
    assert len(cells) == slots and np.all(cells[n_exist:] == -1)
    assert np.all(np.diff(cells[:n_exist]) > 0)
    w0 = net.state[f"{obj}/w"]
    assert len(w0) == slots and np.all(w0[n_exist:] == 0)
    np.testing.assert_array_equal(net.get_weights()["W_rec"], trainer.weights0["W_rec"])
    # cell, w, acc, acc_last besides Brian2's 16 B of indices (SGD)
    assert meta["synapses"][obj]["bytes_per_synapse"] == 16 + 4 + 3 * 8
    trainer.run()
    assert np.all(net.state[f"{obj}/w"][n_exist:] == 0)  # unused slots never learn


def test_fused_w_rec_stores_only_what_is_read():
    """Per-synapse state of W_rec in the program (programs of test_every_rule_matches_runtime):
    the fused GEMM leaves no eligibility trace to store, and acc_last (the last estimate)
    exists only where the alignment reads it; the runtime engine keeps both."""

    def state_bytes(trainer: Trainer) -> int:
        meta = trainer.engine.kernel.meta
        return meta["synapses"][meta["matrices"]["W_rec"]]["bytes_per_synapse"]

    index = 16  # int32 _synaptic_pre, _synaptic_post, N_incoming, N_outgoing (Brian2's)
    assert state_bytes(Trainer(standalone())) == index + 3 * 8  # w, acc, acc_last (SGD)
    assert state_bytes(Trainer(standalone(**ADAM_NO_ALIGNMENT))) == index + 4 * 8  # w acc m v
    assert state_bytes(Trainer(standalone(engine__fuse="off"))) == index + 4 * 8  # + elig
    from bioperturb.resources import synapse_state_bytes

    runtime_syn = Trainer(runtime(**ADAM_NO_ALIGNMENT)).network.synapses["W_rec"]
    assert synapse_state_bytes(runtime_syn) == index + 6 * 8  # + elig, acc_last


def test_threads_give_their_own_noise_with_the_same_statistics():
    """With OpenMP each thread draws its own stream (seed + thread): not the runtime's noise,
    but deterministic, and learning proceeds alike."""
    protocol = standalone(engine__threads=2, training__n_trials=20, training__eval_every=10)
    a, b = Trainer(protocol).run(), Trainer(protocol).run()
    xr.testing.assert_identical(comparable(a), comparable(b))
    rt = Trainer(runtime(training__n_trials=20, training__eval_every=10)).run()
    assert not np.allclose(a["loss_noisy"], rt["loss_noisy"])
    # same dynamics, other noise draws: the clean losses stay close, the noise-induced
    # loss difference has the same size
    np.testing.assert_allclose(a["loss"], rt["loss"], rtol=0.05)
    gap_a = np.abs(a["loss_noisy"] - a["loss"]).mean()
    gap_rt = np.abs(rt["loss_noisy"] - rt["loss"]).mean()
    assert 0.5 < float(gap_a / gap_rt) < 2.0


def test_fused_work_split_among_threads_matches_the_unfused_program():
    """With OpenMP each thread computes its share of the fused currents (columns) and of
    the trial's update (rows of acc): the same run as Brian2's own code on the same noise.
    17 units on 2 threads: uneven shares (16 + 1) and the GEMM's edges."""
    overrides = dict(
        engine__threads=2,
        model__n_hidden=17,
        rule__signal="trial_end",
        rule__tau_e="3 ms",
    )
    fused = Trainer(standalone(**overrides)).run()
    plain = Trainer(standalone(engine__fuse="off", **overrides)).run()
    assert fused.attrs["engine"].endswith("threads2-fused-currents+gemm")
    assert plain.attrs["engine"].endswith("threads2-unfused")
    assert_same_run(fused, plain)


def test_sparse_standalone_on_two_threads_learns_like_runtime():
    """Sparse fused W_rec with the work split among threads: absent synapses stay 0 and the
    run follows the runtime engine's (other noise streams: statistically)."""
    overrides = dict(training__n_trials=20, training__eval_every=10, model__p_connect=0.4)
    sa = Trainer(standalone(engine__threads=2, **overrides)).run()
    rt_trainer = Trainer(runtime(**overrides))
    rt = rt_trainer.run()
    absent = ~rt_trainer.network.masks["W_rec"]
    assert np.all(sa["W_rec"].values[:, absent] == 0)
    assert np.abs(sa["W_rec"].values[-1] - sa["W_rec"].values[0]).max() > 1e-3
    np.testing.assert_allclose(sa["loss"], rt["loss"], rtol=0.05)
    assert sa["loss"].values.ravel()[-1] < 0.7 * sa["loss"].values.ravel()[0]


def test_brian2_run_args_address_synapses_and_timed_arrays(tmp_path):
    """What the engine relies on: ``device.run(run_args={syn.w: values, timed: values})``
    sets a synaptic variable (in synapse order) and a TimedArray's values, by the names
    ``<synapses>.<variable>`` and ``<timedarray>.values``, without recompiling."""
    from brian2.devices.cpp_standalone.device import CPPStandaloneDevice
    from brian2.devices.device import reset_device, set_device

    device = CPPStandaloneDevice()
    set_device(device, build_on_run=False)
    try:
        drive = brian2.TimedArray(np.zeros(5), dt=brian2.defaultclock.dt, name="drive")
        src = brian2.NeuronGroup(2, "x = drive(t) : 1", name="src")
        dst = brian2.NeuronGroup(3, "y : 1", name="dst")
        syn = brian2.Synapses(src, dst, "w : 1\ny_post = w * x_pre : 1 (summed)", name="syn")
        syn.connect()
        mon = brian2.StateMonitor(dst, "y", record=True, name="mon")
        net = brian2.Network(src, dst, syn, mon)
        net.run(5 * brian2.defaultclock.dt)
        device.build(directory=str(tmp_path), compile=True, run=False, with_output=False)
    finally:
        reset_device()
    w = np.arange(6.0) + 1  # synapse k = i * 3 + j
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    device.run(run_args={syn.w: w, drive: values}, with_output=False)
    np.testing.assert_array_equal(syn.i[:], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(syn.j[:], [0, 1, 2, 0, 1, 2])
    # (3, 5): the monitor (start of the step) sees the sum of the step before,
    # y_j(t_k) = (w_0j + w_1j) * drive(t_{k-1})
    y = np.asarray(mon.y)
    np.testing.assert_allclose(y, np.outer(w[:3] + w[3:], np.r_[0.0, values[:-1]]))
