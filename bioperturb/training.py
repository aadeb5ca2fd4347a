"""The trial loop: build the network once, run trials, let it learn, record, write.

Randomness comes only from one :class:`numpy.random.SeedSequence` per run, spawned into
independent streams for the task's training trials, the initial weights and Brian2's
noise, so the same seed gives an identical Dataset.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import brian2
import numpy as np
import xarray as xr
from brian2 import StateMonitor, second

from bioperturb.brian_rng import BrianRNG
from bioperturb.config import Protocol
from bioperturb.dataset import versions_toml, write_dataset
from bioperturb.networks.rate import MATRICES, RateNetwork, Tape, build_rate_network, init_weights
from bioperturb.networks.spiking import build_spiking_network, dale_signs, init_spiking_weights
from bioperturb.rules import get_rule
from bioperturb.tasks import Task, Trials, get_task

__all__ = ["Trainer", "run_protocol", "checkpoint_path", "score_dataset", "DivergedError"]

#: the matrices (and their concatenation) whose update–gradient cosine is recorded
ALIGN_MATRICES = ("W_in", "W_rec", "W_out", "all")


class DivergedError(RuntimeError):
    """The network's losses or weights became non-finite or left the allowed range."""


@dataclass
class _Records:
    loss: list[float] = field(default_factory=list)
    loss_noisy: list[float] = field(default_factory=list)
    loss_t: list[np.ndarray] = field(default_factory=list)
    wall_time: list[float] = field(default_factory=list)
    eval_trial: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    weights: list[dict[str, np.ndarray]] = field(default_factory=list)
    activity: list[np.ndarray] = field(default_factory=list)
    output: list[np.ndarray] = field(default_factory=list)
    align_trial: list[int] = field(default_factory=list)
    membrane: list[np.ndarray] = field(default_factory=list)
    #: per evaluation trial: (n_spikes, 2) array of (unit, time within the trial in s)
    spikes: list[np.ndarray] = field(default_factory=list)
    alignment: list[list[float]] = field(default_factory=list)


def _streams(seed: int) -> dict[str, np.random.SeedSequence]:
    names = ("task", "weights", "brian2", "record")
    return dict(zip(names, np.random.SeedSequence(seed).spawn(len(names)), strict=True))


def var(data: Any, dims: tuple[str, ...], units: str, long_name: str) -> xr.Variable:
    """A Dataset variable with its units and long name."""
    return xr.Variable(dims, data, {"units": units, "long_name": long_name})


def weight_rng(seed: int) -> np.random.Generator:
    """The generator of a run's initial weights."""
    return np.random.default_rng(_streams(seed)["weights"])


