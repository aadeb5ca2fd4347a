"""Temporal credit: which rule learns which memory task, beside BPTT, and which gradient it follows.

For every memory task (a shipped protocol) and every rule variant (the protocol with its
``[rule]`` table replaced), trains the rule and the BPTT reference from the same initial
weights on the same trials, for several seeds, and reports per (task, rule):

* the final noise-free evaluation score (accuracy, or NRMSE for the forecast; mean ± sd
  over seeds),
* the training trials to 90 % of BPTT's final accuracy of the same seed (for NRMSE: to
  BPTT's final NRMSE / 0.9; mean over the seeds that reach it, ``n/k`` says how many did),
* the final evaluation loss;

and, at the initial weights of the first seed (``bioperturb.credit``), the cosine of each
rule's mean update over ``--draws`` trials with BPTT truncated at 1 step (the
instantaneous gradient) and with the full BPTT gradient, for W_rec.

Usage::

    python benchmarks/temporal_credit.py [--seeds 1 2 3] [--tasks recall dnms]
        [--rules td_anp np_trace ...] [--trials N] [--workers 2] [--draws 300]
        [--out benchmarks/results] [--quick]

Tasks: ``recall``, ``dnms``, ``mackey_glass`` (the default), ``copy``, ``recall_jitter``
(variable delay), ``perceptual``, ``dnms_miconi`` (Miconi's DNMS, trial-end reward) and
``digits`` (sequential 8x8 digits; the digits extra); rules: the default six, ``miconi``,
the per-neuron-signal comparators ``rflo`` and ``rflo_symmetric``, and the paper's
``danp`` (decorrelated TD-ANP; ``danp_trace`` with a whole-trial trace) and ``wp``
(benchmarks/paper/rnn.py runs those).

Finished runs are kept in ``<out>/runs/*.json``, so the same command computes only what is
missing. Writes ``<out>/temporal_credit.md`` (tables), ``temporal_credit.nc`` (all curves) and
``temporal_credit.png`` (accuracy over training, mean over seeds). ``--quick`` runs a
seconds-long smoke version (tiny network, few trials) for CI. Runs are independent
processes (``--workers``); state the machine's load with any figure quoted.
"""

from __future__ import annotations

import argparse
import copy
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

HERE = Path(__file__).resolve().parent
PROTOCOLS = HERE.parent / "protocols"

