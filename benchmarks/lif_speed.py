"""Throughput and firing of the twin LIF network: TD-ANP vs forward-only, per network size.

Prints, measured in one run on this machine, for the pattern task with 100 frozen 10 Hz
Poisson inputs and 1 s trials (dt = 1 ms), on each engine asked for (Brian2's runtime
engine with cython, the compiled standalone program: per-trial share of whole blocks,
process start and I/O included; its first build is not counted):
  * ms per training trial and trials/s of TD-ANP (clean + noisy twin, event-driven
    currents, per-synapse eligibility, trial-end Adam step) and of the forward-only
    control (rule "none": one network, no twin), and of TD-ANP training only W_out (the
    twin and the rule's per-neuron work without the W_rec/W_in accumulation: the
    difference to full TD-ANP is what the accumulation costs);
  * their ratio, and each engine's TD-ANP time over the runtime engine's;
  * the mean firing rate and the fraction of silent neurons at the first evaluation.

Usage: python benchmarks/lif_speed.py [--sizes 100 400 1000] [--trials 11]
       [--engines runtime standalone]
Writes benchmarks/results/lif_speed.md. Do not run it while other CPU-heavy jobs run.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import brian2
import numpy as np

from bioperturb.config import protocol_from_mapping
from bioperturb.resources import synapse_state_bytes
from bioperturb.training import Trainer

#: what each column trains: rule name, or (name, plastic matrices)
RULES = {"td_anp": "td_anp", "none": "none", "readout": ("td_anp", ["W_out"])}


def protocol(
    n_hidden: int, rule: str, n_trials: int, engine: str, codegen: str, p_connect: float = 1.0
):
    name, train = RULES[rule] if isinstance(RULES[rule], tuple) else (RULES[rule], None)
    return protocol_from_mapping(
        {
            "name": f"bench_lif_{rule}_{n_hidden}",
            "seed": 0,
            "model": {
                "preset": "lif_rnn",
                "n_hidden": n_hidden,
                **({"p_connect": p_connect} if p_connect < 1 else {}),
            },
            "task": {
                "name": "pattern",
                "duration": "1 s",
                "input": "poisson",
                "n_inputs": 100,
                "input_rate": "10 Hz",
            },
            "rule": {"name": name, **({"train": train} if train else {})},
            "training": {
                "n_trials": n_trials,
                "eval_every": n_trials,
                "optimizer": "adam",
                "lr": 1e-3,
            },
            "engine": {"name": engine, "codegen": codegen},
            "output": {"figures": False, "progress": False},
        }
    )


def measure(
    n_hidden: int, rule: str, args: argparse.Namespace, engine: str
) -> tuple[float, float, float, float]:
    """(median ms per training trial, mean rate in Hz, silent fraction at the first eval,
    MB of W_rec's per-synapse state)."""
    p = protocol(n_hidden, rule, args.trials, engine, args.codegen, args.p_connect)
    trainer = Trainer(p)  # builds first
    ds = trainer.run(progress=False)
    wall = ds["wall_time"].values[1:]  # the first trial may include code loading
    rate = ds["rate"].isel(eval_trial=0)
    if engine == "standalone":
        meta = trainer.engine.kernel.meta
        rec = meta["synapses"][meta["matrices"]["W_rec"]]
        state = rec["bytes_per_synapse"] * (rec["slots"] or rec["n_pre"] * rec["n_post"])
    else:
        syn = trainer.network.synapses["W_rec"]
        state = synapse_state_bytes(syn) * len(syn)
    ms = 1e3 * float(np.median(wall))
    return ms, float(rate.mean()), float((rate == 0).mean()), state / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1000])
    parser.add_argument("--trials", type=int, default=11)
    parser.add_argument("--codegen", default="cython", choices=("cython", "numpy"))
    parser.add_argument(
        "--engines", nargs="+", default=["runtime", "standalone"], choices=("runtime", "standalone")
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--p-connect", type=float, default=1.0, help="W_rec's connectivity")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    lines = [
        "| N | engine | TD-ANP ms/trial | TD-ANP trials/s | forward-only ms/trial "
        "| TD-ANP / forward | TD-ANP W_out only ms/trial | TD-ANP runtime / this engine "
        "| mean rate Hz | silent fraction | W_rec state MB (TD-ANP) |",
        "|" + "---|" * 11,
    ]
    for n in args.sizes:
        base = None
        for engine in args.engines:
            anp, rate, silent, state = measure(n, "td_anp", args, engine)
            fwd = measure(n, "none", args, engine)[0]
            out = measure(n, "readout", args, engine)[0]
            base = anp if engine == "runtime" else base
            speedup = f"{base / anp:.1f}" if base is not None else "—"
            lines.append(
                f"| {n} | {engine} | {anp:.1f} | {1e3 / anp:.2f} | {fwd:.1f} | {anp / fwd:.2f} "
                f"| {out:.1f} | {speedup} | {rate:.1f} | {silent:.2f} | {state:.0f} |"
            )
            print(lines[-1], flush=True)
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, Brian2 {brian2.__version__} (runtime: "
        f"{args.codegen}; standalone: one thread, W_rec and W_in updates fused), LIF "
        f"preset, 1 s trials at dt = 1 ms, 100 Poisson inputs at 10 Hz, Adam, median of "
        f"{args.trials - 1} trials (the first skipped); W_rec connection probability "
        f"{args.p_connect:g}; load average at start {load:.2f}"
    )
    text = "\n".join(["# LIF trial throughput", "", machine, "", *lines, ""])
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lif_speed.md").write_text(text)


if __name__ == "__main__":
    main()
