"""E-prop (Bellec et al. 2020) on the LIF network: surrogate BPTT in its limiting case, the
formula recomputed on a numpy LIF forward pass, and `compare --with eprop` (its learning
curve is in tests/integration/test_learning.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bioperturb.schema import ConfigError
from bioperturb.training import Trainer
from tests.conftest import make_protocol
from tests.integration.test_spiking import LIF, LIF_MODEL


def estimates(rule: dict, g: float, n: int = 2, model: dict | None = None):
    """(trainer, per-trial estimates) at frozen weights, N = 16, no noise."""
    protocol = make_protocol(
        model={**LIF_MODEL, "g": g, "sigma": 0.0, **(model or {})},
        rule={"name": "eprop", **rule},
        seed=3,
        training__n_trials=n,
        training__eval_every=n,
        training__lr=0.0,
        output__alignment=False,
        **LIF,
    )
    trainer = Trainer(protocol)
    return trainer, trainer.engine.update_samples()


def test_eprop_without_recurrence_is_the_surrogate_bptt_gradient():
    # nothing travels through W_rec = 0; with ψ the reference's SuperSpike surrogate, the
    # reset differentiated like the reference's and B = W_outᵀ, e-prop is its BPTT
    import jax

    from bioperturb.reference.lif import LIFDynamics, _batch_loss

    rule = {"feedback": "symmetric", "pseudo_derivative": "superspike", "beta": 10.0}
    trainer, est = estimates({**rule, "reset_eligibility": True}, g=0.0)
    assert not trainer.weights0["W_rec"].any()
    dyn = LIFDynamics.from_model(trainer.protocol.model, beta=10.0)
    tt = trainer.train_trials
    spikes = dyn.input_spikes(tt.inputs)
    for k in range(tt.n_trials):
        sl = slice(k, k + 1)
        grad = jax.grad(_batch_loss)(
            trainer.weights0, spikes[sl], tt.targets[sl], tt.mask[sl], dyn.params
        )
        for name, g in grad.items():
            g = np.asarray(g)
            assert np.abs(g).max() > 1e-2, name  # the network spikes; not a trivial zero
            np.testing.assert_allclose(est[name][k], g, rtol=1e-9, atol=1e-14, err_msg=name)


def eprop_numpy(weights, B, s_in, targets, mask, model, rule):
    """E-prop of one trial on a numpy LIF forward pass (Euler, the Brian2 step order):
    triangle ψ at the pre-reset membrane, leak-only ε (reset not differentiated), ē
    filtered like the readout trace, rate regularisation at the trial's end."""
    W_in, W_rec, W_out = weights["W_in"], weights["W_rec"], weights["W_out"]
    dt, tau_m, tau_s, v_th = model.dt, model.tau_m, model.tau_syn, model.v_th
    T, n = s_in.shape[0], W_rec.shape[0]
    v, h, r, u = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(s_in.shape[1])
    since = np.full(n, 1e9)
    psi_prev, spikes = np.zeros(n), np.zeros(n)
    eps = {"W_rec": np.zeros_like(W_rec), "W_in": np.zeros_like(W_in)}
    ebar = {k: np.zeros_like(e) for k, e in eps.items()}
    esum = {k: np.zeros_like(e) for k, e in eps.items()}
    acc = {k: np.zeros_like(e) for k, e in eps.items()}
    acc["W_out"] = np.zeros_like(W_out)
    minv = 1.0 / max(mask.sum(), 1.0)
    for t in range(T):
        active = (since * dt > model.t_ref + 0.5 * dt).astype(float)
        err = mask[t] * (W_out @ r - targets[t])
        signal = B @ err  # L_i,t
        acc["W_out"] += minv * np.outer(err, r)
        for name, pre in (("W_rec", r), ("W_in", u)):
            e = psi_prev[:, None] * eps[name]
            ebar[name] = (1 - dt / tau_s) * ebar[name] + e
            esum[name] += e
            acc[name] += minv * signal[:, None] * ebar[name]
            eps[name] += (active * dt / tau_m)[:, None] * (pre[None, :] - eps[name])
        v = v + dt * active * (-v + h + model.bias) / tau_m
        tri = rule.gamma / v_th * np.clip(1 - np.abs(v - v_th) / v_th, 0, None)
        psi_prev = active * tri
        h, r, u = (x * (1 - dt / tau_s) for x in (h, r, u))
        s = (v > v_th).astype(float)
        h = h + W_rec @ s + W_in @ s_in[t]
        r, u = r + s, u + s_in[t]
        v = np.where(s > 0, model.v_reset, v)
        since = np.where(s > 0, 1.0, since + 1.0)
        spikes += s
    rate = spikes / T - rule.target_rate * dt
    for name in ("W_rec", "W_in"):
        acc[name] += rule.reg_rate * rate[:, None] * esum[name] / T
    return acc


def test_eprop_update_is_the_formula_with_random_feedback_and_regularisation():
    rule = {"reg_rate": 0.5, "target_rate": "20 Hz", "gamma": 0.4}
    trainer, est = estimates(rule, g=1.0)
    p, tt = trainer.protocol, trainer.train_trials
    from bioperturb.reference.lif import LIFDynamics

    spikes = LIFDynamics.from_model(p.model).input_spikes(tt.inputs)
    B = trainer.experiment.rule.feedback_matrix(p.model.n_hidden, tt.targets.shape[2])
    for k in range(tt.n_trials):
        want = eprop_numpy(
            trainer.weights0, B, spikes[k], tt.targets[k], tt.mask[k], p.model, p.rule
        )
        for name, g in want.items():
            assert np.abs(g).max() > 1e-3, name
            np.testing.assert_allclose(est[name][k], g, rtol=1e-9, atol=1e-14, err_msg=name)


def test_eprop_needs_a_lif_network():
    with pytest.raises(ConfigError, match="'eprop' runs on model.kind = 'lif'"):
        make_protocol(rule={"name": "eprop"})


def test_compare_with_eprop_beside_a_lif_rule_and_the_surrogate_reference(tmp_path):
    from bioperturb.compare import compare_protocol

    protocol = make_protocol(
        model=LIF_MODEL, training__n_trials=2, training__eval_every=1, **LIF
    ).replace(name="lif")
    ds, path = compare_protocol(protocol, out_dir=tmp_path, progress=False, with_rules=("eprop",))
    assert path.exists()
    assert list(ds["method"].values) == ["td_anp", "eprop", "bptt", "bptt_surrogate"]
    start = ds["W_rec"].isel(eval_trial=0)
    np.testing.assert_array_equal(start.sel(method="eprop"), start.sel(method="bptt_surrogate"))
    moved = ds["W_rec"].sel(method="eprop").isel(eval_trial=-1) - start.sel(method="eprop")
    assert float(np.abs(moved).max()) > 0
