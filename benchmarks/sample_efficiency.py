"""Sample efficiency: trials to reach a fraction of the initial loss, rule vs BPTT.

Trains a protocol's rule in Brian2 and the BPTT reference (JAX) from the same initial
weights on the same trials (`bioperturb compare`), then prints the trials each needs to
bring the noise-free evaluation loss to 30%, 10% and 5% of its initial value, and the
ratio rule/BPTT — the headline number of the project.

Usage: python benchmarks/sample_efficiency.py PROTOCOL.toml [--set key=value ...]
       [--bptt-lr 3e-3] [--out DIR]
Appends a row to benchmarks/results/sample_efficiency.md.
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
from bioperturb.metrics import trials_to_threshold

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("protocol")
    parser.add_argument("--set", nargs="*", default=[], help="dotted overrides key=value")
    parser.add_argument("--bptt-lr", type=float)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    overrides = parse_set(args.set)
    overrides.setdefault("output.figures", False)
    protocol = load_protocol(args.protocol, overrides)
    out = Path(args.out or tempfile.mkdtemp(prefix="bioperturb_bench_"))
    load = os.getloadavg()[0]
    ds, path = compare_protocol(protocol, out_dir=out, progress=False, bptt_lr=args.bptt_lr)
    rule = protocol.rule_name
    cells = []
    for frac in FRACTIONS:
        t = trials_to_threshold(ds["eval_loss"], frac, dim="eval_trial")
        tr, tb = float(t.sel({"method": rule})), float(t.sel({"method": "bptt"}))
        ratio = tr / tb if np.isfinite(tr) and np.isfinite(tb) and tb > 0 else float("nan")
        cells.append(f"{tr:.0f} / {tb:.0f} ({ratio:.1f}x)")
    final = ds["eval_loss"].isel(eval_trial=-1) / ds["eval_loss"].isel(eval_trial=0)
    wall = ds["wall_time"].mean("trial")
    row = (
        f"| {protocol.name} {' '.join(args.set)} | N={protocol.model.n_hidden} | "
        + " | ".join(cells)
        + f" | {float(final.sel({'method': rule})):.3f} / "
        f"{float(final.sel({'method': 'bptt'})):.3g}"
        + f" | {1e3 * float(wall.sel({'method': rule})):.0f} / "
        f"{1e3 * float(wall.sel({'method': 'bptt'})):.1f} | {load:.1f} |"
    )
    header = (
        "| protocol | size | to 30% (rule / BPTT) | to 10% | to 5% | final/initial "
        "| ms per trial | load |\n|---|---|---|---|---|---|---|---|"
    )
    results = Path(__file__).parent / "results" / "sample_efficiency.md"
    if not results.exists():
        results.write_text(
            "# Sample efficiency: trials to a fraction of the initial evaluation loss\n\n"
            "Trials are counted at evaluation points (every `eval_every` trials).\n\n"
            + header
            + "\n"
        )
    with results.open("a") as fh:
        fh.write(row + "\n")
    print(header)
    print(row)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
