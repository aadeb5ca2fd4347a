"""bioperturb's LIF network against NEST 3.10 on one thread: forward and e-prop training.

Measured in one run on this machine, per network size N, for 1 s trials (dt = 1 ms) driven
by 100 frozen 10 Hz Poisson inputs (the pattern task's), with the same initial weights:

* forward: bioperturb's LIF network with ``integration = "exact"`` and no plasticity (rule
  ``none``; ``--engine standalone``, the default: the compiled program, its first build
  not counted, or ``runtime``: Brian2 runtime, cython) against NEST's ``iaf_psc_exp`` with
  the same weights (the two produce the same spikes without recurrence:
  tests/integration/test_nest.py);
* e-prop: bioperturb's ``eprop`` rule (random feedback, trial-end Adam step) against NEST's
  ``eprop_iaf_bsshslm_2020`` + ``eprop_readout_bsshslm_2020`` + ``eprop_synapse_bsshslm_2020``
  (update interval = one trial, gradient descent). The two e-prop networks are not the same
  dynamics (NEST: delta synapses, here with weights w·τ_s/τ_m, the same charge as our
  exponential current's jump w; reset by subtraction; a leaky readout neuron; see
  docs/rules/eprop.md), so the mean firing rates are printed beside the times.

Each figure is the median wall time per trial over ``--trials`` trials after one warm-up
trial (bioperturb: the run's per-trial wall times without the first; NEST: one Simulate()
per trial). Prints a Markdown table with the ratios bioperturb / NEST and writes it to
benchmarks/results/nest_speed.md. Needs the ``nest`` extra. Do not run it while other
CPU-heavy jobs run; state the machine's load with any figure quoted.

Usage: python benchmarks/nest_speed.py [--sizes 100 400] [--trials 10] [--quick]
       [--engine standalone|runtime]   (--quick: runtime, numpy: nothing to compile)
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MS = 1e3


def protocol(n_hidden: int, rule: str, n_trials: int, quick: bool, engine: str):
    from bioperturb.config import protocol_from_mapping

    return protocol_from_mapping(
        {
            "name": f"nest_speed_{rule}_{n_hidden}",
            "seed": 0,
            "model": {"preset": "lif_rnn", "n_hidden": n_hidden, "integration": "exact"},
            "task": {
                "name": "pattern",
                "duration": "100 ms" if quick else "1 s",
                "input": "poisson",
                "n_inputs": 100,
                "input_rate": "10 Hz",
            },
            "rule": {"name": rule},
            "training": {"n_trials": n_trials, "eval_every": n_trials, "optimizer": "adam"},
            "engine": {"name": engine, "codegen": "numpy" if quick else "cython"},
            "output": {"figures": False, "progress": False, "alignment": False},
        }
    )


def bioperturb_trial(n_hidden: int, rule: str, n_trials: int, quick: bool, engine: str) -> dict:
    """Median ms per training trial, mean rate (Hz), and what NEST needs to run the same."""
    from bioperturb.reference.lif import LIFDynamics
    from bioperturb.training import Trainer

    trainer = Trainer(protocol(n_hidden, rule, n_trials + 1, quick, engine))
    ds = trainer.run(progress=False)
    m = trainer.protocol.model
    return {
        "ms": MS * float(np.median(ds["wall_time"].values[1:])),
        "rate": float(ds["rate"].isel(eval_trial=0).mean()),
        "model": {k: getattr(m, k) for k in ("dt", "tau_m", "tau_syn", "t_ref", "v_th", "bias")},
        "weights": trainer.weights0,
        "s_in": LIFDynamics.from_model(m).input_spikes(trainer.train_trials.inputs[:1])[0],
        "target": trainer.train_trials.targets[0, :, 0],
    }


def nest_trial(kind: str, spec: dict, n_trials: int) -> dict:
    """Median ms per trial of NEST on one thread (``kind``: "forward" or "eprop")."""
    import nest

    nest.verbosity = nest.VerbosityLevel.ERROR
    nest.ResetKernel()
    m, w, s_in = spec["model"], spec["weights"], spec["s_in"]
    dt = m["dt"] * MS
    steps = s_in.shape[0]
    trial = steps * dt
    setup = {"resolution": dt, "total_num_virtual_procs": 1}
    if kind == "eprop":
        setup.update(
            eprop_update_interval=trial,
            eprop_learning_window=trial,
            eprop_reset_neurons_on_update=True,
        )
    nest.set(**setup)
    neuron = {
        "E_L": 0.0,
        "V_m": 0.0,
        "V_th": m["v_th"],
        "C_m": m["tau_m"] * MS,
        "tau_m": m["tau_m"] * MS,
        "t_ref": m["t_ref"] * MS,
        "I_e": m["bias"],
    }
    n_in = w["W_in"].shape[1]
    n_trials_all = n_trials + 1  # one warm-up
    starts = np.arange(n_trials_all) * trial
    generators = nest.Create("spike_generator", n_in)
    for k in range(n_in):
        times = (np.nonzero(s_in[:, k])[0] + 1) * dt
        generators[k].spike_times = list(np.sort(np.concatenate([times + s for s in starts])))
    if kind == "forward":
        neuron.update(V_reset=0.0, tau_syn_ex=m["tau_syn"] * MS, tau_syn_in=m["tau_syn"] * MS)
        rec = nest.Create("iaf_psc_exp", w["W_rec"].shape[0], params=neuron)
        nest.Connect(generators, rec, "all_to_all", {"weight": w["W_in"], "delay": dt})
        nest.Connect(rec, rec, "all_to_all", {"weight": w["W_rec"], "delay": dt})
    else:
        # plastic synapses need neurons as senders: parrots relay the generators
        parrots = nest.Create("parrot_neuron", n_in)
        nest.Connect(generators, parrots, "one_to_one", {"delay": dt})
        rec = nest.Create("eprop_iaf_bsshslm_2020", w["W_rec"].shape[0], params=neuron)
        out = nest.Create("eprop_readout_bsshslm_2020", w["W_out"].shape[0], {"tau_m": 10.0})
        target = nest.Create("step_rate_generator", w["W_out"].shape[0])
        times = np.arange(steps * n_trials_all) * dt + dt
        target.set(amplitude_times=times, amplitude_values=np.tile(spec["target"], n_trials_all))
        nest.SetDefaults(
            "eprop_synapse_bsshslm_2020",
            {"optimizer": {"type": "gradient_descent", "eta": 1e-4, "batch_size": 1}},
        )
        syn = {"synapse_model": "eprop_synapse_bsshslm_2020", "delay": dt, "tau_m_readout": 10.0}
        # NEST's e-prop neurons take delta currents: a jump of w in our exponential current
        # moves the membrane by w τ_s/τ_m in all, so that is the delta weight of equal charge
        charge = m["tau_syn"] / m["tau_m"]
        nest.Connect(parrots, rec, "all_to_all", {**syn, "weight": w["W_in"] * charge})
        nest.Connect(rec, rec, "all_to_all", {**syn, "weight": w["W_rec"] * charge})
        nest.Connect(rec, out, "all_to_all", {**syn, "weight": w["W_out"]})
        feedback = {"synapse_model": "eprop_learning_signal_connection_bsshslm_2020"}
        nest.Connect(out, rec, "all_to_all", {**feedback, "delay": dt, "weight": w["W_out"].T})
        nest.Connect(
            target,
            out,
            "one_to_one",
            {"synapse_model": "rate_connection_delayed", "delay": dt, "receptor_type": 2},
        )
    recorder = nest.Create("spike_recorder")
    nest.Connect(rec, recorder)
    walls = []
    for _ in range(n_trials_all):
        tic = time.perf_counter()
        nest.Simulate(trial)
        walls.append(time.perf_counter() - tic)
    n_spikes = len(recorder.events["times"])
    rate = n_spikes / (len(rec) * n_trials_all * trial / MS)
    return {"ms": MS * float(np.median(walls[1:])), "rate": rate}


def in_process(fn, *args):
    """``fn(*args)`` in a fresh spawned process (NEST's kernel and signal handling stay there)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[100, 400])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke version (CI)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--engine", default="standalone", choices=("standalone", "runtime"))
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.trials, args.engine = [20], 2, "runtime"
    rows = []
    for n in args.sizes:
        for kind, rule in (("forward", "none"), ("eprop", "eprop")):
            ours = in_process(bioperturb_trial, n, rule, args.trials, args.quick, args.engine)
            theirs = in_process(nest_trial, kind, ours, args.trials)
            rows.append(
                f"| {n} | {kind} | {ours['ms']:.1f} | {theirs['ms']:.1f} | "
                f"{ours['ms'] / theirs['ms']:.2f} | {ours['rate']:.1f} | {theirs['rate']:.1f} |"
            )
            print(rows[-1], flush=True)
    load = os.getloadavg()[0]
    text = "\n".join(
        [
            "## bioperturb vs NEST 3.10, one thread, 1 s LIF trials",
            "",
            f"`python benchmarks/nest_speed.py --sizes {' '.join(map(str, args.sizes))} "
            f"--trials {args.trials} --engine {args.engine}{' --quick' if args.quick else ''}`; "
            f"bioperturb on the {args.engine} engine; median ms per trial after one warm-up; "
            f"load average at the end {load:.2f} on {os.cpu_count()} cores.",
            "",
            "| N | what | bioperturb ms/trial | NEST ms/trial | ratio | bioperturb Hz | NEST Hz |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "nest_speed.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
