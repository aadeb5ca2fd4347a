"""Miconi (2017)'s delayed non-match-to-sample, written from the paper in plain numpy.

An independent check, outside Brian2 and outside the package, that the published
algorithm learns at the published settings: N = 200 rate units, τ = 30 ms, dt = 1 ms,
recurrent gain 1.5, one output that is a unit of the network itself, trials of 1 s (cue 1
for 200 ms, 200 ms delay, cue 2 for 200 ms, 200 ms gap, response in the last 200 ms),
exploratory kicks (each unit, with probability 3 per second, receives a drive uniform in
[−16, 16], which moves x by ≈ 16·dt/τ ≈ 0.5), the eligibility

    e_ij += (r_j(t−1) · (x_i(t) − x̄_i(t−1)))³,    x̄_i ← 0.05 x̄_i + 0.95 x_i,

and at the end of each trial of condition c, with the mean absolute error E of the output
over the response period and the running average Ē_c of that condition's errors,

    ΔW_ij = clip(−η Ē_c e_ij (E − Ē_c), ±3·10⁻⁴),    Ē_c ← 0.75 Ē_c + 0.25 E,

after 100 warm-up trials (η = 0.1). Units 1, 10 and 11 are clamped at +1, +1, −1 (biases);
each trial starts from a random state in [−0.1, 0.1]; the four conditions take turns. A
trial is *correct* when E < 1 (the output's mean is on the target's side of 0).

(a·b)³ = a³b³, so the trial's eligibility is one matrix product of the cubed fluctuations
and the cubed presynaptic rates over the trial's steps.

``--readout random``, ``--coding onehot``, ``--no-bias-units``, ``--start zero`` and
``--gap 0``, ``--fixation`` and ``--constant-lr`` swap in bioperturb's conventions one at
a time (a fixed random linear readout of all units; two outputs with one-hot targets and
the ½ squared error; a fixed bias instead of clamped units; each trial from x = 0; the
answer right after cue 2; a fixation cue on input 0 until the response; a constant
learning rate instead of η Ē_c), to find
which of them keeps the rule from learning (docs/temporal-credit.md).

Usage: python benchmarks/miconi_reference.py [--seeds 0 1 2] [--trials 3000]
Writes benchmarks/results/miconi_reference.md (the fraction correct per 100 trials and
the trials until 95 % of 100 consecutive trials are correct). ``--quick``: a seconds-long
smoke version (CI).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BIAS_UNITS = {1: 1.0, 10: 1.0, 11: -1.0}


@dataclass(frozen=True)
class Settings:
    n: int = 200
    tau: float = 30.0  # ms
    dt: float = 1.0  # ms
    g: float = 1.5
    eta: float = 0.1
    kick: float = 16.0
    kick_prob: float = 0.003  # per unit and step (3 Hz at dt = 1 ms)
    max_dw: float = 3e-4
    baseline_keep: float = 0.75  # weight of the old running error
    trace_keep: float = 0.05  # weight of the old x̄
    trial_ms: int = 1000
    response_ms: int = 200
    warmup: int = 100
    fixation: bool = False  # input 0 = 1 until the response (bioperturb's fixation cue)
    constant_lr: float = 0.0  # > 0: ΔW = clip(−lr e (E − Ē_c)), no factor Ē_c (bioperturb's)
    readout: str = "unit"  # "unit": r of unit 0 (the paper); "random": w·r, w ~ N(0, 1/N)
    bias_units: bool = True  # units 1, 10, 11 clamped at +1, +1, −1 (the paper)
    start: str = "random"  # x at a trial's start: uniform in ±0.1 (the paper), or "zero"
    coding: str = "sign"  # "sign": one output, ±0.98, E = mean |y − y*| (the paper);
    # "onehot": outputs match / non-match, targets 1 / 0, E = mean of ½‖y − y*‖² (bioperturb's)


#: the output units of each coding (units 1, 10, 11 are the clamped biases)
OUTPUT_UNITS = {"sign": [0], "onehot": [0, 2]}


def cues(s: Settings) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (4, steps, 3), targets (4, outputs)): cue 1 at 0–200 ms, cue 2 at 400–600 ms;
    input 0 is unused. ``sign``: non-match (A-B, B-A) → +0.98, match → −0.98; ``onehot``:
    (1, 0) for match, (0, 1) for non-match."""
    steps = int(s.trial_ms / s.dt)
    on1 = slice(1, 1 + int(200 / s.dt))
    on2 = slice(int(400 / s.dt), int(600 / s.dt))
    inputs = np.zeros((4, steps, 3))
    for c, (a, b) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2)]):
        inputs[c, : steps - int(s.response_ms / s.dt), 0] = float(s.fixation)
        inputs[c, on1, a] = 1.0
        inputs[c, on2, b] = 1.0
    match = np.array([True, False, False, True])
    if s.coding == "onehot":
        return inputs, np.stack([match, ~match], axis=1).astype(float)
    return inputs, np.where(match, -0.98, 0.98)[:, None]


