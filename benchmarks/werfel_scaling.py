"""Werfel, Xie & Seung (2005): GD vs node vs weight perturbation in a linear network.

Reproduces (i) the mean learning curves at the optimal learning rates against the exact
expected curves, (ii) the learning speed as a function of η/η* (one parabola for all rules),
and (iii) the scaling of the learning time with network size: τ_GD = N+2, τ_NP = (N+2)(M+2),
τ_WP = (N+2)(NM+2) trials at η* = 1/c, i.e. NP slower than GD by M+2 and WP by NM+2.
Derivation: docs/theory/werfel.md. Prints a table and saves benchmarks/results/werfel.png
(and the table as benchmarks/results/werfel.md).

    .venv/bin/python benchmarks/werfel_scaling.py            # ~1–2 min on 2 cores
    .venv/bin/python benchmarks/werfel_scaling.py --quick    # smaller sizes, fewer runs
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bioperturb.theory import linear as lin  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
COLORS = {"gd": "tab:blue", "np": "tab:orange", "wp": "tab:green"}
LABELS = {"gd": "GD", "np": "NP", "wp": "WP"}
SIGMA = 1e-3  # perturbation size for NP/WP in the scaling runs (error floor ~1e-7, negligible)
THRESHOLD = 0.01  # trials-to-threshold: mean error down to 1% of its initial value


def measure(rule, n, m, reps, seed, eta=None, sigma=SIGMA, n_efolds=None):
    """Mean curve at η (default η*), the learning time τ̂ from 3 e-folds, and trials to 1%."""
    sigma = 0.0 if rule == "gd" else sigma
    eta = lin.optimal_learning_rate(rule, n, m) if eta is None else eta
    efold = lin.efold_time(rule, n, m, eta)
    t_thr = lin.trials_to_threshold(rule, n, m, THRESHOLD, eta, sigma)
    n_trials = math.ceil(n_efolds * efold) if n_efolds else math.ceil(1.15 * t_thr)
    trials, errors = lin.simulate(rule, n, m, eta, sigma, n_trials, reps, seed=seed)
    mean = errors.mean(axis=1)
    se = errors.std(axis=1, ddof=1) / math.sqrt(reps)
    e_inf = lin.asymptotic_error(rule, n, m, eta, sigma)
    t3 = min(math.ceil(3 * efold), n_trials)
    tau = lin.measured_learning_time(mean[t3], t3, 1.0, e_inf)
    lam = ((mean[t3] - e_inf) / (1.0 - e_inf)) ** (1.0 / t3)
    tau_se = tau**2 * lam * (se[t3] / (mean[t3] - e_inf)) / t3
    below = np.nonzero(mean <= THRESHOLD)[0]
    t_hit = int(trials[below[0]]) if below.size else math.inf
    return {
        "trials": trials,
        "mean": mean,
        "se": se,
        "tau": tau,
        "tau_se": tau_se,
        "t_hit": t_hit,
        "t_hit_an": t_thr,
        "eta": eta,
        "sigma": sigma,
    }


def fit_slope(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(np.polyfit(x, y, 1)[0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer repetitions")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per size")
    ap.add_argument("--seed", type=int, default=2005)
    args = ap.parse_args(argv)
    reps = args.reps or (100 if args.quick else 300)
    sizes_n = [4, 8] if args.quick else [4, 8, 16]
    sizes_m = [1, 4] if args.quick else [1, 4, 16]
    t_start = time.perf_counter()
    RESULTS.mkdir(parents=True, exist_ok=True)

    # ---- scaling table --------------------------------------------------------------------
    rows = []
    seed = args.seed
    for n in sizes_n:
        for m in sizes_m:
            row = {"N": n, "M": m}
            for rule in lin.RULES:
                seed += 1
                res = measure(rule, n, m, reps if rule != "gd" else 20 * reps, seed)
                row[rule] = res
            rows.append(row)

    lines = []
    head = (
        "|  N |  M | τ_GD meas (an) | τ_NP meas (an) | τ_WP meas (an) | NP/GD meas (M+2) "
        "| WP/GD meas (NM+2) | WP/NP meas (an) | T1% GD | T1% NP | T1% WP |"
    )
    lines.append(head)
    lines.append("|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|")
    for row in rows:
        n, m = row["N"], row["M"]
        cell = []
        for rule in lin.RULES:
            r = row[rule]
            cell.append(f"{r['tau']:.4g} ± {r['tau_se']:.2g} ({lin.learning_time(rule, n, m):.4g})")
        t_gd, t_np, t_wp = (row[r]["tau"] for r in lin.RULES)
        an_wpnp = lin.learning_time("wp", n, m) / lin.learning_time("np", n, m)
        hits = [f"{row[r]['t_hit']} ({row[r]['t_hit_an']:.0f})" for r in lin.RULES]
        lines.append(
            f"| {n:2d} | {m:2d} | "
            + " | ".join(cell)
            + f" | {t_np / t_gd:.3g} ({m + 2}) | {t_wp / t_gd:.4g} ({n * m + 2}) "
            + f"| {t_wp / t_np:.3g} ({an_wpnp:.3g}) | "
            + " | ".join(hits)
            + " |"
        )
    ratio_np = np.array([r["np"]["tau"] / r["gd"]["tau"] for r in rows])
    ratio_wp = np.array([r["wp"]["tau"] / r["gd"]["tau"] for r in rows])
    ratio_wpnp = ratio_wp / ratio_np
    ms = np.array([r["M"] for r in rows], float)
    ns = np.array([r["N"] for r in rows], float)
    exps = {
        "NP/GD vs M+2": (fit_slope(np.log(ms + 2), np.log(ratio_np)), 1.0),
        "NP/GD vs M": (
            fit_slope(np.log(ms), np.log(ratio_np)),
            fit_slope(np.log(ms), np.log(ms + 2)),
        ),
        "WP/GD vs NM+2": (fit_slope(np.log(ns * ms + 2), np.log(ratio_wp)), 1.0),
        "WP/GD vs NM": (
            fit_slope(np.log(ns * ms), np.log(ratio_wp)),
            fit_slope(np.log(ns * ms), np.log(ns * ms + 2)),
        ),
        "WP/NP vs N (at M = max)": (
            fit_slope(np.log(ns[ms == ms.max()]), np.log(ratio_wpnp[ms == ms.max()])),
            fit_slope(
                np.log(ns[ms == ms.max()]),
                np.log((ns[ms == ms.max()] * ms.max() + 2) / (ms.max() + 2)),
            ),
        ),
    }
    lines.append("")
    lines.append("| fitted exponent (log-log slope) | measured | analytic |")
    lines.append("|---|---|---|")
    for k, (meas, an) in exps.items():
        lines.append(f"| {k} | {meas:.3f} | {an:.3f} |")
    lines.append("")
    lines.append(
        f"τ = learning time 1/(1 − λ̂) in trials at η* = 1/c, from the mean of {reps} runs "
        f"({20 * reps} for GD) after 3 e-folds; ± one standard error. T1% = first trial at "
        f"which the mean error ≤ 1% of its initial value (analytic in brackets). σ = {SIGMA} "
        "for NP and WP."
    )
    table = "\n".join(lines)
    print(table)
    (RESULTS / "werfel.md").write_text(
        "# Werfel, Xie & Seung (2005) — scaling benchmark\n\n"
        "Written by `benchmarks/werfel_scaling.py`; theory in `docs/theory/werfel.md`.\n\n"
        + table
        + "\n"
    )

    # ---- figure ---------------------------------------------------------------------------
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))

    # (a) learning curves at one size, simulated vs analytic, plus finite-σ floors
    ax = axes[0, 0]
    n, m = (8, 4) if args.quick else (8, 8)
    for i, rule in enumerate(lin.RULES):
        res = measure(rule, n, m, reps, args.seed + 100 + i)
        t = res["trials"][1:]
        an = lin.expected_error_curve(rule, n, m, res["eta"], res["sigma"], int(t[-1]))[1:]
        ax.plot(t, res["mean"][1:], color=COLORS[rule], label=f"{LABELS[rule]} simulated")
        ax.fill_between(
            t,
            res["mean"][1:] - 2 * res["se"][1:],
            res["mean"][1:] + 2 * res["se"][1:],
            color=COLORS[rule],
            alpha=0.25,
            lw=0,
        )
        ax.plot(t, an, "k--", lw=1)
    floor = 0.03  # σ chosen so that the error floor η*²b/(1 − λ*) = b/c is 3% of e_0
    for i, rule in enumerate(("np", "wp")):
        rec = lin.recursion(rule, n, m, 1.0)
        sig = math.sqrt(floor * rec.c / rec.b)
        res = measure(rule, n, m, reps, args.seed + 200 + i, sigma=sig, n_efolds=6)
        t = res["trials"][1:]
        ax.plot(
            t, res["mean"][1:], color=COLORS[rule], ls=":", label=f"{LABELS[rule]}, σ = {sig:.3f}"
        )
        ax.plot(
            t, lin.expected_error_curve(rule, n, m, res["eta"], sig, int(t[-1]))[1:], "k--", lw=1
        )
    ax.plot([], [], "k--", lw=1, label="analytic E[e_t]")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="trial t",
        ylabel="generalisation error e_t / e_0",
        title=f"(a) mean learning curves at η*, N = {n}, M = {m} ({reps} runs, ±2 SE)",
        ylim=(THRESHOLD / 3, 1.5),
    )
    ax.legend(fontsize=8)

    # (b) learning speed vs η/η*: (1 − λ)·c = 2u − u² for every rule
    ax = axes[0, 1]
    nb, mb = 6, 3
    us = np.array([0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75])
    for i, rule in enumerate(lin.RULES):
        c = lin.recursion(rule, nb, mb).c
        speed, err = [], []
        for j, u in enumerate(us):
            eta = u / c
            res = measure(rule, nb, mb, 4 * reps, args.seed + 300 + 10 * i + j, eta=eta, n_efolds=2)
            tau, tau_se = res["tau"], res["tau_se"]
            speed.append(c / tau)
            err.append(c * tau_se / tau**2)
        ax.errorbar(
            us + (i - 1) * 0.02,
            speed,
            yerr=2 * np.array(err),
            fmt="o",
            color=COLORS[rule],
            label=f"{LABELS[rule]} simulated (c = {c:.0f})",
            ms=4,
        )
    uu = np.linspace(0, 2, 101)
    ax.plot(uu, 2 * uu - uu**2, "k--", lw=1, label="analytic 2u − u²")
    ax.set(
        xlabel="learning rate u = η / η*  (η* = 1/c)",
        ylabel="learning speed × c = (1 − λ) c",
        title=f"(b) speed vs learning rate, N = {nb}, M = {mb} (±2 SE)",
        ylim=(0, 1.2),
    )
    ax.legend(fontsize=8)

    # (c) learning time vs size at N = M
    ax = axes[1, 0]
    diag = [2, 4, 8] if args.quick else [2, 4, 8, 16]
    for i, rule in enumerate(lin.RULES):
        meas = [
            measure(
                rule,
                k,
                k,
                reps if rule != "gd" else 20 * reps,
                args.seed + 400 + 10 * i + k,
                n_efolds=3,
            )
            for k in diag
        ]
        ax.errorbar(
            diag,
            [r["tau"] for r in meas],
            yerr=[2 * r["tau_se"] for r in meas],
            fmt="o",
            color=COLORS[rule],
            label=f"{LABELS[rule]} simulated",
        )
        kk = np.geomspace(diag[0], diag[-1], 50)
        ax.plot(kk, [lin.recursion(rule, k, k).c for k in kk], "--", color=COLORS[rule], lw=1)
    ax.plot([], [], "k--", lw=1, label="analytic c: N+2, (N+2)², (N+2)(N²+2)")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="network size N = M",
        ylabel="learning time τ = 1/(1 − λ) at η*  (trials)",
        title="(c) learning time vs size",
    )
    ax.set_xticks(diag, [str(k) for k in diag])
    ax.minorticks_off()
    ax.legend(fontsize=8)

    # (d) ratios vs M and NM
    ax = axes[1, 1]
    ax.plot(ms + 2, ratio_np, "o", color=COLORS["np"], label="NP / GD vs M + 2 (table sizes)")
    ax.plot(ns * ms + 2, ratio_wp, "s", color=COLORS["wp"], label="WP / GD vs NM + 2 (table sizes)")
    xx = np.geomspace(2, (ns * ms).max() + 2, 50)
    ax.plot(xx, xx, "k--", lw=1, label="analytic: ratio = M + 2 resp. NM + 2")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="M + 2  (NP)   /   NM + 2  (WP)",
        ylabel="τ_rule / τ_GD at η*",
        title="(d) slowdown relative to GD",
    )
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=8)

    fig.suptitle(
        "Werfel, Xie & Seung (2005): online GD, node perturbation (NP), weight perturbation (WP)"
    )
    fig.tight_layout()
    out = RESULTS / "werfel.png"
    fig.savefig(out, dpi=120)
    print(f"\nsaved {out} and {RESULTS / 'werfel.md'} in {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
