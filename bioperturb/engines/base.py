"""What every engine offers the trial loop: build once, run blocks of tape trials, hand over state.

An *engine* turns an :class:`~bioperturb.experiment.Experiment` (task, rule, tape, initial
weights, seeds) into a simulated network and runs it. The one trial loop,
:class:`bioperturb.training.Trainer`, decides which tape trials form a block, records
what comes back and writes checkpoints; it never touches Brian2 itself. An engine:

* builds the network in its constructor (:class:`Engine` ``(experiment)``);
* runs a block of consecutive tape trials (:meth:`Engine.run_block`) and returns a
  :class:`Block`: the per-trial losses and, for evaluation trials, the sampled traces;
* exposes the weights between blocks through :attr:`Engine.network`
  (``get_weights``, ``get_lateral``, ``last_estimates``, ``masks``, ``shape``);
* hands its full state (network and random generators) to a checkpoint and takes it back
  (:meth:`Engine.state`, :meth:`Engine.restore`), so a resumed run is bit-identical;
* says before any work whether it can run a protocol (:meth:`Engine.check_protocol`).

Engines are looked up by name (``[engine] name``) in :data:`bioperturb.engines.ENGINES`.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from bioperturb.experiment import Experiment
    from bioperturb.protocol import Protocol

__all__ = ["Block", "DivergedError", "Engine"]


class DivergedError(RuntimeError):
    """The network's losses or weights became non-finite or left the allowed range."""


@dataclass
class Block:
    """What one block of ``n`` consecutive tape trials gives back.

    ``loss``/``loss_noisy``: the clean and noisy twins' loss of every trial of the block;
    ``loss_t``: the clean instantaneous loss at the recorded times of every trial,
    shape (n, samples per trial). The lists hold one entry per *evaluation* trial of the
    block, in order: sampled activity (samples, units), readout (samples, outputs) and,
    for spiking networks, membrane samples and the trial's spikes as (n_spikes, 2) rows of
    (neuron, time within the trial in s).
    """

    loss: np.ndarray
    loss_noisy: np.ndarray
    loss_t: np.ndarray
    #: wall-clock seconds the block took
    wall: float
    activity: list[np.ndarray] = field(default_factory=list)
    output: list[np.ndarray] = field(default_factory=list)
    membrane: list[np.ndarray] = field(default_factory=list)
    spikes: list[np.ndarray] = field(default_factory=list)


class Engine(ABC):
    """One way of simulating an experiment's network (see the module docstring)."""

    #: the name a protocol gives in ``[engine] name``
    name: ClassVar[str]
    #: most training trials in one block (bounds how late a divergence, an interruption or
    #: a progress update is noticed)
    MAX_BLOCK: ClassVar[int]
    #: most simulated steps a block of training trials should hold before MAX_BLOCK
    #: trials do (short trials: more of them per block; None: MAX_BLOCK trials)
    MIN_BLOCK_STEPS: ClassVar[int | None] = None

    def block_trials(self, n_steps: int) -> int:
        """Most training trials in one block for trials of ``n_steps`` steps: MAX_BLOCK, or
        more where MAX_BLOCK trials are shorter than MIN_BLOCK_STEPS steps."""
        if self.MIN_BLOCK_STEPS is None:
            return self.MAX_BLOCK
        return max(self.MAX_BLOCK, self.MIN_BLOCK_STEPS // max(n_steps, 1))

    #: whether a block may start with an evaluation set and go on with training trials
    #: (else an evaluation set is a block of its own)
    joins_eval: ClassVar[bool] = False

    def __init__(self, experiment: Experiment):
        self.experiment = experiment
        self.protocol = experiment.protocol
        #: the engine's view of the network between blocks (weights, masks, shapes)
        self.network: Any = None
        #: a one-off cost this engine paid before its first block, for the progress bar
        #: (e.g. "program compiled in 41 s"; empty: none worth saying)
        self.startup = ""

    @classmethod  # noqa: B027
    def check_protocol(cls, protocol: Protocol, where: str) -> None:
        """Raise :class:`~bioperturb.schema.ConfigError` if this engine cannot run ``protocol``.

        Called while the protocol is validated, before any work (the default accepts all).
        """

    @property
    @abstractmethod
    def description(self) -> str:
        """The Dataset's ``engine`` attribute (engine, Brian2 version, settings)."""

    @abstractmethod
    def run_block(self, position: int, n: int) -> Block:
        """Run tape trials ``position … position + n − 1`` (one block) and return its data."""

    @abstractmethod
    def weight_values(self) -> dict[str, np.ndarray]:
        """The stored values of every plastic matrix (for the divergence check)."""

    @abstractmethod
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(meta entries, arrays) of the network and random state a checkpoint holds."""

    @abstractmethod
    def restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], where: str) -> None:
        """Inverse of :meth:`state` on a freshly built engine (``where``: for errors)."""

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Context around a whole run of blocks (e.g. freezing the garbage collector)."""
        yield
