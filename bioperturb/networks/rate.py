r"""Noisy leaky rate RNN in Brian2 with a clean and a noisy twin in the same groups.

Equations (Euler step dt; ξ white noise, injected into the noisy twin only)::

    τ dh/dt   = −h   + W r   + U u + b
    τ dh_n/dt = −h_n + W r_n + U u + b + σ √(2τ) ξ(t)
    r = tanh(h),  r_n = tanh(h_n)          (state variables, updated after each step)
    y = V r,      y_n = V r_n              (linear readout)
    L_t = ½ m_t ‖y_t − y*_t‖²,  L̃_t = ½ m_t ‖ỹ_t − y*_t‖²   (one-unit loss group)

With decorrelating lateral weights (``model.decorrelate``, docs/rules/decorrelation.md)
W and U see decorrelated presynaptic vectors instead of r and u::

    r̂ = D r,  r̂_n = D r_n     (D = I + lateral weights, "recurrent"; lateral Synapses d_rec)
    û = D_in u                (D_in likewise, "input"; lateral Synapses d_in)
    ΔD_ij = −η_d ⟨x̂_i x̂_j⟩_trial  (i ≠ j; diagonal fixed at 1; applied on training trials)

The readout keeps reading r. The rules' presynaptic factors follow: with decorrelation on,
the builder stores the decorrelated vector of the previous step in ``r_prev`` / ``u_prev``
(r̂_{t−1}, û_{t−1}), so every rule's products, written with ``r_prev_pre`` / ``u_prev_pre``,
use the vector its weights actually multiplied, unchanged.

σ sets the noise: the noisy twin receives the Euler–Maruyama increment σ √(2 dt/τ) ξ_t per
step. Without recurrence h_n − h is then an AR(1) process with stationary standard deviation
σ/√(1 − dt/(2τ)) (√2 σ at τ = dt; tested); recurrence amplifies it (rms(h_n − h)/σ ≈ 1.5 at
dt/τ = 0.2, g = 1.2, N = 100, measured by ``bioperturb.credit``'s ``delta_rms``). One Synapses
object per weight matrix carries both twins' currents; the global losses are computed by
a one-unit group fed by summed variables and broadcast back as scalars — no neuron ever
receives a per-neuron error.

The *tape*: all trials of a run (evaluation blocks and training trials) laid end to end
in network time. Trial k occupies the steps at t = kT + dt … (k+1)T; row 0 is an initial
step that only resets the state. Inputs, targets, mask, noise gate, learning gate, the
loss normaliser and (for rules that read it) the trial's condition label are TimedArrays
over the tape, and the trial-end operations (optimiser
step, state reset) tick once per trial on its last step. The same network therefore runs
one trial per ``net.run`` (runtime mode) or the whole tape in one simulation.

Per-step schedule (``when``/``order``)::

    start −1  r̂, r̂_n, û      ← Σ D r, Σ D r_n, Σ D_in u  (summed, lateral; decorrelation)
    start 0   y, y_n        ← Σ V r, Σ V r_n            (summed, readout)
    start 1   L, L_n        ← Σ l, Σ l_n                 (summed, loss group)
    start 2-4 rule: global sums, broadcasts, per-synapse accumulation
    start 4   L_cum += L/M                               (trial-loss accumulator)
    start 4   dacc += x̂_pre x̂_post                       (lateral synapses; decorrelation)
    start 5   monitors
    groups −1 I_rec, I_rec_n, I_in, I_in_n               (summed currents, from r̂ / û)
    groups 0  Euler step of h, h_n (the same deterministic expression for both)
    after_groups 0  noise_h = σ √(2 dt/τ) randn();  h_n += noise_h   (Euler–Maruyama;
                    sparse kicks instead for rules with noise = "kicks", NOISE_KINDS)
    after_groups 1  r_prev = r (r̂); r = tanh(h); r_n = tanh(h_n); u_prev = u (û)
    end (once per trial)  optimiser step on w, lateral step on d; reset h, h_n, r, r_n,
                          r_prev, u_prev

r̂_t is summed from r_t before I_rec is, so the forward pass stays the exact Euler step
h_{t+1} = h_t + dt/τ (−h_t + W D r_t + U D_in u_t + b).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from brian2 import (
    Clock,
    Equations,
    Network,
    NeuronGroup,
    StateMonitor,
    Synapses,
    TimedArray,
    second,
)

from bioperturb.networks.mlp import check_settled, layer_masks
from bioperturb.optimizers import (
    CLEAR_CODE,
    optimizer_code,
    optimizer_equations,
    optimizer_values,
)
from bioperturb.resources import sparse_slots


class Fusion(Protocol):
    """What the builder asks of an engine's plan to run W_rec's work in its own code
    (the standalone engine's :class:`~bioperturb.engines.standalone.fused.FusionPlan`)."""

    currents: bool  # W_rec's summed currents (and the twin's) leave Brian2's code
    batched: bool  # the rule's W_rec accumulation leaves Brian2's code
    batched_in: bool  # and W_in's (spiking networks only)
    spikes: bool  # a spiking network's W_rec spike propagation (its sparse slots)
    sparse: bool  # W_rec is sparse (stored in slots, engines/standalone/fused.py)

    @property
    def active(self) -> bool: ...

    def install(self, handle: Any, rule: Any) -> None: ...


__all__ = [
    "Tape",
    "RateNetwork",
    "build_rate_network",
    "init_weights",
    "unit_readout",
    "MATRICES",
    "LATERAL",
]

MATRICES = ("W_in", "W_rec", "W_out")
#: decorrelation site → (lateral matrix name, group, decorrelated variable, source variable)
LATERAL = {
    "recurrent": ("D_rec", "hidden", "rhat", "r"),
    "input": ("D_in", "inputs", "uhat", "u"),
}


@dataclass
class Tape:
    """All trials of a run laid end to end; row 0 is the initial reset step.

    Attributes
    ----------
    inputs, targets : (rows, n_in), (rows, n_out)
    mask, noise, learn, step, m_inv, n_updates : (rows,); ``learn`` is 1 on the last step
        of a training trial, ``step`` on the last step of one that ends a batch (an
        optimiser step), ``n_updates`` counts the optimiser steps so far
    condition : (rows,), the condition label of the trial a row belongs to (0 in row 0)
    sign : (rows,), the sign of the node noise: −1 on the second twin of an antithetic
        pair (``training.antithetic``), else 1
    trial : (rows,), the index of the training trial a row belongs to (0 on evaluation
        trials and row 0); rules that cycle through something by trial read it
    kinds : list of ("eval", condition, eval_index) or ("train", trial_index, None)
    n_steps : steps per trial
    """

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    noise: np.ndarray
    learn: np.ndarray
    step: np.ndarray
    m_inv: np.ndarray
    n_updates: np.ndarray
    kinds: list[tuple[str, int, int | None]] = field(default_factory=list)
    n_steps: int = 0
    condition: np.ndarray | None = None
    sign: np.ndarray | None = None
    trial: np.ndarray | None = None

    @classmethod
    def blank(cls, n_trials: int, n_steps: int, n_in: int, n_out: int) -> Tape:
        """A tape of ``n_trials`` silent trials: no input, no loss, no noise, no learning."""
        n_rows = 1 + n_steps * n_trials
        return cls(
            inputs=np.zeros((n_rows, n_in)),
            targets=np.zeros((n_rows, n_out)),
            mask=np.zeros(n_rows),
            noise=np.zeros(n_rows),
            learn=np.zeros(n_rows),
            step=np.zeros(n_rows),
            m_inv=np.zeros(n_rows),
            n_updates=np.ones(n_rows),
            n_steps=n_steps,
            condition=np.zeros(n_rows),
            sign=np.ones(n_rows),
            trial=np.zeros(n_rows),
        )

    @classmethod
    def build(
        cls,
        segments: list[tuple[str, int, int | None, Any, int]],
        batch: int = 1,
        antithetic: bool = False,
    ) -> Tape:
        """Lay out ``(kind, index, eval_index, trials, row)`` segments in order; the
        optimiser steps after every ``batch``-th training trial. With ``antithetic`` every
        second training trial has noise sign −1 (the mirror twin of the trial before)."""
        first = segments[0][3]
        n_steps = first.n_steps
        n_in, n_out = first.inputs.shape[2], first.targets.shape[2]
        tape = cls.blank(len(segments), n_steps, n_in, n_out)
        trained = updates = 0
        for k, (kind, index, eval_index, trials, row) in enumerate(segments):
            sl = slice(1 + k * n_steps, 1 + (k + 1) * n_steps)
            tape.inputs[sl] = trials.inputs[row]
            tape.targets[sl] = trials.targets[row]
            tape.mask[sl] = trials.mask[row]
            tape.m_inv[sl] = 1.0 / max(trials.mask[row].sum(), 1.0)
            tape.condition[sl] = trials.conditions[row]
            if kind == "train":
                tape.noise[sl] = 1.0
                tape.trial[sl] = index
                tape.learn[sl.stop - 1] = 1.0
                if antithetic and trained % 2:
                    tape.sign[sl] = -1.0
                trained += 1
                if trained % batch == 0:
                    tape.step[sl.stop - 1] = 1.0
                    updates += 1
            # Adam's step count k (inside a batch: the coming step's; never 0, a divisor)
            tape.n_updates[sl] = max(updates + (trained % batch > 0), 1)
            tape.kinds.append((kind, index, eval_index))
        return tape

    @property
    def n_trials(self) -> int:
        return len(self.kinds)

    @property
    def n_conditions(self) -> int:
        """Number of condition labels 0 … K − 1 the tape can hold (1 without labels)."""
        if self.condition is None or not len(self.condition):
            return 1
        return int(self.condition.max()) + 1


def init_weights(
    rng: np.random.Generator, n_in: int, n_hidden: int, n_out: int, model: Any
) -> dict[str, np.ndarray]:
    """Gaussian initial weights: U ~ N(0, s_in²/n_in), W ~ N(0, g²/N), V ~ N(0, s_out²/N).

    With ``model.p_connect`` = p < 1, W_rec keeps each entry with probability p (drawn
    after the weights, so all-to-all runs are unchanged) and is scaled by 1/√p, so that
    the recurrent gain stays g; absent entries are 0 (see :func:`connectivity`). With
    ``model.output_init = "units"`` the readout is hidden units 0 … n_out − 1 themselves
    (see :func:`unit_readout`).
    """
    weights = {
        "W_in": rng.normal(0.0, model.input_scale / np.sqrt(n_in), (n_hidden, n_in)),
        "W_rec": rng.normal(0.0, model.g / np.sqrt(n_hidden), (n_hidden, n_hidden)),
        "W_out": rng.normal(0.0, model.output_scale / np.sqrt(n_hidden), (n_out, n_hidden)),
    }
    return unit_readout(sparsify(rng, weights, model), model)


def unit_readout(weights: dict[str, np.ndarray], model: Any) -> dict[str, np.ndarray]:
    """With ``model.output_init = "units"``: V_kk = output_scale, 0 elsewhere, so output k is
    the activity of hidden unit k (Miconi 2017's output unit). The Gaussian V is drawn
    first either way, so the other matrices do not depend on the choice."""
    if getattr(model, "output_init", "gaussian") != "units":
        return weights
    n_out, n_hidden = weights["W_out"].shape
    if n_out > n_hidden:
        raise ValueError(
            f"model.output_init = 'units' needs at least one hidden unit per output "
            f"({n_out} outputs, n_hidden = {n_hidden})"
        )
    readout = np.zeros((n_out, n_hidden))
    readout[np.arange(n_out), np.arange(n_out)] = model.output_scale
    return {**weights, "W_out": readout}


def sparsify(rng: np.random.Generator, weights: dict[str, np.ndarray], model: Any):
    """Zero the W_rec entries that do not exist (``model.p_connect`` < 1); see init_weights."""
    p = getattr(model, "p_connect", 1.0)
    if p < 1:
        keep = rng.random(weights["W_rec"].shape) < p
        weights["W_rec"] = np.where(keep, weights["W_rec"] / np.sqrt(p), 0.0)
    return weights


def connectivity(weights: dict[str, np.ndarray], model: Any) -> dict[str, np.ndarray]:
    """Boolean (post, pre) masks of the matrices that are not all-to-all (W_rec if sparse;
    every matrix and the lateral D_rec of a feed-forward stack, networks/mlp.py)."""
    if getattr(model, "layers", None):
        n_out = weights["W_out"].shape[0]
        return layer_masks(tuple(model.layers), weights["W_in"].shape[1], n_out)
    if getattr(model, "p_connect", 1.0) < 1:
        return {"W_rec": weights["W_rec"] != 0}
    return {}


class RateNetwork:
    """Handle on the Brian2 objects of a twin rate network and its weight matrices."""

    def __init__(self) -> None:
        self.net: Network | None = None
        self.hidden: NeuronGroup | None = None
        self.inputs: NeuronGroup | None = None
        self.readout: NeuronGroup | None = None
        self.loss: NeuronGroup | None = None
        self.synapses: dict[str, Synapses] = {}
        #: decorrelating lateral Synapses by matrix name ("D_rec", "D_in"), variable ``d``
        self.lateral: dict[str, Synapses] = {}
        self.monitors: dict[str, StateMonitor] = {}
        self.namespace: dict[str, Any] = {}
        self.clock: Clock | None = None
        self.trial_clock: Clock | None = None
        self.shape: dict[str, tuple[int, int]] = {}
        #: groups and synapses beyond hidden, inputs, weights and lateral (readout, loss, …)
        self.extra_objects: list[Any] = []
        #: code appended to a matrix's optimiser step (e.g. Dale's sign constraint)
        self.constraints: dict[str, str] = {}
        #: (post, pre) boolean masks of sparse matrices (absent: all-to-all)
        self.masks: dict[str, np.ndarray] = {}
        #: monitors switched on only during evaluation trials
        self.eval_monitors: tuple[str, ...] = ("activity", "output")
        #: matrices whose rule accumulation the fused engine forms (engines/standalone/fused.py)
        self.batched: tuple[str, ...] = ()
        #: matrices stored as this many synapse slots, whatever the seed's connectivity
        #: (the standalone engine's sparse W_rec: engines/standalone/fused.py)
        self.slots: dict[str, int] = {}
        #: whether plastic synapses keep ``acc_last``, the estimate of the last trial
        self.keep_estimate = True
        #: number of trial condition labels on the tape (``cond_at`` holds 0 … K − 1)
        self.n_conditions: int = 1

    @classmethod
    def for_tape(cls, model: Any, rule: Any, training: Any, tape: Tape) -> RateNetwork:
        """An empty handle with the matrix shapes, namespace and clocks of ``tape``."""
        handle = cls()
        n_hidden, n_in, n_out = model.n_hidden, tape.inputs.shape[1], tape.targets.shape[1]
        handle.shape = {
            "W_in": (n_hidden, n_in),
            "W_rec": (n_hidden, n_hidden),
            "W_out": (n_out, n_hidden),
        }
        ns, clock, trial_clock = tape_namespace(model, rule, training, tape)
        handle.namespace, handle.clock, handle.trial_clock = ns, clock, trial_clock
        handle.n_conditions = tape.n_conditions
        return handle

    def connect_global(self, syn: Synapses) -> None:
        """Connect a rule's global sum (a layer → the loss group) or broadcast (the loss
        group → a layer): all-to-all, the loss group being one unit. The cells of a
        synaptic protocol (:class:`bioperturb.synaptic.CellNetwork`) connect each cell's
        units to its own loss unit instead."""
        syn.connect()

    def schedule_summed(self, syn: Synapses, var: str, order: int) -> None:
        """Run the summed-variable update of ``var`` at the start of the step."""
        updater = syn.summed_updaters[f"{var}_post"]
        updater.when = "start"
        updater.order = order

    def get_weights(self) -> dict[str, np.ndarray]:
        """Current weight matrices as (post, pre) arrays."""
        return {name: self._matrix(name, "w") for name in self.synapses}

    def get_lateral(self) -> dict[str, np.ndarray]:
        """Current decorrelation matrices D = I + lateral weights as (post, pre) arrays."""
        return {name: self._matrix(name, "d") for name in self.lateral}

    def set_lateral(self, matrices: dict[str, np.ndarray]) -> None:
        """Set D (its diagonal is part of the matrix; the learning rule keeps it fixed)."""
        for name, d in matrices.items():
            syn = self.lateral[name]
            syn.d[:] = np.asarray(d)[syn.j[:], syn.i[:]]

    def _matrix(self, name: str, var: str) -> np.ndarray:
        syn = self.synapses[name] if name in self.synapses else self.lateral[name]
        out = np.zeros(self.shape[name])
        out[syn.j[:], syn.i[:]] = getattr(syn, var)[:]
        return out

    def last_estimates(self) -> dict[str, np.ndarray]:
        """The rule's gradient estimate of the last trial (``acc_last``), per plastic matrix."""
        return {
            name: self._matrix(name, "acc_last")
            for name, syn in self.synapses.items()
            if "acc_last" in syn.variables
        }

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        for name, w in weights.items():
            self.set_matrix(name, "w", w)

    def set_matrix(self, name: str, var: str, values: np.ndarray) -> None:
        """Set a per-synapse variable of matrix ``name`` from a (post, pre) array."""
        syn = self.synapses[name]
        getattr(syn, var)[:] = np.asarray(values)[syn.j[:], syn.i[:]]

    def set_start(self, weights: dict[str, np.ndarray] | None, rule: Any) -> None:
        """The run's starting weights and what the rule draws for the run
        (:meth:`~bioperturb.rules.base.Rule.initial_state`, e.g. RFLO's feedback matrix);
        the standalone engine passes both as a program's initial state instead (``weights``
        None: set nothing)."""
        if weights is None:
            return
        self.set_weights(weights)
        for name, variables in rule.initial_state(self.shape).items():
            for var, values in variables.items():
                self.set_matrix(name, var, values)

    def cumulative_losses(self) -> tuple[float, float]:
        """Running sums of the clean and noisy trial losses (equal without a twin)."""
        clean = float(self.loss.L_cum[0])
        noisy = float(self.loss.L_n_cum[0]) if "L_n_cum" in self.loss.variables else clean
        return clean, noisy


def build_rate_network(
    model: Any,
    rule: Any,
    training: Any,
    tape: Tape,
    weights: dict[str, np.ndarray] | None,
    *,
    record_dt: float,
    record_units: np.ndarray,
    fuse: Fusion | None = None,
    keep_estimate: bool = True,
) -> RateNetwork:
    """Build the twin rate network for ``tape`` with ``rule`` and the training optimiser.

    ``fuse`` (cpp_standalone device only): W_rec's currents and the rule's W_rec
    accumulation as C++ calls (:mod:`bioperturb.engines.standalone.fused`) instead of
    Brian2 code; the plan installs its calls itself (:meth:`Fusion.install`).
    ``keep_estimate = False``: no per-synapse copy ``acc_last`` of the last estimate (what
    the update–gradient alignment reads), 8 bytes per synapse less.
    """
    n_hidden, n_in = model.n_hidden, tape.inputs.shape[1]
    handle = RateNetwork.for_tape(model, rule, training, tape)
    handle.keep_estimate = keep_estimate
    handle.masks = connectivity(weights, model) if weights is not None else {}
    ns, clock, trial_clock = handle.namespace, handle.clock, handle.trial_clock

    twin = rule.twin
    noisy = "h_n" if twin else "h"  # the state that receives the noise
    decor = tuple(getattr(model, "decorrelate", ()))
    # the presynaptic vectors the forward weights multiply (and the rules' factors)
    rvar = "rhat" if "recurrent" in decor else "r"
    uvar = "uhat" if "input" in decor else "u"
    hidden_eqs = Equations(
        """
        dh/dt = (-h + I_rec + I_in + b) / tau : 1
        I_rec : 1
        I_in : 1
        r : 1
        r_prev : 1
        b : 1 (constant)
        sigma : 1 (shared, constant)
        noise_h : 1
        """
    ) + rule.group_equations("hidden")
    if twin:
        hidden_eqs += Equations(
            "dh_n/dt = (-h_n + I_rec_n + I_in_n + b) / tau : 1\nI_rec_n : 1\nI_in_n : 1\nr_n : 1"
        )
    if "recurrent" in decor:
        hidden_eqs += Equations("rhat : 1" + ("\nrhat_n : 1" if twin else ""))
    if getattr(model, "hold_noise", False):
        hidden_eqs += Equations("noise_hold : 1")
        check_settled(model, tape.mask[1:].reshape(-1, tape.n_steps))
    layers = tuple(getattr(model, "layers", ()))
    if layers:  # a feed-forward stack: each unit's layer 0 … L − 1 (rules may gate by it)
        hidden_eqs += Equations("layer : 1 (constant)")
        ns["n_layers"] = len(layers)
    if fuse is not None and fuse.batched:
        hidden_eqs += Equations("fused_a : 1\nfused_b : 1")
        handle.batched = ("W_rec",)  # no per-synapse trace on W_rec (add_weight_synapses)
    hidden = NeuronGroup(n_hidden, hidden_eqs, method="euler", clock=clock, name="hidden")
    hidden.b = model.bias
    hidden.sigma = model.sigma
    if layers:
        hidden.layer = np.repeat(np.arange(len(layers)), layers)
    if rule.node_noise:
        hold = trial_clock if getattr(model, "hold_noise", False) else None
        gate = getattr(rule, "noise_gate", None)
        add_node_noise(hidden, noisy, rule.noise, training.antithetic, hold=hold, gate=gate)
    hidden.run_regularly(
        f"r_prev = {rvar}\nr = tanh(h)" + ("\nr_n = tanh(h_n)" if twin else ""),
        when="after_groups",
        order=1,
        name="hidden_rates",
    )
    hidden.run_regularly(
        "h = 0\nr = 0\nr_prev = 0" + ("\nh_n = 0\nr_n = 0" if twin else ""),
        clock=trial_clock,
        when="end",
        order=1,
        name="hidden_reset",
    )

    input_eqs = "u = stim(t, i) : 1\nu_prev : 1" + ("\nuhat : 1" if "input" in decor else "")
    inputs = NeuronGroup(n_in, input_eqs, clock=clock, name="inputs")
    inputs.run_regularly(f"u_prev = {uvar}", when="after_groups", name="inputs_prev")
    inputs.run_regularly("u_prev = 0", clock=trial_clock, when="end", order=1, name="inputs_reset")

    handle.hidden, handle.inputs = hidden, inputs
    add_readout_and_loss(handle, rule)

    summed = {
        "W_in": ("inputs", "hidden", [f"I_in_post = w * {uvar}_pre : 1 (summed)"]),
        "W_rec": ("hidden", "hidden", [f"I_rec_post = w * {rvar}_pre : 1 (summed)"]),
        "W_out": ("hidden", "readout", ["y_post = w * r_pre : 1 (summed)"]),
    }
    if twin:
        wn = rule.noisy_weight  # "w", or "(w + w_pert)" for weight perturbation
        summed["W_in"][2].append(f"I_in_n_post = {wn} * {uvar}_pre : 1 (summed)")
        summed["W_rec"][2].append(f"I_rec_n_post = {wn} * {rvar}_n_pre : 1 (summed)")
        summed["W_out"][2].append(f"y_n_post = {wn} * r_n_pre : 1 (summed)")
    if fuse is not None and fuse.currents:
        summed["W_rec"][2].clear()  # the fused call writes I_rec (and I_rec_n)
    if fuse is not None and fuse.sparse:  # slots for the existing synapses (fused.py)
        summed["W_rec"][2].append("cell : integer (constant)")
        handle.slots["W_rec"] = sparse_slots(n_hidden, n_hidden, model.p_connect)
    groups = {"inputs": inputs, "hidden": hidden, "readout": handle.readout}
    add_weight_synapses(
        handle,
        {name: (groups[a], groups[b], lines, {}) for name, (a, b, lines) in summed.items()},
        rule,
        training,
    )
    handle.set_start(weights, rule)
    if decor:
        ns["decor_lr"] = model.decor_lr
        ns["decor_n_inv"] = 1.0 / tape.n_steps
        for site in decor:
            _add_lateral(handle, site, groups, (clock, trial_clock), twin)
    finish_readout(handle, twin)
    handle.monitors = standard_monitors(handle, record_dt, record_units, "r")
    if fuse is not None and fuse.active:
        fuse.install(handle, rule)
    rule_objs = rule.install(handle)
    handle.net = Network(
        hidden,
        inputs,
        *handle.extra_objects,
        *handle.synapses.values(),
        *handle.lateral.values(),
        *rule_objs,
        *handle.monitors.values(),
        name="bioperturb_rate",
    )
    return handle


def tape_namespace(model: Any, rule: Any, training: Any, tape: Tape):
    """(namespace, step clock, trial clock) of a network running ``tape``.

    The namespace holds the tape's TimedArrays (inputs ``stim``, ``target``, ``mask_at``,
    ``noise_at``, ``learn_at``, ``step_at``, ``minv_at``, ``n_updates``; ``cond_at``, the trial's
    condition label, for rules that read it), ``tau`` (the time constant of the noisy
    variable, for the Euler–Maruyama noise), ``state_gain`` (the model's ∂h_t/∂(W x_{t−1})),
    the optimiser's and the rule's constants.
    """
    tdt = model.dt * second
    clock = Clock(tdt, name="bioperturb_step")
    trial_clock = Clock(tape.n_steps * tdt, name="bioperturb_trial")
    ns: dict[str, Any] = {
        "tau": model.tau * second,
        "state_gain": model.state_gain,
        "stim": TimedArray(tape.inputs, dt=tdt, name="tape_inputs"),
        "target": TimedArray(tape.targets, dt=tdt, name="tape_targets"),
        "mask_at": TimedArray(tape.mask, dt=tdt, name="tape_mask"),
        "noise_at": TimedArray(tape.noise, dt=tdt, name="tape_noise"),
        "learn_at": TimedArray(tape.learn, dt=tdt, name="tape_learn"),
        "step_at": TimedArray(tape.step, dt=tdt, name="tape_step"),
        "minv_at": TimedArray(tape.m_inv, dt=tdt, name="tape_minv"),
        "n_updates": TimedArray(tape.n_updates, dt=tdt, name="tape_nupdates"),
    }
    if getattr(rule, "per_condition", False):
        ns["cond_at"] = TimedArray(tape.condition, dt=tdt, name="tape_condition")
    if getattr(rule, "per_trial", False):
        ns["trial_at"] = TimedArray(tape.trial, dt=tdt, name="tape_trial")
    if training.antithetic:
        ns["sign_at"] = TimedArray(tape.sign, dt=tdt, name="tape_sign")
    ns.update(rule.namespace(tape.inputs.shape[1], model.n_hidden, tape.targets.shape[1]))
    return ns, clock, trial_clock


#: the increment ``noise_h`` added to the noisy state each step, by noise kind
NOISE_KINDS = {
    # Euler–Maruyama white noise of stationary std σ (linear regime)
    "white": "noise_h = sigma * noise_at(t) * sqrt(2 * dt / tau) * randn()",
    # sparse kicks (Miconi 2017): with probability p = kick_rate·dt (≤ 1) a uniform draw
    # in [−kick_amp, kick_amp] (constants of the rule's namespace). One uniform u per unit
    # and step: u < p is the kick, and given it u/p is uniform on [0, 1); the tiny
    # addend keeps p = 0 finite without changing u/p for any p > 1e-290
    "kicks": "noise_h = rand()\n"
    "noise_h = noise_at(t) * kick_amp * int(noise_h < kick_rate * dt)"
    " * (2 * noise_h / (kick_rate * dt + 1e-300) - 1)",
}


def add_node_noise(
    group: NeuronGroup,
    target: str,
    kind: str = "white",
    antithetic: bool = False,
    hold: Clock | None = None,
    gate: str | None = None,
) -> None:
    """Noise on ``target`` as a separate step after the deterministic one.

    Then the deterministic part of both twins is the same expression: with σ = 0 the
    twins stay bitwise equal and δ = 0 exactly. ``noise_h`` keeps the last increment
    (node perturbation pairs it with the presynaptic factor). ``kind`` (the rule's
    ``noise``) is a key of :data:`NOISE_KINDS`: ``"white"`` (every rule but Miconi's) or
    ``"kicks"``. The evaluation trials' gate ``noise_at(t)`` = 0 switches either off.
    With ``antithetic`` the increment is multiplied by the tape's ``sign_at(t)`` (−1 on
    the mirror twin of a pair, whose draws the runtime engine replays).

    With ``hold`` = the trial clock (a feed-forward stack, ``MLPConfig.hold_noise``) one
    white draw per unit is made at every trial boundary into ``noise_hold`` (a variable the
    group must have) and added every step of the trial: a static perturbation of the
    whole forward pass.

    ``gate`` (a rule's ``noise_gate``): an expression in the group's variables and the
    namespace that multiplies the increment, e.g. iterative NP's one layer per trial.
    """
    sign = "\nnoise_h = noise_h * sign_at(t)" if antithetic else ""
    if gate is not None:
        sign += f"\nnoise_h = noise_h * ({gate})"
    noise = NOISE_KINDS[kind]
    if hold is not None:
        if kind != "white" or antithetic:
            raise ValueError(
                "model.kind: a feed-forward stack holds one white perturbation per trial; "
                f"it takes neither rule noise = {kind!r} nor training.antithetic"
            )
        # the trial clock ticks at t = 0 and on the last step of every trial
        group.run_regularly(
            "noise_hold = sigma * sqrt(2 * dt / tau) * randn()",
            clock=hold,
            when="end",
            order=2,
            name="hidden_noise_draw",
        )
        noise = "noise_h = noise_at(t) * noise_hold"
    group.run_regularly(
        f"{noise}{sign}\n{target} += noise_h",
        when="after_groups",
        order=0,
        name="hidden_noise",
    )


def add_readout_and_loss(handle: RateNetwork, rule: Any) -> None:
    """The linear readout group (y, y_n; loss per unit l, l_n) and the one-unit loss group."""
    twin = rule.twin
    n_out = handle.shape["W_out"][0]
    readout_eqs = Equations(
        """
        y : 1
        ystar = target(t, i) : 1
        l = 0.5 * mask_at(t) * (y - ystar)**2 : 1
        """
    ) + rule.group_equations("readout")
    if twin:
        readout_eqs += Equations("y_n : 1\nl_n = 0.5 * mask_at(t) * (y_n - ystar)**2 : 1")
    readout = NeuronGroup(n_out, readout_eqs, clock=handle.clock, name="readout")

    loss_eqs = Equations(
        """
        L : 1
        M_inv = minv_at(t) : 1
        L_cum : 1
        """
    ) + rule.group_equations("loss")
    if twin:
        loss_eqs += Equations("L_n : 1\nL_n_cum : 1")
    loss = NeuronGroup(1, loss_eqs, clock=handle.clock, name="loss")
    loss.run_regularly(
        "L_cum += L * M_inv" + ("\nL_n_cum += L_n * M_inv" if twin else ""),
        when="start",
        order=4,
        name="loss_accumulate",
    )
    handle.readout, handle.loss = readout, loss
    handle.extra_objects += [readout, loss]


#: per-synapse variables that a matrix whose accumulation the standalone engine fuses
#: (``handle.batched``) does not store: its eligibility trace is summed by one GEMM
FUSED_AWAY = ("elig",)


def add_weight_synapses(
    handle: RateNetwork,
    specs: dict[str, tuple[NeuronGroup, NeuronGroup, list[str], dict[str, Any]]],
    rule: Any,
    training: Any,
) -> None:
    """One all-to-all Synapses per weight matrix: ``w``, the given lines, the rule's and
    the optimiser's variables, and (plastic rules) the optimiser step at trial end.

    ``specs`` maps a matrix name to (pre, post, model lines, extra Synapses keywords such
    as ``on_pre``/``on_event``).
    """
    plastic = rule.synapse_equations()
    if rule.plastic:
        plastic += optimizer_equations(training.optimizer)
    update = optimizer_code(
        training.optimizer,
        clip=training.max_step > 0,
        online=getattr(rule, "online", False),
        keep_last=handle.keep_estimate,
    )
    dropped = () if handle.keep_estimate else ("acc_last",)
    for name, (pre, post, lines, kwargs) in specs.items():
        eqs = Equations("w : 1") + Equations("\n".join(lines)) + plastic
        eqs += rule.matrix_equations(name)
        # what nothing reads: acc_last without alignment, elig where the GEMM forms the sum
        away = (*dropped, *(FUSED_AWAY if name in handle.batched else ()))
        if away:
            eqs = Equations([eq for eq in eqs.ordered if eq.varname not in away])
        syn = Synapses(pre, post, eqs, clock=handle.clock, name=name.lower(), **kwargs)
        if name in handle.slots:  # a program's sparse matrix: which slot is which synapse
            # is its ``cell`` (a run argument); Brian2's indices are placeholders no code reads
            k = handle.slots[name]
            syn.connect(i=np.arange(k) * len(pre) // k, j=np.arange(k) % len(post))
        elif name in handle.masks:  # sparse: only the existing synapses (post, pre)
            post_idx, pre_idx = np.nonzero(handle.masks[name])
            if len(post_idx):
                syn.connect(i=pre_idx, j=post_idx)
            else:  # none (a one-layer stack's W_rec): connected, with no synapse
                syn.connect(condition="False")
        else:
            syn.connect()
        handle.synapses[name] = syn
        if rule.plastic:
            for var, value in optimizer_values(training).items():
                setattr(syn, var, value)
            code = update + handle.constraints.get(name, "")
            # (online SGD without a kept estimate leaves nothing to do before the clear)
            steps = [("update", code, 0)] if code.strip() else []
            for label, text, order in [*steps, ("clear", CLEAR_CODE, 1)]:
                syn.run_regularly(
                    text,
                    clock=handle.trial_clock,
                    when="end",
                    order=order,
                    name=f"{name.lower()}_{label}",
                )


def finish_readout(handle: RateNetwork, twin: bool) -> None:
    """Schedule the readout sums first in the step; sum the loss into the loss group."""
    twin_vars = ("_n",) if twin else ()
    for suffix in ("", *twin_vars):
        handle.schedule_summed(handle.synapses["W_out"], f"y{suffix}", order=0)
    to_loss = Synapses(
        handle.readout,
        handle.loss,
        "\n".join(f"L{s}_post = l{s}_pre : 1 (summed)" for s in ("", *twin_vars)),
        clock=handle.clock,
        name="loss_sum",
    )
    to_loss.connect()
    for suffix in ("", *twin_vars):
        handle.schedule_summed(to_loss, f"L{suffix}", order=1)
    handle.extra_objects.append(to_loss)


def standard_monitors(
    handle: RateNetwork, record_dt: float, record_units: np.ndarray, activity: str
) -> dict[str, StateMonitor]:
    """Monitors of the loss L_t, the hidden ``activity`` of sampled units and the readout."""
    rec_clock = Clock(record_dt * second, name="bioperturb_record")
    return {
        "loss_t": StateMonitor(
            handle.loss, "L", record=0, clock=rec_clock, when="start", order=5, name="mon_loss_t"
        ),
        "activity": StateMonitor(
            handle.hidden,
            activity,
            record=record_units,
            clock=rec_clock,
            when="start",
            order=5,
            name="mon_activity",
        ),
        "output": StateMonitor(
            handle.readout,
            "y",
            record=True,
            clock=rec_clock,
            when="start",
            order=5,
            name="mon_output",
        ),
    }


def _add_lateral(
    handle: RateNetwork,
    site: str,
    groups: dict[str, NeuronGroup],
    clocks: tuple[Clock, Clock],
    twin: bool,
) -> None:
    """Decorrelating lateral weights D = I + L within ``groups[...]`` (Brian2 variable ``d``).

    All-to-all (self-connections included) so that ``x̂ = Σ_j d_ij x_j`` is exactly D x; the
    diagonal d_ii = 1 is never changed (``offdiag`` masks the update). The local
    anti-Hebbian rule: every step ``dacc += x̂_pre x̂_post``; at the end of a training trial
    ``d −= η_d · dacc / n_steps`` off the diagonal (the trial mean of x̂_i x̂_j), then
    ``dacc = 0``. ``learn_at(t)`` is 0 on evaluation trials, so they never move D.
    """
    name, group_name, hat, src = LATERAL[site]
    group = groups[group_name]
    clock, trial_clock = clocks
    lines = [f"{hat}_post = d * {src}_pre : 1 (summed)"]
    if twin and site == "recurrent":
        lines.append(f"{hat}_n_post = d * {src}_n_pre : 1 (summed)")
    eqs = Equations("d : 1\noffdiag : 1 (constant)\ndacc : 1") + Equations("\n".join(lines))
    syn = Synapses(group, group, eqs, clock=clock, name=name.lower())
    if name in handle.masks:  # block-diagonal (a feed-forward stack: within each layer)
        post_idx, pre_idx = np.nonzero(handle.masks[name])
        syn.connect(i=pre_idx, j=post_idx)
    else:
        syn.connect()
    syn.offdiag = "int(i != j)"
    syn.d = "int(i == j)"
    for line in lines:
        handle.schedule_summed(syn, line.split("_post")[0], order=-1)
    syn.run_regularly(
        f"dacc += {hat}_pre * {hat}_post", when="start", order=4, name=f"{name.lower()}_accumulate"
    )
    syn.run_regularly(
        "d += -decor_lr * decor_n_inv * learn_at(t) * offdiag * dacc\ndacc = 0",
        clock=trial_clock,
        when="end",
        order=0,
        name=f"{name.lower()}_update",
    )
    handle.lateral[name] = syn
    handle.shape[name] = (len(group), len(group))
