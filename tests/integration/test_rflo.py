"""RFLO (Murray 2019): the exact gradient in its limiting case, the formula recomputed in
numpy on the JAX forward pass, the feedback matrix's seed (its learning curves are in
tests/integration/test_learning.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bioperturb.experiment import Experiment
from bioperturb.reference import forward, gradient_at
from bioperturb.schema import ConfigError
from bioperturb.training import Trainer
from tests.conftest import make_protocol

#: delayed recall of 1 of 2 items: inputs, a delay and a masked decision period
RECALL = {
    "name": "delayed_match",
    "report": "sample",
    "n_stimuli": 2,
    "fixation_duration": "5 ms",
    "sample_duration": "10 ms",
    "delay_duration": "10 ms",
    "test_duration": "5 ms",
    "decision_duration": "10 ms",
}


def estimates(rule: dict, n: int = 2, **overrides):
    """(trainer, per-trial estimates) at frozen weights on the recall task (N = 6)."""
    protocol = make_protocol(
        rule={"name": "rflo", **rule},
        seed=3,
        model__n_hidden=6,
        training__n_trials=n,
        training__eval_every=n,
        training__lr=0.0,
        output__alignment=False,
        task=RECALL,
        **overrides,
    )
    trainer = Trainer(protocol)
    return trainer, trainer.engine.update_samples()


def test_symmetric_feedback_without_recurrence_is_the_exact_gradient():
    # the truncation drops a·W·∂r/∂W: with W_rec = 0 it drops nothing, and B = W_outᵀ makes
    # the learning signal the backpropagated error, so every matrix's update is BPTT's
    trainer, est = estimates({"feedback": "symmetric"}, model__g=0.0)
    m, tt = trainer.protocol.model, trainer.train_trials
    assert not trainer.weights0["W_rec"].any()
    for k in range(tt.n_trials):
        grad = gradient_at(
            trainer.weights0,
            tt.inputs[k : k + 1],
            tt.targets[k : k + 1],
            tt.mask[k : k + 1],
            dt=m.dt,
            tau=m.tau,
            b=np.full(m.n_hidden, m.bias),
        )
        for name, g in grad.items():
            assert np.abs(g).max() > 1e-3, name  # not a trivial zero
            np.testing.assert_allclose(est[name][k], g, rtol=1e-9, atol=1e-14, err_msg=name)


def rflo_numpy(weights, B, inputs, targets, mask, *, dt, tau, bias):
    """RFLO of one trial from the JAX forward pass: leak-only traces, fed-back error."""
    h, r, y = (np.asarray(x)[0] for x in forward(weights, inputs[None], dt=dt, tau=tau, b=bias))
    a, T = dt / tau, h.shape[0]
    err = mask[:, None] * (y - targets)  # (T, n_out)
    signal = (1 - r**2) * (err @ B.T)  # φ'(h_t) ℓ_t, (T, N)
    shift = (
        np.vstack([np.zeros((1, r.shape[1])), r[:-1]]),
        np.vstack([np.zeros((1, inputs.shape[1])), inputs[:-1]]),
    )
    out = {"W_rec": np.zeros_like(weights["W_rec"]), "W_in": np.zeros_like(weights["W_in"])}
    traces = {name: np.zeros_like(w) for name, w in out.items()}
    for t in range(T):
        for name, pre in zip(("W_rec", "W_in"), shift, strict=True):
            traces[name] = (1 - a) * traces[name] + a * pre[t][None, :]
            out[name] += signal[t][:, None] * traces[name]
    out["W_out"] = err.T @ r
    M = max(mask.sum(), 1.0)
    return {name: g / M for name, g in out.items()}


def test_update_is_the_rflo_formula_with_random_feedback():
    trainer, est = estimates({}, model__g=1.5)
    m, tt = trainer.protocol.model, trainer.train_trials
    B = trainer.experiment.rule.feedback_matrix(m.n_hidden, tt.targets.shape[2])
    for k in range(tt.n_trials):
        want = rflo_numpy(
            trainer.weights0,
            B,
            tt.inputs[k],
            tt.targets[k],
            tt.mask[k],
            dt=m.dt,
            tau=m.tau,
            bias=np.full(m.n_hidden, m.bias),
        )
        for name, g in want.items():
            assert np.abs(g).max() > 1e-4, name
            np.testing.assert_allclose(est[name][k], g, rtol=1e-9, atol=1e-14, err_msg=name)


def test_feedback_matrix_comes_from_the_seed_and_leaves_the_other_streams():
    def experiment(seed, **rule):
        return Experiment(make_protocol(rule={"name": "rflo", **rule}, seed=seed))

    a, b, c = experiment(3), experiment(3), experiment(4)
    shape = (a.protocol.model.n_hidden, a.task.n_outputs)
    B = a.rule.feedback_matrix(*shape)
    assert np.array_equal(B, b.rule.feedback_matrix(*shape))
    assert not np.array_equal(B, c.rule.feedback_matrix(*shape))
    # B ~ N(0, s²/N): scale s = 2 doubles the same draw
    doubled = experiment(3, feedback_scale=2.0).rule.feedback_matrix(*shape)
    np.testing.assert_allclose(doubled, 2 * B)
    # the new stream changes nothing a run drew before it: weights and trials as TD-ANP's
    other = Experiment(make_protocol(rule={"name": "td_anp"}, seed=3))
    for name, w in other.weights0.items():
        assert np.array_equal(a.weights0[name], w), name
    assert np.array_equal(a.train_trials.inputs, other.train_trials.inputs)


def test_rflo_needs_a_rate_network():
    lif = {"preset": "lif_rnn", "n_hidden": 8}
    with pytest.raises(ConfigError, match="rflo"):
        make_protocol(model=lif, rule={"name": "rflo"})
