"""Metrics against known answers, brute force and sampling theory.

Statistical tests use seeded ``numpy.random.Generator`` data, so they are deterministic;
each tolerance is a stated multiple of the sampling standard error of the estimate
(derived in the test), not what happened to pass.  Exact identities are checked to a
few hundred ulp of float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

import bioperturb.accessor  # noqa: F401  (registers ds.bp)
from bioperturb import metrics

pytestmark = pytest.mark.filterwarnings("error")

EXACT = 1e-12  # relative tolerance of identities computed in float64


def make_run(
    seed: int = 0,
    *,
    n_trials: int = 40,
    eval_every: int = 10,
    n_units: int = 6,
    n_conditions: int = 3,
    n_steps: int = 25,
    n_inputs: int = 2,
    n_outputs: int = 2,
    dt: float = 0.01,
    tau_loss: float = 15.0,
) -> xr.Dataset:
    """A small run Dataset following docs/data-model.md (values synthetic).

    The activity starts from the zero state (a constant population vector at time 0).
    """
    rng = np.random.default_rng(seed)
    trial = np.arange(n_trials)
    eval_trial = np.arange(0, n_trials + 1, eval_every)
    time = dt * np.arange(n_steps)
    duration = dt * n_steps
    amp = rng.normal(size=(len(eval_trial), n_conditions, 1, n_units))
    freq = rng.uniform(1.0, 4.0, size=(1, 1, 1, n_units))
    drift = rng.normal(size=(1, n_conditions, 1, n_units))
    t = time[None, None, :, None]
    h = amp * np.sin(2 * np.pi * freq * t) + drift * (1 - np.cos(2 * np.pi * t / duration))
    activity = np.tanh(h)
    w_in = rng.normal(size=(len(eval_trial), n_units, n_inputs))
    w_rec = rng.normal(size=(len(eval_trial), n_units, n_units)) / np.sqrt(n_units)
    w_out = rng.normal(size=(len(eval_trial), n_outputs, n_units)) / np.sqrt(n_units)
    output = np.einsum("ectu,eou->ecto", activity, w_out)
    target = np.sin(2 * np.pi * time[None, :, None] * np.arange(1, n_outputs + 1))
    target = np.broadcast_to(target, (n_conditions, n_steps, n_outputs))

    def var(dims, values, units, long_name):
        return (dims, np.asarray(values, dtype=float), {"units": units, "long_name": long_name})

    return xr.Dataset(
        {
            "loss": var(
                ("trial",),
                np.exp(-trial / tau_loss) * (1 + 0.1 * rng.random(n_trials)),
                "1",
                "clean-pass loss",
            ),
            "loss_noisy": var(("trial",), np.exp(-trial / tau_loss) * 1.2, "1", "noisy loss"),
            "eval_loss": var(
                ("eval_trial",), np.exp(-eval_trial / tau_loss), "1", "evaluation loss"
            ),
            "wall_time": var(("trial",), 0.1 + 0.01 * rng.random(n_trials), "s", "wall time"),
            "W_in": var(("eval_trial", "post", "input"), w_in, "1", "input weights"),
            "W_rec": var(("eval_trial", "post", "pre"), w_rec, "1", "recurrent weights"),
            "W_out": var(("eval_trial", "output", "pre"), w_out, "1", "readout weights"),
            "activity": var(("eval_trial", "condition", "time", "unit"), activity, "1", "rate r"),
            "output_y": var(("eval_trial", "condition", "time", "output"), output, "1", "y"),
            "target": var(("condition", "time", "output"), target, "1", "target"),
            "eval_inputs": var(
                ("condition", "time", "input"),
                rng.normal(size=(n_conditions, n_steps, n_inputs)),
                "1",
                "input",
            ),
            "eval_mask": var(
                ("condition", "time"),
                np.broadcast_to(time > 0.05, (n_conditions, n_steps)),
                "1",
                "mask",
            ),
        },
        coords={
            "trial": ("trial", trial, {"units": "1"}),
            "eval_trial": ("eval_trial", eval_trial, {"units": "1"}),
            "time": ("time", time, {"units": "s"}),
            "condition": ("condition", np.arange(n_conditions), {"units": "1"}),
            "unit": ("unit", np.arange(n_units), {"units": "1"}),
            "post": ("post", np.arange(n_units)),
            "pre": ("pre", np.arange(n_units)),
            "input": ("input", np.arange(n_inputs)),
            "output": ("output", np.arange(n_outputs)),
        },
        attrs={"seed": seed, "status": "completed", "engine": "synthetic"},
    )


def has_metadata(result: xr.DataArray) -> bool:
    return "units" in result.attrs and "long_name" in result.attrs and "description" in result.attrs


# learning ----------------------------------------------------------------------------


def exponential_curves(taus) -> xr.DataArray:
    grid = np.arange(0, 201, 10)
    taus = np.asarray(taus, dtype=float)
    values = 2.0 * np.exp(-grid[:, None] / taus[None, :])
    return xr.DataArray(
        values,
        dims=("eval_trial", "method"),
        coords={"eval_trial": grid, "method": [f"m{k}" for k in range(taus.size)]},
        name="eval_loss",
    )


def test_trials_to_threshold_is_the_first_grid_point_past_the_analytic_crossing():
    tau, fraction = 23.0, 0.05
    loss = exponential_curves([tau]).isel(method=0)
    crossing = tau * np.log(1 / fraction)  # 68.9: L0 exp(-k/tau) = f L0
    result = metrics.trials_to_threshold(loss, fraction)
    assert result.item() == 10 * np.ceil(crossing / 10)
    assert has_metadata(result) and result.attrs["units"] == "1"


def test_trials_to_threshold_interpolated_is_exact_for_an_exponential():
    tau, fraction = 23.0, 0.05
    loss = exponential_curves([tau]).isel(method=0)
    result = metrics.trials_to_threshold(loss, fraction, interpolate=True)
    assert result.item() == pytest.approx(tau * np.log(1 / fraction), rel=EXACT)


def test_trials_to_threshold_is_nan_when_never_reached():
    loss = exponential_curves([1e6]).isel(method=0)
    assert np.isnan(metrics.trials_to_threshold(loss, 0.05).item())
    assert np.isnan(metrics.trials_to_threshold(loss, 0.05, interpolate=True).item())


def test_trials_to_threshold_vectorises_over_method():
    taus = [10.0, 23.0, 1e6]
    loss = exponential_curves(taus)
    expected = [10 * np.ceil(t * np.log(20) / 10) for t in taus[:2]] + [np.nan]
    result = metrics.trials_to_threshold(loss, 0.05)
    assert result.dims == ("method",)
    assert list(result["method"].values) == ["m0", "m1", "m2"]
    np.testing.assert_array_equal(result.values, expected)
    transposed = metrics.trials_to_threshold(loss.transpose("method", "eval_trial"), 0.05)
    xr.testing.assert_identical(transposed, result)
    refined = metrics.trials_to_threshold(loss, 0.05, interpolate=True)
    np.testing.assert_allclose(refined.values[:2], np.array(taus[:2]) * np.log(20), rtol=EXACT)


def test_trials_to_threshold_uses_trial_when_there_is_no_eval_trial():
    loss = xr.DataArray([4.0, 3.0, 1.0, 0.1], dims="trial", coords={"trial": np.arange(4)})
    assert metrics.trials_to_threshold(loss, 0.5).item() == 2
    with pytest.raises(ValueError, match="positive"):
        metrics.trials_to_threshold(loss, 0.0)


def test_final_loss_averages_the_last_valid_points_of_each_curve():
    values = np.array([[5.0, 4.0, 3.0, 2.0, 1.0], [5.0, 4.0, 3.0, np.nan, np.nan]]).T
    loss = xr.DataArray(
        values, dims=("eval_trial", "method"), coords={"eval_trial": np.arange(0, 50, 10)}
    )
    result = metrics.final_loss(loss, n_last=2)
    np.testing.assert_allclose(result.values, [1.5, 3.5], rtol=EXACT)
    assert has_metadata(result)
    assert metrics.final_loss(loss).values.tolist() == [1.0, 3.0]


def test_relative_loss_is_one_at_the_start():
    loss = exponential_curves([10.0, 20.0])
    result = metrics.relative_loss(loss)
    np.testing.assert_allclose(result.isel(eval_trial=0).values, 1.0)
    np.testing.assert_allclose(
        result.values, np.exp(-loss["eval_trial"].values[:, None] / [10, 20])
    )
    assert result.attrs["units"] == "1" and has_metadata(result)


def test_learning_curve_vs_time_sums_wall_time_of_the_trials_done():
    ds = make_run()
    curve = metrics.learning_curve_vs_time(ds)
    wall = ds["wall_time"].values
    expected = [wall[:k].sum() for k in ds["eval_trial"].values]
    np.testing.assert_allclose(curve["elapsed"].values, expected, rtol=EXACT)
    assert curve["elapsed"].attrs["units"] == "s"
    xr.testing.assert_identical(curve["eval_loss"].drop_vars("elapsed"), ds["eval_loss"])


def test_learning_curve_vs_time_vectorises_over_method():
    runs = xr.concat([make_run(0), make_run(1)], dim="method").assign_coords(
        method=["td_anp", "bptt"]
    )
    curve = metrics.learning_curve_vs_time(runs)
    for k, method in enumerate(["td_anp", "bptt"]):
        single = metrics.learning_curve_vs_time(make_run(k))
        np.testing.assert_allclose(
            curve["elapsed"].sel({"method": method}).values, single["elapsed"].values, rtol=EXACT
        )


# alignment ---------------------------------------------------------------------------


def test_cosine_of_a_vector_with_itself_its_negation_and_zero():
    v = np.random.default_rng(1).normal(size=(5, 7))
    assert metrics.cosine(v, v) == pytest.approx(1.0, rel=EXACT)
    assert metrics.cosine(v, -v) == pytest.approx(-1.0, rel=EXACT)
    assert metrics.cosine(np.array([1.0, 0.0]), np.array([0.0, 2.0])) == 0.0
    assert np.isnan(metrics.cosine(v, np.zeros_like(v)))


def test_cosine_of_dicts_matches_brute_force_concatenation():
    rng = np.random.default_rng(2)
    shapes = {"W_in": (6, 2), "W_rec": (6, 6), "W_out": (2, 6)}
    a = {k: rng.normal(size=s) for k, s in shapes.items()}
    b = {k: rng.normal(size=s) + 0.5 * a[k] for k, s in shapes.items()}
    result = metrics.cosine(a, b)

    def brute(x, y):
        return x @ y / np.sqrt((x @ x) * (y @ y))

    for name in shapes:
        assert result[name] == pytest.approx(brute(a[name].ravel(), b[name].ravel()), rel=EXACT)
    flat_a = np.concatenate([a[k].ravel() for k in shapes])
    flat_b = np.concatenate([b[k].ravel() for k in shapes])
    assert result["all"] == pytest.approx(brute(flat_a, flat_b), rel=EXACT)


def test_cosine_rejects_mismatched_matrices():
    with pytest.raises(ValueError, match="only in a"):
        metrics.cosine({"W_in": np.ones(2), "W_rec": np.ones(2)}, {"W_in": np.ones(2)})
    with pytest.raises(ValueError, match="shapes of 'W_in'"):
        metrics.cosine({"W_in": np.ones(2)}, {"W_in": np.ones(3)})


def test_alignment_of_minus_the_gradient_is_one():
    ds = make_run()
    gradient = {k: ds[k].isel(eval_trial=-1).values for k in ("W_in", "W_rec", "W_out")}
    update = {k: -g for k, g in gradient.items()}
    result = metrics.alignment(update, gradient)
    assert set(result.data_vars) == {"W_in", "W_rec", "W_out", "all"}
    for value in result.data_vars.values():
        assert value.item() == pytest.approx(1.0, rel=EXACT)
        assert has_metadata(value) and value.attrs["units"] == "1"
    as_array = result.to_dataarray("matrix")
    assert as_array.dims == ("matrix",)


def test_alignment_keeps_dims_of_dataarrays():
    ds = make_run()
    rng = np.random.default_rng(3)
    gradient = {k: ds[k] for k in ("W_in", "W_rec", "W_out")}
    update = {k: -g + 0.3 * rng.normal(size=g.shape) for k, g in gradient.items()}
    result = metrics.alignment(update, gradient, keep=("eval_trial",))
    assert result["all"].dims == ("eval_trial",)
    for e in range(ds.sizes["eval_trial"]):
        one = metrics.alignment(
            {k: np.asarray(u[e]) for k, u in update.items()},
            {k: g.values[e] for k, g in gradient.items()},
        )
        for name in result.data_vars:
            assert result[name].values[e] == pytest.approx(one[name].item(), rel=EXACT)


# similarity --------------------------------------------------------------------------


def hsic_cka(X, Y):
    """CKA from its definition with the centring matrix H (Kornblith et al. 2019, eq. 3-4)."""
    n = X.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = X @ X.T, Y @ Y.T

    def hsic(A, B):
        return np.trace(A @ H @ B @ H)

    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


@pytest.mark.parametrize("shape", [(200, 8), (15, 40)], ids=["feature-form", "gram-form"])
def test_linear_cka_matches_definition_and_is_one_on_itself(shape):
    rng = np.random.default_rng(4)
    X = rng.normal(size=shape)
    Y = X[:, :5] @ rng.normal(size=(5, 7)) + 0.5 * rng.normal(size=(shape[0], 7))
    assert metrics.linear_cka(X, X) == pytest.approx(1.0, rel=EXACT)
    assert metrics.linear_cka(X, Y) == pytest.approx(hsic_cka(X, Y), rel=1e-10)


def test_linear_cka_is_invariant_to_orthogonal_maps_and_isotropic_scaling():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 10))
    Y = np.tanh(X @ rng.normal(size=(10, 6))) + 0.2 * rng.normal(size=(300, 6))
    Q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    R, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    reference = metrics.linear_cka(X, Y)
    assert 0.05 < reference < 0.95
    for X2, Y2 in [(X @ Q, Y), (X, Y @ R), (3.7 * X, Y), (X, 0.01 * Y), (2 * X @ Q, Y @ R)]:
        assert metrics.linear_cka(X2, Y2) == pytest.approx(reference, rel=1e-10)


def test_linear_cka_of_independent_data_is_of_order_sqrt_pq_over_n():
    # E[CKA] ~ sqrt(pq)/n for independent data; its numerator is a sum of pq independent
    # squared Gaussians, relative sd sqrt(2/(pq)) = 0.14, so [0.5, 2] x is > 3.5 sd wide.
    rng = np.random.default_rng(6)
    n, p, q = 2000, 10, 10
    value = metrics.linear_cka(rng.normal(size=(n, p)), rng.normal(size=(n, q)))
    expected = np.sqrt(p * q) / n
    assert 0.5 * expected < value < 2 * expected


def test_rsa_is_one_on_itself_and_matches_scipy():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(30, 8))
    Y = X @ rng.normal(size=(8, 5)) + rng.normal(size=(30, 5))
    assert metrics.rsa(X, X) == pytest.approx(1.0, rel=EXACT)
    assert metrics.rsa(X, 3 * X + 1) == pytest.approx(1.0, rel=EXACT)
    expected = spearmanr(pdist(X, "correlation"), pdist(Y, "correlation")).statistic
    assert metrics.rsa(X, Y) == pytest.approx(expected, rel=1e-10)
    expected = spearmanr(pdist(X, "euclidean"), pdist(Y, "euclidean")).statistic
    assert metrics.rsa(X, Y, metric="euclidean") == pytest.approx(expected, rel=1e-10)


def test_rsa_refuses_samples_without_a_correlation_distance():
    X = np.random.default_rng(8).normal(size=(10, 4))
    X[0] = 0.0
    with pytest.raises(ValueError, match="undefined for 1 samples of X"):
        metrics.rsa(X, X)
    assert metrics.rsa(X, X, metric="euclidean") == pytest.approx(1.0, rel=EXACT)


def test_hidden_similarity_of_a_run_with_itself():
    ds = make_run()
    result = metrics.hidden_similarity(ds, ds)
    assert result["cka"].item() == pytest.approx(1.0, rel=EXACT)
    assert result["rsa"].item() == pytest.approx(1.0, rel=EXACT)
    # the zero initial state (time 0, every condition) has no correlation distance
    n_samples = ds.sizes["condition"] * ds.sizes["time"]
    assert result["rsa_samples"].item() == n_samples - ds.sizes["condition"]
    for name in ("cka", "rsa", "rsa_samples"):
        assert has_metadata(result[name])


def test_hidden_similarity_compares_runs_of_different_widths():
    ds = make_run()
    rng = np.random.default_rng(9)
    Q, _ = np.linalg.qr(rng.normal(size=(9, ds.sizes["unit"])))  # 9 x 6, orthonormal columns
    wide = (ds["activity"] @ xr.DataArray(Q.T, dims=("unit", "unit_b"))).rename(unit_b="unit")
    result = metrics.hidden_similarity(ds, wide, metric="euclidean")
    assert result["cka"].item() == pytest.approx(1.0, rel=1e-10)  # same Gram matrix
    assert result["rsa"].item() == pytest.approx(1.0, rel=1e-10)  # same distances
    other = metrics.hidden_similarity(ds, make_run(seed=1))
    assert 0.0 < other["cka"].item() < 1.0
    assert -1.0 <= other["rsa"].item() <= 1.0


def test_hidden_similarity_vectorises_over_method():
    a = xr.concat([make_run(0), make_run(1)], dim="method").assign_coords(method=["x", "y"])
    result = metrics.hidden_similarity(a, make_run(0))
    assert result["cka"].dims == ("method",)
    assert result["cka"].sel({"method": "x"}).item() == pytest.approx(1.0, rel=EXACT)
    single = metrics.hidden_similarity(make_run(1), make_run(0))
    assert result["rsa"].sel({"method": "y"}).item() == pytest.approx(
        single["rsa"].item(), rel=EXACT
    )


# activity ----------------------------------------------------------------------------


def test_participation_ratio_of_rank_k_isotropic_data_is_k():
    # Sample eigenvalues spread by Marchenko-Pastur: E[PR] ~ k / (1 + k/n) = k(1 - 0.001)
    # here; PR <= k exactly for rank-k data.  1 % is 10x the expected shortfall.
    rng = np.random.default_rng(10)
    n, n_units, k = 4000, 40, 4
    basis, _ = np.linalg.qr(rng.normal(size=(n_units, k)))
    X = rng.normal(size=(n, k)) @ basis.T
    pr = metrics.participation_ratio(X)
    assert pr <= k * (1 + EXACT)
    assert pr == pytest.approx(k, rel=0.01)


def test_participation_ratio_of_independent_units_is_n():
    # Independent unit-variance units: E[PR] ~ N / (1 + N/n) (Marchenko-Pastur, gamma = N/n);
    # the remaining fluctuation of the eigenvalue moments is O(1/n), well inside 1 %.
    rng = np.random.default_rng(11)
    n, n_units = 4000, 40
    pr = metrics.participation_ratio(rng.normal(size=(n, n_units)))
    assert pr == pytest.approx(n_units / (1 + n_units / n), rel=0.01)


def test_participation_ratio_matches_eigenvalues_and_keeps_batch_dims():
    ds = make_run()
    result = metrics.participation_ratio(ds["activity"])
    assert result.dims == ("eval_trial",) and has_metadata(result)
    for e in range(ds.sizes["eval_trial"]):
        X = ds["activity"].isel(eval_trial=e).stack(s=("condition", "time")).T.values
        lam = np.linalg.eigvalsh(np.cov(X, rowvar=False))
        assert result.values[e] == pytest.approx(lam.sum() ** 2 / (lam**2).sum(), rel=1e-10)
    assert ds.bp.participation_ratio().item() == pytest.approx(result.values[-1], rel=EXACT)


def test_pairwise_correlations_of_independent_units_are_near_zero():
    # Under independence r_ij ~ N(0, 1/n) and distinct pairs are uncorrelated, so the mean
    # over P pairs has SE 1/sqrt(nP); the sd over pairs is 1/sqrt(n) within
    # 1/sqrt(2P) = 5 % (relative), so 20 % is 4 SE.
    rng = np.random.default_rng(12)
    n, n_units = 2000, 20
    X = rng.normal(size=(n, n_units))
    r = metrics.pairwise_correlations(X)
    n_pairs = n_units * (n_units - 1) // 2
    assert r.shape == (n_pairs,)
    assert abs(r.mean()) < 4 / np.sqrt(n * n_pairs)
    assert r.std() == pytest.approx(1 / np.sqrt(n), rel=0.2)
    i, j = np.triu_indices(n_units, 1)
    np.testing.assert_allclose(r, np.corrcoef(X, rowvar=False)[i, j], rtol=1e-10, atol=1e-14)


def test_pairwise_correlations_of_a_dataarray_name_the_pairs():
    ds = make_run(n_units=4)
    r = metrics.pairwise_correlations(ds["activity"].isel(eval_trial=-1))
    assert r.dims == ("pair",) and r.sizes["pair"] == 6
    assert r["unit_i"].values.tolist() == [0, 0, 0, 1, 1, 2]
    assert r["unit_j"].values.tolist() == [1, 2, 3, 2, 3, 3]
    assert has_metadata(r)


def test_activity_distribution_matches_numpy_histogram():
    ds = make_run()
    activity = ds["activity"].isel(eval_trial=-1)
    density = metrics.activity_distribution(activity, bins=12)
    expected, edges = np.histogram(activity.values, bins=12, density=True)
    np.testing.assert_allclose(density.values, expected, rtol=1e-12)
    np.testing.assert_allclose(density["bin_lower"].values, edges[:-1], rtol=EXACT)
    assert float((density * (density["bin_upper"] - density["bin_lower"])).sum()) == (
        pytest.approx(1.0, rel=EXACT)
    )
    per_eval = metrics.activity_distribution(ds["activity"], bins=np.linspace(-1, 1, 9))
    assert per_eval.dims == ("eval_trial", "bin")
    assert has_metadata(per_eval)


def test_sparseness_limiting_cases_and_definition():
    one_hot = np.eye(5)  # each sample: one unit active
    np.testing.assert_allclose(metrics.sparseness(one_hot, "population"), 1.0, rtol=EXACT)
    np.testing.assert_allclose(metrics.sparseness(one_hot, "lifetime"), 1.0, rtol=EXACT)
    uniform = np.full((4, 6), 0.3)
    np.testing.assert_allclose(metrics.sparseness(uniform, "population"), 0.0, atol=EXACT)
    rates = np.random.default_rng(13).exponential(size=(50, 7))
    a = rates.mean(axis=0) ** 2 / (rates**2).mean(axis=0)
    np.testing.assert_allclose(
        metrics.sparseness(rates, "lifetime"), (1 - a) / (1 - 1 / 50), rtol=1e-12
    )
    with pytest.raises(ValueError, match="non-negative"):
        metrics.sparseness(rates - 1)


def test_population_sparseness_of_a_dataarray_keeps_condition_and_time():
    ds = make_run()
    rates = np.abs(ds["activity"].isel(eval_trial=-1))
    result = metrics.sparseness(rates, "population")
    assert result.dims == ("condition", "time") and has_metadata(result)
    assert np.isnan(result.isel(time=0)).all()  # all units silent in the zero initial state
    lifetime = metrics.sparseness(rates, "lifetime")
    assert lifetime.dims == ("unit",)


def test_pca_trajectories_match_the_covariance_eigendecomposition():
    ds = make_run(n_units=8)
    pca = metrics.pca_trajectories(ds, n_components=3)
    X = ds["activity"].isel(eval_trial=-1).stack(s=("condition", "time")).T.values
    lam = np.linalg.eigvalsh(np.cov(X, rowvar=False))[::-1]
    np.testing.assert_allclose(
        pca["explained_variance_ratio"].values, lam[:3] / lam.sum(), rtol=1e-10
    )
    trajectory = pca["trajectory"]
    assert trajectory.dims == ("condition", "time", "pc")
    projected = trajectory.stack(s=("condition", "time")).values
    np.testing.assert_allclose(projected.var(axis=1, ddof=1), lam[:3], rtol=1e-10)
    components = pca["components"].values
    np.testing.assert_allclose(components @ components.T, np.eye(3), atol=1e-12)
    assert (components[np.arange(3), np.abs(components).argmax(axis=1)] > 0).all()
    xr.testing.assert_identical(ds.bp.pca(), pca)


def test_pca_of_planar_activity_explains_everything_with_two_components():
    ds = make_run(n_units=8)
    rng = np.random.default_rng(14)
    latent = rng.normal(size=(ds.sizes["condition"], ds.sizes["time"], 2))
    plane = xr.DataArray(
        latent @ rng.normal(size=(2, 8)),
        dims=("condition", "time", "unit"),
        coords={"time": ds["time"]},
    )
    ratio = metrics.pca_trajectories(plane, n_components=2)["explained_variance_ratio"]
    assert float(ratio.sum()) == pytest.approx(1.0, rel=1e-10)


# spikes ------------------------------------------------------------------------------

RATE, DURATION, N_UNITS = 20.0, 50.0, 50  # Hz, s, neurons -> ~1000 spikes per unit


def poisson_trains(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    counts = rng.poisson(RATE * DURATION, size=N_UNITS)
    units = np.repeat(np.arange(N_UNITS), counts)
    times = rng.uniform(0.0, DURATION, size=units.size)
    order = rng.permutation(units.size)  # any order must do
    return units[order], times[order]


@pytest.fixture
def poisson():
    return poisson_trains(np.random.default_rng(15))


def test_poisson_firing_rates(poisson):
    # counts ~ Poisson(rate T): rate estimate sd sqrt(rate/T) per unit, / sqrt(N) for the mean
    rates = metrics.firing_rates(*poisson, N_UNITS, 0.0, DURATION)
    assert rates.shape == (N_UNITS,)
    assert abs(rates.mean() - RATE) < 4 * np.sqrt(RATE / DURATION / N_UNITS)


def test_poisson_isi_cv_is_one(poisson):
    # Delta method for exponential ISIs: sd(CV estimate) ~ 1/sqrt(n) for n intervals.
    cv = metrics.isi_cv(*poisson, N_UNITS)
    n_isi = RATE * DURATION
    assert abs(cv.mean() - 1) < 4 / np.sqrt(n_isi * N_UNITS)


def test_poisson_isi_lv_is_one(poisson):
    # Each term 3((I1-I2)/(I1+I2))^2 = 3U^2, U ~ Uniform(-1, 1): mean 1, variance 9 * 4/45;
    # neighbouring terms share an interval, so at most 3x the variance: sd <= sqrt(2.4/(n-1)).
    lv = metrics.isi_lv(*poisson, N_UNITS)
    n_isi = RATE * DURATION
    assert abs(lv.mean() - 1) < 4 * np.sqrt(2.4 / (n_isi - 1) / N_UNITS)


def test_poisson_fano_factor_is_one(poisson):
    # Poisson counts of mean lam = rate * window in M windows: Var(sample variance) =
    # (lam + 2 lam^2)/(M - 1) to leading order, so sd(F) ~ sqrt((2 + 1/lam)/(M - 1)).
    window = 0.1
    fano = metrics.fano_factor(*poisson, N_UNITS, 0.0, DURATION, window)
    lam, n_windows = RATE * window, DURATION / window
    assert abs(fano.mean() - 1) < 4 * np.sqrt((2 + 1 / lam) / (n_windows - 1) / N_UNITS)


def test_poisson_count_correlations_are_near_zero(poisson):
    # Independent trains: r_ij ~ N(0, 1/M), pairs uncorrelated: mean SE 1/sqrt(M P).
    corr = metrics.spike_count_correlations(*poisson, N_UNITS, 0.0, DURATION, 0.1)
    assert corr.shape == (N_UNITS, N_UNITS)
    np.testing.assert_allclose(np.diag(corr), 1.0, rtol=EXACT)
    pairs = corr[np.triu_indices(N_UNITS, 1)]
    assert abs(pairs.mean()) < 4 / np.sqrt(500 * pairs.size)


def test_identical_trains_are_perfectly_correlated(poisson):
    units, times = poisson
    mine = units == 0
    doubled_units = np.concatenate([np.zeros(mine.sum(), int), np.ones(mine.sum(), int)])
    doubled_times = np.concatenate([times[mine], times[mine]])
    corr = metrics.spike_count_correlations(doubled_units, doubled_times, 2, 0.0, DURATION, 0.5)
    assert corr[0, 1] == pytest.approx(1.0, rel=EXACT)


def test_regular_train_has_zero_cv_lv_and_fano():
    # Spike times k * 10 ms in float64: ISIs equal up to rounding (~1e-15 s), so 1e-9.
    period = 0.01
    times = period * np.arange(1, 1001)
    units = np.zeros(times.size, dtype=int)
    assert metrics.isi_cv(units, times, 1)[0] == pytest.approx(0.0, abs=1e-9)
    assert metrics.isi_lv(units, times, 1)[0] == pytest.approx(0.0, abs=1e-9)
    centred = period * (np.arange(1000) + 0.5)  # 10 spikes in each 0.1 s window
    assert metrics.fano_factor(units, centred, 1, 0.0, 10.0, 0.1)[0] == 0.0


def test_spike_counts_match_brute_force_and_edge_cases():
    rng = np.random.default_rng(16)
    units = rng.integers(0, 4, size=300)
    times = rng.uniform(0.0, 1.0, size=300)
    counts = metrics.spike_counts(units, times, 5, 0.0, 1.0, 0.1)
    assert counts.shape == (5, 10)
    for u in range(5):
        expected, _ = np.histogram(times[units == u], bins=np.linspace(0.0, 1.0, 11))
        np.testing.assert_array_equal(counts[u], expected)
    assert np.isnan(metrics.isi_cv(units, times, 5)[4])  # unit 4 never fires
    assert np.isnan(metrics.isi_lv(units, times, 5)[4])
    assert np.isnan(metrics.fano_factor(units, times, 5, 0.0, 1.0, 0.1)[4])
    with pytest.raises(ValueError, match="unit indices"):
        metrics.isi_cv(units, times, 3)
    with pytest.raises(ValueError, match="t_stop"):
        metrics.firing_rates(units, times, 5, 1.0, 1.0)


# accessor ----------------------------------------------------------------------------


def test_accessor_wraps_the_learning_metrics():
    ds = make_run()
    xr.testing.assert_identical(
        ds.bp.trials_to_threshold(0.2), metrics.trials_to_threshold(ds["eval_loss"], 0.2)
    )
    assert ds.bp.trials_to_threshold(0.2).item() == 30  # exp(-k/15) <= 0.2 first at k = 30
    assert ds.bp.final_loss().item() == ds["eval_loss"].values[-1]
    assert ds.bp.final_loss("loss", n_last=5).item() == pytest.approx(
        ds["loss"].values[-5:].mean(), rel=EXACT
    )
    assert ds.bp.relative_loss().isel(eval_trial=0).item() == 1.0
    assert "elapsed" in ds.bp.learning_curve_vs_time().coords


def test_accessor_wraps_the_activity_metrics():
    ds = make_run()
    last = ds["activity"].isel(eval_trial=-1)
    xr.testing.assert_identical(ds.bp.pairwise_correlations(), metrics.pairwise_correlations(last))
    xr.testing.assert_identical(
        ds.bp.activity_distribution(10), metrics.activity_distribution(last, 10)
    )
    assert ds.bp.participation_ratio(eval_trial=None).dims == ("eval_trial",)
    assert ds.sel(eval_trial=20).bp.participation_ratio().item() == pytest.approx(
        metrics.participation_ratio(ds["activity"].sel(eval_trial=20)).item(), rel=EXACT
    )
    assert ds.bp.similarity(ds)["cka"].item() == pytest.approx(1.0, rel=EXACT)
    with pytest.raises(ValueError, match="non-negative"):
        ds.bp.sparseness()