#: task label -> shipped protocol that defines the task, network and training schedule
TASKS = {
    "recall": PROTOCOLS / "recall_np_trace_rate.toml",
    "dnms": PROTOCOLS / "dnms_np_trace_rate.toml",
    "mackey_glass": PROTOCOLS / "mackey_glass_np_trace_rate.toml",
    "copy": PROTOCOLS / "copy_np_trace_rate.toml",
    "recall_jitter": PROTOCOLS / "recall_jitter_np_trace_rate.toml",
    "perceptual": PROTOCOLS / "perceptual_decision_np_trace_rate.toml",
    "dnms_miconi": PROTOCOLS / "dnms_miconi_np_reinforce_rate.toml",
    "digits": PROTOCOLS / "digits_np_trace_rate.toml",
    # feed-forward stacks (model.kind = "mlp"): no memory; benchmarks/paper/ff.py
    "ff_digits": PROTOCOLS / "classify_digits_anp_mlp.toml",
    "ff_breast_cancer": PROTOCOLS / "classify_breast_cancer_anp_mlp.toml",
}
#: task label -> [task] keys of the --quick version (small evaluation sets)
QUICK_TASK: dict[str, dict[str, Any]] = {"digits": {"n_eval": 10}}
QUICK_TASK["ff_digits"] = QUICK_TASK["ff_breast_cancer"] = {"eval_fraction": 0.05}
#: the tasks of the committed table (--tasks adds the others)
DEFAULT_TASKS = ["recall", "dnms", "mackey_glass"]
#: the Dataset variable that scores a task, and whether higher is better
SCORES = {t: ("eval_accuracy", True) for t in TASKS}
SCORES["mackey_glass"] = ("eval_nrmse", False)
SCORES["copy"] = ("eval_sequence_accuracy", True)
#: chance level of the tasks scored by accuracy (the figure's dashed line)
CHANCE = {"recall": 0.25, "dnms": 0.5, "copy": 0.25, "recall_jitter": 0.25}
CHANCE.update(perceptual=0.5, dnms_miconi=0.5, digits=0.1, ff_digits=0.1, ff_breast_cancer=0.5)
_WHOLE = "1000 s"  # a trace longer than any trial: λ = 1 − dt/τ_e ≈ 1
#: rule label -> the [rule] table that replaces the protocol's
RULES: dict[str, dict[str, Any]] = {
    "td_anp": {"name": "td_anp"},
    "td_anp_trace": {"name": "td_anp", "tau_e": _WHOLE, "tau_e_out": "0 s"},
    "np": {"name": "np"},
    "np_trace": {"name": "np", "tau_e": _WHOLE, "tau_e_out": "0 s"},
    "np_trace_trial_end": {"name": "np", "tau_e": _WHOLE, "signal": "trial_end"},
    "readout_only": {"name": "np", "tau_e": _WHOLE, "tau_e_out": "0 s", "train": ["W_out"]},
    # Miconi (2017) as published, kicks at 30 Hz; runtime engine only
    "miconi": {"name": "miconi", "kick_rate": "30 Hz"},
    # comparators with a per-neuron learning signal (Murray 2019)
    "rflo": {"name": "rflo"},
    "rflo_symmetric": {"name": "rflo", "feedback": "symmetric"},
    # the paper's decorrelated TD-ANP (its [model] keys below) and weight perturbation
    "danp": {"name": "td_anp"},
    "danp_trace": {"name": "td_anp", "tau_e": _WHOLE, "tau_e_out": "0 s"},
    # the same with a quieter perturbation (model.sigma = 0.02; Mackey–Glass probe)
    "danp_trace_quiet": {"name": "td_anp", "tau_e": _WHOLE, "tau_e_out": "0 s"},
    "wp": {"name": "wp"},
    # NP with decorrelation (Dalm et al. 2024's DNP; its [model] keys below)
    "dnp": {"name": "np"},
    # iterative NP on feed-forward stacks, one layer per noisy pass, and its decorrelated form
    "inp": {"name": "inp"},
    "dinp": {"name": "inp"},
    # decorrelated BP: run_rule trains the JAX reference with the decorrelation of
    # MODEL["dbp"] on the trials of this forward-only control
    "dbp": {"name": "none"},
}
#: rule label -> the [model] keys it sets: decorrelating lateral weights for DANP, at a
#: tenth of protocols/pattern_danp_rate.toml's rate (its dt is 1 ms; at the memory tasks'
#: 10 ms, decor_lr = 0.02 broke the copy task; docs/paper.md has the probe)
MODEL: dict[str, dict[str, Any]] = {
    "danp": {"decorrelate": ["input", "recurrent"], "decor_lr": 0.002},
}
MODEL["danp_trace"] = MODEL["dnp"] = MODEL["dinp"] = MODEL["dbp"] = MODEL["danp"]
MODEL["danp_trace_quiet"] = {**MODEL["danp"], "sigma": 0.02}
#: the tasks on feed-forward stacks (model.kind = "mlp"), where BPTT is BP
FEED_FORWARD = ("ff_digits", "ff_breast_cancer")
#: task label -> [model] keys that replace a decorrelated rule's above: the feed-forward
#: stacks diverged at 0.002 (ANP-decorrelated on digits, trial 1,202) and 0.02 (trial 61)
TASK_MODEL: dict[str, dict[str, Any]] = {task: {"decor_lr": 0.0002} for task in FEED_FORWARD}
#: variance reduction (training.batch = 2 twins of one trial per update): independent twins,
#: and antithetic pairs (the second twin gets −ξ; runtime engine)
_TWINS = {"batch": 2, "repeat": True}
_PAIRS = {**_TWINS, "antithetic": True}
#: rule label -> the [training] keys it sets
TRAINING: dict[str, dict[str, Any]] = {}
for _base in ("np_trace", "np_trace_trial_end", "miconi", "danp_trace"):
    for _label, _keys in (("twins", _TWINS), ("antithetic", _PAIRS)):
        RULES[f"{_base}_{_label}"] = RULES[_base]
        TRAINING[f"{_base}_{_label}"] = _keys
        if _base in MODEL:
            MODEL[f"{_base}_{_label}"] = MODEL[_base]
