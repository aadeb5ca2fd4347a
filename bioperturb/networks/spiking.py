r"""Noisy LIF RNN in Brian2 with a clean and a noisy twin in the same groups.

Potentials are in units of the distance from rest (0) to threshold (``v_th``, 1 by
default); currents in the same units. Per neuron, each twin (noisy: suffix ``_n``)::

    τ_m dv/dt = −v + h + b             (frozen at v_reset for round(t_ref/dt) steps after a spike)
    τ_s dh/dt = −h,   h += w_ij on a spike of presynaptic j     (exponential synapses)
    τ_s dr/dt = −r,   r += 1 on an own spike                    (synaptic trace)
    spike: v > v_th  →  v = v_reset
    y = V r,  L_t = ½ m_t ‖y_t − y*_t‖²                         (leaky readout, one-unit loss)

The noisy twin receives a noise current: after the deterministic step
``h_n += σ √(2 dt/τ_s) ξ`` (an Ornstein–Uhlenbeck current of stationary std σ), the
same Euler–Maruyama op as the rate network, so the twins are bitwise equal at σ = 0.

Because the synaptic current and the trace decay with the same τ_s and jump together,
``h = W r + U u`` holds exactly at every step (u: the input neurons' traces): h is the
pre-activation analogue of the rate network and r its rate. The rules therefore apply
unchanged (composition, not copies): δ = h_n − h is the difference of the twins' input
currents, the presynaptic factor of W_rec is the clean trace r (``r_prev`` here is r
itself: it is the trace h reflects at the moment the rule reads it), that of W_in the
input trace u, the readout pairs ỹ − y with r.

Forward propagation is event-driven: one Synapses per matrix with two pathways, ``pre``
on the clean twin's spikes (``h_post += w``) and ``pre_n`` on the noisy twin's custom
event ``spike_n`` (``h_n_post += w``). The rules' products δ_i r_j change at every step
(δ_i does), so the eligibility is updated clock-driven, not on spikes.

With decorrelating lateral weights (``model.decorrelate``) the forward currents are
clock-driven instead: ``h = Σ_j w_ij r̂_j + Σ_k u_ik û_k`` with r̂ = D r, û = D_in u
(summed variables), which equals the event-driven current when D = I; the noise then
enters through a separate OU current ``eta_n`` (h_n = … + eta_n).

Dale's law (``model.dale``): the first ``round(frac_exc · N)`` neurons are excitatory,
the rest inhibitory; every W_rec weight keeps the sign of its presynaptic neuron
(initial |N(0, g²/N)|, inhibitory ones scaled by N_E/N_I so that excitation and
inhibition balance on average) and each optimiser step ends with the projection
``w = s_j · max(s_j w, 0)``. Input and readout weights are unconstrained.

Per-step schedule (on top of the rate network's, see :mod:`bioperturb.networks.rate`)::

    start 0     y, y_n ← Σ V r (summed);  [decorrelation: r̂, û (−1), I_rec, I_in (0)]
    start 1-4   loss, rule (reads h, h_n, r at the state the step starts from)
    groups      Euler step of v, h, r (both twins)
    after_groups 0   h_n += noise (or eta_n)
    thresholds  spike (clean) and spike_n (noisy) events
    synapses    h_post += w, h_n_post += w (event-driven pathways)
    resets      v = v_reset, r += 1, last spike time
    end (once per trial)  optimiser step (+ Dale projection); reset v, h, r, spike times
"""

from __future__ import annotations

from typing import Any

import numpy as np
from brian2 import Equations, Network, NeuronGroup, SpikeMonitor, StateMonitor, second

from bioperturb.networks.rate import (
    RateNetwork,
    Tape,
    _add_lateral,
    add_node_noise,
    add_readout_and_loss,
    add_weight_synapses,
    connectivity,
    finish_readout,
    sparsify,
    standard_monitors,
    unit_readout,
)
from bioperturb.resources import sparse_slots

__all__ = ["SpikingNetwork", "build_spiking_network", "init_spiking_weights", "dale_signs"]

#: projection of a W_rec weight onto its presynaptic neuron's sign (Dale's law)
DALE_CODE = "\nw = dale_pre * clip(dale_pre * w, 0, inf)"

