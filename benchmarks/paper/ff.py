"""Reproducing Dalm, van Gerven & Ahmad (2024), the feed-forward half: node perturbation
(NP), its decorrelated form (DNP), iterative NP (INP, DINP: one layer perturbed per
run, each sample run once per layer), activity-based NP (ANP), decorrelated ANP (DANP),
weight perturbation (WP) and a readout-only control beside backpropagation (BP) and
decorrelated BP (DBP: the JAX reference reading every layer's decorrelated input), on
feed-forward stacks of tanh layers (``model.kind = "mlp"``).

Data sets that ship with scikit-learn stand in for the paper's MNIST and CIFAR-10: the
8×8 digits (two hidden layers of 64) and the Wisconsin breast-cancer data (two of 32)
(``protocols/classify_digits_anp_mlp.toml``, ``classify_breast_cancer_anp_mlp.toml``).
Every method starts from the same weights and sees the same samples, one per trial, with
Adam at the protocol's rate; BP is the JAX reference on the same network: BPTT through
the stack's settling steps, which with τ = dt is backpropagation through the layers.

The runs, tables and figure are those of ``benchmarks/temporal_credit.py`` with these
tasks and methods. Writes ``benchmarks/results/paper/ff/temporal_credit.{md,nc,png}``
(the .nc is not committed); docs/paper.md reads them.

Usage: python benchmarks/paper/ff.py [--seeds 1 2 3] [--workers 2] [--quick] [...]
(any further option of temporal_credit.py; ``--quick`` is the seconds-long CI version).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from rnn import _temporal_credit  # noqa: E402  (benchmarks/paper is not a package)

TASKS = ["ff_digits", "ff_breast_cancer"]
RULES = ["dbp", "np", "dnp", "inp", "dinp", "td_anp", "danp", "wp", "readout_only"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    defaults = ["--tasks", *TASKS, "--rules", *RULES, "--draws", "0"]
    defaults += ["--out", str(HERE.parent / "results" / "paper" / "ff")]
    defaults += ["--title", "Feed-forward stacks: the node-perturbation family beside BP"]
    return _temporal_credit().main(defaults + argv)  # later options win


if __name__ == "__main__":
    raise SystemExit(main())
