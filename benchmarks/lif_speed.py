"""Throughput and firing of the twin LIF network: TD-ANP vs forward-only, per network size.

Prints, measured in one run on this machine, for the pattern task with 100 frozen 10 Hz
Poisson inputs and 1 s trials (dt = 1 ms, Brian2 runtime):
  * ms per training trial and trials/s of TD-ANP (clean + noisy twin, event-driven
    currents, per-synapse eligibility, trial-end Adam step) and of the forward-only
    control (rule "none": one network, no twin);
  * their ratio;
  * the mean firing rate and the fraction of silent neurons at the first evaluation.

Usage: python benchmarks/lif_speed.py [--sizes 100 200 400] [--trials 11]
Writes benchmarks/results/lif_speed.md. Do not run it while other CPU-heavy jobs run.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import numpy as np

from bioperturb.config import protocol_from_mapping
from bioperturb.training import Trainer


def protocol(n_hidden: int, rule: str, n_trials: int, codegen: str):
    return protocol_from_mapping(
        {
            "name": f"bench_lif_{rule}_{n_hidden}",
            "seed": 0,
            "model": {"preset": "lif_rnn", "n_hidden": n_hidden},
            "task": {
                "name": "pattern",
                "duration": "1 s",
                "input": "poisson",
                "n_inputs": 100,
                "input_rate": "10 Hz",
            },
            "rule": {"name": rule},
            "training": {
                "n_trials": n_trials,
                "eval_every": n_trials,
                "optimizer": "adam",
                "lr": 1e-3,
            },
            "engine": {"codegen": codegen},
            "output": {"figures": False, "progress": False},
        }
    )


def measure(n_hidden: int, rule: str, n_trials: int, codegen: str) -> tuple[float, float, float]:
    """(median ms per training trial, mean rate in Hz, silent fraction) at the first eval."""
    ds = Trainer(protocol(n_hidden, rule, n_trials, codegen)).run(progress=False)
    wall = ds["wall_time"].values[1:]  # the first trial may include code loading
    rate = ds["rate"].isel(eval_trial=0)
    return 1e3 * float(np.median(wall)), float(rate.mean()), float((rate == 0).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 400])
    parser.add_argument("--trials", type=int, default=11)
    parser.add_argument("--codegen", default="cython", choices=("cython", "numpy"))
    args = parser.parse_args()
    load = os.getloadavg()[0]
    lines = [
        "| N | TD-ANP ms/trial | TD-ANP trials/s | forward-only ms/trial | TD-ANP / forward "
        "| mean rate Hz | silent fraction |",
        "|" + "---|" * 7,
    ]
    for n in args.sizes:
        anp, rate, silent = measure(n, "td_anp", args.trials, args.codegen)
        fwd, _, _ = measure(n, "none", args.trials, args.codegen)
        lines.append(
            f"| {n} | {anp:.1f} | {1e3 / anp:.2f} | {fwd:.1f} | {anp / fwd:.2f} | {rate:.1f} "
            f"| {silent:.2f} |"
        )
        print(lines[-1], flush=True)
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, Brian2 runtime ({args.codegen}), LIF preset, "
        f"1 s trials at dt = 1 ms, 100 Poisson inputs at 10 Hz, median of {args.trials - 1} "
        f"trials; load average at start {load:.2f}"
    )
    text = "\n".join(["# LIF trial throughput", "", machine, "", *lines, ""])
    print(text)
    (Path(__file__).parent / "results" / "lif_speed.md").write_text(text)


if __name__ == "__main__":
    main()
