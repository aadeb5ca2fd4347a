r"""One numpy e-prop trial with a switch for each convention in which bioperturb's ``eprop``
rule and NEST's ``eprop_iaf_bsshslm_2020`` / ``eprop_readout_bsshslm_2020`` /
``eprop_synapse_bsshslm_2020`` differ (docs/rules/eprop.md, "Differences from NEST").

:func:`bioperturb_conventions` gives the switches under which it equals our Brian2 rule's
per-trial update (tests/integration/test_nest_eprop.py, 1e-9), :func:`nest_conventions`
those under which it equals NEST's (tests/integration/nest_eprop.py runs NEST).

Frame: step t = 0 … T−1 of the hidden neurons. ``s_in[k]`` is the input spike of step k;
it reaches the membrane in step k + 1 (bioperturb: through the synaptic current it jumps,
NEST: through its one-step delay). A recurrent spike of step t reaches the membranes in
step t + 1 in both. Per step, with a the active flag and x the presynaptic input of the
step (synaptic trace or spike)::

    ε ← ε (1 − reset_eligibility · z_{t−1}) + a (p22m1 ε + p21 x)
    v ← v + a (p22m1 (v − b) + p21 (W_rec x_rec + W_in x_in)),   [v ← v − v_th z_{t−1}]
    ψ_t = height · max(0, 1 − |v − v_th| / width)      (0 while refractory)
    e_t = ψ_t ε,   z_t = [v > v_th],   o_t = κ_o o_{t−1} + c_o z_t   (readout trace)

The readout y_j = W_out o_j reads the hidden spikes up to step j (``readout_lag`` = 0,
NEST's shifted readout interval) or up to j − 1 (``readout_lag`` = 1, ours: y_t = V r with
r the trace after step t − 1); its error E_j = m_j (y_j − y*_j) meets the eligibility of
the spike it reads:

    L_j = B E_j,   ē_j = κ_e ē_{j−1} + c_e e_j,   g = s (Σ_j L_j ē_j) + c_reg (ρ − ρ*)/T Σ e
    g_out = s Σ_j E_j o_j
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Conventions:
    """Numbers and named switches of one e-prop trial."""

    # --- switches (ours / NEST)
    synapse: str  # "exponential": x = presynaptic trace (τ_s) | "delta": x = the spike
    reset: str  # "to_v_reset": v ← v_reset at the spike | "subtract": v ← v − v_th next step
    refractory: str  # "clamp": v held, ψ = 0 (R steps) | "block": v runs, no spike, ψ = 0 (R−1)
    readout_lag: int  # 1: y_t reads spikes ≤ t − 1 | 0: readout step j reads hidden spikes ≤ j
    ebar_scale: str  # "one": ē = κ ē + e | "one_minus_kappa": ē = κ ē + (1 − κ) e
    loss_norm: str  # "mean": s = 1/Σ_t m_t | "sum": s = 1
    esum_last_step: bool  # the regulariser's Σ e includes the trial's last step
    average_gradient: bool  # NEST's average_gradient: g /= learning window (all terms)
    reset_eligibility: bool  # ε ← 0 at the neuron's own spike (differentiate the reset)
    # --- numbers
    p22m1: float  # membrane propagator − 1
    p21: float  # the input's propagator to v
    ps: float  # synaptic trace decay per step ("exponential")
    bias: float
    v_th: float
    v_reset: float
    ref_steps: int  # R = round(t_ref/dt)
    height: float  # ψ's height
    width: float  # ψ's half width
    kappa_o: float  # the readout trace's decay per step
    c_o: float  # a spike's jump of the readout trace
    kappa_e: float  # ē's decay per step
    c_reg: float
    rho_target: float  # target spikes per step
    learning_window: int = 0  # steps (average_gradient only)


def bioperturb_conventions(model: Any, rule: Any) -> Conventions:
    """bioperturb's LIF network and ``eprop`` rule (Euler or exact, ``model.integration``)."""
    from bioperturb.protocol import lif_propagators

    p = lif_propagators(model.dt, model.tau_m, model.tau_syn, model.integration)
    return Conventions(
        synapse="exponential",
        reset="to_v_reset",
        refractory="clamp",
        readout_lag=1,
        ebar_scale="one",
        loss_norm="mean",
        esum_last_step=False,
        average_gradient=False,
        reset_eligibility=bool(rule.reset_eligibility),
        p22m1=p["p22m1"],
        p21=p["p21"],
        ps=p["ps"],
        bias=model.bias,
        v_th=model.v_th,
        v_reset=model.v_reset,
        ref_steps=int(round(model.t_ref / model.dt)),
        height=rule.gamma / model.v_th,
        width=model.v_th,
        kappa_o=p["ps"],
        c_o=1.0,
        kappa_e=p["ps"],
        c_reg=rule.reg_rate,
        rho_target=rule.target_rate * model.dt,
    )