#: the rules of the committed table (--rules adds the others)
DEFAULT_RULES = ["td_anp", "td_anp_trace", "np", "np_trace", "np_trace_trial_end", "readout_only"]
_CONTROL = {"name": "none"}  # forward passes only: the BPTT reference's template run
WHAT = {
    "td_anp": "TD-ANP as published (τ_e = 0, dense signal)",
    "td_anp_trace": "TD-ANP, whole-trial trace (readout τ_e = 0)",
    "np": "NP, no trace",
    "np_trace": "NP, whole-trial trace, dense signal (readout τ_e = 0)",
    "np_trace_trial_end": "NP, whole-trial trace, one signal at trial end (REINFORCE)",
    "readout_only": "control: only W_out plastic (NP readout of the fixed random network)",
    "miconi": "Miconi 2017: sparse kicks, cubed trace, trial-end reward (W_rec)",
    "rflo": "RFLO (Murray 2019): random feedback B, leak-only trace; per-neuron signal",
    "rflo_symmetric": "RFLO with symmetric feedback B = W_outᵀ; per-neuron signal",
    "danp": "decorrelated TD-ANP (τ_e = 0, dense signal; decorrelation of input and r)",
    "danp_trace": "decorrelated TD-ANP with a whole-trial trace (readout τ_e = 0)",
    "danp_trace_quiet": "decorrelated TD-ANP with a whole-trial trace, σ = 0.02",
    "wp": "weight perturbation (σ_w = 1e-3, trial-end signal)",
    "dnp": "decorrelated NP (τ_e = 0, dense signal; decorrelation of input and r)",
    "inp": "iterative NP: each sample run once per layer, one layer perturbed per run",
    "dbp": "decorrelated BP: the JAX reference reading every layer's decorrelated input",
    "dinp": "decorrelated iterative NP (decorrelation of every layer's input)",
}
for _label in TRAINING:
    _base, _, _kind = _label.rpartition("_")
    WHAT[_label] = WHAT[_base] + (
        "; 2 independent twins per update" if _kind == "twins" else "; antithetic pairs ±ξ"
    )
LEVEL = 0.9


def make_protocol(
    task: str,
    rule: str | None,
    seed: int,
    quick: bool,
    trials: int | None,
    model_of: str | None = None,
    lr: float | None = None,
    hidden: int | None = None,
):
    """The task's protocol with ``rule``'s table (None: keep it), ``seed`` and options;
    ``model_of``: take the [model] keys of that label instead of ``rule``'s; ``lr``:
    every method's learning rate instead of the protocol's; ``hidden``: its network size."""
    import tomllib

    from bioperturb.config import protocol_from_mapping
    from bioperturb.rules import get_rule

    path = TASKS[task]
    data = tomllib.loads(path.read_text())
    if rule is not None:
        data["rule"] = copy.deepcopy(_CONTROL if rule == "none" else RULES[rule])
    data["seed"] = seed
    data["name"] = f"{task}_{rule or 'bptt'}_{seed}"
    data["output"] = {
        **data.get("output", {}),
        "figures": False,
        "progress": False,
        "alignment": False,
    }
    if rule in TRAINING:
        data["training"].update(TRAINING[rule])
    if (model_of or rule) in MODEL:
        data["model"].update(MODEL[model_of or rule], **TASK_MODEL.get(task, {}))
    if rule is not None and not get_rule(data["rule"]["name"]).standalone:
        data["engine"] = {"name": "runtime"}  # e.g. Miconi's baselines
    elif data["training"].get("antithetic"):
        data["engine"] = {"name": "runtime"}  # the pairs replay the runtime random state
    if quick:
        data["task"].update(QUICK_TASK.get(task, {}))
        if data["model"].get("preset") == "mlp":
            data["model"].update(layers=[8, 8])
        else:
            data["model"].update(n_hidden=12)
        data["training"].update(n_trials=20, eval_every=10)
        data["engine"] = {"name": "runtime", "codegen": "numpy"}
    if trials is not None:
        data["training"]["n_trials"] = trials
    if lr is not None:
        data["training"]["lr"] = lr
    if hidden is not None:
        data["model"]["n_hidden"] = hidden
    if data["rule"]["name"] == "inp":  # as the paper runs it: each sample once per layer,
        # one update per sample (L trials on the trial axis per sample)
        data["training"].update(batch=len(data["model"]["layers"]), repeat=True)
    return protocol_from_mapping(data, str(path), path.parent)


