"""Trials-to-threshold of every rule (with and without decorrelation) on the pattern task.

Runs each shipped pattern protocol (N = 50, 500 ms, frozen random input, Adam 3e-3) and
prints, per rule, the training trials after which the noise-free evaluation loss first
falls to 30%, 10% and 5% of its initial value (resolution: eval_every), the final
relative loss, and the ms per trial. Also the BPTT reference on the same trials.

Usage: python benchmarks/rule_table.py [--trials 200] [--eval-every 5] [--seed 1]
Writes benchmarks/results/rule_table.md. Run it on a quiet machine (2 cores).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from bioperturb.compare import reference_dataset
from bioperturb.config import load_protocol
from bioperturb.metrics import trials_to_threshold
from bioperturb.training import Trainer

HERE = Path(__file__).resolve().parent
PROTOCOLS = [
    "pattern_anp_rate",  # TD-ANP (N = 100, 1 s: shrunk below to the common size)
    "pattern_danp_rate",
    "pattern_anp_trace_rate",
    "pattern_anp_reinforce_rate",
    "pattern_np_rate",
    "pattern_wp_rate",
    "pattern_online_anp_rate",
    "pattern_online_anp_trial_rate",
]
FRACTIONS = (0.3, 0.1, 0.05)


def row(label: str, ds) -> str:
    ev = ds["eval_loss"]
    cells = []
    for frac in FRACTIONS:
        t = float(trials_to_threshold(ev, frac, dim="eval_trial"))
        cells.append("—" if not np.isfinite(t) else f"{t:.0f}")
    rel = float(ev[-1] / ev[0])
    ms = 1e3 * float(ds["wall_time"].median())
    return f"| {label} | " + " | ".join(cells) + f" | {rel:.3f} | {ms:.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    common = {
        "seed": args.seed,
        "model.n_hidden": 50,
        "task.duration": "500 ms",
        "task.input": "random",
        "task.n_inputs": 5,
        "training.n_trials": args.trials,
        "training.eval_every": args.eval_every,
        "training.optimizer": "adam",
        "training.lr": 3e-3,
        "output.figures": False,
        "output.progress": False,
        "output.alignment": False,
    }
    load = os.getloadavg()[0]
    lines = [
        "| rule (protocol) | to 30% | to 10% | to 5% | final / initial | ms / trial |",
        "|---|---|---|---|---|---|",
    ]
    bptt_done = False
    for name in PROTOCOLS:
        path = HERE.parent / "protocols" / f"{name}.toml"
        if not path.exists():
            continue
        protocol = load_protocol(path, common)
        trainer = Trainer(protocol)
        ds = trainer.run(progress=False)
        rule = protocol.rule_name
        extra = " + decorrelation" if protocol.model.decorrelate else ""
        lines.append(row(f"{rule}{extra} ({name})", ds))
        print(lines[-1], flush=True)
        if not bptt_done:
            lines.append(row("BPTT reference (same trials, Adam 3e-3)", reference_dataset(trainer)))
            print(lines[-1], flush=True)
            bptt_done = True
    header = (
        f"# Trials to threshold per rule\n\nPattern task, N = 50, 500 ms trials, frozen random "
        f"input, Adam lr 3e-3, seed {args.seed}, {args.trials} trials, evaluation every "
        f"{args.eval_every} trials (the resolution of the counts). Load average at start "
        f"{load:.2f} on {os.cpu_count()} cores.\n"
    )
    text = "\n".join([header, *lines, ""])
    print(text)
    (HERE / "results" / "rule_table.md").write_text(text)


if __name__ == "__main__":
    main()
