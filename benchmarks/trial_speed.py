"""Throughput of one training trial: TD-ANP vs forward-only, Brian2 runtime and standalone
vs the JAX twin.

For each network size N (1 s trials at dt = 1 ms, 5 random inputs, 1 readout, Adam):
  * ms per training trial and trials/s of TD-ANP (clean + noisy twin, per-synapse
    accumulation, trial-end Adam step) and of the forward-only control (rule "none"),
    for each Brian2 engine: runtime (cython) and cpp_standalone (``[engine] name``);
    the standalone time includes everything per block (process start, run arguments,
    results), its pure simulation time is shown beside it;
  * TD-ANP / forward-only (the cost of learning beyond simulation);
  * the JAX float64 reference: forward pass and BPTT training step of the same network and
    trial, and TD-ANP standalone / BPTT step;
  * the issue's twin workload written plainly: TD-ANP (twin, per-step outer products) as
    one jitted JAX ``lax.scan`` and as a numpy per-step loop (float64);
  * ns per synapse-step (ms per trial / (synapses × steps); synapses = N² + N·(n_in + n_out));
  * memory: bytes of per-synapse state (all arrays of the W_rec Synapses object, from the
    Brian2 variables), the synapses W_rec stores (N², the existing ones on the runtime
    engine, the program's slots for a sparse W_rec on the standalone engine) and their
    state in MB, the peak RSS of the simulating process and of the Python process.

Each measurement runs in its own process (``--worker``), so memory and Brian2 state do not
leak between them; a standalone program is compiled by a build-only process first (it is
cached, see bioperturb.engines.standalone), so the measured process only runs it.

Usage: python benchmarks/trial_speed.py [--sizes 100 400 1000] [--trials 20]
          [--engines runtime standalone] [--threads 1] [--no-jax]
Writes benchmarks/results/trial_speed.md. Do not run it while other CPU-heavy jobs run:
the machine has 2 cores, and a second job distorts timings by up to 10x.
Sparse W_rec: --p-connect 0.05 --sizes 2000 5000 10000 --engines standalone --no-jax
--trials 3 (results/trial_speed_sparse.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
N_INPUTS = 5


def protocol(
    n_hidden: int, rule: str, n_trials: int, engine: str, threads: int = 1, p_connect: float = 1
):
    from bioperturb.config import protocol_from_mapping

    model = {"preset": "rate_rnn", "n_hidden": n_hidden, "dt": "1 ms", "tau": "10 ms"}
    if p_connect < 1:
        model["p_connect"] = p_connect
    return protocol_from_mapping(
        {
            "name": f"bench_{rule}_{n_hidden}",
            "seed": 0,
            "model": model,
            "task": {
                "name": "pattern",
                "duration": "1 s",
                "input": "random",
                "n_inputs": N_INPUTS,
            },
            "rule": {"name": rule},
            "training": {
                "n_trials": n_trials,
                "eval_every": n_trials,
                "optimizer": "adam",
                "lr": 1e-4,
            },
            "engine": {"name": engine, "codegen": "cython", "threads": threads},
            "output": {"figures": False, "progress": False, "alignment": False},
        }
    )


# ------------------------------------------------------------------------- worker processes
def worker(
    engine: str,
    n_hidden: int,
    rule: str,
    n_trials: int,
    threads: int,
    build_only: bool,
    p_connect: float = 1.0,
):
    """Run one configuration; print a JSON line with its numbers."""
    from bioperturb.resources import synapse_state_bytes
    from bioperturb.training import Trainer

    tic = time.perf_counter()
    trainer = Trainer(protocol(n_hidden, rule, n_trials, engine, threads, p_connect))
    build = time.perf_counter() - tic
    if build_only:
        print(json.dumps({"build_s": build}))
        return
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_file = None
    if engine == "standalone" and Path("/usr/bin/time").exists():
        # peak RSS of the program itself (a forked child's own maxrss would include this
        # Python process's pages until exec)
        fd, rss_file = tempfile.mkstemp(suffix=".rss")
        os.close(fd)
        trainer.engine.kernel.run_prefix = ["/usr/bin/time", "-a", "-o", rss_file, "-f", "%M"]
    ds = trainer.run(progress=False)
    out: dict[str, float] = {"build_s": build}
    wall = ds["wall_time"].values
    if engine == "runtime":
        wall = wall[1:]  # the first trial may include code loading
        out["bytes_per_synapse"] = synapse_state_bytes(trainer.network.synapses["W_rec"])
        out["stored"] = len(trainer.network.synapses["W_rec"])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["rss_mb"] = peak / 1024
        out["rss_growth_mb"] = (peak - rss_before) / 1024
    else:
        meta = trainer.engine.kernel.meta
        rec = meta["synapses"][meta["matrices"]["W_rec"]]
        out["bytes_per_synapse"] = rec["bytes_per_synapse"]
        out["stored"] = rec["slots"] or rec["n_pre"] * rec["n_post"]
        out["rss_mb"] = float("nan")
        if rss_file is not None:
            kb = [int(x) for x in Path(rss_file).read_text().split() if x.isdigit()]
            out["rss_mb"] = max(kb) / 1024 if kb else float("nan")
            os.unlink(rss_file)
        n, tot, sim = np.array(trainer.engine.block_times).sum(axis=0)
        out["sim_ms"] = 1e3 * sim / n
        out["overhead_ms_per_block"] = 1e3 * (tot - sim) / len(trainer.engine.block_times)
    out["python_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["ms"] = 1e3 * float(np.median(wall))
    out["steps"] = trainer.tape.n_steps
    print(json.dumps(out))


def run_worker(*args: str) -> dict[str, float]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def jax_ms(n_hidden: int, repeats: int) -> tuple[float, float]:
    from bioperturb.reference import BPTTTrainer, forward
    from bioperturb.training import Trainer

    trainer = Trainer(protocol(n_hidden, "none", 1, "runtime"))
    tt, m = trainer.train_trials, trainer.protocol.model
    kw = dict(dt=m.dt, tau=m.tau)
    forward(trainer.weights0, tt.inputs[:1], **kw)  # compile
    tic = time.perf_counter()
    for _ in range(repeats):
        forward(trainer.weights0, tt.inputs[:1], **kw)
    fwd = (time.perf_counter() - tic) / repeats
    bptt = BPTTTrainer(trainer.weights0, optimizer="adam", lr=1e-4, **kw)
    bptt.step(tt.inputs[0], tt.targets[0], tt.mask[0])  # compile
    tic = time.perf_counter()
    for _ in range(repeats):
        bptt.step(tt.inputs[0], tt.targets[0], tt.mask[0])
    step = (time.perf_counter() - tic) / repeats
    return 1e3 * fwd, 1e3 * step


def twin_workload_ms(n_hidden: int, repeats: int, steps: int = 1000) -> tuple[float, float]:
    """(JAX, numpy) ms per TD-ANP trial of the twin workload, written the plain way.

    The workload of the issue's prototypes: clean and noisy twin (Euler, τ = 10 ms,
    dt = 1 ms, tanh), linear readout, per-step losses, and TD-ANP's per-step products
    accumulated for all three matrices (outer products into N² + N·n_in + n_out·N
    accumulators every step), float64. JAX: one jitted ``lax.scan``; numpy: a Python loop
    over steps. The noise is drawn beforehand (Brian2 draws it inside the loop).
    """
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(0)
    n, n_in, alpha = n_hidden, N_INPUTS, 0.1
    W = rng.normal(0, 1.5 / np.sqrt(n), (n, n))
    U = rng.normal(0, 1 / np.sqrt(n_in), (n, n_in))
    V = rng.normal(0, 1 / np.sqrt(n), (1, n))
    u = rng.normal(size=(steps, n_in))
    ystar = rng.normal(size=(steps, 1))
    xi = 0.05 * np.sqrt(2 * alpha) * rng.normal(size=(steps, n))

    def step(carry, x, lib):
        h, hn, r, rn, a_rec, a_in, a_out = carry
        ut, yt, xit = x
        h2 = h + alpha * (-h + W @ r + U @ ut)
        hn2 = hn + alpha * (-hn + W @ rn + U @ ut) + xit
        r2, rn2 = lib.tanh(h2), lib.tanh(hn2)
        y, yn = V @ r2, V @ rn2
        dl = 0.5 * lib.sum((yn - yt) ** 2) - 0.5 * lib.sum((y - yt) ** 2)
        d, dy = hn2 - h2, yn - y
        g, gy = dl / (d @ d + 1e-30), dl / (dy @ dy + 1e-30)
        a_rec = a_rec + g * lib.outer(d, r)
        a_in = a_in + g * lib.outer(d, ut)
        a_out = a_out + gy * lib.outer(dy, r2)
        return (h2, hn2, r2, rn2, a_rec, a_in, a_out), None

    z = np.zeros(n)
    init = (z, z, z, z, np.zeros((n, n)), np.zeros((n, n_in)), np.zeros((1, n)))

    @jax.jit
    def trial(init, xs):
        return jax.lax.scan(lambda c, x: step(c, x, jnp), init, xs)[0]

    xs = (u, ystar, xi)
    jax.block_until_ready(trial(init, xs))  # compile
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        jax.block_until_ready(trial(init, xs))
        times.append(time.perf_counter() - tic)
    jax_t = float(np.median(times))
    times = []
    for _ in range(max(1, min(repeats, 5))):
        tic = time.perf_counter()
        carry = init
        for t in range(steps):
            carry = step(carry, (u[t], ystar[t], xi[t]), np)[0]
        times.append(time.perf_counter() - tic)
    return 1e3 * jax_t, 1e3 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1000])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument(
        "--engines", nargs="+", default=["runtime", "standalone"], choices=("runtime", "standalone")
    )
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads (standalone)")
    parser.add_argument("--no-jax", action="store_true", help="skip the JAX reference")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "trial_speed.md")
    parser.add_argument("--note", default="", help="a line added under the title")
    parser.add_argument(
        "--p-connect",
        type=float,
        default=1.0,
        help="connection probability of W_rec (the JAX and numpy twins stay dense)",
    )
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        engine, n, rule, trials, threads, p_connect = args.worker
        worker(engine, int(n), rule, int(trials), int(threads), args.build_only, float(p_connect))
        return

    load = os.getloadavg()[0]
    rows = []
    for n in args.sizes:
        n_syn = round(args.p_connect * n * n) + n * (N_INPUTS + 1)
        jf = jb = jt = npl = float("nan")
        if not args.no_jax:
            jf, jb = jax_ms(n, 20)
            jt, npl = twin_workload_ms(n, 10)
        for engine in args.engines:
            res = {}
            for rule in ("td_anp", "none"):
                wargs = (
                    engine,
                    str(n),
                    rule,
                    str(args.trials),
                    str(args.threads),
                    str(args.p_connect),
                )
                if engine == "standalone":  # compiles unless the program is cached
                    res[f"{rule}_first"] = run_worker(*wargs, "--build-only")["build_s"]
                res[rule] = run_worker(*wargs)
                print(engine, n, rule, res[rule], file=sys.stderr, flush=True)
            anp, fwd = res["td_anp"], res["none"]
            rows.append(
                {
                    "N": n,
                    "engine": engine if args.p_connect == 1 else f"{engine}, p = {args.p_connect}",
                    "anp_ms": anp["ms"],
                    "anp_sim_ms": anp.get("sim_ms", float("nan")),
                    "fwd_ms": fwd["ms"],
                    "ratio": anp["ms"] / fwd["ms"],
                    "tps": 1e3 / anp["ms"],
                    "ns_syn_step": 1e6 * anp["ms"] / (n_syn * anp["steps"]),
                    "jax_fwd": jf,
                    "jax_bptt": jb,
                    "vs_bptt": anp["ms"] / jb,
                    "jax_twin": jt,
                    "numpy_loop": npl,
                    "vs_twin": anp["ms"] / jt,
                    "bytes": anp["bytes_per_synapse"],
                    "stored": anp["stored"],
                    "py_rss": anp["python_rss_mb"],
                    "rss": anp["rss_mb"],
                    "first": res.get("td_anp_first", float("nan")),
                    "build": anp["build_s"] if engine == "standalone" else float("nan"),
                    "overhead": anp.get("overhead_ms_per_block", float("nan")),
                }
            )
    header = (
        "| N | engine | TD-ANP ms/trial | (simulating) | trials/s | forward-only ms/trial "
        "| TD-ANP / forward | ns per synapse-step | JAX forward ms | JAX BPTT step ms "
        "| TD-ANP / BPTT step | JAX TD-ANP twin ms | TD-ANP / JAX twin | numpy loop ms "
        "| state B/synapse | W_rec synapses stored | W_rec state MB | peak RSS MB "
        "| Python peak RSS MB | first build s | cached build s | overhead ms/block |"
    )
    lines = [header, "|" + "---|" * 22]
    for r in rows:
        lines.append(
            f"| {r['N']} | {r['engine']} | {r['anp_ms']:.1f} | {r['anp_sim_ms']:.1f} "
            f"| {r['tps']:.2f} | {r['fwd_ms']:.1f} | {r['ratio']:.2f} | {r['ns_syn_step']:.2f} "
            f"| {r['jax_fwd']:.2f} | {r['jax_bptt']:.2f} | {r['vs_bptt']:.1f} "
            f"| {r['jax_twin']:.2f} | {r['vs_twin']:.1f} | {r['numpy_loop']:.1f} "
            f"| {r['bytes']:.0f} | {r['stored']} | {r['bytes'] * r['stored'] / 2**20:.0f} "
            f"| {r['rss']:.0f} | {r['py_rss']:.0f} | {r['first']:.1f} | {r['build']:.2f} "
            f"| {r['overhead']:.1f} |"
        )
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import brian2

    machine = (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"Brian2 {brian2.__version__} (runtime: cython; standalone: g++ "
        f"{' '.join(brian2.prefs['codegen.cpp.extra_compile_args_gcc'])}, "
        f"{args.threads} thread(s)); 1 s trials at dt = 1 ms, {N_INPUTS} inputs, 1 output, Adam; "
        f"median of {args.trials} trials (standalone: per-trial share of whole blocks, "
        f"process start and I/O included; 'simulating' is the compiled loop alone); "
        f"load average at start {load:.2f}"
    )
    notes = [
        "JAX TD-ANP twin / numpy loop: the issue's prototype workload written the plain way "
        "(float64; clean + noisy twin, readout, per-step TD-ANP outer products into all "
        "three accumulators; noise drawn beforehand): one jitted lax.scan, and a Python "
        "loop over steps with numpy. JAX forward / BPTT step: bioperturb.reference on the "
        "same network (clean forward pass; one optax Adam step of true BPTT).",
        "Sparse W_rec (model.p_connect < 1): ns per synapse-step counts "
        "the existing synapses; the JAX columns are the dense twin of the same N. See "
        "results/trial_speed_sparse.md. The standalone engine stores a sparse W_rec in "
        "slots (the expected count + 8 sd; state B/synapse is per slot) and its fused C++ "
        "works on the existing synapses only; the Python process holds W_rec densely "
        "(initial and recorded weights: 8 B per matrix entry each).",
        "first build s: the first Trainer of a shape in a process, compiling the program "
        "unless the cache holds it (TD-ANP); cached build s: a Trainer that finds it "
        "(reads kernel.json, copies the binary). overhead ms/block: per run of the "
        "program, the time outside its simulation loop (start, run arguments, results).",
        "Peak RSS: the Python process (runtime engine; includes its imports) or the "
        "compiled program alone (standalone, measured with /usr/bin/time).",
    ]
    head = ["# Trial throughput", ""] + ([args.note, ""] if args.note else [])
    text = "\n".join([*head, machine, "", *lines, "", *notes, ""])
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
