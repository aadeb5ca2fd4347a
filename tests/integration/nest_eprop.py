r"""A tiny NEST 3.10 e-prop network (``eprop_iaf_bsshslm_2020`` hidden neurons,
``eprop_readout_bsshslm_2020`` readouts, ``eprop_synapse_bsshslm_2020`` with plain
gradient descent) run for a few update intervals in its own process; returns the weight
changes per matrix. Its numpy twin is :func:`tests.integration.eprop_reference.eprop_nest_numpy`.

Network: spike generators → parrot neurons (static, one step) → hidden (e-prop synapses,
W_in) ↔ hidden (W_rec, autapses allowed) → readouts (W_out); readouts → hidden through
``eprop_learning_signal_connection_bsshslm_2020`` (weights B, fixed); a
``step_rate_generator`` per readout gives its target (``rate_connection_delayed``,
receptor 2). Every delay is one step dt (NEST's e-prop synapses require it).

Timing (NEST steps t, each update interval I steps, the kernel's ``eprop_*`` settings):
the hidden neurons' interval n is t ∈ [2 + nI, 2 + (n+1)I) (their ``get_shift`` = 2: the
generator offset and the input delay), the readouts' [3 + nI, 3 + (n+1)I) (one more: the
hidden → readout delay). Step j of an interval ("local step") is the same step j of the
reference's frame for both: a hidden spike of local step j reaches the readout in its local
step j. An input spike ``s_in[n, k]`` (it acts on v from the reference's step k + 1) is a
generator spike at (2 + nI + k)·dt: the parrot repeats it one step later and the hidden
neuron receives it at local step k + 1 (s_in[n, T − 1] would arrive at local step 0 of the
next interval, where NEST's e-prop synapse drops every spike to a recurrent neuron:
bioperturb's trial ends there too). The target value ``targets[n, j]`` is the generator's
amplitude from (4 + nI + j)·dt on: the readout sees it in its step 4 + nI + j and compares
it there with its previous membrane value, of local step j (its error history is kept
one step back).

A synapse applies the update of an interval at its first presynaptic spike after that
interval ends, so a last spike generator, two steps into interval N after the N learning
intervals, kicks every parrot and hidden neuron (static synapses, weight 1000) into a spike:
every synapse then holds the weights after all N updates.

Units: potentials in mV with E_L = 0 (v_th in the same numbers), C_m = τ_m so that the
bias I_e (pA) is the b of v ← P v + (1 − P) b; the surrogate's height and width are NEST's
(bioperturb's triangle: height γ/v_th, width v_th).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def simulate(
    params: dict[str, Any],
    weights: dict[str, np.ndarray],
    B: np.ndarray,
    s_in: np.ndarray,
    targets: np.ndarray,
) -> dict[str, Any]:
    """Weights before/after and spikes of NEST's network over ``len(s_in)`` intervals.

    ``s_in`` (intervals, T, n_in) of 0/1, ``targets`` (intervals, T, n_out); ``weights``
    W_in (n, n_in), W_rec (n, n), W_out (n_out, n); ``B`` (n, n_out).
    """
    import nest

    nest.verbosity = nest.VerbosityLevel.ERROR
    nest.ResetKernel()
    dt = params["dt"]
    n_int, T, n_in = s_in.shape
    n = weights["W_rec"].shape[0]
    n_out = weights["W_out"].shape[0]
    nest.set(
        resolution=dt,
        total_num_virtual_procs=1,
        eprop_update_interval=T * dt,
        eprop_learning_window=params["learning_window"] * dt,
        eprop_reset_neurons_on_update=True,
        print_time=False,
    )
    regular = params.get("regular_spike_arrival", True)
    hidden = nest.Create(
        "eprop_iaf_bsshslm_2020",
        n,
        params={
            "C_m": params["tau_m"],
            "E_L": 0.0,
            "V_m": 0.0,
            "V_th": params["v_th"],
            "tau_m": params["tau_m"],
            "t_ref": params["t_ref"],
            "I_e": params["bias"],
            "c_reg": params["c_reg"],
            "f_target": params["f_target"],
            "regular_spike_arrival": regular,
            "surrogate_gradient_function": "piecewise_linear",
            "surrogate_gradient_height": params["height"],
            "surrogate_gradient_width": params["width"],
        },
    )
    readout = nest.Create(
        "eprop_readout_bsshslm_2020",
        n_out,
        params={
            "C_m": params["tau_out"],
            "E_L": 0.0,
            "V_m": 0.0,
            "I_e": 0.0,
            "tau_m": params["tau_out"],
            "loss": "mean_squared_error",
            "regular_spike_arrival": params.get("regular_spike_arrival_out", regular),
        },
    )
    generators = nest.Create("spike_generator", n_in)
    parrots = nest.Create("parrot_neuron", n_in)
    for k in range(n_in):
        steps = [2 + i * T + j for i in range(n_int) for j in np.nonzero(s_in[i, :, k])[0]]
        generators[k].spike_times = [float(s) * dt for s in steps]
    target_gen = nest.Create("step_rate_generator", n_out)
    times = [(4 + i * T + j) * dt for i in range(n_int) for j in range(T)]
    for k in range(n_out):
        target_gen[k].set(amplitude_times=times, amplitude_values=list(targets[:, :, k].ravel()))

    nest.SetDefaults(
        "eprop_synapse_bsshslm_2020",
        {
            "optimizer": {
                "type": "gradient_descent",
                "batch_size": 1,
                "eta": params["eta"],
                "Wmin": params["w_min"],
                "Wmax": params["w_max"],
            },
            "average_gradient": params.get("average_gradient", False),
        },
    )
    eprop = {
        "synapse_model": "eprop_synapse_bsshslm_2020",
        "delay": dt,
        "tau_m_readout": params["tau_m_readout"],
    }
    signal = {"synapse_model": "eprop_learning_signal_connection_bsshslm_2020", "delay": dt}
    all_to_all = {"rule": "all_to_all", "allow_autapses": True}
    static = {"synapse_model": "static_synapse", "delay": dt}
    nest.Connect(generators, parrots, "one_to_one", static)
    nest.Connect(parrots, hidden, all_to_all, {**eprop, "weight": weights["W_in"]})
    nest.Connect(hidden, hidden, all_to_all, {**eprop, "weight": weights["W_rec"]})
    nest.Connect(hidden, readout, all_to_all, {**eprop, "weight": weights["W_out"]})
    nest.Connect(
        readout,
        hidden,
        all_to_all,
        {**signal, "weight": B},
    )
    nest.Connect(
        target_gen,
        readout,
        "one_to_one",
        {"synapse_model": "rate_connection_delayed", "delay": dt, "receptor_type": 2},
    )
    kick = nest.Create("spike_generator", params={"spike_times": [(n_int * T + 3) * dt]})
    nest.Connect(kick, parrots + hidden, "all_to_all", {"weight": 1000.0, "delay": dt})
    recorder = nest.Create("spike_recorder")
    nest.Connect(hidden, recorder)
    meter = nest.Create("multimeter", params={"record_from": ["V_m"], "interval": dt})
    nest.Connect(meter, hidden)

    def matrices() -> dict[str, np.ndarray]:
        out = {}
        for name, pre, post in (
            ("W_in", parrots, hidden),
            ("W_rec", hidden, hidden),
            ("W_out", hidden, readout),
        ):
            c = nest.GetConnections(pre, post).get(["source", "target", "weight"])
            rows = np.asarray(c["target"]) - post[0].global_id
            cols = np.asarray(c["source"]) - pre[0].global_id
            w = np.full((len(post), len(pre)), np.nan)
            w[rows, cols] = c["weight"]
            out[name] = w
        return out

    before = matrices()
    nest.Simulate((n_int * T + 8) * dt)
    after = matrices()
    ev = recorder.events
    # a spike of NEST step t (stamp t + 1) is the hidden neurons' local step t − 2 − nI
    stamps = np.rint(np.asarray(ev["times"]) / dt).astype(int) - 1 - 2
    spikes = sorted(
        (int(s // T), int(s % T), int(u) - hidden[0].global_id)
        for s, u in zip(stamps, ev["senders"], strict=True)
        if s < n_int * T
    )
    # V_m recorded at (t + 1)·dt is the membrane after NEST step t: local step t − 2 − nI
    mv = meter.events
    order = np.lexsort((mv["senders"], mv["times"]))
    v = np.asarray(mv["V_m"])[order].reshape(-1, n)[2 : 2 + n_int * T].reshape(n_int, T, n)
    return {"before": before, "after": after, "spikes": spikes, "v": v}


def run(params, weights, B, s_in, targets) -> dict[str, Any]:
    """:func:`simulate` in a spawned process (NEST's signal handling and kernel state stay
    out of the pytest worker, as in tests/integration/nest_lif.py)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(simulate, params, weights, B, s_in, targets).result()
