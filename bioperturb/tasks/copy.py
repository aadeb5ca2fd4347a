"""Copy task: reproduce a sequence of symbols after a delay and a go cue.

A sequence of ``length`` symbols, each one of ``n_symbols`` (one-hot), is shown one symbol
per ``symbol_duration``; after a delay a go cue asks for the same sequence back, one
symbol per ``symbol_duration`` on one output per symbol (the copy task of Graves, Wayne &
Danihelka 2014, as used for perturbation learning by García Fernández, Keemink & van
Gerven 2024). The first symbol has to be held longest, for the whole sequence, the delay
and the cue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bioperturb.schema import param
from bioperturb.tasks.base import Task, Trials, whole_steps

__all__ = ["CopyTask"]


class CopyTask(Task):
    """Sequence recall with one-hot symbols, a go cue and one answer slot per symbol.

    Periods: ``present_0`` … ``present_{L−1}``, ``delay``, ``go``, ``recall_0`` …
    ``recall_{L−1}`` (L = ``length``). Inputs: channels 0 … n_symbols − 1 carry the one-hot
    symbol of each ``present_i`` period, channel n_symbols is the go cue (1 during ``go``).
    Targets: during ``recall_i`` the one-hot symbol i of the sequence, 0 elsewhere; the loss
    counts only in the recall periods. Symbols are drawn independently and uniformly.
    Training trials have condition −1; the evaluation set is ``n_eval`` sequences drawn
    from ``eval_seed`` (conditions 0 … n_eval − 1).
    Scored per recalled symbol (``score = "sequence"``, :attr:`slots` = the recall periods).
    """

    name: ClassVar[str] = "copy"
    score: ClassVar[str | None] = "sequence"

    @dataclass(frozen=True)
    class Params:
        length: int = param(3, positive=True, doc="number of symbols in a sequence")
        n_symbols: int = param(4, positive=True, doc="size of the alphabet (one-hot)")
        symbol_duration: float = param(
            0.05, unit="second", positive=True, doc="duration of each shown or recalled symbol"
        )
        delay_duration: float = param(
            0.1, unit="second", nonnegative=True, doc="delay between the sequence and the go cue"
        )
        go_duration: float = param(0.05, unit="second", positive=True, doc="duration of the go cue")
        n_eval: int = param(16, positive=True, doc="number of evaluation sequences")
        eval_seed: int = param(0, nonnegative=True, doc="seed of the fixed evaluation sequences")

        def check(self) -> None:
            """Cross-field constraints (raise ``ValueError("key: reason")``)."""
            if self.n_symbols < 2:
                raise ValueError(f"n_symbols: needs at least 2 symbols, got {self.n_symbols!r}")

    meta: ClassVar[dict[str, Any]] = {
        "description": (
            "Copy task: a sequence of one-hot symbols, a delay and a go cue; then output the "
            "same sequence, one symbol per slot."
        ),
        "reference": (
            "Graves A, Wayne G, Danihelka I (2014) Neural Turing machines. "
            "arXiv:1410.5401. "
            "Used with perturbation learning in: Garcia Fernandez J, Keemink S, van Gerven M "
            "(2024) Gradient-free training of recurrent neural networks using random "
            "perturbations. Front Neurosci 18:1439155."
        ),
        "tags": ["working memory", "sequence", "supervised", "multi-class"],
    }

    def __init__(self, params: CopyTask.Params, dt: float):
        super().__init__(params, dt)
        params.check()
        n_symbol = whole_steps(params.symbol_duration, self.dt, "symbol_duration")
        lengths = [(f"present_{i}", n_symbol) for i in range(params.length)]
        lengths.append(("delay", whole_steps(params.delay_duration, self.dt, "delay_duration")))
        lengths.append(("go", whole_steps(params.go_duration, self.dt, "go_duration")))
        lengths += [(f"recall_{i}", n_symbol) for i in range(params.length)]
        self._periods: dict[str, tuple[int, int]] = {}
        start = 0
        for period, n in lengths:
            self._periods[period] = (start, start + n)
            start += n
        self._n_steps = start

    @property
    def n_inputs(self) -> int:
        return self.params.n_symbols + 1

    @property
    def n_outputs(self) -> int:
        return self.params.n_symbols

    @property
    def n_steps(self) -> int:
        return self._n_steps

    @property
    def slots(self) -> list[tuple[int, int]]:
        """Steps [start, stop) of ``recall_0`` … ``recall_{L−1}``, in order."""
        return [self._periods[f"recall_{i}"] for i in range(self.params.length)]

    def _batch(self, sequences: np.ndarray, conditions: np.ndarray) -> Trials:
        """Trials showing and asking for ``sequences`` (n, length) of symbol indices."""
        n = sequences.shape[0]
        trial = np.arange(n)
        per = self._periods
        inputs = np.zeros((n, self._n_steps, self.n_inputs))
        targets = np.zeros((n, self._n_steps, self.n_outputs))
        mask = np.zeros((n, self._n_steps))
        for i in range(self.params.length):
            inputs[trial, slice(*per[f"present_{i}"]), sequences[:, i]] = 1.0
            targets[trial, slice(*per[f"recall_{i}"]), sequences[:, i]] = 1.0
            mask[:, slice(*per[f"recall_{i}"])] = 1.0
        inputs[:, slice(*per["go"]), self.params.n_symbols] = 1.0
        return Trials(
            inputs=inputs,
            targets=targets,
            mask=mask,
            periods=dict(per),
            conditions=conditions,
            dt=self.dt,
        )

    def _sequences(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(self.params.n_symbols, size=(n, self.params.length))

    def trials(self, rng: np.random.Generator, n: int) -> Trials:
        """``n`` training trials with sequences drawn from ``rng`` (conditions −1)."""
        return self._batch(self._sequences(rng, n), np.full(n, -1, dtype=np.int64))

    def eval_trials(self) -> Trials:
        """``n_eval`` sequences drawn from ``eval_seed`` alone (conditions 0 … n_eval − 1)."""
        rng = np.random.default_rng(self.params.eval_seed)
        n = self.params.n_eval
        return self._batch(self._sequences(rng, n), np.arange(n, dtype=np.int64))

    def sequences(self, trials: Trials) -> np.ndarray:
        """The symbol sequences (n_trials, length) of ``trials``, read from their targets."""
        return np.stack(
            [trials.targets[:, start].argmax(axis=-1) for start, _ in self.slots], axis=1
        )
