"""Standalone programs: generate, compile and cache one per kernel key; run them per block.

The network of :mod:`bioperturb.networks.rate` (with the rules and optimisers, unchanged)
becomes a *kernel*: a compiled Brian2 ``cpp_standalone`` program that runs up to
``capacity`` tape trials from a state given on its command line
(:class:`~bioperturb.engines.standalone.StandaloneEngine` drives it). docs/engines.md has
the full story; in short:

* **Everything that varies between runs is a run argument.** The program is generated
  from placeholder values (zero weights, σ = 0, b = 0, η = 0, an all-zero tape), so its
  code depends only on the *kernel key* (shape, structural model settings, rule, optimiser,
  tape shape, threads, Brian2 version, compiler flags, CPU, the network/rule/optimiser
  sources). Each run sets the block's stretch of the tape (TimedArray values), the weights
  and every other carried state variable, σ, b, the optimiser's hyperparameters, the
  sampled units, where to start and when to stop (Brian2's ``<object>.<variable>=<file>``
  run arguments). Sweeps and resumes over seeds, weights, η, σ or b reuse one compiled
  program.
* **Exact continuation.** Every writable non-constant variable is read after a block and
  set before the next, and so is the full state of the random generators (Mersenne Twister
  words *and* the spare Box–Muller number, see ``cpp/bioperturb_rng.h``). Blocks after the
  first start at t = dt (tape row 0, the reset step, runs once), so any split into blocks
  gives the same run. A control group stops the program once the block's trials are done.
* **Same noise as the runtime engine** with one thread: Brian2's standalone generator is
  seeded like numpy's legacy ``RandomState(seed)`` and draws ``randn`` by the same polar
  method. With ``threads > 1`` every OpenMP thread draws its own stream.
* **Build cache and isolation.** Programs are built by a fresh Python process
  (``python -m bioperturb.engines.standalone build``) into
  ``$BIOPERTURB_STANDALONE_CACHE/<key>`` (default ``~/.cache/bioperturb/standalone``)
  under a file lock, once per key and machine; a kernel then copies the binary and its
  static arrays into a private run directory and runs the binary itself. The calling
  process never switches Brian2's (process-global) device and holds no standalone
  objects, so runtime networks in the same process are unaffected, and generated code
  never depends on the names other Brian2 objects of the process took.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import brian2
import numpy as np
from brian2 import second

from bioperturb import plugins
from bioperturb.engines.standalone.fused import (
    FUSED_HEADER_NAME,
    FusionPlan,
    cpp_function,
    fused_header,
    protocol_fusion,
)
from bioperturb.modelspec import model_spec
from bioperturb.networks.rate import Tape
from bioperturb.optimizers import OPTIMIZER_PARAMS
from bioperturb.resources import sparse_slots, synapse_state_bytes
from bioperturb.rules import get_rule

if TYPE_CHECKING:
    from bioperturb.protocol import Protocol

__all__ = [
    "Kernel",
    "KernelSpec",
    "cache_dir",
    "CACHE_ENV",
    "HEADERS",
]

#: environment variable naming the build cache directory
CACHE_ENV = "BIOPERTURB_STANDALONE_CACHE"

#: model fields that enter a kernel only as run arguments or initial weights
_RUNTIME_MODEL_FIELDS = ("sigma", "bias", "g", "input_scale", "output_scale", "n_outputs")

#: the tape's TimedArrays (namespace name of build_rate_network -> Tape field)
TAPE_ARRAYS = {
    "stim": "inputs",
    "target": "targets",
    "mask_at": "mask",
    "noise_at": "noise",
    "learn_at": "learn",
    "step_at": "step",
    "minv_at": "m_inv",
    "n_updates": "n_updates",
}

_STOP_CPP = """
double bioperturb_stop(const double flag)
{
    if (flag != 0.0)
        Network::_globally_stopped = true;
    return flag;
}
"""


def cache_dir() -> Path:
    """Where compiled programs are kept (``$BIOPERTURB_STANDALONE_CACHE`` or ~/.cache)."""
    env = os.environ.get(CACHE_ENV)
    base = Path(env) if env else Path.home() / ".cache" / "bioperturb" / "standalone"
    return base.expanduser()


@functools.cache
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{platform.machine()} {line.split(':', 1)[1].strip()}"
    except OSError:
        pass
    return platform.machine()


#: the sources a program is generated from (relative to the package)
_PROGRAM_SOURCES = (
    "networks/*.py",
    "rules/*.py",
    "optimizers.py",
    "engines/standalone/*.py",
    "engines/standalone/cpp/*",
)

#: the C++ headers every program includes (package data next to this module)
HEADERS = ("bioperturb_rng.h", "bioperturb_vecmath.h")
_CPP_DIR = Path(__file__).resolve().parent / "cpp"


@functools.cache
def source_hash() -> str:
    """Hash of the sources a program is generated from: it is rebuilt when they change."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[2]
    paths = {path for pattern in _PROGRAM_SOURCES for path in root.glob(pattern)}
    for path in sorted(paths):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------- the kernel