#: 1 when the membrane integrates in this step, 0 while it is held at v_reset: a spike
#: decided in step k (time stamp t_k) holds v for the round(t_ref/dt) steps after it,
#: k+1 … k+round(t_ref/dt), as NEST's iaf_psc_exp does
ACTIVE = "int(t - t_spk{s} > t_ref + 0.5 * dt)"


def dale_signs(model: Any) -> np.ndarray:
    """+1 for excitatory, −1 for inhibitory neurons (all +1 without Dale's law)."""
    signs = np.ones(model.n_hidden)
    if model.dale:
        signs[int(round(model.frac_exc * model.n_hidden)) :] = -1.0
    return signs


def init_spiking_weights(
    rng: np.random.Generator, n_in: int, n_hidden: int, n_out: int, model: Any
) -> dict[str, np.ndarray]:
    """U ~ N(0, s_in²/n_in), W ~ N(0, g²/N) (Dale: signed magnitudes, balanced), V ~ N(0, s²/N).

    Draws in the same order as the rate network's :func:`~bioperturb.networks.rate.init_weights`.
    """
    weights = {
        "W_in": rng.normal(0.0, model.input_scale / np.sqrt(n_in), (n_hidden, n_in)),
        "W_rec": rng.normal(0.0, model.g / np.sqrt(n_hidden), (n_hidden, n_hidden)),
        "W_out": rng.normal(0.0, model.output_scale / np.sqrt(n_hidden), (n_out, n_hidden)),
    }
    weights = unit_readout(sparsify(rng, weights, model), model)
    if model.dale:
        signs = dale_signs(model)
        n_exc = int((signs > 0).sum())
        balance = np.where(signs > 0, 1.0, n_exc / max(n_hidden - n_exc, 1))
        weights["W_rec"] = np.abs(weights["W_rec"]) * (signs * balance)[None, :]
    return weights


class SpikingNetwork(RateNetwork):
    """Handle on a twin LIF network; the same interface as the rate network's handle."""

    def __init__(self) -> None:
        super().__init__()
        self.eval_monitors = ("activity", "output", "membrane", "spikes")