def nest_conventions(params: dict[str, Any]) -> Conventions:
    """NEST 3.10's bsshslm_2020 models, ``params`` as :func:`tests.integration.nest_eprop.simulate`
    takes them (times in ms, potentials in mV with E_L = 0, C_m = τ_m so that I_e = b)."""
    dt = params["dt"]
    p_v = math.exp(-dt / params["tau_m"])
    p_o = math.exp(-dt / params["tau_out"])
    kappa = math.exp(-dt / params["tau_m_readout"])
    regular = params.get("regular_spike_arrival", True)
    regular_out = params.get("regular_spike_arrival_out", regular)
    return Conventions(
        synapse="delta",
        reset="subtract",
        refractory="block",
        readout_lag=0,
        ebar_scale="one_minus_kappa",
        loss_norm="sum",
        esum_last_step=True,
        average_gradient=params.get("average_gradient", False),
        reset_eligibility=False,
        p22m1=p_v - 1.0,
        p21=1.0 if regular else 1.0 - p_v,
        ps=0.0,
        bias=params["bias"],
        v_th=params["v_th"],
        v_reset=0.0,
        ref_steps=int(round(params["t_ref"] / dt)),
        height=params["height"],
        width=params["width"],
        kappa_o=p_o,
        c_o=1.0 if regular_out else 1.0 - p_o,
        kappa_e=kappa,
        c_reg=params["c_reg"],
        rho_target=params["f_target"] * 1e-3 * dt,
        learning_window=params["learning_window"],
    )


def forward(weights: dict[str, np.ndarray], s_in: np.ndarray, c: Conventions) -> dict:
    """Hidden membrane, spikes, readout trace and eligibilities e (steps first) of a trial."""
    W_in, W_rec = weights["W_in"], weights["W_rec"]
    T, n, n_in = s_in.shape[0], W_rec.shape[0], s_in.shape[1]
    v, z, o = np.zeros(n), np.zeros(n), np.zeros(n)
    x_in, x_rec = np.zeros(n_in), np.zeros(n)  # the presynaptic inputs of the coming step
    eps_in, eps_rec = np.zeros((n, n_in)), np.zeros((n, n))
    since = np.full(n, 10**9)  # steps since the neuron's last spike, counting this one
    out = {k: [] for k in ("v", "z", "o", "e_in", "e_rec")}
    for t in range(T):
        if c.refractory == "clamp":
            active = (since > c.ref_steps).astype(float)
            can_spike = active
        else:
            active = np.ones(n)
            can_spike = (since >= c.ref_steps).astype(float)
        keep = 1.0 - c.reset_eligibility * z
        a = active[:, None]
        eps_in = eps_in * keep[:, None] + a * (c.p22m1 * eps_in + c.p21 * x_in[None, :])
        eps_rec = eps_rec * keep[:, None] + a * (c.p22m1 * eps_rec + c.p21 * x_rec[None, :])
        v = v + active * (c.p22m1 * (v - c.bias) + c.p21 * (W_rec @ x_rec + W_in @ x_in))
        if c.reset == "subtract":
            v = v - c.v_th * z
        psi = can_spike * c.height * np.clip(1.0 - np.abs(v - c.v_th) / c.width, 0.0, None)
        z = can_spike * (v > c.v_th)
        if c.reset == "to_v_reset":
            v = np.where(z > 0, c.v_reset, v)
        since = np.where(z > 0, 1, since + 1)
        o = c.kappa_o * o + c.c_o * z
        for k, val in (("v", v), ("z", z), ("o", o)):
            out[k].append(val)
        out["e_in"].append(psi[:, None] * eps_in)
        out["e_rec"].append(psi[:, None] * eps_rec)
        if c.synapse == "exponential":
            x_in, x_rec = c.ps * x_in + s_in[t], c.ps * x_rec + z
        else:
            x_in, x_rec = s_in[t].astype(float), z
    return {k: np.asarray(val) for k, val in out.items()}


