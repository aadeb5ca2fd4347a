"""Sample efficiency and time to solution: rule vs BPTT from the same start.

Trains a protocol's rule in Brian2 and the BPTT reference (JAX) from the same initial
weights on the same trials (`bioperturb compare`), then prints the trials each needs to
bring the noise-free evaluation loss to 30%, 10% and 5% of its initial value, and the
ratio rule/BPTT — the headline number of the project — and, at 5%, the training
wall-clock time to get there (`bioperturb.metrics.time_to_threshold`), split into the
trial ratio and the per-trial cost ratio (time ratio = trial ratio x cost ratio, where
the cost is the mean wall time of the trials before the threshold).

The rule's wall time per trial is its share of whole engine blocks (on the standalone
engine: process start, run arguments, the evaluation trials of the block and I/O
included; the first block's compilation is not, it happens before training); BPTT's is
its optax step alone (forward, backward, update; JAX's compilation done beforehand,
its evaluations not counted). The rule pays for its evaluations and BPTT does not, so
the comparison, if anything, favours BPTT.

Usage: python benchmarks/sample_efficiency.py PROTOCOL.toml [--set key=value ...]
       [--bptt-lr 3e-3] [--out DIR] [--results FILE]
Appends a row to benchmarks/results/sample_efficiency.md (or FILE).
"""

from __future__ import annotations

import argparse
import ast
import os
import tempfile
from pathlib import Path

import numpy as np

from bioperturb.compare import compare_protocol
from bioperturb.config import load_protocol
from bioperturb.metrics import time_to_threshold, trials_to_threshold

FRACTIONS = (0.3, 0.1, 0.05)


def parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if np.isfinite(a) and np.isfinite(b) and b > 0 else float("nan")


def header(fractions: list[float]) -> str:
    """The table's header for these thresholds (the time is to the last one)."""
    to = [f"to {100 * f:g}%" for f in fractions]
    cells = ["protocol", "size", "rule engine", f"{to[0]} (rule / BPTT)", *to[1:]]
    cells += [f"time {to[-1]} s (rule / BPTT)", "time ratio = trial ratio x cost ratio"]
    cells += ["final/initial", "ms per trial", "load"]
    return "| " + " | ".join(cells) + " |\n" + "|---" * len(cells) + "|"


def measured_cells(ds, rule: str, fractions: list[float]) -> list[str]:
    """The table's cells from the rule engine to the ms per trial, from a compare Dataset
    (``method`` = the rule and ``"bptt"``)."""
    methods = {"method": rule}, {"method": "bptt"}
    # "td_anp: brian2-2.10.1-cpp_standalone-...; bptt: jax-..." -> "cpp_standalone"
    engines = dict(part.split(": ", 1) for part in ds.attrs["engines"].split("; "))
    cells = [engines[rule].split("-")[2]]
    for frac in fractions:
        t = trials_to_threshold(ds["eval_loss"], frac, dim="eval_trial")
        tr, tb = (float(t.sel(m)) for m in methods)
        cells.append(f"{tr:.0f} / {tb:.0f} ({_ratio(tr, tb):.1f}x)")
    # time to the last fraction, and its split: trials x mean wall time of those trials
    seconds = time_to_threshold(ds, fractions[-1])
    sr, sb = (float(seconds.sel(m)) for m in methods)
    cells.append(f"{sr:.3g} / {sb:.3g}")
    cost_ratio = _ratio(_ratio(sr, tr), _ratio(sb, tb))
    cells.append(f"{_ratio(sr, sb):.3g} = {_ratio(tr, tb):.3g} x {cost_ratio:.3g}")
    final = ds["eval_loss"].isel(eval_trial=-1) / ds["eval_loss"].isel(eval_trial=0)
    cells.append(" / ".join(f"{float(final.sel(m)):.3g}" for m in methods))
    wall = ds["wall_time"].mean("trial")
    cells.append(" / ".join(f"{1e3 * float(wall.sel(m)):.3g}" for m in methods))
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("protocol")
    parser.add_argument("--set", nargs="*", default=[], help="dotted overrides key=value")
    parser.add_argument("--bptt-lr", type=float)
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--results",
        default=str(Path(__file__).parent / "results" / "sample_efficiency.md"),
        help="markdown file the row is appended to",
    )
    parser.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=list(FRACTIONS),
        help="thresholds as fractions of the initial loss; time is reported at the last",
    )
    args = parser.parse_args(argv)
    overrides = parse_set(args.set)
    overrides.setdefault("output.figures", False)
    protocol = load_protocol(args.protocol, overrides)
    out = Path(args.out or tempfile.mkdtemp(prefix="bioperturb_bench_"))
    load = os.getloadavg()[0]
    ds, path = compare_protocol(protocol, out_dir=out, progress=False, bptt_lr=args.bptt_lr)
    cells = measured_cells(ds, protocol.rule_name, args.fractions)
    row = (
        f"| {protocol.name} {' '.join(args.set)} | N={protocol.model.n_hidden} | "
        + " | ".join(cells)
        + f" | {load:.1f} |"
    )
    results = Path(args.results)
    table = header(args.fractions)
    if not results.exists():
        results.write_text(
            "# Sample efficiency: trials to a fraction of the initial evaluation loss\n\n"
            "Trials are counted at evaluation points (every `eval_every` trials).\n"
        )
    headers = [x for x in results.read_text().splitlines() if x.startswith("| protocol |")]
    with results.open("a") as fh:
        if not headers or headers[-1] != table.splitlines()[0]:
            fh.write(f"\n{table}\n")  # a new table where the columns differ
        fh.write(row + "\n")
    print(table)
    print(row)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
