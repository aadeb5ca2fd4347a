"""A 20 × 20 grid of one-synapse experiments: one batched Brian2 run against one run per cell.

Prints, measured in one run on this machine (Brian2 runtime, numpy target, dt = 1 ms,
3.5 s per experiment), for Izhikevich's DA-STDP and for TD-ANP with a 1 s trace:
  * the wall time of the whole 20 (pairing_dt) × 20 (reward_delay) grid as one network
    and one ``run`` (:func:`bioperturb.synaptic.run_synaptic`), network build included;
  * the wall time of single-cell protocols (one network and one run per cell) for
    ``--sample`` cells, and the 400-cell total it implies (linear extrapolation);
  * their ratio, and that the batched cells equal the single runs (max |difference|).

Usage: python benchmarks/synaptic_grid.py [--sample 8] [--n 20] [--out FILE]
Writes benchmarks/results/synaptic_grid.md by default. Do not run it beside other
CPU-heavy jobs.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from bioperturb.synaptic import run_synaptic, synaptic_from_mapping

RULES = {
    "da_stdp": {"name": "da_stdp"},
    "td_anp": {"name": "td_anp", "tau_e": "1 s", "normalise": "none", "scale": "one"},
}


def protocol(rule: str, n: int, point: dict[str, float] | None = None):
    schedule = {"duration": "3.5 s", "first_pairing": "100 ms", "reward": 0.5}
    grid = {
        "pairing_dt": [f"{v:.6g} ms" for v in np.linspace(-50, 50, n)],
        "reward_delay": [f"{v:.6g} ms" for v in np.linspace(0, 3000, n)],
    }
    data = {
        "kind": "synaptic",
        "name": f"bench_{rule}",
        "model": {"dt": "1 ms", "tau": "10 ms"},
        "rule": dict(RULES[rule]),
        "schedule": schedule,
        "grid": {"schedule": grid},
    }
    if point is not None:  # one cell: its grid values as plain schedule values
        del data["grid"]
        schedule.update({k: f"{v!r} second" for k, v in point.items()})
    return synaptic_from_mapping(data, f"<{rule}>")


def timed(p):
    start = time.perf_counter()
    ds = run_synaptic(p)
    return time.perf_counter() - start, ds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20, help="grid points per dimension")
    parser.add_argument("--sample", type=int, default=8, help="cells run one by one")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results/synaptic_grid.md"))
    args = parser.parse_args()
    rows = []
    for rule in RULES:
        full = protocol(rule, args.n)
        timed(protocol(rule, 2))  # warm-up: imports and numpy code objects
        t_grid, ds = timed(full)
        cells = full.cells()
        pick = np.random.default_rng(0).choice(len(cells), args.sample, replace=False)
        t_single, diff = 0.0, 0.0
        for k in pick:
            t, one = timed(protocol(rule, args.n, cells[k]))
            t_single += t
            batched = ds["dw"].sel(cells[k]).values
            diff = max(diff, float(np.abs(batched - one["dw"].values).max()))
        per_cell = t_single / args.sample
        rows.append((rule, len(cells), t_grid, per_cell, per_cell * len(cells), diff))
        print(
            f"{rule}: {len(cells)} cells batched {t_grid:.2f} s; one run per cell "
            f"{per_cell:.3f} s/cell → {per_cell * len(cells):.0f} s; "
            f"ratio {per_cell * len(cells) / t_grid:.0f}×; max |Δw difference| {diff:.2g}",
            flush=True,
        )
    lines = [
        f"# {args.n} × {args.n} grid of one-synapse experiments (benchmarks/synaptic_grid.py)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average at the end {os.getloadavg()[0]:.2f}; "
        "Brian2 runtime, numpy target; dt = 1 ms, 3.5 s per experiment. One-run-per-cell "
        f"time measured on {args.sample} random cells and extrapolated.",
        "",
        "| rule | cells | batched: one network, one run (s) | one run per cell (s/cell) "
        "| one run per cell, all cells (s, extrapolated) | ratio | max abs Δw difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for rule, n, tg, pc, total, diff in rows:
        lines.append(
            f"| `{rule}` | {n} | {tg:.2f} | {pc:.3f} | {total:.0f} | {total / tg:.0f}× "
            f"| {diff:.2g} |"
        )
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
