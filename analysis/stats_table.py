"""Statistics of several runs side by side, as a markdown and CSV table with figures.

    python analysis/stats_table.py A.nc B.nc ... --out DIR

Each file is a run (``bioperturb run``) or a compare file (one column per method).
Writes ``stats_table.md`` / ``stats_table.csv`` (:func:`bioperturb.metrics.summary_table`:
losses, trials to 30/10/5 % of the initial loss, final accuracy and trials to 90 % accuracy
for runs with ``eval_accuracy``, participation ratio, mean |pairwise correlation|, activity
mean and sd, spectral radius of W_rec before and after training, weight-change norms and
sign changes per matrix, wall time per trial), and the figures ``stats_learning.png``,
``stats_accuracy.png`` (if some run has ``eval_accuracy``), ``stats_weight_drift.png`` and
``stats_spectrum.png`` with all runs.  The work is done by :func:`bioperturb.report.stats_report`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bioperturb.report import stats_report
from bioperturb.schema import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stats_table.py", description="Statistics of several runs side by side."
    )
    parser.add_argument("results", nargs="+", help="run or compare files (.nc)")
    parser.add_argument("--out", help="output folder (default: the first file's folder)")
    args = parser.parse_args(argv)
    out = args.out or Path(args.results[0]).parent
    try:
        written = stats_report(args.results, out)
    except ConfigError as err:
        print(f"stats_table.py: error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
