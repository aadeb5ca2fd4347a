"""The cpp_standalone engine: the same network code, compiled once, run per block of trials.

``[engine] name = "standalone"``. The rate network of :mod:`bioperturb.networks.rate`
(with the rules and optimisers, unchanged) is compiled into a program
(:mod:`~bioperturb.engines.standalone.program`: build, cache, kernel runner) that runs a
block of tape trials from a state given on its command line; W_rec's work may be fused
into hand-written C++ (:mod:`~bioperturb.engines.standalone.fused`, ``[engine] fuse``).

**One run per block**: an evaluation set (weights stay put, so the weights recorded for it
are those the block starts from) followed by the training trials up to the next
evaluation; a block ends earlier after an alignment trial, a checkpoint trial, or
:attr:`StandaloneEngine.MAX_BLOCK` training trials. Python touches the network only
between blocks. docs/engines.md has the full story.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import brian2
import numpy as np

from bioperturb.engines.base import Block, Engine
from bioperturb.engines.standalone.program import (
    CACHE_ENV,
    HEADERS,
    Kernel,
    KernelSpec,
    cache_dir,
    get_kernel,
    is_cached,
)
from bioperturb.networks.rate import connectivity
from bioperturb.optimizers import OPTIMIZER_PARAMS

if TYPE_CHECKING:
    from bioperturb.experiment import Experiment
    from bioperturb.protocol import Protocol

__all__ = [
    "StandaloneEngine",
    "Kernel",
    "KernelSpec",
    "get_kernel",
    "cache_dir",
    "CACHE_ENV",
    "HEADERS",
]


@dataclass
class StandaloneNetwork:
    """The engine's view of the network between blocks: shapes and the carried state."""

    kernel: Kernel
    shape: dict[str, tuple[int, int]]
    lateral: dict[str, str]  # matrix name -> Brian2 object name
    synapses: dict[str, str]
    state: dict[str, np.ndarray] = field(default_factory=dict)
    #: (post, pre) masks of sparse matrices (W_rec: stored in slots, ``cell`` says which)
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    def slot_order(self, obj: str) -> tuple[np.ndarray, np.ndarray, int]:
        """(i, j) of the synapses a Synapses object stores, in storage order, and its slots.

        All-to-all: every (i, j), pre-major. A sparse W_rec: its existing synapses in
        increasing cell i·N + j, in the first of the program's slots (the rest unused).
        """
        i, j = self.kernel.synapse_order(obj)
        slots = self.kernel.meta["synapses"][obj].get("slots")
        if slots is None:
            return i, j, len(i)
        pre, post = np.nonzero(self.masks["W_rec"].T)  # pre-major: increasing i N + j
        if len(pre) > slots:
            raise ValueError(
                f"W_rec has {len(pre)} synapses, more than the {slots} slots of the program "
                "(model.p_connect: an improbable draw; use another seed)"
            )
        return pre, post, slots

    def _matrix(self, obj: str, var: str, name: str) -> np.ndarray:
        i, j, _ = self.slot_order(obj)
        out = np.zeros(self.shape[name])
        out[j, i] = self.state[f"{obj}/{var}"][: len(i)]
        return out

    def _vector(self, matrix: np.ndarray, obj: str) -> np.ndarray:
        i, j, slots = self.slot_order(obj)
        out = np.zeros(slots)
        out[: len(i)] = np.asarray(matrix)[j, i]
        return out

    def cells(self, obj: str) -> np.ndarray:
        """A sparse W_rec's ``cell`` run argument: i·N + j per used slot, then −1."""
        i, j, slots = self.slot_order(obj)
        out = np.full(slots, -1, dtype=np.int32)
        out[: len(i)] = i * self.shape["W_rec"][0] + j
        return out

    def get_weights(self) -> dict[str, np.ndarray]:
        return {name: self._matrix(obj, "w", name) for name, obj in self.synapses.items()}

    def get_lateral(self) -> dict[str, np.ndarray]:
        return {name: self._matrix(obj, "d", name) for name, obj in self.lateral.items()}

    def last_estimates(self) -> dict[str, np.ndarray]:
        return {
            name: self._matrix(obj, "acc_last", name)
            for name, obj in self.synapses.items()
            if f"{obj}/acc_last" in self.state
        }

    def cumulative_losses(self) -> tuple[float, float]:
        clean = float(self.state["loss/L_cum"][0])
        noisy = float(self.state.get("loss/L_n_cum", self.state["loss/L_cum"])[0])
        return clean, noisy


