"""Brian2's runtime mode: the network built in this process, one ``net.run`` per block.

Training trials run up to :attr:`RuntimeEngine.MAX_BLOCK` per ``net.run`` (more when the
trials are short, :meth:`~bioperturb.engines.base.Engine.block_trials`); an evaluation set
runs in one ``net.run`` with the evaluation monitors switched on (a spiking network's one
``net.run`` per trial). The noise is
drawn from the run's own random state (:class:`bioperturb.brian_rng.BrianRNG`), installed
only while simulating, so several networks in one process do not share a stream. With
``training.antithetic`` an operation at every trial's end saves the random state before
the first twin of a pair and puts it back before the second, which therefore draws the
same numbers, negated by the tape's noise sign (−ξ).
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from typing import Any

import brian2
import numpy as np
from brian2 import NetworkOperation, StateMonitor, second

from bioperturb.brian_rng import BrianRNG
from bioperturb.engines.base import Block, Engine
from bioperturb.experiment import Experiment

__all__ = ["RuntimeEngine"]


class RuntimeEngine(Engine):
    """The network as Brian2 runtime objects in this process (``[engine] name = "runtime"``)."""

    name = "runtime"
    MAX_BLOCK = 20
    # every net.run re-creates Brian2's code objects (~1 s for a twin network): short
    # trials (a feed-forward stack's few steps) run hundreds per block instead of 20
    MIN_BLOCK_STEPS = 2000

    def __init__(self, experiment: Experiment):
        super().__init__(experiment)
        p = self.protocol
        #: the random state Brian2 draws the noise from, installed only while simulating
        self.rng = BrianRNG(experiment.brian_seed)
        brian2.prefs.codegen.target = p.engine.codegen
        self.network = experiment.model_spec.build(
            p.model,
            experiment.rule,
            p.training,
            experiment.tape,
            experiment.weights0,
            record_dt=p.output.record_dt,
            record_units=experiment.record_units,
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
        if p.training.antithetic:  # after every trial-end operation, before the next trial
            self.network.net.add(
                NetworkOperation(
                    self._pair_boundary,
                    clock=self.network.trial_clock,
                    when="end",
                    order=100,
                    name="antithetic_pairs",
                )
            )
        #: spikes of the spike monitor already turned into records (spiking networks)
        self._spikes_read = 0
        self._started = False
        #: the random state saved before the first twin of an antithetic pair, until its
        #: mirror twin starts (None otherwise)
        self._pair_rng: dict[str, np.ndarray] | None = None

    @property
    def description(self) -> str:
        return f"brian2-{brian2.__version__}-runtime-{self.protocol.engine.codegen}"

    def simulate(self, duration: float) -> None:
        """Run the network for ``duration`` seconds with the run's own random state."""
        net = self.network.net
        start = float(net.t_)
        with self.rng:
            net.run(duration * second, namespace=self.network.namespace)
        # Brian2's own SIGINT handler (active where the trainer's is not: outside the main
        # thread) ends a run early without an exception: never take a short run as whole
        ran = float(net.t_) - start
        if abs(ran - duration) > 0.5 * self.protocol.model.dt:
            raise KeyboardInterrupt(f"Brian2 stopped the run after {ran:.6g} s of {duration:.6g} s")

    def _pair_boundary(self, t: Any) -> None:
        """At the end of a tape trial (trial clock): before the first twin of an
        antithetic pair save the random state, before the mirror twin put it back."""
        tape = self.experiment.tape
        k = round(float(t / second) / (tape.n_steps * self.protocol.model.dt))  # next trial

        def mirror(j: int) -> bool:
            return j < tape.n_trials and tape.sign[1 + j * tape.n_steps] < 0

        if mirror(k):
            if self._pair_rng is None:
                raise RuntimeError(f"tape trial {k} mirrors a twin that did not run")
            self.rng.put_back(self._pair_rng)
            self._pair_rng = None
        elif mirror(k + 1):
            self._pair_rng = self.rng.to_arrays()

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        gc.freeze()  # Brian2 calls gc.collect() in every run: skip the objects that exist now
        try:
            yield
        finally:
            gc.unfreeze()

    def _eval_monitors(self, active: bool) -> None:
        for name in self.network.eval_monitors:
            self.network.monitors[name].active = active

    def run_block(self, position: int, n: int) -> Block:
        exp = self.experiment
        if position == 0 and not self._started:
            self._eval_monitors(False)
            self.simulate(self.protocol.model.dt)  # the reset step (tape row 0)
        self._started = True
        T = exp.tape.n_steps * self.protocol.model.dt
        if exp.tape.kinds[position][0] == "eval":
            return self._run_eval(position, n, T)
        return self._run_train(n, T)

    def _run_train(self, n: int, T: float) -> Block:
        """``n`` trials in one ``net.run``: their losses from the trial-end monitor."""
        exp = self.experiment
        net, mon = self.network, self._trial_mon
        n_ticks = len(mon.t)
        n_samples = len(net.monitors["loss_t"].t)
        before = net.cumulative_losses()
        tic = time.perf_counter()
        self.simulate(n * T)
        wall = time.perf_counter() - tic
        clean = np.concatenate([[before[0]], np.asarray(mon.L_cum[0, n_ticks:])])
        noisy_var = "L_n_cum" if "L_n_cum" in net.loss.variables else "L_cum"
        noisy = np.concatenate([[before[1]], np.asarray(getattr(mon, noisy_var)[0, n_ticks:])])
        per_trial = exp.samples_per_trial
        loss_t = np.asarray(net.monitors["loss_t"].L[0, n_samples:]).reshape(n, per_trial)
        return Block(np.diff(clean), np.diff(noisy), loss_t, wall)

    def _run_eval(self, position: int, n: int, T: float) -> Block:
        """Evaluation trials with the evaluation monitors on: one ``net.run`` for the block
        (a spiking network: one each, so that every trial's spikes are its own)."""
        net, exp = self.network, self.experiment
        per_trial = exp.samples_per_trial
        if "spikes" not in net.monitors:
            self._eval_monitors(True)
            block = self._run_train(n, T)
            self._eval_monitors(False)
            mons = net.monitors
            activity = np.asarray(mons["activity"].r[:, -n * per_trial :]).T
            output = np.asarray(mons["output"].y[:, -n * per_trial :]).T
            block.activity = list(activity.reshape(n, per_trial, -1))
            block.output = list(output.reshape(n, per_trial, -1))
            return block
        losses, loss_t = [], []
        block = Block(np.zeros(0), np.zeros(0), np.zeros((0, per_trial)), 0.0)
        tic = time.perf_counter()
        for _ in range(n):
            self._eval_monitors(True)
            before = net.cumulative_losses()
            self.simulate(T)
            self._eval_monitors(False)
            losses.append(net.cumulative_losses()[0] - before[0])
            loss_t.append(np.asarray(net.monitors["loss_t"].L[0, -per_trial:]))
            self._record_eval_trial(block)
        block.loss = block.loss_noisy = np.array(losses)
        block.loss_t = np.array(loss_t).reshape(n, per_trial)
        block.wall = time.perf_counter() - tic
        return block

    def _record_eval_trial(self, block: Block) -> None:
        mons, n = self.network.monitors, self.experiment.samples_per_trial
        block.activity.append(np.asarray(mons["activity"].r[:, -n:]).T)
        block.output.append(np.asarray(mons["output"].y[:, -n:]).T)
        if "spikes" in mons:  # spiking network: membrane sample and the trial's spikes
            block.membrane.append(np.asarray(mons["membrane"].v[:, -n:]).T)
            spikes, dt = mons["spikes"], self.protocol.model.dt
            start = float(self.network.net.t_) - self.experiment.tape.n_steps * dt
            # only the spikes recorded since the last evaluation trial (not the whole list)
            new = slice(self._spikes_read, None)
            times, units = np.asarray(spikes.t_[new]), np.asarray(spikes.i[new])
            self._spikes_read += len(times)
            keep = times > start - 0.5 * dt  # (after a resume the monitor may hold older ones)
            step = np.rint((times[keep] - start) / dt)  # whole steps: exact across resumes
            block.spikes.append(np.column_stack([units[keep], step * dt]))

    def weight_values(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(syn.w[:]) for name, syn in self.network.synapses.items()}

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        from bioperturb import checkpoint as ckpt

        arrays = {**ckpt.network_state(self.network.net), **self.rng.to_arrays()}
        if self._pair_rng is not None:  # saved for the mirror of the pair that starts next
            arrays.update({f"pair/{k}": v for k, v in self._pair_rng.items()})
        return {"net_t": float(self.network.net.t_)}, arrays

    def restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], where: str) -> None:
        from bioperturb import checkpoint as ckpt

        ckpt.restore_network_state(self.network.net, arrays, where)
        self.rng = BrianRNG.from_arrays(arrays)
        pair = {k.removeprefix("pair/"): v for k, v in arrays.items() if k.startswith("pair/")}
        self._pair_rng = pair or None
        # Network.t_ is where the next net.run starts: the tape's TimedArrays line up again
        self.network.net.t_ = float(meta["net_t"])
        self._started = True
        self._eval_monitors(False)

    def update_samples(self) -> dict[str, np.ndarray]:
        """The rule's gradient estimate g of every training trial, at frozen weights.

        Needs ``training.lr = 0`` (the network stays at its initial weights) and a fresh
        engine. The whole tape runs in one simulation; a monitor on the trial clock reads
        each plastic synapse's ``acc_last`` (the estimate the optimiser saw) at every trial
        end. Returns ``{matrix: array (n_train_trials, post, pre)}`` (ΔW = −η g for SGD).
        With ``training.batch`` > 1, ``acc_last`` is the batch's running sum; each trial's
        own estimate is its difference from the previous trial's in the batch.
        """
        p = self.protocol
        if p.training.lr != 0:
            raise ValueError("update_samples needs training.lr = 0 (frozen weights)")
        if p.model.decorrelate and p.model.decor_lr != 0:
            raise ValueError("update_samples needs model.decor_lr = 0 (frozen lateral weights)")
        if self._started:
            raise RuntimeError("update_samples needs an engine that has not run yet")
        net = self.network
        for mon in net.monitors.values():
            mon.active = False
        mons = {
            name: StateMonitor(
                syn,
                "acc_last",
                record=True,
                clock=net.trial_clock,
                when="end",
                order=2,
                name=f"mon_estimate_{name.lower()}",
            )
            for name, syn in net.synapses.items()
            if "acc_last" in syn.variables
        }
        net.net.add(*mons.values())
        tape = self.experiment.tape
        self._started = True
        self.simulate((1 + tape.n_steps * tape.n_trials) * p.model.dt)
        # tick 0 is the reset step; tick k + 1 ends tape trial k
        rows = [k + 1 for k, (kind, _, _) in enumerate(tape.kinds) if kind == "train"]
        out = {}
        for name, mon in mons.items():
            syn = net.synapses[name]
            values = np.asarray(mon.acc_last)[:, rows].T  # (trials, synapses)
            inside = np.arange(len(rows)) % p.training.batch > 0  # not a batch's first trial
            values[inside] -= values[np.flatnonzero(inside) - 1]
            mat = np.zeros((len(rows), *net.shape[name]))
            mat[:, syn.j[:], syn.i[:]] = values
            out[name] = mat
        net.net.remove(*mons.values())
        return out