def eprop_trial(
    weights: dict[str, np.ndarray],
    B: np.ndarray,
    s_in: np.ndarray,
    targets: np.ndarray,
    mask: np.ndarray,
    c: Conventions,
    late_input: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The e-prop gradient of one trial (W_in, W_rec, W_out) under conventions ``c``.

    ``targets`` (T, n_out) and ``mask`` (T,) are indexed by the step of the readout value
    they are compared with: y_t, which reads the spikes up to t − ``readout_lag``.
    ``late_input`` (n_in,) of bool marks the W_in columns whose update lacks the last
    step's learning signal (NEST: see :func:`eprop_nest_numpy`).
    """
    f = forward(weights, s_in, c)
    T = s_in.shape[0]
    y = f["o"] @ weights["W_out"].T  # y_j: the readout of the spikes up to step j
    lag = c.readout_lag
    err = np.zeros_like(y)  # E_j, paired with the spikes (and eligibility) of step j
    err[: T - lag] = mask[lag:, None] * (y[: T - lag] - targets[lag:])
    scale = 1.0 / max(float(mask.sum()), 1.0) if c.loss_norm == "mean" else 1.0
    L = err @ B.T  # (T, n)
    rho = f["z"].mean(axis=0) - c.rho_target
    last = T if c.esum_last_step else T - 1
    grads = {"W_out": scale * np.einsum("tk,tj->kj", err, f["o"])}
    for name in ("W_in", "W_rec"):
        e = f["e_in" if name == "W_in" else "e_rec"]
        c_e = 1.0 - c.kappa_e if c.ebar_scale == "one_minus_kappa" else 1.0
        ebar, g = np.zeros_like(e[0]), np.zeros_like(e[0])
        for t in range(T):
            ebar = c.kappa_e * ebar + c_e * e[t]
            signal = L[t][:, None]
            if name == "W_in" and late_input is not None and t == T - 1:
                signal = signal * ~late_input[None, :]
            g += signal * ebar
        grads[name] = scale * g + c.c_reg * rho[:, None] * e[:last].sum(axis=0) / T
    if c.average_gradient:
        grads = {k: g / c.learning_window for k, g in grads.items()}
    return grads


def eprop_nest_numpy(
    weights: dict[str, np.ndarray],
    B: np.ndarray,
    s_in: np.ndarray,
    targets: np.ndarray,
    params: dict[str, Any],
) -> dict[str, np.ndarray]:
    """NEST's weight changes after ``len(s_in)`` update intervals of plain gradient descent
    (w ← clip(w − η g, W_min, W_max) after each interval, the next interval run with the new
    weights); ``s_in`` (trials, T, n_in), ``targets`` (trials, T, n_out) in the frame of
    :func:`eprop_trial` with ``readout_lag`` = 0. NEST zeroes the error on the first
    T − ``learning_window`` steps of each interval: that is the mask.

    One NEST artefact is reproduced, not a convention: a synapse computes an interval's
    gradient at its first presynaptic spike after the interval, reading the learning
    signal its neuron has received by then. The signal of the interval's last step reaches
    the neuron in step 2 of the next interval (hidden → readout → hidden, one step each,
    and the readout keeps its error one step back), so an input spike ``s_in[n + 1, 0]``,
    which arrives in step 1, triggers the update of its W_in column without it. (A
    recurrent spike arrives that early only if the bias alone brings a neuron to threshold
    in one step after the reset.)
    """
    c = nest_conventions(params)
    T = s_in.shape[1]
    mask = (np.arange(T) >= T - params["learning_window"]).astype(float)
    w = {k: np.array(v, dtype=float) for k, v in weights.items()}
    for n, (s, y) in enumerate(zip(s_in, targets, strict=True)):
        late = s_in[n + 1, 0] > 0 if n + 1 < len(s_in) else None
        g = eprop_trial(w, B, s, y, mask, c, late)
        w = {k: np.clip(w[k] - params["eta"] * g[k], params["w_min"], params["w_max"]) for k in w}
    return {k: w[k] - np.asarray(weights[k], dtype=float) for k in w}