class StandaloneEngine(Engine):
    """A compiled cpp_standalone kernel run per block (see the module docstring)."""

    name = "standalone"
    MAX_BLOCK = 100
    joins_eval = True

    @classmethod
    def check_protocol(cls, protocol: Protocol, where: str) -> None:
        from bioperturb.engines.standalone.fused import protocol_fusion
        from bioperturb.rules import get_rule
        from bioperturb.schema import ConfigError

        if not get_rule(protocol.rule_name).standalone:
            raise ConfigError(
                where,
                "engine.name",
                f"rule '{protocol.rule_name}' is not built into standalone programs; use "
                "name = 'runtime'",
            )
        if protocol.training.antithetic:
            raise ConfigError(
                where,
                "engine.name",
                "antithetic pairs replay the random state between trials, which only the "
                "runtime engine does; use name = 'runtime'",
            )
        if protocol.engine.fuse == "on":
            plan = protocol_fusion(protocol)
            if plan.reason:
                raise ConfigError(where, "engine.fuse", f"'on' is impossible here: {plan.reason}")
        if protocol.model.p_connect < 1:  # only the fused C++ skips absent synapses
            plan = protocol_fusion(protocol)
            if not plan.complete:
                raise ConfigError(
                    where,
                    "engine.name",
                    f"'standalone' runs sparse W_rec (model.p_connect < 1) only fully fused, "
                    f"not here: {plan.reason}; use name = 'runtime'"
                    + (" or drop fuse = 'off'" if protocol.engine.fuse == "off" else ""),
                )

    def __init__(self, experiment: Experiment):
        super().__init__(experiment)
        p, exp = self.protocol, experiment
        n_cond = exp.eval_set.n_trials
        # the longest block (an upper bound for subclasses with shorter blocks), rounded up
        # to a power of two so that more protocols share a program
        longest = n_cond + min(
            p.training.eval_every, p.training.n_trials, StandaloneEngine.MAX_BLOCK
        )
        spec = KernelSpec(
            protocol=p,
            n_in=exp.task.n_inputs,
            n_out=exp.task.n_outputs,
            n_steps=exp.tape.n_steps,
            capacity=1 << (longest - 1).bit_length(),
            n_record=len(exp.record_units),
        )
        fresh = not is_cached(spec)
        if fresh and p.output.progress:  # before the bar exists: say why nothing moves
            print(
                f"{p.name}: compiling the standalone program for this network shape (first "
                f"use; about a minute; cached in {cache_dir()})",
                file=sys.stderr,
                flush=True,
            )
        tic = time.perf_counter()
        self.kernel = get_kernel(spec)
        if fresh and self.kernel.built:
            self.startup = f"program compiled in {time.perf_counter() - tic:.0f} s"
        meta = self.kernel.meta
        net = self.network = StandaloneNetwork(
            kernel=self.kernel,
            shape={name: tuple(shape) for name, shape in meta["shape"].items()},
            lateral=dict(meta["lateral"]),
            synapses=dict(meta["matrices"]),
            masks=connectivity(exp.weights0, p.model),
        )
        # initial state: the weights, D = I and what the rule draws for the run (e.g.
        # RFLO's feedback matrix); everything else starts from its build-time value (zero)
        net.state = {
            f"{obj}/w": net._vector(exp.weights0[name], obj) for name, obj in net.synapses.items()
        }
        for name, variables in exp.rule.initial_state(net.shape).items():
            for var, values in variables.items():
                net.state[f"{net.synapses[name]}/{var}"] = net._vector(values, net.synapses[name])
        for name, obj in net.lateral.items():
            net.state[f"{obj}/d"] = net._vector(np.eye(net.shape[name][0]), obj)
        #: (tape trials, wall seconds incl. process and I/O, seconds simulating) per block
        self.block_times: list[tuple[int, float, float]] = []
        #: text of the random state the next block starts from (rng_in)
        self.rng_state = f"seed {meta['n_generators']} {exp.brian_seed}\n"

    @property
    def description(self) -> str:
        threads = self.protocol.engine.threads
        fused = self.kernel.spec.fusion.describe()
        return f"brian2-{brian2.__version__}-cpp_standalone-threads{threads}-{fused}"

    def _params(self) -> dict[str, Any]:
        """Run-time parameters of this protocol, by kernel parameter name."""
        p, net = self.protocol, self.network
        values: dict[str, Any] = {"sigma": p.model.sigma, "b": p.model.bias}
        values.update({name: getattr(p.training, name) for name in OPTIMIZER_PARAMS})
        values["unit"] = self.experiment.record_units.astype(np.int32)
        if "W_rec" in net.masks:  # sparse: which synapse each slot holds
            values["cell"] = net.cells(net.synapses["W_rec"])
        params = {}
        for key in self.kernel.meta["params"]:
            obj, var = key.split("/")
            if obj != "bp_control":  # where the block starts and stops: set per block
                params[key] = values[var]
        return params

    def run_block(self, position: int, n: int) -> Block:
        net, tape = self.network, self.experiment.tape
        kinds = tape.kinds[position : position + n]
        before = net.cumulative_losses() if "loss/L_cum" in net.state else (0.0, 0.0)
        out = self.kernel.run(tape, position, n, net.state, self._params(), self.rng_state)
        net.state, self.rng_state = out.state, out.rng
        self.block_times.append((n, out.wall, out.sim_time))
        # per-trial losses from the cumulative sums at every trial end
        skip = 1 if position == 0 else 0
        clean = np.concatenate([[before[0]], out.trial_losses["L_cum"][skip:]])
        noisy_var = "L_n_cum" if "L_n_cum" in out.trial_losses else "L_cum"
        noisy = np.concatenate([[before[1]], out.trial_losses[noisy_var][skip:]])
        per_trial = self.experiment.samples_per_trial
        samples = slice(skip, skip + n * per_trial)
        activity = out.activity[samples].reshape(n, per_trial, out.activity.shape[1])
        output = out.output[samples].reshape(n, per_trial, out.output.shape[1])
        evals = [k for k, (kind, _, _) in enumerate(kinds) if kind == "eval"]
        block = Block(
            np.diff(clean),
            np.diff(noisy),
            out.loss_t[samples].reshape(n, per_trial),
            out.wall,
            activity=[activity[k] for k in evals],
            output=[output[k] for k in evals],
        )
        if out.membrane is not None:
            membrane = out.membrane[samples].reshape(n, per_trial, out.membrane.shape[1])
            block.membrane = [membrane[k] for k in evals]
        if out.spikes is not None:
            block.spikes = [self._trial_spikes(out.spikes, k) for k in evals]
        return block

    def _trial_spikes(self, spikes: tuple[np.ndarray, np.ndarray], k: int) -> np.ndarray:
        """(unit, time within the trial) of the block's trial ``k``, as the runtime engine's.

        Every block runs from t = dt (the first: t = 0, the reset step), so trial k of the
        block starts at (1 + k·steps)·dt.
        """
        times, units = spikes
        dt, steps = self.protocol.model.dt, self.experiment.tape.n_steps
        step = np.rint(times / dt) - (1 + k * steps)
        keep = (step >= 0) & (step < steps)
        return np.column_stack([units[keep], step[keep] * dt])

    def weight_values(self) -> dict[str, np.ndarray]:
        net = self.network
        return {name: net.state[f"{obj}/w"] for name, obj in net.synapses.items()}

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {f"state/{k}": np.asarray(v) for k, v in self.network.state.items()}
        arrays["rng/standalone"] = np.array(self.rng_state)
        return {}, arrays

    def restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], where: str) -> None:
        from bioperturb.schema import ConfigError

        if meta.get("engine") != self.description or "rng/standalone" not in arrays:
            raise ConfigError(where, "", f"checkpoint of another engine ({meta.get('engine')})")
        state = {k[len("state/") :]: v for k, v in arrays.items() if k.startswith("state/")}
        if set(state) != set(self.kernel.state_keys):
            diff = sorted(set(state) ^ set(self.kernel.state_keys))
            raise ConfigError(where, "", f"checkpoint does not match the network ({diff[0]})")
        for key, values in state.items():  # e.g. a sparse W_rec stored densely by an old version
            size = self.kernel.meta["state"][key]["size"]
            if np.size(values) != size:
                raise ConfigError(
                    where,
                    "",
                    f"checkpoint does not match the network ({key}: {np.size(values)} values, "
                    f"the program holds {size})",
                )
        self.network.state = state
        self.rng_state = str(arrays["rng/standalone"])