class Trainer:
    """Runs one protocol in Brian2's runtime mode, blocks of trials per ``net.run``.

    ``Trainer(protocol)`` with ``training.engine = "standalone"`` makes a
    :class:`bioperturb.standalone.StandaloneTrainer` (same interface, cpp_standalone).
    """

    def __new__(cls, protocol: Protocol) -> Trainer:
        if protocol.training.engine == "standalone":
            from bioperturb.standalone import StandaloneTrainer

            if cls is Trainer:
                cls = StandaloneTrainer
            elif not issubclass(cls, StandaloneTrainer):
                raise TypeError(f"{cls.__name__} runs the runtime engine, not 'standalone'")
        return super().__new__(cls)

    def __init__(self, protocol: Protocol):
        self.protocol = protocol
        model, training = protocol.model, protocol.training
        streams = _streams(protocol.seed)
        self.task: Task = get_task(protocol.task_name)(protocol.task, model.dt)
        self.rule = get_rule(protocol.rule_name)(protocol.rule)
        self.train_trials: Trials = self.task.trials(
            np.random.default_rng(streams["task"]), training.n_trials
        )
        self.eval_set: Trials = self.task.eval_trials()
        self.tape = Tape.build(self._segments())
        n_in, n_out = self.task.n_inputs, self.task.n_outputs
        spiking = model.kind == "lif"
        self.weights0 = (init_spiking_weights if spiking else init_weights)(
            weight_rng(protocol.seed), n_in, model.n_hidden, n_out, model
        )
        rec_rng = np.random.default_rng(streams["record"])
        n_rec = min(protocol.output.n_record_units, model.n_hidden)
        self.record_units = np.sort(rec_rng.choice(model.n_hidden, n_rec, replace=False))
        self.brian_seed = int(streams["brian2"].generate_state(1)[0] % (2**31 - 1))
        #: the random state Brian2 draws the noise from, installed only while simulating
        self.rng = BrianRNG(self.brian_seed)

        step = round(protocol.output.record_dt / model.dt)
        if not np.isclose(step * model.dt, protocol.output.record_dt) or self.tape.n_steps % step:
            raise ValueError(
                "output.record_dt must be a whole number of dt steps dividing the trial length"
            )
        self.record_step = step
        self.records = _Records()
        self.status = "completed"
        self.status_reason = ""
        #: next tape position to run (0: from the start, > 0 after :meth:`restore`)
        self.position = 0
        #: where :meth:`run` writes a checkpoint every ``training.checkpoint_every`` trials
        self.checkpoint_path: Path | None = None
        #: spikes of the spike monitor already turned into records (spiking networks)
        self._spikes_read = 0
        self._build_network()

    def _build_network(self) -> None:
        """The runtime network and its trial-loss monitor (the standalone engine overrides)."""
        protocol, model, training = self.protocol, self.protocol.model, self.protocol.training
        brian2.prefs.codegen.target = training.codegen
        build = build_spiking_network if model.kind == "lif" else build_rate_network
        self.network: RateNetwork = build(
            model,
            self.rule,
            training,
            self.tape,
            self.weights0,
            record_dt=protocol.output.record_dt,
            record_units=self.record_units,
        )
        # cumulative losses at every trial end: per-trial losses of a block of trials
        names = [v for v in ("L_cum", "L_n_cum") if v in self.network.loss.variables]
        self._trial_mon = StateMonitor(
            self.network.loss,
            names,
            record=0,
            clock=self.network.trial_clock,
            when="end",
            order=-2,
            name="mon_trial_losses",
        )
        self.network.net.add(self._trial_mon)

    def _segments(self) -> list[tuple[str, int, int | None, Trials, int]]:
        every = self.protocol.training.eval_every
        n = self.protocol.training.n_trials
        segs: list[tuple[str, int, int | None, Trials, int]] = []

        def eval_block(done: int) -> None:
            segs.extend(("eval", c, done, self.eval_set, c) for c in range(self.eval_set.n_trials))

        eval_block(0)
        for k in range(n):
            segs.append(("train", k, None, self.train_trials, k))
            if (k + 1) % every == 0 or k + 1 == n:
                eval_block(k + 1)
        return segs

    @property
    def engine(self) -> str:
        return f"brian2-{brian2.__version__}-runtime-{self.protocol.training.codegen}"

    def _run(self, duration: float) -> None:
        with self.rng:
            self.network.net.run(duration * second, namespace=self.network.namespace)

    def run(self, progress: bool | None = None) -> xr.Dataset:
        """Run the whole tape; return the Dataset (also on divergence or interruption)."""
        show = self.protocol.output.progress if progress is None else progress
        net = self.network
        start = self.position
        if start == 0:
            self._eval_monitors(False)
            self._run(self.protocol.model.dt)  # the reset step (tape row 0)
        T = self.tape.n_steps * self.protocol.model.dt
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=self.protocol.training.n_trials,
                initial=len(self.records.loss),
                unit="trial",
                desc=self.protocol.name,
            )
        eval_losses: list[float] = []
        gc.freeze()  # Brian2 calls gc.collect() in every run: skip the objects that exist now
        try:
            position = start
            while position < self.tape.n_trials:
                kind, index, eval_index = self.tape.kinds[position]
                if kind == "train":
                    n = self._block_length(position)
                    self._run_training_block(position, n, T)
                    position += n
                    last = index + n - 1
                    if bar is not None:
                        bar.update(n)
                        bar.set_postfix(loss=f"{self.records.loss[-1]:.4g}", refresh=False)
                    self._maybe_checkpoint(position - 1, last)
                    continue
                self._eval_monitors(True)
                before = net.cumulative_losses()
                self._run(T)
                self._eval_monitors(False)
                self.position = position = position + 1
                eval_losses.append(net.cumulative_losses()[0] - before[0])
                self._record_eval_trial(index)
                if index == self.eval_set.n_trials - 1:
                    self._close_eval(eval_index, eval_losses)
                    eval_losses = []
                    if bar is not None and eval_index > 0:
                        bar.set_postfix(eval_loss=f"{self.records.eval_loss[-1]:.4g}")
        except DivergedError as err:
            self.status, self.status_reason = "diverged", str(err)
        except KeyboardInterrupt:
            self.status, self.status_reason = "interrupted", "KeyboardInterrupt"
        finally:
            gc.unfreeze()
            if bar is not None:
                bar.close()
        return self.to_dataset()

    #: most training trials run in one ``net.run`` (bounds how late a divergence, a
    #: KeyboardInterrupt or a progress update is noticed)
    MAX_BLOCK = 20

    def _block_length(self, position: int) -> int:
        """Consecutive training trials from ``position`` that can run in one simulation.

        A block ends before an evaluation, after a checkpoint trial, and around the
        alignment trial (it runs alone: its gradient is taken at the weights before it).
        """
        every = self.protocol.training.checkpoint_every
        n = 0
        while position + n < self.tape.n_trials and n < self.MAX_BLOCK:
            kind, index, _ = self.tape.kinds[position + n]
            if kind != "train" or (n > 0 and self._alignment_due(index)):
                break
            n += 1
            if self._alignment_due(index) or (
                self.checkpoint_path is not None and every and (index + 1) % every == 0
            ):
                break
        return n

    def _eval_monitors(self, active: bool) -> None:
        for name in self.network.eval_monitors:
            self.network.monitors[name].active = active

    def _alignment_due(self, trial: int) -> bool:
        p = self.protocol
        if p.model.kind != "rate":  # no exact gradient of a spiking network
            return False
        return bool(p.output.alignment and self.rule.plastic and trial % p.training.eval_every == 0)

    def _run_training_block(self, position: int, n: int, T: float) -> None:
        """Run ``n`` training trials in one simulation and record each of them."""
        net, rec = self.network, self.records
        first = self.tape.kinds[position][1]
        mon = self._trial_mon
        n_ticks = len(mon.t)
        n_samples = len(net.monitors["loss_t"].t)
        before = net.cumulative_losses()
        gradient = self._gradient_for_alignment(first) if self._alignment_due(first) else None
        tic = time.perf_counter()
        self._run(n * T)
        wall = (time.perf_counter() - tic) / n
        self.position = position + n
        clean = np.concatenate([[before[0]], np.asarray(mon.L_cum[0, n_ticks:])])
        noisy_var = "L_n_cum" if "L_n_cum" in net.loss.variables else "L_cum"
        noisy = np.concatenate([[before[1]], np.asarray(getattr(mon, noisy_var)[0, n_ticks:])])
        loss, loss_noisy = np.diff(clean), np.diff(noisy)
        per_trial = self.tape.n_steps // self.record_step
        loss_t = np.asarray(net.monitors["loss_t"].L[0, n_samples:]).reshape(n, per_trial)
        for k in range(n):
            rec.wall_time.append(wall)
            rec.loss.append(float(loss[k]))
            rec.loss_noisy.append(float(loss_noisy[k]))
            rec.loss_t.append(loss_t[k])
            if k == 0 and gradient is not None:
                self._record_alignment(first, gradient)
            if not (np.isfinite(loss[k]) and np.isfinite(loss_noisy[k])):
                raise DivergedError(f"loss is not finite in trial {first + k}")
        self._check_finite(first + n - 1, float(loss[-1]), float(loss_noisy[-1]))

    def _gradient_for_alignment(self, trial: int) -> dict[str, np.ndarray]:
        """Exact gradient of this training trial's loss at the current weights."""
        p = self.protocol
        # (importing jax draws from numpy's global RNG; harmless: Brian2's noise uses the
        # trainer's own state, installed only around net.run by BrianRNG)
        from bioperturb.reference import gradient_at

        tt = self.train_trials[trial]
        b = np.full(p.model.n_hidden, p.model.bias)
        weights, inputs = self.network.get_weights(), tt.inputs
        # decorrelation: the trial runs with W D and D_in u (D moves only at its end)
        lateral = self.network.get_lateral()
        if "D_in" in lateral:
            inputs = inputs @ lateral["D_in"].T
        if "D_rec" in lateral:
            weights["W_rec"] = weights["W_rec"] @ lateral["D_rec"]
        grad = gradient_at(
            weights, inputs, tt.targets, tt.mask, dt=p.model.dt, tau=p.model.tau, b=b
        )
        if "D_rec" in lateral:  # ∂L/∂W = ∂L/∂(W D) · Dᵀ
            grad["W_rec"] = grad["W_rec"] @ lateral["D_rec"].T
        for name, mask in self.network.masks.items():  # sparse: only existing synapses
            grad[name] = np.where(mask, grad[name], 0.0)
        return grad

    def _record_alignment(self, trial: int, gradient: dict[str, np.ndarray]) -> None:
        from bioperturb.metrics import cosine

        estimate = self.network.last_estimates()
        cos = cosine(estimate, {k: gradient[k] for k in estimate})
        self.records.align_trial.append(trial)
        self.records.alignment.append([float(cos.get(m, np.nan)) for m in ALIGN_MATRICES])

    def _maybe_checkpoint(self, position: int, trial: int) -> None:
        every = self.protocol.training.checkpoint_every
        if self.checkpoint_path is not None and every and (trial + 1) % every == 0:
            self.save_checkpoint(self.checkpoint_path)

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write everything needed to continue this run later (see bioperturb.checkpoint).

        Call between tape trials (the trainer does so after every
        ``training.checkpoint_every``-th training trial when ``checkpoint_path`` is set).
        """
        from bioperturb import checkpoint as ckpt

        layout, arrays = ckpt.records_to_arrays(self.records)
        state_meta, state_arrays = self._engine_state()
        arrays.update(state_arrays)
        meta = {
            "format": ckpt.FORMAT,
            "config": self.protocol.to_toml(),
            "position": self.position,
            "trials_done": len(self.records.loss),
            **state_meta,
            "records": layout,
            "engine": self.engine,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return ckpt.write_checkpoint(path, meta, arrays)

    def _engine_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(meta entries, arrays) of the network and random state a checkpoint holds."""
        from bioperturb import checkpoint as ckpt

        arrays = {**ckpt.network_state(self.network.net), **self.rng.to_arrays()}
        return {"net_t": float(self.network.net.t_)}, arrays

    def _restore_engine_state(self, meta: dict[str, Any], arrays: dict, where: str) -> None:
        """Inverse of :meth:`_engine_state`."""
        from bioperturb import checkpoint as ckpt

        ckpt.restore_network_state(self.network.net, arrays, where)
        self.rng = BrianRNG.from_arrays(arrays)
        # Network.t_ is where the next net.run starts: the tape's TimedArrays line up again
        self.network.net.t_ = float(meta["net_t"])

    def restore(self, path: str | Path) -> None:
        """Continue from a checkpoint of the same protocol (on a freshly built trainer)."""
        from bioperturb import checkpoint as ckpt

        if self.position != 0:
            raise RuntimeError("restore() needs a trainer that has not run yet")
        where = str(path)
        meta, arrays = ckpt.read_checkpoint(path)
        _check_same_protocol(str(meta.get("config", "")), self.protocol, where)
        self._restore_engine_state(meta, arrays, where)
        self.records = ckpt.records_from_arrays(_Records, meta["records"], arrays)
        self.position = int(meta["position"])

    def _record_eval_trial(self, condition: int) -> None:
        mons = self.network.monitors
        n = self.tape.n_steps // self.record_step
        self.records.activity.append(np.asarray(mons["activity"].r[:, -n:]).T)
        self.records.output.append(np.asarray(mons["output"].y[:, -n:]).T)
        if "spikes" in mons:  # spiking network: membrane sample and the trial's spikes
            self.records.membrane.append(np.asarray(mons["membrane"].v[:, -n:]).T)
            spikes, dt = mons["spikes"], self.protocol.model.dt
            start = float(self.network.net.t_) - self.tape.n_steps * dt
            # only the spikes recorded since the last evaluation trial (not the whole list)
            new = slice(self._spikes_read, None)
            times, units = np.asarray(spikes.t_[new]), np.asarray(spikes.i[new])
            self._spikes_read += len(times)
            keep = times > start - 0.5 * dt  # (after a resume the monitor may hold older ones)
            step = np.rint((times[keep] - start) / dt)  # whole steps: exact across resumes
            pairs = np.column_stack([units[keep], step * dt])
            self.records.spikes.append(pairs)

    def _close_eval(self, done: int, losses: list[float]) -> None:
        self.records.eval_trial.append(done)
        self.records.eval_loss.append(float(np.mean(losses)))
        self.records.weights.append({**self.network.get_weights(), **self.network.get_lateral()})
        if not np.isfinite(self.records.eval_loss[-1]):
            raise DivergedError(f"evaluation loss is not finite after {done} trials")

    def _spike_variables(self, n_eval: int, n_cond: int, n_time: int) -> dict[str, xr.Variable]:
        """Membrane sample and the evaluation trials' spikes as a ragged (spike) list."""
        rec = self.records
        membrane = np.array(rec.membrane[: n_eval * n_cond]).reshape(
            n_eval, n_cond, n_time, len(self.record_units)
        )
        trials = rec.spikes[: n_eval * n_cond]
        parts = [np.reshape(x, (-1, 2)) for x in trials]
        pairs = np.concatenate(parts) if parts else np.zeros((0, 2))
        counts = [len(x) for x in parts]
        which = np.repeat(np.arange(len(trials)), counts)
        T = self.tape.n_steps * self.protocol.model.dt
        rates = np.zeros((n_eval, n_cond, self.protocol.model.n_hidden))
        np.add.at(rates.reshape(-1, rates.shape[-1]), (which, pairs[:, 0].astype(int)), 1.0 / T)

        out = (
            {}
            if not self.protocol.model.dale
            else {
                "cell_sign": var(
                    dale_signs(self.protocol.model),
                    ("neuron",),
                    "1",
                    "Dale's law: +1 excitatory, −1 inhibitory (sign of the outgoing W_rec weights)",
                )
            }
        )
        return out | {
            "membrane": var(
                membrane,
                ("eval_trial", "condition", "time", "unit"),
                "1",
                "membrane potential v of sampled neurons (threshold units), noise-free evaluation",
            ),
            "spike_unit": var(
                pairs[:, 0].astype(np.int32), ("spike",), "1", "neuron of each spike"
            ),
            "spike_time": var(pairs[:, 1], ("spike",), "s", "spike time within its trial"),
            "spike_eval": var(
                (which // n_cond).astype(np.int32),
                ("spike",),
                "1",
                "position along eval_trial of each spike's evaluation",
            ),
            "spike_condition": var(
                (which % n_cond).astype(np.int32), ("spike",), "1", "condition of each spike"
            ),
            "rate": var(
                rates,
                ("eval_trial", "condition", "neuron"),
                "Hz",
                "firing rate of every neuron, noise-free evaluation",
            ),
        }

    def _check_finite(self, trial: int, loss: float, loss_noisy: float) -> None:
        limit = self.protocol.training.max_weight
        if not (np.isfinite(loss) and np.isfinite(loss_noisy)):
            raise DivergedError(f"loss is not finite in trial {trial}")
        for name, syn in self.network.synapses.items():
            w = np.asarray(syn.w[:])
            if not np.all(np.isfinite(w)):
                raise DivergedError(f"{name} is not finite after trial {trial}")
            if np.max(np.abs(w)) > limit:
                raise DivergedError(
                    f"|{name}| exceeds training.max_weight = {limit} after trial {trial}"
                )

    def to_dataset(self) -> xr.Dataset:
        """The records so far as a Dataset following docs/data-model.md."""
        p, rec = self.protocol, self.records
        dt = p.model.dt
        n_done = len(rec.loss)
        n_eval = len(rec.eval_trial)
        # eval blocks may be incomplete after an interruption: keep complete ones only
        n_cond = self.eval_set.n_trials
        times = (np.arange(self.tape.n_steps // self.record_step) + 1) * self.record_step - 1
        time = times * dt
        loss_t = np.array(rec.loss_t).reshape(n_done, len(time))
        acts = np.array(rec.activity[: n_eval * n_cond]).reshape(
            n_eval, n_cond, len(time), len(self.record_units)
        )
        outs = np.array(rec.output[: n_eval * n_cond]).reshape(
            n_eval, n_cond, len(time), self.task.n_outputs
        )
        ev = self.eval_set
        dims = {"W_in": ("post", "input"), "W_rec": ("post", "pre"), "W_out": ("output", "pre")}

        data_vars = {
            "loss": var(
                np.array(rec.loss), ("trial",), "1", "clean-twin loss of each training trial"
            ),
            "loss_noisy": var(
                np.array(rec.loss_noisy), ("trial",), "1", "noisy-twin loss of each training trial"
            ),
            "eval_loss": var(
                np.array(rec.eval_loss),
                ("eval_trial",),
                "1",
                "noise-free loss, mean over the evaluation set",
            ),
            "loss_t": var(loss_t, ("trial", "time"), "1", "clean instantaneous loss L_t"),
            "wall_time": var(
                np.array(rec.wall_time), ("trial",), "s", "wall-clock time of each training trial"
            ),
            "activity": var(
                acts,
                ("eval_trial", "condition", "time", "unit"),
                "1",
                "rate r = tanh(h) of sampled units, noise-free evaluation",
            ),
            "output_y": var(
                outs,
                ("eval_trial", "condition", "time", "output"),
                "1",
                "readout y = V r, noise-free evaluation",
            ),
            "target": var(ev.targets[:, times], ("condition", "time", "output"), "1", "target y*"),
            "eval_inputs": var(
                ev.inputs[:, times],
                ("condition", "time", "input"),
                "1",
                "input u of the evaluation trials",
            ),
            "eval_mask": var(ev.mask[:, times], ("condition", "time"), "1", "loss mask"),
        }
        for name in MATRICES:
            stack = np.array([w[name] for w in rec.weights]).reshape(
                n_eval, *self.network.shape[name]
            )
            data_vars[name] = var(stack, ("eval_trial", *dims[name]), "1", f"weights {name}")
        lateral_dims = {"D_rec": ("post", "pre"), "D_in": ("input_post", "input")}
        for name in self.network.lateral:  # only with model.decorrelate
            stack = np.array([w[name] for w in rec.weights]).reshape(
                n_eval, *self.network.shape[name]
            )
            data_vars[name] = var(
                stack,
                ("eval_trial", *lateral_dims[name]),
                "1",
                f"decorrelation matrix {name} = I + lateral weights",
            )
        coords = {
            "trial": ("trial", np.arange(n_done), {"units": "1"}),
            "eval_trial": ("eval_trial", np.array(rec.eval_trial, dtype=int), {"units": "1"}),
            "time": ("time", time, {"units": "s", "long_name": "time within the trial"}),
            "condition": ("condition", np.arange(n_cond), {"units": "1"}),
            "unit": ("unit", self.record_units, {"units": "1"}),
            "pre": ("pre", np.arange(p.model.n_hidden), {"units": "1"}),
            "post": ("post", np.arange(p.model.n_hidden), {"units": "1"}),
            "input": ("input", np.arange(self.task.n_inputs), {"units": "1"}),
            "output": ("output", np.arange(self.task.n_outputs), {"units": "1"}),
        }
        if rec.spikes:
            coords["neuron"] = ("neuron", np.arange(p.model.n_hidden), {"units": "1"})
        if "D_in" in self.network.lateral:
            coords["input_post"] = ("input_post", np.arange(self.task.n_inputs), {"units": "1"})
        if rec.spikes:
            data_vars.update(self._spike_variables(n_eval, n_cond, len(time)))
            data_vars["activity"].attrs["long_name"] = (
                "synaptic trace r of sampled neurons (τ_s dr/dt = −r, +1 per spike), "
                "noise-free evaluation"
            )
        if rec.align_trial:
            data_vars["alignment"] = xr.Variable(
                ("align_trial", "matrix"),
                np.array(rec.alignment),
                {
                    "units": "1",
                    "long_name": "cosine of the rule's estimate with the exact loss gradient",
                    "description": "cos(g_rule, dL/dW) on the training trial right after each "
                    "evaluation, at the weights before its update (one noise draw); "
                    "equals cos(ΔW, −dL/dW) for SGD",
                },
            )
            coords["align_trial"] = ("align_trial", np.array(rec.align_trial), {"units": "1"})
            coords["matrix"] = ("matrix", list(ALIGN_MATRICES))
        from bioperturb import __version__

        attrs = {
            "title": f"bioperturb run {p.name}",
            "config": p.to_toml(),
            "versions": versions_toml(),
            "bioperturb_version": __version__,
            "seed": p.seed,
            "engine": self.engine,
            "task": p.task_name,
            "rule": p.rule_name,
            "status": self.status,
            "status_reason": self.status_reason,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return score_dataset(xr.Dataset(data_vars, coords, attrs), self.task)


def score_dataset(ds: xr.Dataset, task: Task) -> xr.Dataset:
    """``ds`` with the variables of ``task.score``, computed from its own ``output_y``.

    Replacing any that ``ds`` has: for ``"accuracy"`` ``eval_accuracy`` and
    ``eval_accuracy_condition`` (:func:`bioperturb.metrics.accuracy`); for ``"sequence"``
    the coordinate ``time_slot`` (the task's slot of each recorded time point, −1 outside
    its slots) and ``eval_sequence_accuracy[_condition|_slot]``
    (:func:`bioperturb.metrics.sequence_accuracy`); for ``"nrmse"`` ``eval_nrmse``
    (:func:`bioperturb.metrics.nrmse`). For a task scored by its loss alone (``None``)
    ``ds`` is returned as it is.
    """
    from bioperturb import metrics

    if task.score == "accuracy":
        return ds.assign(metrics.accuracy(ds).data_vars)
    if task.score == "nrmse":
        return ds.assign(metrics.nrmse(ds).data_vars)
    if task.score == "sequence":
        steps = np.rint(ds["time"].values / task.dt).astype(int)
        slot = np.full(steps.size, -1)
        for k, (start, stop) in enumerate(task.slots):
            slot[(steps >= start) & (steps < stop)] = k
        attrs = {"units": "1", "long_name": "answer slot of the time point (-1: none)"}
        ds = ds.assign_coords(time_slot=("time", slot, attrs))
        return ds.assign(metrics.sequence_accuracy(ds).data_vars)
    return ds


def output_paths(protocol: Protocol, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """(netCDF path, learning-curve PNG path) of a protocol's run."""
    base = Path(out_dir if out_dir is not None else protocol.output.dir)
    return base / f"{protocol.name}.nc", base / f"{protocol.name}_learning.png"


#: keys that may differ between a checkpoint's protocol and the protocol resuming it
_RESUME_FREE = ("output.dir", "output.progress", "output.figures", "training.checkpoint_every")


def _check_same_protocol(saved_toml: str, protocol: Protocol, where: str) -> None:
    import tomllib

    from bioperturb.schema import ConfigError

    def flat(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in doc.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            elif f"{prefix}{key}" not in _RESUME_FREE:
                out[f"{prefix}{key}"] = value
        return out

    try:
        saved = flat(tomllib.loads(saved_toml))
    except tomllib.TOMLDecodeError:
        raise ConfigError(where, "", "checkpoint has no readable protocol") from None
    now = flat(tomllib.loads(protocol.to_toml()))
    differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if differ:
        raise ConfigError(
            where,
            "",
            f"checkpoint was written for a different protocol ({differ[0]}: "
            f"{saved.get(differ[0])!r} there, {now.get(differ[0])!r} now); "
            "delete it or run without --resume",
        )


def checkpoint_path(protocol: Protocol, out_dir: str | Path | None = None) -> Path:
    """Where a run's checkpoint lives: ``<dir>/<name>.ckpt.npz``."""
    base = Path(out_dir if out_dir is not None else protocol.output.dir)
    return base / f"{protocol.name}.ckpt.npz"


def _finished_run(nc_path: Path, protocol: Protocol) -> xr.Dataset | None:
    """The Dataset at ``nc_path`` if it is a finished run of ``protocol``, else None."""
    from bioperturb.dataset import read_dataset

    if not nc_path.is_file():
        return None
    try:
        ds = read_dataset(nc_path)
    except (OSError, ValueError):
        return None
    same = ds.attrs.get("config") == protocol.to_toml()
    return ds if same and ds.attrs.get("status") in ("completed", "diverged") else None


def run_protocol(
    protocol: Protocol,
    out_dir: str | Path | None = None,
    progress: bool | None = None,
    resume: bool = False,
) -> tuple[xr.Dataset, Path]:
    """Train, write ``<dir>/<name>.nc`` (and figures, if configured); return both.

    The figures (``output.figures``) are ``<name>_learning.png``, ``<name>_accuracy.png``
    for a task scored by accuracy and ``<name>_raster.png`` for a spiking network.

    With ``training.checkpoint_every = k`` a checkpoint ``<dir>/<name>.ckpt.npz`` is
    written every k training trials and removed once the run is finished. ``resume``
    continues from that checkpoint if there is one; without one, a finished run of the
    same protocol in ``<dir>/<name>.nc`` is returned as it is, else the run starts afresh.
    """
    nc_path, png_path = output_paths(protocol, out_dir)
    ckpt_path = checkpoint_path(protocol, out_dir)
    nc_path.parent.mkdir(parents=True, exist_ok=True)
    if resume:
        for name in (nc_path.name, ckpt_path.name):  # left by a killed process
            for stale in nc_path.parent.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)
        if not ckpt_path.exists():
            done = _finished_run(nc_path, protocol)
            if done is not None:
                return done, nc_path
    trainer = Trainer(protocol)
    if protocol.training.checkpoint_every:
        trainer.checkpoint_path = ckpt_path
    if resume and ckpt_path.exists():
        trainer.restore(ckpt_path)
    ds = trainer.run(progress=progress)
    write_dataset(ds, nc_path)
    if ds.attrs["status"] != "interrupted":
        ckpt_path.unlink(missing_ok=True)  # the .nc is complete: the checkpoint is done
    if protocol.output.figures:
        from bioperturb.plotting import plot_accuracy, plot_learning_curves, save_figure

        save_figure(plot_learning_curves({protocol.rule_name: ds}), png_path)
        if "eval_accuracy" in ds:  # a task scored by accuracy
            accuracy_png = png_path.with_name(f"{protocol.name}_accuracy.png")
            save_figure(plot_accuracy({protocol.rule_name: ds}), accuracy_png)
        if "spike_unit" in ds and ds.sizes["eval_trial"]:  # spiking run: the last raster
            from bioperturb.plotting import plot_raster

            save_figure(plot_raster(ds), png_path.with_name(f"{protocol.name}_raster.png"))
    return ds, nc_path


def describe_run(ds: xr.Dataset) -> dict[str, Any]:
    """Short summary numbers of a run for the command line.

    ``final_eval_accuracy`` (the last ``eval_accuracy``) only where the run has one.
    """
    ev = ds["eval_loss"].values
    summary = {
        "status": ds.attrs["status"],
        "trials": int(ds.sizes["trial"]),
        "initial_eval_loss": float(ev[0]) if ev.size else float("nan"),
        "final_eval_loss": float(ev[-1]) if ev.size else float("nan"),
    }
    if "eval_accuracy" in ds:
        acc = ds["eval_accuracy"].values
        summary["final_eval_accuracy"] = float(acc[-1]) if acc.size else float("nan")
    return summary
