"""Reproducing García Fernández, Keemink & van Gerven (2024), the recurrent half: TD-ANP,
decorrelated TD-ANP (DANP; with and without a whole-trial trace), NP (the same) and weight
perturbation beside a true BPTT (and the readout-only control, which learns no memory),
on the paper's three task families — the copy task,
Mackey–Glass prediction (τ = 17, 15 samples ahead) and sequential image classification
(scikit-learn's 8×8 digits row by row, the offline stand-in for sequential MNIST).

The runs, tables and figure are those of ``benchmarks/temporal_credit.py`` with the paper's
tasks and methods; each task is its shipped protocol (``protocols/copy_np_trace_rate.toml``,
``mackey_glass_np_trace_rate.toml``, ``digits_np_trace_rate.toml``: N = 100 rate units,
dt = 10 ms, τ = 50 ms, Adam), every method starts from the same weights and sees the same
trials, and BPTT is the JAX reference with the same dynamics (not the one-step-truncated
"BP" of the paper's code). Writes ``benchmarks/results/paper/temporal_credit.{md,nc,png}``
(the .nc, all curves, is not committed); docs/paper.md reads them.

Usage: python benchmarks/paper/rnn.py [--seeds 1 2 3] [--workers 2] [--quick] [...]
(any further option of temporal_credit.py; ``--quick`` is the seconds-long CI version).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TASKS = ["copy", "mackey_glass", "digits"]
RULES = ["td_anp", "td_anp_trace", "danp", "danp_trace", "np", "np_trace", "wp", "readout_only"]


def _temporal_credit():
    # by name from benchmarks/, so that the spawned workers (which inherit sys.path)
    # unpickle its functions
    if str(HERE.parent) not in sys.path:
        sys.path.insert(0, str(HERE.parent))
    return importlib.import_module("temporal_credit")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    defaults = ["--tasks", *TASKS, "--rules", *RULES, "--draws", "0"]
    defaults += ["--out", str(HERE.parent / "results" / "paper")]
    return _temporal_credit().main(defaults + argv)  # later options win


if __name__ == "__main__":
    raise SystemExit(main())