def train(
    seed: int, n_trials: int, s: Settings, log_every: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The error E of every trial and whether it was correct (the network learns as it
    goes). Correct: ``sign``, E < 1 (the mean output on the target's side of 0);
    ``onehot``, the larger mean output over the response is the target's."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((s.n, s.n)) * s.g / np.sqrt(s.n)
    w_in = rng.uniform(-1.0, 1.0, (s.n, 3))
    if not s.fixation:
        w_in[:, 0] = 0.0  # the paper's input 0 is unused
    units = OUTPUT_UNITS[s.coding]
    w_out = np.zeros((len(units), s.n))
    if s.readout == "random":  # a fixed random readout of every unit (our networks')
        w_out = rng.standard_normal(w_out.shape) / np.sqrt(s.n)
    else:
        w_out[np.arange(len(units)), units] = 1.0
    inputs, targets = cues(s)
    steps, respond = inputs.shape[1], int(s.response_ms / s.dt)
    baseline = np.zeros(4)
    errors = np.zeros(n_trials)
    correct = np.zeros(n_trials, dtype=bool)
    a = s.dt / s.tau
    tic = time.perf_counter()
    for k in range(n_trials):
        c = k % 4
        x = rng.uniform(-0.1, 0.1, s.n)
        if s.start == "zero":
            x[:] = 0.0
        clamp = BIAS_UNITS if s.bias_units else {}
        for unit, value in clamp.items():
            x[unit] = value
        r = np.tanh(x)
        xbar = np.zeros(s.n)
        post3 = np.zeros((steps, s.n))
        pre3 = np.zeros((steps, s.n))
        out = np.zeros((steps, len(units)))
        drive_in = inputs[c] @ w_in.T
        for t in range(steps):
            r_prev = r
            drive = w @ r + drive_in[t]
            if t > 3:
                kicked = rng.random(s.n) < s.kick_prob
                drive = drive + kicked * s.kick * rng.uniform(-1.0, 1.0, s.n)
            x = x + a * (drive - x)
            for unit, value in clamp.items():
                x[unit] = value
            r = np.tanh(x)
            out[t] = w_out @ r
            fluct = x - xbar
            xbar = s.trace_keep * xbar + (1.0 - s.trace_keep) * x
            if t > 2:
                post3[t], pre3[t] = fluct**3, r_prev**3
        miss = out[-respond:] - targets[c]
        if s.coding == "onehot":
            err = float(0.5 * (miss**2).sum(axis=1).mean())
            correct[k] = out[-respond:].mean(axis=0).argmax() == targets[c].argmax()
        else:
            err = float(np.abs(miss).mean())
            correct[k] = err < 1.0
        if k > s.warmup:
            elig = post3.T @ pre3  # Σ_t (fluct_i r_j)³
            rate = s.constant_lr if s.constant_lr > 0 else s.eta * baseline[c]
            step = -rate * elig * (err - baseline[c])
            w += np.clip(step, -s.max_dw, s.max_dw)
        baseline[c] = s.baseline_keep * baseline[c] + (1.0 - s.baseline_keep) * err
        errors[k] = err
        if log_every and (k + 1) % log_every == 0:
            recent = errors[k + 1 - log_every : k + 1]
            print(
                f"seed {seed} trial {k + 1}: mean error {recent.mean():.3f}, "
                f"correct {correct[k + 1 - log_every : k + 1].mean():.2f} "
                f"({time.perf_counter() - tic:.0f} s)",
                flush=True,
            )
    return errors, correct


def trials_to(correct: np.ndarray, level: float = 0.95, window: int = 100) -> int | None:
    """Trials until ``level`` of ``window`` consecutive trials are correct."""
    correct = np.convolve(correct, np.ones(window), "valid") / window
    hit = np.flatnonzero(correct >= level)
    return int(hit[0] + window) if hit.size else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--trials", type=int, default=3000)
    ap.add_argument(
        "--dt",
        type=float,
        default=1.0,
        help="time step in ms (the paper: 1); kicks stay 3 Hz and move x by the same "
        "≈0.53, x̄ keeps the same time constant",
    )
    ap.add_argument(
        "--readout",
        choices=("unit", "random"),
        default="unit",
        help="the output: unit 0 of the network (the paper) or a fixed random linear "
        "readout of all units (as in bioperturb's networks)",
    )
    ap.add_argument(
        "--coding",
        choices=("sign", "onehot"),
        default="sign",
        help="the answer: one output at ±0.98 scored by the mean absolute error (the paper) "
        "or two outputs (match, non-match) with one-hot targets scored by ½ squared error "
        "(bioperturb's delayed_match)",
    )
    ap.add_argument(
        "--no-bias-units",
        action="store_true",
        help="no clamped bias units (the paper clamps units 1, 10, 11; bioperturb has a fixed "
        "bias b, 0 by default)",
    )
    ap.add_argument(
        "--start",
        choices=("random", "zero"),
        default="random",
        help="the state at each trial's start: uniform in ±0.1 (the paper) or 0 (bioperturb)",
    )
    ap.add_argument(
        "--gap",
        type=float,
        default=200.0,
        help="ms between the end of cue 2 and the response (the paper: 200; bioperturb's "
        "delayed_match has none); the trial lasts 800 ms + gap",
    )
    ap.add_argument(
        "--fixation",
        action="store_true",
        help="input 0 is 1 until the response (bioperturb's delayed_match fixation cue; the "
        "paper's input 0 is unused)",
    )
    ap.add_argument(
        "--constant-lr",
        type=float,
        default=0.0,
        help="> 0: the step −lr e (E − Ē_c), clipped, without the paper's factor Ē_c (as "
        "bioperturb's miconi rule with SGD and training.max_step)",
    )
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke version (CI)")
    args = ap.parse_args(argv)
    s = Settings()
    if args.dt != s.dt:  # the same kicks and averaging time in ms
        ratio = args.dt / s.dt
        s = Settings(
            dt=args.dt,
            kick_prob=s.kick_prob * ratio,
            kick=s.kick / ratio,
            trace_keep=s.trace_keep**ratio,
        )
    s = replace(
        s,
        readout=args.readout,
        coding=args.coding,
        bias_units=not args.no_bias_units,
        start=args.start,
        trial_ms=int(round(800 + args.gap)),
        fixation=args.fixation,
        constant_lr=args.constant_lr,
    )
    if args.quick:
        s = replace(s, n=20, trial_ms=100, response_ms=20, warmup=2)
        args.seeds, args.trials = args.seeds[:1], 12
    # each choice that differs from the paper: (the option as typed, its file-name suffix)
    options = [
        (args.dt != 1.0, f"--dt {args.dt:g}", f"_dt{args.dt:g}"),
        (args.readout != "unit", f"--readout {args.readout}", f"_{args.readout}_readout"),
        (args.coding != "sign", f"--coding {args.coding}", f"_{args.coding}"),
        (args.no_bias_units, "--no-bias-units", "_no_bias_units"),
        (args.start != "random", f"--start {args.start}", f"_{args.start}_start"),
        (args.gap != 200, f"--gap {args.gap:g}", f"_gap{args.gap:g}"),
        (args.fixation, "--fixation", "_fixation"),
        (args.constant_lr > 0, f"--constant-lr {args.constant_lr:g}", f"_lr{args.constant_lr:g}"),
        (args.quick, "--quick", "_quick"),
    ]
    changed = [(flag, suffix) for on, flag, suffix in options if on]
    rows, curves = [], {}
    tic = time.perf_counter()
    for seed in args.seeds:
        errors, correct = train(seed, args.trials, s, log_every=0 if args.quick else 500)
        curves[seed] = correct
        reached = trials_to(correct)
        last = slice(-min(100, len(errors)), None)
        rows.append(
            f"| {seed} | {reached if reached is not None else '—'} | "
            f"{correct[last].mean():.2f} | {errors[last].mean():.3f} |"
        )
    blocks = {
        seed: [f"{c[i : i + 100].mean():.2f}" for i in range(0, len(c), 100)]
        for seed, c in curves.items()
    }
    text = "\n".join(
        [
            "## Miconi (2017) DNMS, the published algorithm in plain numpy",
            "",
            f"`python benchmarks/miconi_reference.py --seeds {' '.join(map(str, args.seeds))} "
            f"--trials {args.trials}{''.join(f' {flag}' for flag, _ in changed)}` "
            f"({(time.perf_counter() - tic) / 60:.1f} min on this machine); N = {s.n}, "
            f"dt = {s.dt:g} ms, τ = {s.tau:g} ms, g = {s.g}; "
            + (
                "two outputs (units 0, 2), error ½‖y − y*‖² averaged over the response; "
                "correct: the larger mean output over the response is the target's."
                if s.coding == "onehot"
                else "correct: mean absolute error < 1 over the response period."
            ),
            "",
            "| seed | trials to 95 % of 100 consecutive trials correct | correct, last 100 "
            "| mean error, last 100 |",
            "|---|---|---|---|",
            *rows,
            "",
            "Fraction correct per block of 100 trials:",
            "",
            *(f"- seed {seed}: {' '.join(b)}" for seed, b in blocks.items()),
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    name = "miconi_reference" + "".join(suffix for _, suffix in changed) + ".md"
    (args.out / name).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
