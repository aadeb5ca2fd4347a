"""Credit-assignment diagnostics: truncated BPTT, δ statistics, which gradient a rule follows."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bioperturb.credit import credit_diagnostics, delta_statistics
from bioperturb.reference import (
    forward,
    gradient_at,
    truncated_gradient_at,
    truncated_gradient_per_trial,
)


@pytest.fixture(scope="module")
def tiny_net():
    rng = np.random.default_rng(0)
    n, n_in, n_out, T, B = 6, 2, 2, 9, 3
    w = {
        "W_in": rng.normal(size=(n, n_in)),
        "W_rec": 0.5 * rng.normal(size=(n, n)),
        "W_out": rng.normal(size=(n_out, n)),
    }
    u = rng.normal(size=(B, T, n_in))
    ys = rng.normal(size=(B, T, n_out))
    m = (rng.random((B, T)) < 0.6).astype(float)
    return w, u, ys, m, dict(dt=1e-3, tau=4e-3)


def test_truncation_at_trial_length_is_full_bptt(tiny_net):
    w, u, ys, m, kw = tiny_net
    full = gradient_at(w, u, ys, m, **kw)
    T = u.shape[1]
    for k in (T - 1, T, T + 5):  # L_{T−1} needs T−1 steps back: T−1 is already exact
        g = truncated_gradient_at(w, u, ys, m, k, **kw)
        for name in full:
            np.testing.assert_allclose(g[name], full[name], rtol=1e-12, atol=1e-15)


def test_one_step_truncation_is_the_instantaneous_gradient_by_hand(tiny_net):
    w, u, ys, m, kw = tiny_net
    alpha = kw["dt"] / kw["tau"]
    h, r, y = forward(w, u, **kw)
    B = u.shape[0]
    err = (y - ys) * (m / np.maximum(m.sum(1), 1)[:, None])[..., None]  # ∂L/∂y_t
    dh = (1 - r**2) * (err @ w["W_out"])  # ∂L_t/∂h_t, direct part only
    by_hand = {
        "W_rec": alpha * np.einsum("bti,btj->ij", dh[:, 1:], r[:, :-1]) / B,
        "W_in": alpha * np.einsum("bti,btj->ij", dh[:, 1:], u[:, :-1]) / B,
        "W_out": np.einsum("bto,btj->oj", err, r) / B,
    }
    g1 = truncated_gradient_at(w, u, ys, m, 1, **kw)
    g0 = truncated_gradient_at(w, u, ys, m, 0, **kw)
    for name in by_hand:
        scale = np.abs(by_hand[name]).max()
        np.testing.assert_allclose(g1[name], by_hand[name], rtol=0, atol=1e-13 * scale)
    assert not g0["W_rec"].any() and not g0["W_in"].any()
    np.testing.assert_allclose(g0["W_out"], by_hand["W_out"], rtol=1e-12)


def test_per_trial_gradients_average_to_the_batch_gradient(tiny_net):
    w, u, ys, m, kw = tiny_net
    for k in (2, 100):
        per = truncated_gradient_per_trial(w, u, ys, m, k, chunk=2, **kw)
        batch = truncated_gradient_at(w, u, ys, m, k, **kw)
        for name in batch:
            assert per[name].shape == (u.shape[0], *batch[name].shape)
            np.testing.assert_allclose(per[name].mean(0), batch[name], rtol=1e-12, atol=1e-16)
    with pytest.raises(ValueError, match="non-negative"):
        truncated_gradient_at(w, u, ys, m, -1, **kw)


def _zero_network(n: int, n_in: int = 1) -> dict[str, np.ndarray]:
    return {"W_in": np.zeros((n, n_in)), "W_rec": np.zeros((n, n)), "W_out": np.zeros((1, n))}


@pytest.mark.parametrize("alpha", [1.0, 0.1])
def test_delta_statistics_of_pure_noise(alpha):
    """W = 0: δ is an AR(1) process, δ_{t+1} = (1 − α) δ_t + σ √(2α) ξ_t, isotropic.

    Stationary rms/σ = 1/√(1 − α/2) (√2 at τ = dt); PR of n unit vectors drawn
    isotropically in N dimensions: 1 / (1/n + (1 − 1/n)/N).
    """
    n, N, T, sigma = 400, 20, 120, 0.3
    pr, rms = delta_statistics(
        _zero_network(N), np.zeros((n, T, 1)), dt=alpha * 1e-2, tau=1e-2, sigma=sigma, seed=3
    )
    assert np.isnan(pr[0]) and rms[0] == 0
    late = slice(T // 2, None)  # stationary after 60 steps even at α = 0.1
    np.testing.assert_allclose(rms[late].mean(), 1 / np.sqrt(1 - alpha / 2), rtol=0.02)
    np.testing.assert_allclose(pr[1:].mean(), 1 / (1 / n + (1 - 1 / n) / N), rtol=0.03)


CREDIT_BASE = dict(
    model__n_hidden=6,
    task__duration="20 ms",
    task__pulse_duration="10 ms",
    engine__codegen="cython",
)


@pytest.mark.cython
def test_td_anp_follows_the_instantaneous_gradient_when_noise_is_isotropic(protocol_factory):
    """τ = dt and weak recurrence: δ_t ≈ σ√2 ξ_t, P_t = I/N, so E[TD-ANP] ∝ BPTT(1)."""
    protocol = protocol_factory(**CREDIT_BASE, model__tau="1 ms", model__g=0.05, model__sigma=0.01)
    ds = credit_diagnostics(protocol, n_draws=600, horizons=(1,))
    cos = ds["credit_cosine"].sel(horizon=1)
    assert cos.sel(matrix="W_rec") > 0.95 and cos.sel(matrix="W_out") > 0.99
    assert ds["credit_cosine_halves"].sel(matrix="W_rec") > 0.9
    pr = ds["credit_pr"].values[1:]
    assert np.all(pr > 0.8 * 6)  # isotropic δ in N = 6 dimensions


@pytest.mark.cython
def test_np_with_a_whole_trial_trace_follows_the_full_gradient(protocol_factory):
    """NP's injected increment ξ with λ = 1 and the dense signal: E[g] = ∇L (full BPTT).

    The readout's own trace is 0 (``tau_e_out``): its effect on L_t is instantaneous, and a
    trace would pair L_t with earlier readout products (measured: "all" 0.81 with it).
    """
    protocol = protocol_factory(
        **CREDIT_BASE,
        model__sigma=0.01,
        rule__name="np",
        rule__tau_e="1000 s",
        rule__tau_e_out="0 s",
    )
    ds = credit_diagnostics(protocol, n_draws=1500, horizons=(1,))
    cos = ds["credit_cosine"].sel(matrix="W_rec")
    full = cos.isel(horizon=-1)
    assert int(ds["horizon"][-1]) == 20  # the full gradient is the last horizon
    assert full > 0.9, float(full)
    assert full > cos.sel(horizon=1) + 0.05
    # κ = dt/τ puts the hidden matrices on the gradient's scale, like the readout's
    assert ds["credit_cosine"].sel(matrix="all").isel(horizon=-1) > 0.95


def test_credit_diagnostics_refuse_what_they_cannot_measure(protocol_factory):
    with pytest.raises(ValueError, match="rule.name"):
        credit_diagnostics(protocol_factory(rule__name="none"))
    with pytest.raises(ValueError, match="n_draws"):
        credit_diagnostics(protocol_factory(), n_draws=1)


def test_compare_credit_adds_the_diagnostics_to_the_compare_file(tmp_path, capsys):
    from bioperturb.cli import main
    from tests.conftest import tiny_toml

    protocol = tmp_path / "tiny.toml"
    protocol.write_text(tiny_toml(output__figures=False))
    out = tmp_path / "out"
    args = ["compare", str(protocol), "--out", str(out), "--quiet"]
    assert main([*args, "--credit", "6", "--horizons", "2"]) == 0
    assert "BPTT(2)" in capsys.readouterr().out
    with xr.open_dataset(out / "tiny_compare.nc") as ds:
        assert list(ds["horizon"].values) == [2, 40]  # a 40 ms trial of 1 ms steps
        assert ds["credit_cosine"].dims == ("horizon", "matrix")
        assert ds["credit_pr"].sizes["credit_time"] == 40
        assert ds.attrs["credit_n_draws"] == 6
        assert list(ds["method"].values) == ["td_anp", "bptt"]


def test_compare_credit_refuses_before_any_work(tmp_path, capsys):
    from bioperturb.cli import main
    from tests.conftest import tiny_toml

    protocol = tmp_path / "tiny.toml"
    protocol.write_text(tiny_toml(rule__name="none"))
    args = ["compare", str(protocol), "--out", str(tmp_path / "out")]
    assert main([*args, "--credit", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--credit" in err[0] and "rule.name" in err[0]
    assert main([*args, "--credit", "1"]) == 2
    assert main([*args, "--credit", "5", "--horizons", "0"]) == 2
    assert not (tmp_path / "out").exists()