def _curves(ds: xr.Dataset, task: str) -> dict[str, np.ndarray]:
    return {
        "eval_trial": ds["eval_trial"].values,
        "score": ds[SCORES[task][0]].values,
        "eval_loss": ds["eval_loss"].values,
    }


def run_rule(
    task: str,
    rule: str,
    seed: int,
    quick: bool,
    trials: int | None,
    lr: float | None = None,
    hidden: int | None = None,
) -> dict:
    """Train one rule; with ``rule == "bptt"`` the reference on the same trials."""
    from bioperturb.training import Trainer

    tic = time.perf_counter()
    if rule in ("bptt", "dbp"):
        from bioperturb.compare import reference_dataset

        # the reference takes its trials, initial weights and Dataset layout from a
        # trainer that has run: the no-plasticity control (forward passes only) supplies
        # it, with DBP's decorrelation settings for DBP
        none = make_protocol(task, "none", seed, quick, trials, model_of=rule, hidden=hidden)
        trainer = Trainer(none)
        trainer.run(progress=False)
        if lr is None:
            lr = make_protocol(task, None, seed, quick, trials).training.lr
        ds = reference_dataset(trainer, lr=lr, decorrelated=rule == "dbp")
    else:
        protocol = make_protocol(task, rule, seed, quick, trials, lr=lr, hidden=hidden)
        ds = Trainer(protocol).run(progress=False)
    out = _curves(ds, task)
    out.update(task=task, rule=rule, seed=seed, wall=time.perf_counter() - tic)
    out["status"] = ds.attrs.get("status", "completed")
    return out


def cached(path: Path, fn, *args) -> dict:
    """``fn(*args)``, kept in ``path`` (JSON) so that a rerun computes only what is missing."""
    import json

    if path.exists():
        return json.loads(path.read_text())
    out = fn(*args)
    if out.get("status", "completed") == "interrupted":  # a rerun must compute it again
        raise KeyboardInterrupt(f"{path.stem}: interrupted, not kept")
    doc = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in out.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)
    return doc


def run_credit(task: str, rule: str, quick: bool, draws: int) -> dict:
    """Cosines of the rule's mean update with BPTT(1) and full BPTT at the initial weights."""
    from bioperturb.credit import credit_diagnostics

    p = make_protocol(task, rule, 1, quick, None)
    ds = credit_diagnostics(p, n_draws=draws, horizons=(1,))
    cos = ds["credit_cosine"].sel(matrix="W_rec")
    plastic = "W_rec" in p.rule.train
    return {
        "task": task,
        "rule": rule,
        "instantaneous": float(cos.isel(horizon=0)) if plastic else np.nan,
        "full": float(cos.isel(horizon=-1)) if plastic else np.nan,
        "halves": float(ds["credit_cosine_halves"].sel(matrix="W_rec")) if plastic else np.nan,
        "pr": float(np.nanmean(ds["credit_pr"].values)),
    }


def to_dataset(results: list[dict]) -> xr.Dataset:
    """All curves on the union of the evaluation grids (NaN where a task has no evaluation)."""
    tasks = sorted({r["task"] for r in results}, key=list(TASKS).index)
    rules = list(dict.fromkeys(r["rule"] for r in results))
    seeds = sorted({r["seed"] for r in results})
    evals = np.unique(np.concatenate([r["eval_trial"] for r in results]))
    shape = (len(tasks), len(rules), len(seeds), len(evals))
    score, loss = np.full(shape, np.nan), np.full(shape, np.nan)
    for r in results:
        i = (tasks.index(r["task"]), rules.index(r["rule"]), seeds.index(r["seed"]))
        at = np.searchsorted(evals, r["eval_trial"])
        score[i][at], loss[i][at] = r["score"], r["eval_loss"]
    dims = ("task", "rule", "seed", "eval_trial")
    coords = {"task": tasks, "rule": rules, "seed": seeds, "eval_trial": evals}
    return xr.Dataset(
        {
            "score": (dims, score, {"units": "1", "long_name": "accuracy or NRMSE (by task)"}),
            "eval_loss": (dims, loss, {"units": "1"}),
        },
        coords=coords,
    )


def _trials_to(curve: xr.DataArray, level: float, higher: bool) -> float:
    """First evaluation (training trials) at which ``curve`` reaches ``level``; NaN if never."""
    curve = curve.dropna("eval_trial")
    ok = curve.values >= level if higher else curve.values <= level
    return float(curve["eval_trial"].values[ok.argmax()]) if ok.any() else np.nan