def build_spiking_network(
    model: Any,
    rule: Any,
    training: Any,
    tape: Tape,
    weights: dict[str, np.ndarray],
    *,
    record_dt: float,
    record_units: np.ndarray,
    fuse: Any = None,
    keep_estimate: bool = True,
) -> SpikingNetwork:
    """Build the twin LIF network for ``tape`` with ``rule`` and the training optimiser.

    ``fuse`` and ``keep_estimate`` as for :func:`~bioperturb.networks.rate.build_rate_network`
    (the standalone engine passes them). The currents stay event-driven; the plan may take
    the rule's W_rec and W_in accumulation (``fuse.batched``, ``fuse.batched_in``) and, for
    a sparse W_rec stored in slots, its spike propagation (``fuse.spikes``).
    """
    if fuse is not None and (fuse.currents or fuse.sparse != getattr(fuse, "spikes", False)):
        raise ValueError("a spiking network's sparse W_rec needs its spikes fused, nothing else")
    batched = fuse is not None and fuse.batched
    batched_in = fuse is not None and getattr(fuse, "batched_in", False)
    slots = fuse is not None and fuse.sparse  # W_rec in slots, its spikes added by C++
    n_hidden, n_in = model.n_hidden, tape.inputs.shape[1]
    handle = SpikingNetwork.for_tape(model, rule, training, tape)
    handle.keep_estimate = keep_estimate
    handle.masks = connectivity(weights, model) if weights is not None else {}
    ns, clock, trial_clock = handle.namespace, handle.clock, handle.trial_clock
    ns.update(
        tau_m=model.tau_m * second,
        tau_syn=model.tau_syn * second,
        t_ref=model.t_ref * second,
        v_th=model.v_th,
        v_reset=model.v_reset,
        input_rate=model.input_rate / second,
        E_exc=model.e_exc,
        E_inh=model.e_inh,
    )
    twin = rule.twin
    decor = tuple(model.decorrelate)
    dense = bool(decor)  # decorrelation needs the clock-driven currents
    cond = model.synapse == "conductance"  # (config: not with decorrelation)
    separate_noise = dense or cond  # h is a subexpression: the noise is its own OU current
    suffixes = ("", "_n") if twin else ("",)
    rvar = "rhat" if "recurrent" in decor else "r"
    uvar = "uhat" if "input" in decor else "u"

    lines = [
        "b : 1 (constant)",
        "sigma : 1 (shared, constant)",
        "noise_h : 1",
        "dale : 1 (constant)",
        f"r_prev = {rvar} : 1",
    ]
    exact = model.integration == "exact"  # (config: current synapses, no decorrelation)
    ns.update({f"lif_{k}": v for k, v in model.propagators().items()})
    for s in suffixes:
        active = ACTIVE.format(s=s)
        if exact:  # plain variables, moved by the propagators in ``hidden_exact`` below
            lines += [f"v{s} : 1", f"r{s} : 1", f"h{s} : 1"]
        else:
            lines += [
                f"dv{s}/dt = {active} * (-v{s} + h{s} + b) / tau_m : 1",
                f"dr{s}/dt = -r{s} / tau_syn : 1",
            ]
        lines.append(f"t_spk{s} : second")
        noise = " + eta" + s if s == suffixes[-1] else ""
        if cond:
            lines += [
                f"dge{s}/dt = -ge{s} / tau_syn : 1",
                f"dgi{s}/dt = -gi{s} / tau_syn : 1",
                f"h{s} = ge{s} * (E_exc - v{s}) + gi{s} * (E_inh - v{s}){noise} : 1",
            ]
        elif dense:
            lines += [f"h{s} = I_rec{s} + I_in{s}{noise} : 1", f"I_rec{s} : 1", f"I_in{s} : 1"]
        elif not exact:
            lines.append(f"dh{s}/dt = -h{s} / tau_syn : 1")
    if separate_noise:
        lines.append(f"deta{suffixes[-1]}/dt = -eta{suffixes[-1]} / tau_syn : 1")
    if "recurrent" in decor:
        lines += [f"rhat{s} : 1" for s in suffixes]
    # factors of the trial-end GEMM (engines/standalone/fused.py): no per-synapse trace
    lines += ["fused_a : 1", "fused_b : 1"] if batched else []
    lines += ["fused_a_in : 1"] if batched_in else []
    handle.batched = (("W_rec",) if batched else ()) + (("W_in",) if batched_in else ())
    events = {"spike_n": "v_n > v_th"} if twin else {}
    hidden = NeuronGroup(
        n_hidden,
        Equations("\n".join(lines)) + rule.group_equations("hidden"),
        threshold="v > v_th",
        reset="v = v_reset\nt_spk = t\nr += 1",
        events=events,
        method="euler",
        clock=clock,
        name="hidden",
    )
    if twin:
        hidden.run_on_event("spike_n", "v_n = v_reset\nt_spk_n = t\nr_n += 1")
    if exact:
        step = []
        for s in suffixes:  # v first: it integrates the current the step starts with
            step += [
                f"v{s} += {ACTIVE.format(s=s)} * (lif_p22m1 * (v{s} - b) + lif_p21 * h{s})",
                f"h{s} *= lif_ps",
                f"r{s} *= lif_ps",
            ]
        hidden.run_regularly("\n".join(step), when="groups", name="hidden_exact")
    hidden.b = model.bias
    hidden.sigma = model.sigma
    hidden.dale = dale_signs(model)
    for s in suffixes:
        setattr(hidden, f"t_spk{s}", -1e9 * second)
    noisy = ("eta" if separate_noise else "h") + suffixes[-1]
    if rule.node_noise:
        add_node_noise(hidden, noisy, antithetic=training.antithetic)
    reset = []
    for s in suffixes:
        reset += [f"v{s} = 0", f"r{s} = 0", f"t_spk{s} = -1e9 * second"]
        reset += [f"ge{s} = 0", f"gi{s} = 0"] if cond else [] if dense else [f"h{s} = 0"]
    if separate_noise:
        reset.append(f"eta{suffixes[-1]} = 0")
    hidden.run_regularly(
        "\n".join(reset), clock=trial_clock, when="end", order=1, name="hidden_reset"
    )

    if model.input_coding == "spikes":
        fire = "stim(t, i) >= 0.5"
    else:
        fire = "rand() < input_rate * clip(stim(t, i), 0, inf) * dt"
    decay = "u : 1" if exact else "du/dt = -u / tau_syn : 1"
    input_eqs = f"{decay}\nu_prev = {uvar} : 1" + ("\nfused_b : 1" if batched_in else "")
    if "input" in decor:
        input_eqs += "\nuhat : 1"
    inputs = NeuronGroup(
        n_in, input_eqs, threshold=fire, reset="u += 1", method="euler", clock=clock, name="inputs"
    )
    inputs.run_regularly("u = 0", clock=trial_clock, when="end", order=1, name="inputs_reset")
    if exact:
        inputs.run_regularly("u *= lif_ps", when="groups", name="inputs_exact")
    handle.hidden, handle.inputs = hidden, inputs
    add_readout_and_loss(handle, rule)

    wn = rule.noisy_weight  # "w", or "(w + w_pert)" for weight perturbation
    weight = {"": "w", "_n": wn}
    specs: dict[str, tuple[Any, Any, list[str], dict[str, Any]]] = {
        "W_out": (
            hidden,
            handle.readout,
            [f"y{s}_post = {weight[s]} * r{s}_pre : 1 (summed)" for s in suffixes],
            {},
        ),
    }
    if dense:
        specs["W_in"] = (
            inputs,
            hidden,
            [f"I_in{s}_post = {weight[s]} * {uvar}_pre : 1 (summed)" for s in suffixes],
            {},
        )
        specs["W_rec"] = (
            hidden,
            hidden,
            [f"I_rec{s}_post = {weight[s]} * {rvar}{s}_pre : 1 (summed)" for s in suffixes],
            {},
        )
    else:

        def jump(s: str) -> str:
            """On a presynaptic spike: the current jumps by w, or w opens a conductance."""
            w = weight[s]
            if cond:  # w > 0 excitatory, w < 0 inhibitory (Dale: the presynaptic sign)
                return f"ge{s}_post += clip({w}, 0, inf)\ngi{s}_post += clip(-{w}, 0, inf)"
            return f"h{s}_post += {w}"

        specs["W_in"] = (inputs, hidden, [], {"on_pre": "\n".join(jump(s) for s in suffixes)})
        on_pre = {"pre": jump("")}
        on_event = {"pre": "spike"}
        if twin:
            on_pre["pre_n"] = jump("_n")
            on_event["pre_n"] = "spike_n"
        specs["W_rec"] = (hidden, hidden, [], {"on_pre": on_pre, "on_event": on_event})
        if slots:  # no Brian2 pathway: the fused bp_spikes reads the slots' cells
            specs["W_rec"] = (hidden, hidden, ["cell : integer (constant)"], {})
            handle.slots["W_rec"] = sparse_slots(n_hidden, n_hidden, model.p_connect)
    if model.dale:
        handle.constraints["W_rec"] = DALE_CODE
    add_weight_synapses(handle, specs, rule, training)
    handle.set_start(weights, rule)
    if dense:
        for name in ("W_in", "W_rec"):
            for s in suffixes:
                var = "I_in" if name == "W_in" else "I_rec"
                handle.schedule_summed(handle.synapses[name], f"{var}{s}", order=0)
        ns["decor_lr"] = model.decor_lr
        ns["decor_n_inv"] = 1.0 / tape.n_steps
        groups = {"inputs": inputs, "hidden": hidden, "readout": handle.readout}
        for site in decor:
            _add_lateral(handle, site, groups, (clock, trial_clock), twin)
    finish_readout(handle, twin)

    handle.monitors = standard_monitors(handle, record_dt, record_units, "r")
    rec_clock = handle.monitors["activity"].clock
    handle.monitors["membrane"] = StateMonitor(
        hidden,
        "v",
        record=record_units,
        clock=rec_clock,
        when="start",
        order=5,
        name="mon_membrane",
    )
    handle.monitors["spikes"] = SpikeMonitor(hidden, name="mon_spikes")
    if fuse is not None and fuse.active:
        fuse.install(handle, rule)
    rule_objs = rule.install(handle)
    if model.dale and getattr(rule, "online", False):  # weights move inside the step too
        rule_objs.append(
            handle.synapses["W_rec"].run_regularly(
                DALE_CODE.strip(), when="before_groups", name="w_rec_dale"
            )
        )
    handle.net = Network(
        hidden,
        inputs,
        *handle.extra_objects,
        *handle.synapses.values(),
        *handle.lateral.values(),
        *rule_objs,
        *handle.monitors.values(),
        name="bioperturb_lif",
    )
    return handle
