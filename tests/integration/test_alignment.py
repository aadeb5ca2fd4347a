"""TD-ANP's expected update points along −∇L, the exact BPTT gradient of the reference.

TD-ANP pairs the loss change of step t with the activity difference of the same step, so
its expectation is the *instantaneous* gradient Σ_t ∂L_t/∂h_t x_{t−1}ᵀ (times
E[δδᵀ/‖δ‖²]); the credit of h_t for later losses is missing. That bias vanishes without
recurrence and leak and grows with them (measured here, N = 10, 100 steps, σ = 0.01,
100 draws, cosine of the mean update with −∇L for W_rec: g = 0.1, τ = dt: 0.998;
g = 0.3: 0.974; g = 0.5: 0.90; g = 0.3, τ = 10 dt: 0.87). The test takes the weakly
recurrent, leak-free case where the estimator must be close to unbiased.
"""

from __future__ import annotations

import numpy as np
import pytest

from bioperturb.metrics import cosine
from bioperturb.reference import gradient_at
from bioperturb.training import Trainer
from tests.conftest import make_protocol


@pytest.fixture(scope="module")
def samples_and_gradient():
    protocol = make_protocol(
        seed=11,
        model__n_hidden=10,
        model__tau="1 ms",
        model__g=0.3,
        model__sigma=0.01,
        task__duration="100 ms",
        task__input="random",
        task__n_inputs=3,
        training__n_trials=40,
        training__eval_every=40,
        training__optimizer="sgd",
        training__lr=0.0,
    )
    trainer = Trainer(protocol)
    samples = trainer.engine.update_samples()
    tt, model = trainer.train_trials, protocol.model
    np.testing.assert_array_equal(tt.inputs[0], tt.inputs[-1])  # one fixed trial
    grad = gradient_at(
        trainer.weights0, tt.inputs[:1], tt.targets[:1], tt.mask[:1], dt=model.dt, tau=model.tau
    )
    return samples, grad


def test_mean_td_anp_update_aligns_with_bptt_gradient(samples_and_gradient):
    samples, grad = samples_and_gradient
    mean = {k: v.mean(axis=0) for k, v in samples.items()}
    cos = cosine(mean, grad)
    for name in ("W_in", "W_rec", "W_out"):
        assert cos[name] >= 0.9, (name, cos)
    # One readout unit: (L̃ − L)/δy is exactly the error up to O(δy), so V's estimate is
    # the gradient itself, scaled by c = √(n_in + N + n_out).
    assert cos["W_out"] > 0.999


def test_alignment_rises_with_number_of_draws(samples_and_gradient):
    samples, grad = samples_and_gradient
    for name in ("W_in", "W_rec"):
        single = np.mean([cosine(s, grad[name]) for s in samples[name]])
        few = cosine(samples[name][:4].mean(axis=0), grad[name])
        many = cosine(samples[name].mean(axis=0), grad[name])
        assert single < few < many, (name, single, few, many)


def test_brian2_forward_equals_jax_reference_over_500_steps():
    # noise off, float64: the Brian2 twin network and the JAX BPTT reference integrate the
    # same Euler map; only summation order differs (errors ~1e-15, kept from growing by the
    # contracting tanh dynamics at g = 1.2 over 500 steps). Required: ≤ 1e-6 relative.
    from bioperturb.reference import forward
    from tests.integration.test_rate_network import add_trace_monitors, trial_rows

    trainer = Trainer(
        make_protocol(
            model__sigma=0.0,
            model__n_hidden=16,
            model__bias=0.05,
            task__duration="500 ms",
            task__input="random",
            task__n_inputs=3,
            training__n_trials=1,
            output__alignment=False,
        )
    )
    mons = add_trace_monitors(trainer)
    trainer.run()
    rows = trial_rows(trainer, 0)
    m = trainer.protocol.model
    ev = trainer.eval_set
    h_ref, _, y_ref = forward(
        trainer.weights0, ev.inputs[:1], dt=m.dt, tau=m.tau, b=np.full(m.n_hidden, 0.05)
    )
    h = mons["hidden"].h[:, rows].T
    y = mons["readout"].y[:, rows].T
    assert h.shape == h_ref[0].shape == (500, 16)
    scale_h, scale_y = np.abs(h_ref).max(), np.abs(y_ref).max()
    assert np.abs(h - h_ref[0]).max() / scale_h <= 1e-6
    assert np.abs(y - y_ref[0]).max() / scale_y <= 1e-6
    # in practice it is float precision
    np.testing.assert_allclose(h, h_ref[0], rtol=0, atol=1e-12 * scale_h)