def _task_notes(task: str, rules: list[str]) -> list[str]:
    """Lines under a task's heading: what `bptt` is there, the decorrelation rates."""
    notes = []
    if task in FEED_FORWARD:
        notes.append(
            "A feed-forward stack: `bptt` (BPTT through its settling steps) is backpropagation."
        )
    rates = sorted(
        {
            float({**MODEL[r], **TASK_MODEL.get(task, {})}["decor_lr"])
            for r in rules
            if "decor_lr" in MODEL.get(r, {})
        }
    )
    if rates:
        notes.append(f"Decorrelation rate (decor_lr): {', '.join(f'{x:g}' for x in rates)}.")
    return [" ".join(notes), ""] if notes else []


def tables(ds: xr.Dataset, credit: list[dict], header: str) -> str:
    lines = [header, ""]
    for task in ds["task"].values:
        sub = ds.sel(task=task).dropna("eval_trial", how="all")
        name, higher = SCORES[str(task)]
        what = "accuracy" if higher else "NRMSE"
        target = (
            f"trials to {LEVEL:.0%} of BPTT's final accuracy"
            if higher
            else f"trials to BPTT's final NRMSE / {LEVEL}"
        )
        bptt_final = sub["score"].sel(rule="bptt").isel(eval_trial=-1)
        lines += [
            f"### {task} ({TASKS[task].name}, {int(sub.eval_trial[-1])} trials)",
            "",
            *_task_notes(str(task), [str(r) for r in sub["rule"].values]),
            f"| rule | what | final {what} | {target} (seeds that reach it) | final eval loss |",
            "|---|---|---|---|---|",
        ]
        for rule in sub["rule"].values:
            curve = sub["score"].sel(rule=rule)
            final = curve.isel(eval_trial=-1)
            reach = []
            for seed in sub["seed"].values:
                ref = float(bptt_final.sel(seed=seed))
                level = LEVEL * ref if higher else ref / LEVEL
                reach.append(_trials_to(curve.sel(seed=seed), level, higher))
            hit = [k for k in reach if np.isfinite(k)]
            to = f"{np.mean(hit):.0f} ({len(hit)}/{len(reach)})" if hit else f"— (0/{len(reach)})"
            loss = sub["eval_loss"].sel(rule=rule).isel(eval_trial=-1)
            lines.append(
                f"| `{rule}` | {WHAT.get(rule, 'BPTT reference (JAX), same start and trials')} | "
                f"{float(final.mean()):.2f} ± {float(final.std()):.2f} | {to} | "
                f"{float(loss.mean()):.3g} |"
            )
        lines.append("")
    if credit:
        lines += [
            "### Which gradient each rule follows (W_rec, initial weights, seed 1)",
            "",
            "Cosine of the rule's mean update over the draws with BPTT truncated at one step "
            "(instantaneous) and with full BPTT; `halves`: cosine between the mean updates "
            "of the two halves of the draws (≈ 1: the mean is pinned down); PR: mean "
            "participation ratio of P_t = E[δδᵀ/‖δ‖²].",
            "",
            "| task | rule | cos instantaneous | cos full BPTT | halves | PR |",
            "|---|---|---|---|---|---|",
        ]
        for c in credit:
            lines.append(
                f"| {c['task']} | `{c['rule']}` | {c['instantaneous']:.2f} | {c['full']:.2f} | "
                f"{c['halves']:.2f} | {c['pr']:.1f} |"
            )
        lines.append("")
    return "\n".join(lines)


def _style(rule: str) -> tuple[str, str]:
    """(colour, line style): a decorrelated variant dashed in its base rule's colour, the
    readout-only control grey and dotted."""
    from bioperturb.plotting import method_color

    if rule == "readout_only":
        return "#999999", ":"
    if rule == "dbp":
        return method_color("bptt"), "--"
    if rule in MODEL:
        return method_color(RULES[rule]["name"]), "--"
    return method_color(rule), "-"


