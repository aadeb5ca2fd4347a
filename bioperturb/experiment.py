"""An experiment's set-up, shared by every engine, the BPTT reference and the diagnostics.

Randomness comes only from one :class:`numpy.random.SeedSequence` per run, spawned into
independent streams for the task's training trials, the initial weights, Brian2's noise
and the sampled units, so the same seed gives the same trials, weights and noise whichever
engine (or the JAX reference) runs them.
"""

from __future__ import annotations

import numpy as np

from bioperturb.networks.rate import Tape
from bioperturb.protocol import Protocol
from bioperturb.rules import Rule, get_rule
from bioperturb.tasks import Task, Trials, get_task

__all__ = ["Experiment", "weight_rng", "seed_streams"]

#: one segment of the tape: (kind "train"/"eval", trial index in its set, trials done at
#: an evaluation (None for training), the trial set, the row in that set)
Segment = tuple[str, int, int | None, Trials, int]


def seed_streams(seed: int) -> dict[str, np.random.SeedSequence]:
    """The independent random streams of a run with ``seed``."""
    names = ("task", "weights", "brian2", "record", "rule")
    return dict(zip(names, np.random.SeedSequence(seed).spawn(len(names)), strict=True))


def weight_rng(seed: int) -> np.random.Generator:
    """The generator of a run's initial weights."""
    return np.random.default_rng(seed_streams(seed)["weights"])


class Experiment:
    """Task, rule, trials, tape, initial weights and seeds of one protocol.

    Everything here is decided by the protocol alone (no simulation): the task's training
    trials (``train_trials``) and evaluation set (``eval_set``), the tape that lays them
    out with an evaluation every ``training.eval_every`` trials, the initial weights
    (``weights0``), the sampled units (``record_units``), Brian2's noise seed
    (``brian_seed``) and the recording step (``record_step``, in dt steps).
    """

    def __init__(self, protocol: Protocol):
        from bioperturb.modelspec import model_spec

        self.protocol = protocol
        model, training = protocol.model, protocol.training
        streams = seed_streams(protocol.seed)
        self.model_spec = model_spec(model.kind)
        self.task: Task = get_task(protocol.task_name)(protocol.task, model.dt)
        self.rule: Rule = get_rule(protocol.rule_name)(protocol.rule)
        self.rule.seed_sequence = streams["rule"]
        self.train_trials: Trials = self.task.trials(
            np.random.default_rng(streams["task"]), training.n_trials
        )
        self.eval_set: Trials = self.task.eval_trials()
        self.tape = Tape.build(
            self.segments(), batch=training.batch, antithetic=training.antithetic
        )
        self.weights0: dict[str, np.ndarray] = self.model_spec.init_weights(
            weight_rng(protocol.seed),
            self.task.n_inputs,
            model.n_hidden,
            self.task.n_outputs,
            model,
        )
        rec_rng = np.random.default_rng(streams["record"])
        n_rec = min(protocol.output.n_record_units, model.n_hidden)
        self.record_units = np.sort(rec_rng.choice(model.n_hidden, n_rec, replace=False))
        self.brian_seed = int(streams["brian2"].generate_state(1)[0] % (2**31 - 1))
        step = round(protocol.output.record_dt / model.dt)
        if not np.isclose(step * model.dt, protocol.output.record_dt) or self.tape.n_steps % step:
            raise ValueError(
                "output.record_dt must be a whole number of dt steps dividing the trial length"
            )
        self.record_step = step

    @property
    def samples_per_trial(self) -> int:
        """Recorded time points per trial."""
        return self.tape.n_steps // self.record_step

    @property
    def sample_steps(self) -> np.ndarray:
        """The steps of a trial that are recorded: the last of each ``record_dt`` window."""
        return (np.arange(self.samples_per_trial) + 1) * self.record_step - 1

    def segments(self) -> list[Segment]:
        """The tape's trials in order: an evaluation set, then training trials with an
        evaluation set after every ``training.eval_every``-th one and after the last.

        With ``training.repeat`` each batch runs its first trial ``training.batch`` times."""
        training = self.protocol.training
        every, n = training.eval_every, training.n_trials
        rows = [k - k % training.batch if training.repeat else k for k in range(n)]
        segs: list[Segment] = []

        def eval_block(done: int) -> None:
            segs.extend(("eval", c, done, self.eval_set, c) for c in range(self.eval_set.n_trials))

        eval_block(0)
        for k in range(n):
            segs.append(("train", k, None, self.train_trials, rows[k]))
            if (k + 1) % every == 0 or k + 1 == n:
                eval_block(k + 1)
        return segs
