"""Learning rules against their BPTT reference, from compare files.

    python analysis/compare_bptt.py RESULT_compare.nc [more.nc ...] --out DIR

Each file is written by ``bioperturb compare`` (a ``method`` dim with the rule and
``bptt``).  Writes, per file, ``<stem>_learning.png`` (loss against training trials and
against training wall time, one colour per method), ``<stem>_accuracy.png`` (tasks scored
by accuracy) and ``<stem>_similarity.png`` (CKA and RSA of each method's hidden activity
with BPTT over training), and for all files ``compare_bptt.md`` / ``compare_bptt.csv``:
final loss, trials and training time to 30, 10 and 5 % of the initial loss, final
accuracy and trials to 90 % accuracy (where the file has ``eval_accuracy``), and CKA / RSA
with BPTT at the last evaluation.  The work is done by
:func:`bioperturb.report.compare_report`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bioperturb.report import compare_report
from bioperturb.schema import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="compare_bptt.py", description="Rules against their BPTT reference."
    )
    parser.add_argument("results", nargs="+", help="compare files (.nc)")
    parser.add_argument("--out", help="output folder (default: the first file's folder)")
    parser.add_argument("--reference", default="bptt", help="reference method (default: bptt)")
    args = parser.parse_args(argv)
    out = args.out or Path(args.results[0]).parent
    try:
        written = compare_report(args.results, out, args.reference)
    except ConfigError as err:
        print(f"compare_bptt.py: error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
