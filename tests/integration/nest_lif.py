"""NEST's ``iaf_psc_exp`` driven like bioperturb's LIF network, run in its own process.

NEST installs its own signal handling and global kernel state; a spawned process keeps
both away from the pytest worker (whose other tests send themselves signals).

Mapping (bioperturb's potentials are in threshold units, rest 0; NEST's in mV):
E_L = 0, V_th = v_th, V_reset = v_reset, τ_m, τ_syn_ex = τ_syn_in = τ_s, t_ref as they are;
C_m = τ_m (pF per ms), so that C_m dV/dt = −C_m/τ_m V + I reads τ_m dv/dt = −v + h + b with
I_syn = h and I_e = b in pA, and a synaptic weight w (the jump of h) is w pA.

Timing: bioperturb's input spike in step k jumps h in that step and acts on v from step
k + 1; NEST's smallest delay is one step, so NEST runs one extra, silent first step (the
bias I_e is switched on after it) and gets the spike at time (k + 1)·dt with delay dt. Then
NEST's V_m recorded at (k + 1)·dt is bioperturb's v at the start of step k, and a spike of
bioperturb's step k carries NEST's stamp (k + 2)·dt (NEST stamps a spike at the end of its
step; bioperturb at the start).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def simulate(model: dict[str, float], w_in: np.ndarray, s_in: np.ndarray) -> dict[str, Any]:
    """V_m (steps, neurons) and spikes [(bioperturb step, neuron)] of NEST's network."""
    import nest

    nest.verbosity = nest.VerbosityLevel.ERROR
    nest.ResetKernel()
    ms = 1e3
    dt = model["dt"] * ms
    nest.resolution = dt
    n, n_in = w_in.shape
    steps = s_in.shape[0]
    neurons = nest.Create(
        "iaf_psc_exp",
        n,
        params={
            "E_L": 0.0,
            "V_m": 0.0,
            "V_th": model["v_th"],
            "V_reset": model["v_reset"],
            "C_m": model["tau_m"] * ms,
            "tau_m": model["tau_m"] * ms,
            "tau_syn_ex": model["tau_syn"] * ms,
            "tau_syn_in": model["tau_syn"] * ms,
            "t_ref": model["t_ref"] * ms,
            "I_e": 0.0,
        },
    )
    generators = nest.Create("spike_generator", n_in)
    for k in range(n_in):
        generators[k].spike_times = list((np.nonzero(s_in[:, k])[0] + 1) * dt)
    nest.Connect(generators, neurons, "all_to_all", {"weight": w_in, "delay": dt})
    meter = nest.Create("multimeter", params={"record_from": ["V_m"], "interval": dt})
    nest.Connect(meter, neurons)
    recorder = nest.Create("spike_recorder")
    nest.Connect(neurons, recorder)
    nest.Simulate(dt)  # the silent first step
    neurons.I_e = model["bias"]
    nest.Simulate(steps * dt)
    ev = meter.events
    order = np.lexsort((ev["senders"], ev["times"]))
    v = np.asarray(ev["V_m"])[order].reshape(-1, n)[:steps]
    sp = recorder.events
    spikes = sorted(
        (int(round(t / dt)) - 2, int(s) - 1)
        for t, s in zip(sp["times"], sp["senders"], strict=True)
    )
    return {"v": v, "spikes": spikes}


def run(model: dict[str, float], w_in: np.ndarray, s_in: np.ndarray) -> dict[str, Any]:
    """:func:`simulate` in a spawned process."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(simulate, model, w_in, s_in).result()
