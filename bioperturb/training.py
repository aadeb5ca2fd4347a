"""The trial loop: one :class:`Trainer` drives any engine through the tape, block by block.

The :class:`~bioperturb.experiment.Experiment` fixes the trials, weights and seeds; the
engine (:mod:`bioperturb.engines`, ``[engine] name``) simulates blocks of consecutive
tape trials; the trainer decides where blocks end (evaluations, alignment trials,
checkpoints, the engine's longest block), records what comes back, checks for divergence,
writes checkpoints and turns the records into a Dataset (:func:`bioperturb.dataset.run_dataset`).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from bioperturb.config import Protocol
from bioperturb.dataset import ALIGN_MATRICES, Records, run_dataset
from bioperturb.engines import Block, DivergedError, Engine, get_engine
from bioperturb.experiment import Experiment
from bioperturb.schema import ConfigError

__all__ = ["Trainer", "DivergedError", "STOP_SIGNALS", "stop_requests"]

#: signals that stop a run after its current block (a second one stops it at once)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_requests() -> Iterator[list[int]]:
    """Turn the first SIGINT or SIGTERM into a request to stop; a second one interrupts.

    Yields a list that gets the number of the first signal received. While the context
    is active the first signal is only recorded (the simulation goes on to the end of its
    block, which can then be checkpointed); the second raises :class:`KeyboardInterrupt`
    at once. Brian2's own SIGINT handler, which would end ``Network.run`` early without
    an exception, is out of the way meanwhile. Outside the main thread, where Python
    cannot install signal handlers, nothing is installed.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: Any) -> None:
        if received:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        received.append(signum)
        print(
            f"\n{signal.Signals(signum).name}: stopping after the current block of trials "
            "(send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Trainer:
    """Runs one protocol on the engine it names (``[engine] name``).

    The experiment's set-up is available as attributes (``task``, ``rule``,
    ``train_trials``, ``eval_set``, ``tape``, ``weights0``, ``record_units``,
    ``brian_seed``, ``record_step``), the engine as :attr:`engine` and its view of the
    network as :attr:`network`.
    """

    #: most training trials per block (None: the engine's ``MAX_BLOCK``)
    max_block: int | None = None

    def __init__(self, protocol: Protocol, experiment: Experiment | None = None):
        if protocol.engine.name == "auto":  # a Protocol built in code, not read by config
            from bioperturb.config import resolve_engine

            protocol = resolve_engine(protocol)
        self.protocol = protocol
        exp = self.experiment = experiment if experiment is not None else Experiment(protocol)
        self.task, self.rule = exp.task, exp.rule
        self.train_trials, self.eval_set, self.tape = exp.train_trials, exp.eval_set, exp.tape
        self.weights0, self.record_units = exp.weights0, exp.record_units
        self.brian_seed, self.record_step = exp.brian_seed, exp.record_step
        self.records = Records()
        self.status = "completed"
        self.status_reason = ""
        #: next tape position to run (0: from the start, > 0 after :meth:`restore`)
        self.position = 0
        #: where :meth:`run` writes a checkpoint every ``training.checkpoint_every`` trials
        self.checkpoint_path: Path | None = None
        self.engine: Engine = get_engine(protocol.engine.name)(exp)

    @property
    def network(self) -> Any:
        """The engine's view of the network (weights, masks, shapes; engine objects)."""
        return self.engine.network

    # -- the loop -------------------------------------------------------------------------
    def run(self, progress: bool | None = None) -> xr.Dataset:
        """Run the whole tape; return the Dataset (also on divergence or interruption)."""
        show = self.protocol.output.progress if progress is None else progress
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=self.protocol.training.n_trials,
                initial=len(self.records.loss),
                unit="trial",
                desc=self.protocol.name
                + (f" ({self.engine.startup})" if self.engine.startup else ""),
            )
        try:
            with stop_requests() as received, self.engine.session():
                while self.position < self.tape.n_trials:
                    n_train = self._run_block(self.position)
                    if bar is not None:
                        bar.update(n_train)
                        if self.records.loss:
                            bar.set_postfix(loss=f"{self.records.loss[-1]:.4g}", refresh=False)
                    if received and self.position < self.tape.n_trials:
                        self._stop(signal.Signals(received[0]).name)
                        break
        except DivergedError as err:
            self.status, self.status_reason = "diverged", str(err)
        except KeyboardInterrupt as err:
            # stopped in the middle of a block: the records end with the last whole block
            # and the engine's state is not a trial boundary, so no checkpoint is written
            why = str(err) or "KeyboardInterrupt"
            self.status = "interrupted"
            self.status_reason = f"{why} during a block; records end after trial {self._done()}"
        finally:
            if bar is not None:
                bar.close()
        return self.to_dataset()

    def _done(self) -> int:
        """Training trials done (recorded)."""
        return len(self.records.loss)

    def _stop(self, why: str) -> None:
        """Stop between blocks: status interrupted, and a checkpoint to resume from."""
        self.status = "interrupted"
        self.status_reason = f"{why} after {self._done()} training trials"
        if self.checkpoint_path is not None:
            self.save_checkpoint(self.checkpoint_path)
            self.status_reason += f"; checkpoint {self.checkpoint_path}"

    def block_length(self, position: int) -> int:
        """Consecutive tape trials from ``position`` that run as one block.

        An evaluation set is a block of its own, or (engines that join them) the start of
        one; then training trials up to the next evaluation, at most ``max_block`` of
        them. A block ends after a checkpoint trial and after an alignment trial, which is
        always a block's first training trial (its gradient is taken at the weights
        before it).
        """
        kinds = self.tape.kinds
        every = self.protocol.training.checkpoint_every
        most = self.max_block
        if most is None:
            most = self.engine.block_trials(self.tape.n_steps)
        n = 0
        while position + n < len(kinds) and kinds[position + n][0] == "eval":
            n += 1
            if kinds[position + n - 1][1] == self.eval_set.n_trials - 1:
                break  # one evaluation set per block
        if n and not self.engine.joins_eval:
            return n
        n_train = 0
        while position + n < len(kinds) and n_train < most:
            kind, index, _ = kinds[position + n]
            if kind != "train" or (n_train > 0 and self._alignment_due(index)):
                break
            n += 1
            n_train += 1
            if self._alignment_due(index) or (
                self.checkpoint_path is not None and every and (index + 1) % every == 0
            ):
                break
        return n

    def _run_block(self, position: int) -> int:
        """Run and record one block from ``position``; return its number of training trials."""
        n = self.block_length(position)
        kinds = self.tape.kinds[position : position + n]
        net = self.network
        weights = None
        if kinds[0][0] == "eval":  # an evaluation keeps the weights it starts from
            weights = {**net.get_weights(), **net.get_lateral()}
        train = [k for k, (kind, _, _) in enumerate(kinds) if kind == "train"]
        gradient = None
        if train and self._alignment_due(kinds[train[0]][1]):
            gradient = self._gradient_for_alignment(kinds[train[0]][1])
        block = self.engine.run_block(position, n)
        self.position = position + n
        self._record(block, kinds, weights, gradient)
        if train:
            last = kinds[-1][1]
            self._check_finite(last, float(block.loss[-1]), float(block.loss_noisy[-1]))
            self._maybe_checkpoint(last)
        return len(train)

    def _record(
        self,
        block: Block,
        kinds: list[tuple[str, int, int | None]],
        weights: dict[str, np.ndarray] | None,
        gradient: dict[str, np.ndarray] | None,
    ) -> None:
        rec = self.records
        wall = block.wall / len(kinds)
        eval_losses: list[float] = []
        n_eval = 0
        first_train = True
        for k, (kind, index, eval_index) in enumerate(kinds):
            if kind == "eval":
                eval_losses.append(float(block.loss[k]))
                rec.activity.append(block.activity[n_eval])
                rec.output.append(block.output[n_eval])
                if block.membrane:
                    rec.membrane.append(block.membrane[n_eval])
                    rec.spikes.append(block.spikes[n_eval])
                n_eval += 1
                if index == self.eval_set.n_trials - 1:
                    self._close_eval(eval_index, eval_losses, weights)
                    eval_losses = []
                continue
            rec.wall_time.append(wall)
            rec.loss.append(float(block.loss[k]))
            rec.loss_noisy.append(float(block.loss_noisy[k]))
            rec.loss_t.append(block.loss_t[k])
            if first_train and gradient is not None:
                self._record_alignment(index, gradient)
            first_train = False
            if not (np.isfinite(block.loss[k]) and np.isfinite(block.loss_noisy[k])):
                raise DivergedError(f"loss is not finite in trial {index}")

    def _close_eval(self, done: int, losses: list[float], weights: dict[str, np.ndarray]) -> None:
        self.records.eval_trial.append(done)
        self.records.eval_loss.append(float(np.mean(losses)))
        self.records.weights.append(weights)
        if not np.isfinite(self.records.eval_loss[-1]):
            raise DivergedError(f"evaluation loss is not finite after {done} trials")

    def _check_finite(self, trial: int, loss: float, loss_noisy: float) -> None:
        limit = self.protocol.training.max_weight
        if not (np.isfinite(loss) and np.isfinite(loss_noisy)):
            raise DivergedError(f"loss is not finite in trial {trial}")
        for name, w in self.engine.weight_values().items():
            if not np.all(np.isfinite(w)):
                raise DivergedError(f"{name} is not finite after trial {trial}")
            if w.size and np.max(np.abs(w)) > limit:
                raise DivergedError(
                    f"|{name}| exceeds training.max_weight = {limit} after trial {trial}"
                )

    # -- alignment with the exact gradient ------------------------------------------------
    def _alignment_due(self, trial: int) -> bool:
        p = self.protocol
        if not self.experiment.model_spec.exact_gradient:
            return False
        return bool(p.output.alignment and self.rule.plastic and trial % p.training.eval_every == 0)

    def _gradient_for_alignment(self, trial: int) -> dict[str, np.ndarray]:
        """Exact gradient of this training trial's loss at the current weights."""
        p = self.protocol
        # (importing jax draws from numpy's global RNG; harmless: Brian2's noise uses the
        # engine's own state, installed only while simulating)
        from bioperturb.reference import gradient_at

        tt = self.train_trials[trial]
        b = np.full(p.model.n_hidden, p.model.bias)
        # decorrelation: the trial runs with W_rec D_rec and W_in D_in (D moves only at its
        # end); the reference takes the D's as fixed weights and differentiates through them
        weights = {**self.network.get_weights(), **self.network.get_lateral()}
        grad = gradient_at(
            weights, tt.inputs, tt.targets, tt.mask, dt=p.model.dt, tau=p.model.tau, b=b
        )
        for name, mask in self.network.masks.items():  # sparse: only existing synapses
            if name in grad:  # (not the lateral D of a feed-forward stack)
                grad[name] = np.where(mask, grad[name], 0.0)
        return grad

    def _record_alignment(self, trial: int, gradient: dict[str, np.ndarray]) -> None:
        from bioperturb.metrics import cosine

        estimate = self.network.last_estimates()
        cos = cosine(estimate, {k: gradient[k] for k in estimate})
        self.records.align_trial.append(trial)
        self.records.alignment.append([float(cos.get(m, np.nan)) for m in ALIGN_MATRICES])

    # -- checkpoints ----------------------------------------------------------------------
    def _maybe_checkpoint(self, trial: int) -> None:
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
        state_meta, state_arrays = self.engine.state()
        arrays.update(state_arrays)
        meta = {
            "format": ckpt.FORMAT,
            "config": self.protocol.to_toml(),
            "position": self.position,
            "trials_done": len(self.records.loss),
            **state_meta,
            "records": layout,
            "engine": self.engine.description,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return ckpt.write_checkpoint(path, meta, arrays)

    def restore(self, path: str | Path) -> None:
        """Continue from a checkpoint of the same protocol (on a freshly built trainer)."""
        from bioperturb import checkpoint as ckpt

        if self.position != 0:
            raise RuntimeError("restore() needs a trainer that has not run yet")
        where = str(path)
        meta, arrays = ckpt.read_checkpoint(path)
        ckpt.check_same_protocol(str(meta.get("config", "")), self.protocol, where)
        position = meta.get("position")
        n = self.tape.n_trials
        if isinstance(position, bool) or not isinstance(position, int) or not 0 < position <= n:
            raise ConfigError(
                where, "position", f"must be a tape position 1..{n}, got {position!r}"
            )
        records = ckpt.records_from_arrays(Records, meta["records"], arrays)
        trained = sum(kind == "train" for kind, _, _ in self.tape.kinds[:position])
        if len(records.loss) != trained:
            raise ConfigError(
                where,
                "records",
                f"{len(records.loss)} training trials recorded, but position {position} "
                f"follows {trained}: the checkpoint is inconsistent",
            )
        self.engine.restore(meta, arrays, where)
        self.records = records
        self.position = position

    # -- the Dataset ----------------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        """The records so far as a Dataset following docs/data-model.md."""
        return run_dataset(
            self.experiment,
            self.records,
            shape=self.network.shape,
            lateral=self.network.lateral,
            engine=self.engine.description,
            status=self.status,
            status_reason=self.status_reason,
        )