def figure(ds: xr.Dataset, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = ds["task"].values
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        sub = ds["score"].sel(task=task).dropna("eval_trial", how="all")
        for rule in sub["rule"].values:
            curve = sub.sel(rule=rule)
            x = curve["eval_trial"].values
            mean, sd = curve.mean("seed").values, curve.std("seed").values
            color, ls = _style(str(rule))
            ax.plot(x, mean, label=str(rule), color=color, ls=ls, lw=2 if rule == "bptt" else 1.2)
            ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.12, lw=0)
        if str(task) in CHANCE:
            ax.axhline(CHANCE[str(task)], color="0.5", ls="--", lw=1, label="chance")
        ax.set(
            title=str(task), xlabel="training trials", ylabel="evaluation accuracy", ylim=(0, 1.05)
        )
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS, choices=list(TASKS))
    ap.add_argument("--rules", nargs="+", default=DEFAULT_RULES, choices=list(RULES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--trials", type=int, default=None, help="training trials (default: protocol)")
    ap.add_argument("--lr", type=float, default=None, help="all methods' rate (default: protocol)")
    ap.add_argument("--hidden", type=int, default=None, help="network size (default: protocol)")
    # finished runs are kept in <out>/runs/*.json: the same command computes only what is missing
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--draws", type=int, default=300, help="draws per credit diagnostic (0: skip)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke version (CI)")
    ap.add_argument("--title", default="Temporal credit: rule x memory task, beside BPTT")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.draws = args.seeds[:1], min(args.draws, 20)
    jobs = [
        (task, rule, seed)
        for task in args.tasks
        for seed in args.seeds
        for rule in ["bptt", *args.rules]
    ]
    tic = time.perf_counter()
    credit_jobs = [(t, r) for t in args.tasks for r in args.rules if args.draws > 0 and r != "dbp"]
    runs = args.out / "runs"
    tag = ("_quick" if args.quick else "") + (f"_lr{args.lr:g}" if args.lr is not None else "")
    tag += f"_n{args.hidden}" if args.hidden is not None else ""

    def run_path(task: str, rule: str, seed: int) -> Path:
        return runs / f"{task}_{rule}_{seed}{tag}.json"

    def credit_path(task: str, rule: str) -> Path:
        return runs / f"credit_{task}_{rule}_{args.draws}{tag}.json"

    extra = (args.quick, args.trials, args.lr, args.hidden)  # run_rule's options
    if args.workers == 1:  # in this process (the CI smoke test)
        results = [cached(run_path(*job), run_rule, *job, *extra) for job in jobs]
        credit = [
            cached(credit_path(*job), run_credit, *job, args.quick, args.draws)
            for job in credit_jobs
        ]
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # Brian2 and JAX in fresh processes
        with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
            futures = [pool.submit(cached, run_path(*job), run_rule, *job, *extra) for job in jobs]
            credit_futures = [
                pool.submit(cached, credit_path(*job), run_credit, *job, args.quick, args.draws)
                for job in credit_jobs
            ]
            results = []
            for job, fut in zip(jobs, futures, strict=True):
                results.append(fut.result())
                print(f"done {job}: final score {results[-1]['score'][-1]:.3f}", flush=True)
            credit = [f.result() for f in credit_futures]
    for r in results:
        r["eval_trial"], r["score"] = np.asarray(r["eval_trial"]), np.asarray(r["score"])
    ds = to_dataset(results)
    args.out.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(args.out / "temporal_credit.nc")
    figure(ds, args.out / "temporal_credit.png")
    command = f"--seeds {' '.join(map(str, args.seeds))}"
    if args.tasks != DEFAULT_TASKS:
        command += f" --tasks {' '.join(args.tasks)}"
    if args.rules != DEFAULT_RULES:
        command += f" --rules {' '.join(args.rules)}"
    if args.trials is not None:
        command += f" --trials {args.trials}"
    if args.lr is not None:
        command += f" --lr {args.lr:g}"
    if args.hidden is not None:
        command += f" --hidden {args.hidden}"
    run_minutes = sum(float(r.get("wall", 0.0)) for r in results) / 60
    header = (
        f"## {args.title}\n\n"
        f"`python benchmarks/temporal_credit.py {command}"
        f"{' --quick' if args.quick else ''}` ({args.workers} worker processes, "
        f"{(time.perf_counter() - tic) / 60:.1f} min, the runs {run_minutes:.0f} min of "
        f"process time in all, cached runs included; training trials per task in its "
        f"heading); seeds {args.seeds}; accuracy = argmax of the mean output over the "
        f"decision period, "
        f"NRMSE over the forecast period (docs/metrics.md)."
    )
    text = tables(ds, credit, header)
    (args.out / "temporal_credit.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
