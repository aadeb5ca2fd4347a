"""What a learning rule contributes to a Brian2 network.

A rule is written once as Brian2 equation fragments and code strings, so the same rule
serves every network builder and both Brian2 modes (runtime and standalone):

* ``group_equations[group]``: extra variables of the ``hidden``, ``readout`` or ``loss``
  group (e.g. a broadcast gate);
* ``synapse_equations``: per-synapse variables of every plastic weight matrix; every rule
  keeps its trial's gradient estimate in ``acc`` (the optimiser reads it at trial end and
  leaves a copy in ``acc_last``);
* :meth:`install`: the extra Synapses (global sums, broadcasts) and the per-step
  accumulation operations, added to a built network.

The rule estimates the gradient of the trial loss; the optimiser (``bioperturb.optimizers``)
turns ``acc`` into a weight change at trial end. The two are separate, as in NEST's e-prop
models.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from brian2 import Equations

__all__ = ["Rule"]


class Rule:
    """Base class of all learning rules."""

    name: ClassVar[str]
    Params: ClassVar[type]
    meta: ClassVar[dict[str, Any]] = {}
    #: whether the network must carry a clean and a noisy twin of its state
    twin: ClassVar[bool] = True
    #: whether any weight changes (False for the no-plasticity control)
    plastic: ClassVar[bool] = True
    #: whether noise is injected into the (noisy) hidden state
    node_noise: ClassVar[bool] = True
    #: which noise: "white" (Gaussian increments) or "kicks" (sparse uniform kicks); see
    #: ``NOISE_KINDS`` in bioperturb/networks/rate.py
    noise: ClassVar[str] = "white"
    #: whether the rule reads the trial's condition label (TimedArray ``cond_at``)
    per_condition: ClassVar[bool] = False
    #: model kinds the rule runs on (a family such as "rate" takes every kind of that
    #: family; a kind such as "mlp" only itself), and whether the standalone engine runs it
    model_kinds: ClassVar[tuple[str, ...]] = ("rate", "lif")
    standalone: ClassVar[bool] = True
    #: the weight the noisy twin sees (weight perturbation adds a per-synapse offset)
    noisy_weight: ClassVar[str] = "w"
    #: protocol overrides (dotted keys) that switch the rule's exploration off: with them
    #: a trial's update is exactly zero (checked for every registered rule by
    #: tests/integration/test_contracts.py, on tasks whose trials repeat)
    silent: ClassVar[dict[str, Any]] = {"model.sigma": 0.0}

    def __init__(self, params: Any):
        self.params = params
        #: the run's stream for what a rule draws once at build time (e.g. a fixed
        #: feedback matrix); :class:`~bioperturb.experiment.Experiment` sets it from the seed
        self.seed_sequence = np.random.SeedSequence(0)

    def group_equations(self, group: str) -> Equations:
        """Extra equations of the network group ``group`` (hidden, readout, loss)."""
        return Equations("")

    def synapse_equations(self) -> Equations:
        """Extra per-synapse variables of every plastic weight matrix."""
        return Equations("acc : 1\nacc_last : 1")

    def matrix_equations(self, matrix: str) -> Equations:
        """Extra equations of one weight matrix's Synapses (``W_in``, ``W_rec``, ``W_out``)."""
        return Equations("")

    def initial_state(self, shape: dict[str, tuple[int, int]]) -> dict[str, dict[str, Any]]:
        """Per-synapse values the rule draws once for a run (e.g. a fixed feedback matrix),
        as ``{matrix: {variable: (post, pre) array}}`` for matrices of ``shape``. The
        standalone engine passes them as the program's initial state, so that a program
        does not depend on the seed; on the runtime engine the network builder sets them
        with the weights (``RateNetwork.set_start``)."""
        return {}

    def namespace(self, n_in: int, n_hidden: int, n_out: int) -> dict[str, Any]:
        """Constants the rule's equations refer to."""
        return {}

    def install(self, network: Any) -> list[Any]:
        """Create the rule's Brian2 objects on a built network; return them."""
        raise NotImplementedError

    @staticmethod
    def synapse_operations(
        network: Any,
        matrix: str,
        step: str | None = None,
        end: str | None = None,
        reset: str | None = None,
        prefix: str = "rule",
    ) -> list[Any]:
        """The per-synapse operations of one plastic matrix, in the slots every rule uses:
        ``step`` at each step's start after the sums and broadcasts (order 4), ``end`` at
        the trial's last step before the optimiser step (order −1), ``reset`` after it
        (order 1). Named ``<prefix>_step_<matrix>`` etc."""
        syn, tag = network.synapses[matrix], matrix.lower()
        objs = []
        if step is not None:
            objs.append(syn.run_regularly(step, when="start", order=4, name=f"{prefix}_step_{tag}"))
        trial = {"clock": network.trial_clock, "when": "end"}
        if end is not None:
            objs.append(syn.run_regularly(end, order=-1, name=f"{prefix}_end_{tag}", **trial))
        if reset is not None:
            objs.append(syn.run_regularly(reset, order=1, name=f"{prefix}_reset_{tag}", **trial))
        return objs