@dataclass(frozen=True)
class KernelSpec:
    """What a compiled program depends on (everything else is passed at run time).

    Only the protocol's structural settings enter the key. The build process receives
    the spec as JSON (:meth:`to_json`, the protocol as its TOML text) and reads it back
    with :meth:`from_json` and the protocol reader it is given
    (``python -m bioperturb.engines.standalone`` gives :mod:`bioperturb.config`'s).
    """

    protocol: Protocol
    n_in: int
    n_out: int
    n_steps: int
    capacity: int
    n_record: int

    def to_json(self) -> str:
        doc = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return json.dumps({**doc, "protocol": self.protocol.to_toml()})

    @classmethod
    def from_json(cls, text: str, read_protocol: Callable[[str], Protocol]) -> KernelSpec:
        doc = json.loads(text)
        return cls(**{**doc, "protocol": read_protocol(doc["protocol"])})

    def key(self) -> str:
        """Hash of the shape, rule, options and code: one build directory per key."""
        p = self.protocol
        model = {
            k: v for k, v in dataclasses.asdict(p.model).items() if k not in _RUNTIME_MODEL_FIELDS
        }
        t = p.training
        doc = {
            "brian2": brian2.__version__,
            "source": source_hash(),
            "machine": _cpu_name(),  # the program is compiled with -march=native
            "cflags": list(brian2.prefs["codegen.cpp.extra_compile_args_gcc"]),
            "model": model,
            "rule": [p.rule_name, dataclasses.asdict(p.rule)],
            "optimizer": t.optimizer,
            "clip": t.max_step > 0,
            "slots": sparse_slots(p.model.n_hidden, p.model.n_hidden, p.model.p_connect)
            if getattr(p.model, "p_connect", 1.0) < 1
            else None,
            "threads": p.engine.threads,
            "fuse": self.fusion.describe(),
            "shape": [self.n_in, self.n_out, self.n_steps, self.capacity],
            "record": [p.output.record_dt, self.n_record],
            "alignment": p.output.alignment,  # whether synapses keep acc_last
        }
        doc.update(plugins.kernel_sources(p))  # a user rule: its class and source (builtins: none)
        text = json.dumps(doc, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @functools.cached_property
    def fusion(self) -> FusionPlan:
        """What of W_rec's work the program does in fused C++ (``engine.fuse``)."""
        return protocol_fusion(self.protocol)

    def placeholders(self) -> tuple[Any, Any, Tape]:
        """(model, training, tape) with protocol-independent values for code generation."""
        p = self.protocol
        model = dataclasses.replace(p.model, sigma=0.0, bias=0.0)
        t = p.training
        training = dataclasses.replace(
            t, lr=0.0, beta1=0.0, beta2=0.0, adam_eps=1.0, max_step=1.0 if t.max_step > 0 else 0.0
        )
        tape = Tape.blank(self.capacity, self.n_steps, self.n_in, self.n_out)
        return model, training, tape


def _stop_function() -> Any:
    return cpp_function("bioperturb_stop", _STOP_CPP)


def build_program(spec: KernelSpec, build_dir: Path, key: str) -> None:
    """Generate and compile the program of ``spec`` into ``build_dir``; write kernel.json.

    ``key`` is the kernel key the caller computed (the caller's sources may be older than
    the files this process read; the caller rebuilds when the key is not its own).

    Runs in a fresh process (``python -m bioperturb.engines.standalone build``), so the generated
    code does not depend on which other Brian2 objects a process holds (Brian2 suffixes
    the names of code objects whose names are taken) and the caller's Brian2 state is
    never touched.
    """
    from brian2 import NeuronGroup, SpikeMonitor, StateMonitor, Synapses, prefs, set_device
    from brian2 import device as dev
    from brian2.core.variables import ArrayVariable

    p = spec.protocol
    threads = p.engine.threads
    prefs.devices.cpp_standalone.openmp_threads = threads if threads > 1 else 0
    prefs.devices.cpp_standalone.extra_make_args_unix = [f"-j{os.cpu_count() or 1}"]
    set_device("cpp_standalone", build_on_run=False)
    model, training, tape = spec.placeholders()
    rule = get_rule(p.rule_name)(p.rule)
    net = model_spec(p.model.kind).build(
        model,
        rule,
        training,
        tape,
        None,
        record_dt=p.output.record_dt,
        record_units=np.arange(max(spec.n_record, 1)),
        fuse=spec.fusion,
        keep_estimate=p.output.alignment,  # acc_last only where the alignment reads it
    )
    twin = "L_n_cum" in net.loss.variables
    trial_mon = StateMonitor(
        net.loss,
        ["L_cum", "L_n_cum"] if twin else ["L_cum"],
        record=0,
        clock=net.trial_clock,
        when="end",
        order=-2,
        name="mon_trial_losses",
    )
    objs: list[Any] = [trial_mon]
    # The runtime engine's activity (and membrane) monitors record fixed indices (compiled
    # in); here a probe copies r (and v) of the sampled units, whose indices are a run
    # argument. A spiking network's spike monitor records every trial of the block; the
    # engine keeps the evaluation trials' spikes.
    spiking = "spikes" in net.monitors
    probed = ["r", "v"] if spiking else ["r"]
    for name in ("activity", "membrane", "spikes"):
        if name in net.monitors:
            net.net.remove(net.monitors[name])
    rec_clock = net.monitors["loss_t"].clock
    probe_mon = None
    if spec.n_record:
        probe = NeuronGroup(
            spec.n_record,
            "".join(f"{var} : 1\n" for var in probed) + "unit : integer (constant)",
            clock=rec_clock,
            name="bp_probe",
        )
        copy = Synapses(
            net.hidden,
            probe,
            "\n".join(f"{v}_post = int(i == unit_post) * {v}_pre : 1 (summed)" for v in probed),
            clock=rec_clock,
            name="bp_probe_copy",
        )
        copy.connect()
        for var in probed:
            net.schedule_summed(copy, var, order=5)
        probe_mon = StateMonitor(
            probe, probed, record=True, clock=rec_clock, when="start", order=6, name="bp_mon_r"
        )
        objs += [probe, copy, probe_mon]
    spike_mon = SpikeMonitor(net.hidden, name="bp_mon_spikes") if spiking else None
    if spike_mon is not None:
        objs.append(spike_mon)
    # stops the run at the end of the block's last trial (t_stop: a run argument)
    control = NeuronGroup(
        1,
        "t_stop : second (shared, constant)\nt_begin : second (shared, constant)\n"
        "stopped : 1 (shared)",
        clock=net.trial_clock,
        name="bp_control",
    )
    control.run_regularly(
        "stopped = bioperturb_stop(int(t > t_stop))", when="end", order=100, name="bp_stop"
    )
    net.namespace["bioperturb_stop"] = _stop_function()
    objs.append(control)
    net.net.add(*objs)

    # run arguments are applied here, after every initialisation; then the start time,
    # the clocks and the random state of the block
    dev.apply_run_args()
    begin = dev.get_array_name(control.variables["t_begin"])
    clocks = sorted({obj.clock.name for obj in net.net.objects})
    dev.code_lines["before_network_run"].append(
        "\n".join(
            [
                f"{net.net.name}.t = {begin}[0];",
                *(f"bioperturb_rng::start_at({c}, {begin}[0]);" for c in clocks),
                'bioperturb_rng::load(brian::results_dir + "rng_in");',
            ]
        )
    )
    dev.code_lines["before_end"].append('bioperturb_rng::save(brian::results_dir + "rng_out");')
    dev.headers += ['"bioperturb_rng.h"', '"bioperturb_vecmath.h"']
    if spec.fusion.active:
        dev.headers.append(f'"{FUSED_HEADER_NAME}"')
    net.net.run(tape.inputs.shape[0] * p.model.dt * second, namespace=net.namespace)
    build_dir.mkdir(parents=True, exist_ok=True)
    for header in HEADERS:
        shutil.copyfile(_CPP_DIR / header, build_dir / header)
    if spec.fusion.active:
        header = fused_header(net, rule, spec.fusion, dev, twin)
        (build_dir / FUSED_HEADER_NAME).write_text(header)
    dev.build(directory=str(build_dir), compile=True, run=False, with_output=False)

    # what the parent needs to run the program and read its results, without Brian2
    all_syn = {syn.name: syn for syn in (*net.synapses.values(), *net.lateral.values())}
    # every Synapses object of the network is all-to-all (the rules' storage synapses too)
    # but a sparse W_rec, stored as a fixed number of slots
    slots = {net.synapses[name].name: k for name, k in net.slots.items()}
    n_syn = {
        obj.name: slots.get(obj.name, len(obj.source) * len(obj.target))
        for obj in net.net.objects
        if isinstance(obj, Synapses)
    }

    def entry(var: Any) -> dict[str, Any]:
        owner = var.owner.name
        size = n_syn[owner] if owner in n_syn and not var.scalar else int(var.size)
        return {
            "cname": f"{owner}.{var.name}",
            "file": dev.get_array_filename(var),
            "dtype": np.dtype(var.dtype).str,
            "size": size,
        }

    skip = {"bp_probe", "bp_probe_copy", "bp_control", "bp_mon_spikes"}
    state = {}
    for obj in net.net.objects:
        variables = getattr(obj, "variables", None)
        if variables is None or obj.name in skip:
            continue
        for name, var in variables.items():
            if not isinstance(var, ArrayVariable) or var.read_only or var.constant:
                continue
            if var.owner is None or var.owner.name != obj.name:
                continue  # a reference to another object's variable
            state[f"{obj.name}/{name}"] = entry(var)
    params = {
        "hidden/sigma": entry(net.hidden.variables["sigma"]),
        "hidden/b": entry(net.hidden.variables["b"]),
        "bp_control/t_stop": entry(control.variables["t_stop"]),
        "bp_control/t_begin": entry(control.variables["t_begin"]),
    }
    if probe_mon is not None:
        params["bp_probe/unit"] = entry(probe_mon.source.variables["unit"])
    rec = net.synapses["W_rec"]
    if "cell" in rec.variables:  # sparse W_rec: which synapse each slot holds
        params[f"{rec.name}/cell"] = entry(rec.variables["cell"])
    for syn in net.synapses.values():
        for name in OPTIMIZER_PARAMS:
            if name in syn.variables:
                params[f"{syn.name}/{name}"] = entry(syn.variables[name])
    tape_arrays = {
        name: {
            "cname": f"{net.namespace[name].name}.values",
            "dtype": np.dtype(net.namespace[name].values.dtype).str,
        }
        for name in TAPE_ARRAYS
        if net.namespace[name] in dev.timed_arrays  # only those some code uses
    }

    def monitor(mon: Any, var: str) -> str:
        return dev.get_array_filename(mon.variables[var])

    meta = {
        "key": key,
        "state": state,
        "params": params,
        "tape": tape_arrays,
        "synapses": {
            name: {
                "n_pre": len(syn.source),
                "n_post": len(syn.target),
                "slots": slots.get(name),  # None: all-to-all
                "pre_file": dev.get_array_filename(syn.variables["_synaptic_pre"]),
                "post_file": dev.get_array_filename(syn.variables["_synaptic_post"]),
                "bytes_per_synapse": synapse_state_bytes(syn),
            }
            for name, syn in all_syn.items()
        },
        "matrices": {name: syn.name for name, syn in net.synapses.items()},
        "lateral": {name: syn.name for name, syn in net.lateral.items()},
        "shape": {name: list(shape) for name, shape in net.shape.items()},
        "monitors": {
            "trial": {v: monitor(trial_mon, v) for v in trial_mon.record_variables},
            "loss_t": monitor(net.monitors["loss_t"], "L"),
            "output": monitor(net.monitors["output"], "y"),
            "activity": monitor(probe_mon, "r") if probe_mon is not None else None,
            "membrane": monitor(probe_mon, "v") if spiking and probe_mon is not None else None,
            "spikes": (
                {"t": monitor(spike_mon, "t"), "i": monitor(spike_mon, "i")}
                if spike_mon is not None
                else None
            ),
        },
        "n_out": len(net.readout),
        "n_generators": max(threads, 1),
    }
    atomic = build_dir / "kernel.json.tmp"
    atomic.write_text(json.dumps(meta, indent=1, sort_keys=True))
    atomic.replace(build_dir / "kernel.json")


@dataclass
class BlockResult:
    """What one run of a kernel gives back."""

    state: dict[str, np.ndarray]
    rng: str
    trial_losses: dict[str, np.ndarray]  # variable -> cumulative value at each trial end
    loss_t: np.ndarray  # (samples,)
    activity: np.ndarray  # (samples, n_record)
    output: np.ndarray  # (samples, n_out)
    wall: float  # seconds, process start to results read
    sim_time: float  # seconds the compiled network ran (Brian2's own timer)
    #: spiking networks: v of the sampled units (samples, n_record) and every spike of the
    #: block as (times in s from the block's start, units)
    membrane: np.ndarray | None = None
    spikes: tuple[np.ndarray, np.ndarray] | None = None


class Kernel:
    """A compiled standalone program of one network, run per block with run arguments.

    The program is built (or found in the cache) by a separate Python process; this object
    holds only its description (``meta``, the build's ``kernel.json``) and a private run
    directory with a copy of the binary and its static arrays.
    """

    def __init__(self, spec: KernelSpec):
        from brian2.utils.filelock import FileLock

        self.spec = spec
        self.key = spec.key()
        self.build_dir = cache_dir() / self.key
        self.build_dir.parent.mkdir(parents=True, exist_ok=True)
        tic = time.perf_counter()
        #: whether this kernel generated (and possibly compiled) the program
        self.built = False
        with FileLock(str(self.build_dir) + ".lock"):
            meta = _cached_meta(self.build_dir, self.key)
            if meta is None:
                self._build()
                meta = json.loads((self.build_dir / "kernel.json").read_text())
                self.built = True
            # private copies: a later build of the same key may rewrite the originals
            self.run_dir = Path(tempfile.mkdtemp(prefix=f"bioperturb_{self.key}_"))
            shutil.copy2(self.build_dir / "main", self.run_dir / "main")
            shutil.copytree(self.build_dir / "static_arrays", self.run_dir / "static_arrays")
        weakref.finalize(self, shutil.rmtree, str(self.run_dir), True)
        (self.run_dir / "args").mkdir()
        (self.run_dir / "results").mkdir()
        self.meta = meta
        self.build_time = time.perf_counter() - tic
        self.blocks_run = 0
        self._order_checked = False
        #: command prefix of every run of the program (a profiler, ``/usr/bin/time``, …)
        self.run_prefix: list[str] = []

    def _build(self) -> None:
        spec_file = self.build_dir.parent / f"{self.key}.spec.json"
        spec_file.write_text(self.spec.to_json())
        cmd = [sys.executable, "-m", "bioperturb.engines.standalone", "build", str(spec_file)]
        cmd += [str(self.build_dir), self.key]
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[3])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        env = plugins.child_env(env)  # user tasks and rules: this process's path, modules
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        spec_file.unlink(missing_ok=True)
        if proc.returncode:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
            raise RuntimeError(f"building the standalone program failed:\n{tail}")

    # -- layout ---------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self.spec.capacity

    @property
    def state_keys(self) -> list[str]:
        """``"object/variable"`` of every state variable carried from block to block."""
        return list(self.meta["state"])

    def synapse_order(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(i, j) of every synapse of an all-to-all Synapses object, in storage order
        (a sparse W_rec's slots: :meth:`StandaloneNetwork.slot_order`)."""
        syn = self.meta["synapses"][name]
        n_pre, n_post = syn["n_pre"], syn["n_post"]
        return np.repeat(np.arange(n_pre), n_post), np.tile(np.arange(n_post), n_pre)

    # -- running --------------------------------------------------------------------------
    def run(
        self,
        tape: Tape,
        first: int,
        n: int,
        state: dict[str, np.ndarray],
        params: dict[str, Any],
        rng: str,
    ) -> BlockResult:
        """Run tape trials ``first … first + n − 1`` from ``state``; return the block's data.

        ``state`` maps ``"object/variable"`` to values (any subset of :attr:`state_keys`;
        the others keep their build-time values); ``params`` the run-time parameters
        (``hidden/sigma``, ``hidden/b``, ``<synapses>/lr``, …, ``bp_probe/unit``); ``rng``
        the text of ``rng_in`` (``"seed <generators> <seed>"`` or a saved state).
        """
        if not 0 < n <= self.capacity:
            raise ValueError(f"a block holds 1 to {self.capacity} trials, not {n}")
        meta, spec = self.meta, self.spec
        dt, n_steps = self.spec.protocol.model.dt, spec.n_steps
        block = f"b{self.blocks_run}_{uuid.uuid4().hex[:8]}"
        args_dir = self.run_dir / "args" / block
        results_dir = self.run_dir / "results" / block
        args_dir.mkdir()
        results_dir.mkdir()
        (results_dir / "rng_in").write_text(rng)
        args: list[str] = []

        def put(entry: dict[str, Any], value: Any) -> None:
            cname, dtype, size = entry["cname"], np.dtype(entry["dtype"]), entry["size"]
            arr = np.asarray(value, dtype=dtype).ravel()
            if arr.size == 1 and np.isfinite(arr[0]):
                args.append(f"{cname}={arr[0].item()!r}")  # one value for every element
                return
            if arr.size == 1:  # nan/inf: the command line takes numbers only, use a file
                arr = np.full(size, arr[0], dtype=dtype)
            if arr.size != size:
                raise ValueError(f"{cname}: {arr.size} values for {size} elements")
            if not arr.any():
                args.append(f"{cname}=0")
                return
            path = args_dir / f"{cname}.dat"
            arr.tofile(path)
            args.append(f"{cname}={path}")

        for key, value in state.items():
            put(meta["state"][key], value)
        for key, value in params.items():
            put(meta["params"][key], value)
        # the block's stretch of the tape: local row 0 is the reset step (first block only)
        rows = 1 + self.capacity * n_steps
        src = slice(1 + first * n_steps, 1 + (first + n) * n_steps)
        dst = slice(1, 1 + n * n_steps)
        for name, timed in meta["tape"].items():
            full = getattr(tape, TAPE_ARRAYS[name])
            local = np.zeros((rows, *full.shape[1:]), dtype=np.dtype(timed["dtype"]))
            local[dst] = full[src]
            if first == 0:
                local[0] = full[0]
            path = args_dir / f"{timed['cname']}.dat"
            local.tofile(path)
            args.append(f"{timed['cname']}={path}")
        put(meta["params"]["bp_control/t_begin"], 0.0 if first == 0 else dt)
        put(meta["params"]["bp_control/t_stop"], (n - 0.5) * n_steps * dt)
        tic = time.perf_counter()
        cmd = [*self.run_prefix, str(self.run_dir / "main"), "--results_dir"]
        cmd += [f"{results_dir}{os.sep}", *args]
        # its own process group: a Ctrl-C at the terminal reaches only this process, whose
        # trainer lets the block finish (a second one kills the program: subprocess.run)
        proc = subprocess.run(
            cmd, cwd=self.run_dir, capture_output=True, text=True, check=False, process_group=0
        )
        if proc.returncode or proc.stderr.strip():
            raise RuntimeError(
                f"standalone program failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}"
            )
        out = self._read(results_dir)
        out.wall = time.perf_counter() - tic
        out.sim_time = float((results_dir / "last_run_info.txt").read_text().split()[0])
        shutil.rmtree(args_dir, ignore_errors=True)
        shutil.rmtree(results_dir, ignore_errors=True)
        self.blocks_run += 1
        ticks = n + (1 if first == 0 else 0)  # the reset step's trial-clock tick
        got = len(next(iter(out.trial_losses.values())))
        if got != ticks:
            raise RuntimeError(f"standalone block ran {got} trial ends, expected {ticks}")
        return out

    def _read(self, results_dir: Path) -> BlockResult:
        meta = self.meta

        def array(entry: dict[str, Any] | str, dtype: str = "<f8", columns: int | None = None):
            if isinstance(entry, dict):
                entry, dtype = entry["file"], entry["dtype"]
            data = np.fromfile(results_dir / entry, dtype=np.dtype(dtype))
            return data if columns is None else data.reshape(-1, columns)

        state = {key: array(entry) for key, entry in meta["state"].items()}
        if not self._order_checked:
            for name, syn in meta["synapses"].items():
                if syn.get("slots") is not None:  # placeholders (the C++ reads ``cell``)
                    continue
                i, j = self.synapse_order(name)
                if not (
                    np.array_equal(array(syn["pre_file"], "<i4"), i)
                    and np.array_equal(array(syn["post_file"], "<i4"), j)
                ):
                    raise RuntimeError(f"unexpected synapse order in {name}")
            self._order_checked = True
        mons = meta["monitors"]
        losses = {v: array(f) for v, f in mons["trial"].items()}
        loss_t = array(mons["loss_t"])
        output = array(mons["output"], columns=meta["n_out"])
        if mons["activity"] is not None:
            activity = array(mons["activity"], columns=self.spec.n_record)
        else:
            activity = np.zeros((len(loss_t), 0))
        rng = (results_dir / "rng_out").read_text()
        out = BlockResult(state, rng, losses, loss_t, activity, output, 0.0, 0.0)
        if mons.get("membrane") is not None:
            out.membrane = array(mons["membrane"], columns=self.spec.n_record)
        if mons.get("spikes") is not None:
            out.spikes = (array(mons["spikes"]["t"]), array(mons["spikes"]["i"], "<i4"))
        return out


def _cached_meta(build_dir: Path, key: str) -> dict[str, Any] | None:
    """The description of the program built for ``key`` in ``build_dir`` (None: none)."""
    meta_path = build_dir / "kernel.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("key") != key or not (build_dir / "main").exists():
        return None
    return meta


def is_cached(spec: KernelSpec) -> bool:
    """Whether this process or the machine's build cache already holds ``spec``'s program."""
    key = spec.key()
    return key in _KERNELS or _cached_meta(cache_dir() / key, key) is not None


# ---------------------------------------------------------------------------- in-process cache
_KERNELS: dict[str, Kernel] = {}
_KERNELS_LOCK = threading.Lock()


def get_kernel(spec: KernelSpec) -> Kernel:
    """The kernel of ``spec``: built once per machine, described once per process."""
    key = spec.key()
    with _KERNELS_LOCK:
        kernel = _KERNELS.get(key)
        if kernel is None:
            kernel = _KERNELS[key] = Kernel(spec)
        return kernel


def main(read_protocol: Callable[[str], Protocol], argv: list[str] | None = None) -> None:
    """``python -m bioperturb.engines.standalone build <spec.json> <dir> <key>`` (internal).

    ``read_protocol`` turns the spec's protocol TOML text back into a Protocol.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4 or args[0] != "build":
        raise SystemExit(
            "usage: python -m bioperturb.engines.standalone build <spec.json> <dir> <key>"
        )
    plugins.load_plugin_modules()  # the parent's decorator-registered tasks and rules
    spec = KernelSpec.from_json(Path(args[1]).read_text(), read_protocol)
    build_program(spec, Path(args[2]), args[3])
