"""Throughput of one training trial: TD-ANP vs forward-only, Brian2 runtime vs the JAX twin.

Prints, measured in one run on this machine:
  * ms per training trial and trials/s of TD-ANP (clean + noisy twin, per-synapse
    accumulation, trial-end Adam step) and of the forward-only control (rule "none");
  * their ratio (the cost of learning beyond simulation);
  * the JAX float64 reference: forward and BPTT step of the same network and trial.

Usage: python benchmarks/trial_speed.py [--sizes 100 400] [--trials 10] [--codegen cython]
Writes benchmarks/results/trial_speed.md. Do not run it while other CPU-heavy jobs run:
the machine has 2 cores, and a second job distorts timings by up to 10x.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from bioperturb.config import protocol_from_mapping
from bioperturb.training import Trainer


def protocol(n_hidden: int, rule: str, n_trials: int, codegen: str):
    return protocol_from_mapping(
        {
            "name": f"bench_{rule}_{n_hidden}",
            "seed": 0,
            "model": {"preset": "rate_rnn", "n_hidden": n_hidden, "dt": "1 ms", "tau": "10 ms"},
            "task": {"name": "pattern", "duration": "1 s", "input": "random", "n_inputs": 5},
            "rule": {"name": rule},
            "training": {
                "n_trials": n_trials,
                "eval_every": n_trials,
                "optimizer": "adam",
                "lr": 1e-4,
                "codegen": codegen,
            },
            "output": {"figures": False, "progress": False, "alignment": False},
        }
    )


def brian_ms_per_trial(n_hidden: int, rule: str, n_trials: int, codegen: str) -> float:
    ds = Trainer(protocol(n_hidden, rule, n_trials, codegen)).run(progress=False)
    wall = ds["wall_time"].values[1:]  # the first trial may include code loading
    return 1e3 * float(np.median(wall))


def jax_ms(n_hidden: int, repeats: int) -> tuple[float, float]:
    from bioperturb.reference import BPTTTrainer, forward

    trainer = Trainer(protocol(n_hidden, "none", 1, "numpy"))
    tt, m = trainer.train_trials, trainer.protocol.model
    kw = dict(dt=m.dt, tau=m.tau)
    forward(trainer.weights0, tt.inputs[:1], **kw)  # compile
    tic = time.perf_counter()
    for _ in range(repeats):
        forward(trainer.weights0, tt.inputs[:1], **kw)
    fwd = (time.perf_counter() - tic) / repeats
    bptt = BPTTTrainer(trainer.weights0, optimizer="adam", lr=1e-4, **kw)
    bptt.step(tt.inputs[0], tt.targets[0], tt.mask[0])  # compile
    tic = time.perf_counter()
    for _ in range(repeats):
        bptt.step(tt.inputs[0], tt.targets[0], tt.mask[0])
    step = (time.perf_counter() - tic) / repeats
    return 1e3 * fwd, 1e3 * step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--codegen", default="cython", choices=("cython", "numpy"))
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows = []
    for n in args.sizes:
        anp = brian_ms_per_trial(n, "td_anp", args.trials, args.codegen)
        fwd = brian_ms_per_trial(n, "none", args.trials, args.codegen)
        jf, jb = jax_ms(n, 20)
        rows.append((n, anp, 1e3 / anp, fwd, anp / fwd, jf, jb, anp / jb))
    header = (
        "| N | TD-ANP ms/trial | TD-ANP trials/s | forward-only ms/trial | TD-ANP / forward "
        "| JAX forward ms | JAX BPTT step ms | TD-ANP / BPTT step |"
    )
    lines = [header, "|" + "---|" * 8]
    for n, anp, tps, fwd, ratio, jf, jb, rj in rows:
        lines.append(
            f"| {n} | {anp:.1f} | {tps:.2f} | {fwd:.1f} | {ratio:.2f} | {jf:.2f} | {jb:.2f} "
            f"| {rj:.1f} |"
        )
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, Brian2 runtime ({args.codegen}), "
        f"1 s trials at dt = 1 ms, median of {args.trials - 1} trials; "
        f"load average at start {load:.2f}"
    )
    text = "\n".join(["# Trial throughput", "", machine, "", *lines, ""])
    print(text)
    out = Path(__file__).parent / "results" / "trial_speed.md"
    out.write_text(text)


if __name__ == "__main__":
    main()
