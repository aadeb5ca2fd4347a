"""Plasticity metrics against brute force and known cases; the summary tables built on them."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import bioperturb.accessor  # noqa: F401  (registers ds.bp)
from bioperturb import metrics
from bioperturb.report import table_markdown

pytestmark = pytest.mark.filterwarnings("error")

DIMS = {"W_in": ("post", "input"), "W_rec": ("post", "pre"), "W_out": ("output", "pre")}


def weights(name: str, values: np.ndarray, **extra_dims: int) -> xr.DataArray:
    """Weight snapshots (``*extra_dims``, eval_trial, post, pre) as a run stores them."""
    dims = (*extra_dims, "eval_trial", *DIMS[name])
    coords = {"eval_trial": 10 * np.arange(values.shape[len(extra_dims)])}
    return xr.DataArray(values, dims=dims, coords=coords, name=name, attrs={"units": "1"})


def random_run(seed: int = 0, n: int = 6, n_eval: int = 4, methods=("td_anp", "bptt")):
    rng = np.random.default_rng(seed)
    shapes = {"W_in": (n, 2), "W_rec": (n, n), "W_out": (1, n)}
    data = {}
    for name, shape in shapes.items():
        w0 = rng.normal(size=shape)
        steps = 0.1 * rng.normal(size=(len(methods), n_eval, *shape)).cumsum(axis=1)
        steps[:, 0] = 0.0
        data[name] = weights(name, w0 + steps, method=len(methods))
    return xr.Dataset(data).assign_coords(method=list(methods))


def orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(n, n)))
    return q * np.sign(np.diag(r))


# weight changes ----------------------------------------------------------------------


def test_weight_change_norm_matches_brute_force():
    ds = random_run()
    W = ds["W_rec"]
    norm = metrics.weight_change_norm(W)
    relative = metrics.weight_change_norm(W, relative=True)
    assert norm.dims == ("method", "eval_trial") and norm.attrs["units"] == "1"
    for m in range(2):
        w0 = W.values[m, 0]
        for k in range(W.sizes["eval_trial"]):
            expected = np.linalg.norm(W.values[m, k] - w0, "fro")
            np.testing.assert_allclose(norm.values[m, k], expected, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(
                relative.values[m, k], expected / np.linalg.norm(w0, "fro"), rtol=1e-12
            )
    assert np.all(norm.isel(eval_trial=0) == 0)


def test_weight_change_of_padded_snapshots_is_nan():
    ds = random_run()
    W = ds["W_in"].copy()
    W[1, -1] = np.nan  # bptt's last evaluation missing, as after combining unequal runs
    norm = metrics.weight_change_norm(W)
    assert np.isnan(norm.values[1, -1]) and np.all(np.isfinite(norm.values[0]))
    assert np.isnan(metrics.sign_change_fraction(W).values[1, -1])
    assert np.all(np.isnan(metrics.weight_change_quantiles(W).values[1, -1]))


def test_weight_change_is_w_minus_initial():
    W = random_run()["W_out"]
    change = metrics.weight_change(W)
    np.testing.assert_array_equal(change.values, W.values - W.values[:, :1])
    assert change.dims == W.dims


def test_weight_change_quantiles_match_numpy():
    W = random_run()["W_rec"]
    q = (0.0, 0.1, 0.5, 0.9, 1.0)
    result = metrics.weight_change_quantiles(W, q)
    assert result.dims == ("method", "eval_trial", "quantile")
    np.testing.assert_array_equal(result["quantile"], q)
    for m in range(2):
        for k in range(W.sizes["eval_trial"]):
            magnitudes = np.abs(W.values[m, k] - W.values[m, 0]).ravel()
            np.testing.assert_allclose(result.values[m, k], np.quantile(magnitudes, q))
    with pytest.raises(ValueError, match="q must be"):
        metrics.weight_change_quantiles(W, (0.5, 1.5))


def test_weight_change_histogram_matches_numpy_and_shares_edges():
    W = random_run()["W_rec"]
    density = metrics.weight_change_histogram(W, bins=8)
    edges = np.append(density["bin_lower"].values, density["bin_upper"].values[-1])
    assert edges[0] == 0.0  # magnitudes start at 0
    change = np.abs(W.values - W.values[:, :1])
    np.testing.assert_allclose(edges[-1], change.max())
    for m in range(2):
        for k in range(1, W.sizes["eval_trial"]):
            expected, _ = np.histogram(change[m, k].ravel(), bins=edges, density=True)
            np.testing.assert_allclose(density.values[m, k], expected)
    # before training every change is 0: all mass in the first bin
    np.testing.assert_allclose(density.values[:, 0, 0] * (edges[1] - edges[0]), 1.0)
    signed = metrics.weight_change_histogram(W, bins=[-1.0, 0.0, 1.0], absolute=False)
    assert signed.sizes["bin"] == 2


def test_weight_change_needs_a_learning_dim():
    with pytest.raises(ValueError, match="no dim 'eval_trial'"):
        metrics.weight_change_norm(random_run()["W_rec"].isel(eval_trial=0))
    with pytest.raises(TypeError, match="DataArray"):
        metrics.weight_change_norm(np.zeros((2, 3, 3)))


# sign changes and Dale's law ---------------------------------------------------------


def test_sign_change_fraction_counts_known_flips():
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(8, 10))
    w0[0, :4] = 0.0  # four absent synapses: left out
    present = w0 != 0
    w1 = w0 * rng.uniform(0.2, 3.0, size=w0.shape)  # magnitudes change, signs do not
    flip = np.zeros(w0.shape, bool)
    flip[np.nonzero(present)[0][:7], np.nonzero(present)[1][:7]] = True
    w2 = np.where(flip, -w1, w1)
    w3 = w2.copy()
    w3[np.nonzero(present & ~flip)[0][0], np.nonzero(present & ~flip)[1][0]] = 0.0  # to 0
    W = weights("W_rec", np.stack([w0, w1, w2, w3]))
    fraction = metrics.sign_change_fraction(W)
    np.testing.assert_allclose(fraction.values, [0.0, 0.0, 7 / 76, 7 / 76])
    assert fraction.attrs["units"] == "1"


def dale_matrix(rng, n_post: int, n_pre: int, excitatory: float = 0.8) -> np.ndarray:
    signs = np.where(rng.random(n_pre) < excitatory, 1.0, -1.0)
    return np.abs(rng.normal(size=(n_post, n_pre))) * signs


def test_dale_compliance_of_sign_constrained_and_perturbed_matrices():
    rng = np.random.default_rng(2)
    W = dale_matrix(rng, 12, 20)
    assert metrics.dale_compliance(W) == 1.0
    broken = W.copy()
    for column in (0, 5, 7):
        broken[3, column] *= -1  # one opposite-sign synapse in three presynaptic units
    assert metrics.dale_compliance(broken) == pytest.approx(1 - 3 / 20)
    small = W.copy()
    small[2, 4] = -1e-6 * np.sign(W[2, 4])
    assert metrics.dale_compliance(small) == pytest.approx(1 - 1 / 20)
    assert metrics.dale_compliance(small, tol=1e-5) == 1.0
    silent = W.copy()
    silent[:, 9] = 0.0  # a unit without outgoing synapses complies
    assert metrics.dale_compliance(silent) == 1.0


def test_dale_compliance_of_random_signs_matches_two_to_the_one_minus_n():
    rng = np.random.default_rng(3)
    n_post = 3
    batch = rng.normal(size=(400, n_post, 50))
    mean = metrics.dale_compliance(batch).mean()
    expected = 2.0 ** (1 - n_post)  # P(all n_post signs equal)
    assert mean == pytest.approx(expected, abs=4 * np.sqrt(expected * (1 - expected) / 20000))


def test_dale_compliance_uses_presynaptic_columns_of_each_matrix():
    rng = np.random.default_rng(4)
    w_in = dale_matrix(rng, 10, 3)  # (post, input): columns are the inputs
    W = weights("W_in", np.stack([w_in, -w_in.T.repeat(1, 0)[:3].T]))
    result = metrics.dale_compliance(W)
    assert result.dims == ("eval_trial",)
    np.testing.assert_array_equal(result.values, [1.0, 1.0])
    transposed = xr.DataArray(w_in.T, dims=("input", "post"), name="W_in")
    assert float(metrics.dale_compliance(transposed)) == 1.0  # dims found by name


# spectrum ----------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.5, 1.0, 1.7])
def test_spectral_radius_of_scaled_orthogonal_matrix_is_the_scale(scale):
    Q = orthogonal(15, np.random.default_rng(5))
    assert metrics.spectral_radius(scale * Q) == pytest.approx(scale, rel=1e-12)
    np.testing.assert_allclose(np.abs(metrics.eigenvalues(scale * Q)), scale, rtol=1e-12)


def test_spectral_radius_over_evaluations_matches_brute_force():
    ds = random_run(n=9)
    radius = metrics.spectral_radius(ds["W_rec"])
    assert radius.dims == ("method", "eval_trial") and radius.attrs["units"] == "1"
    brute = np.abs(np.linalg.eigvals(ds["W_rec"].values)).max(axis=-1)
    np.testing.assert_allclose(radius.values, brute, rtol=1e-12)
    assert ds.bp.spectral_radius().equals(radius)


def test_eigenvalues_are_sorted_by_modulus_with_conjugates_together():
    rotation = np.array([[0.0, -2.0], [2.0, 0.0]])  # eigenvalues ±2i
    W = np.zeros((5, 5))
    W[:2, :2] = rotation
    W[2:, 2:] = np.diag([0.5, -3.0, 1.0])
    lam = metrics.eigenvalues(W)
    np.testing.assert_allclose(lam, [-3.0, -2j, 2j, 1.0, 0.5], atol=1e-12)
    da = metrics.eigenvalues(xr.DataArray(np.stack([W, 2 * W]), dims=("k", "post", "pre")))
    assert da.dims == ("k", "eigenvalue") and np.iscomplexobj(da.values)


def test_random_matrix_spectral_radius_is_close_to_g():
    g, n = 1.2, 200
    W = np.random.default_rng(6).normal(scale=g / np.sqrt(n), size=(n, n))
    assert metrics.spectral_radius(W) == pytest.approx(g, rel=0.08)  # circular law


def test_spectrum_of_non_square_or_non_finite_matrices():
    with pytest.raises(ValueError, match="not square"):
        metrics.spectral_radius(random_run()["W_in"])
    W = np.stack([np.eye(3), np.full((3, 3), np.nan)])
    np.testing.assert_array_equal(metrics.spectral_radius(W), [1.0, np.nan])


# combined statistics -----------------------------------------------------------------


def test_plasticity_statistics_stack_the_matrices():
    ds = random_run()
    stats = metrics.plasticity_statistics(ds)
    assert stats["change_norm"].dims == ("method", "eval_trial", "matrix")
    assert stats["change_quantile"].dims == ("method", "eval_trial", "matrix", "quantile")
    assert list(stats["matrix"].values) == ["W_in", "W_rec", "W_out"]
    for name in ("W_in", "W_rec", "W_out"):
        at = {"matrix": name}
        xr.testing.assert_allclose(
            stats["change_norm"].sel(at, drop=True),
            metrics.weight_change_norm(ds[name]).drop_attrs(),
        )
        xr.testing.assert_allclose(
            stats["sign_change_fraction"].sel(at, drop=True),
            metrics.sign_change_fraction(ds[name]).drop_attrs(),
        )
    xr.testing.assert_allclose(
        stats["spectral_radius"].drop_attrs(), metrics.spectral_radius(ds["W_rec"]).drop_attrs()
    )
    assert ds.bp.plasticity()["dale_compliance"].equals(stats["dale_compliance"])
    with pytest.raises(ValueError, match="no weight matrices"):
        metrics.plasticity_statistics(xr.Dataset())


def test_alignment_summary_of_known_values():
    values = np.array([[0.2, 0.4], [np.nan, -0.2], [0.6, 0.0], [0.4, 0.4]])
    alignment = xr.DataArray(
        values,
        dims=("eval_trial", "matrix"),
        coords={"eval_trial": [0, 10, 20, 30], "matrix": ["W_rec", "all"]},
    )
    summary = metrics.alignment_summary(xr.Dataset({"alignment": alignment}))
    first = summary.sel({"matrix": "W_rec"})
    assert float(first["count"]) == 3
    assert float(first["mean"]) == pytest.approx(0.4)
    assert float(first["std"]) == pytest.approx(0.2)
    assert float(first["sem"]) == pytest.approx(0.2 / np.sqrt(3))
    assert float(first["median"]) == pytest.approx(0.4)
    assert float(first["fraction_positive"]) == 1.0
    assert (float(first["first"]), float(first["last"])) == (0.2, 0.4)
    second = summary.sel({"matrix": "all"})
    assert float(second["mean"]) == pytest.approx(0.15)
    assert float(second["fraction_positive"]) == pytest.approx(0.5)
    assert summary["mean"].attrs["units"] == "1"


# summary tables ----------------------------------------------------------------------


def learning_run(seed: int = 0) -> xr.Dataset:
    """A run with losses, wall times, activity and weights (synthetic values)."""
    rng = np.random.default_rng(seed)
    n_trials, n, n_units = 40, 6, 5
    eval_trial = np.arange(0, n_trials + 1, 10)
    ds = random_run(seed, n=n, n_eval=eval_trial.size, methods=("td_anp", "bptt"))
    ds = ds.assign_coords(eval_trial=eval_trial)
    wall = np.stack([np.full(n_trials, 0.2), np.full(n_trials, 0.01)])
    ds["wall_time"] = (("method", "trial"), wall, {"units": "s"})
    ds["loss"] = (("method", "trial"), rng.random((2, n_trials)), {"units": "1"})
    ds["eval_loss"] = (
        ("method", "eval_trial"),
        np.array([[1.0, 0.5, 0.2, 0.08, 0.04], [1.0, 0.25, 0.04, 0.01, 0.01]]),
        {"units": "1"},
    )
    activity = rng.normal(size=(2, eval_trial.size, 2, 15, n_units))
    ds["activity"] = (("method", "eval_trial", "condition", "time", "unit"), activity)
    return ds.assign_coords(trial=np.arange(n_trials))


def test_summary_statistics_match_the_single_metrics():
    ds = learning_run()
    stats = metrics.summary_statistics(ds)
    td = {"method": "td_anp"}
    np.testing.assert_array_equal(stats["trials_to_30pct"].values, [20, 10])
    np.testing.assert_array_equal(stats["trials_to_5pct"].values, [40, 20])
    np.testing.assert_allclose(stats["mean_wall_time"].values, [0.2, 0.01])
    last = ds["activity"].isel(eval_trial=-1)
    np.testing.assert_allclose(
        stats["participation_ratio"].values, metrics.participation_ratio(last).values
    )
    pairs = np.abs(metrics.pairwise_correlations(last.sel(td)).values)
    assert float(stats["mean_abs_correlation"].sel(td)) == pytest.approx(pairs.mean())
    assert float(stats["activity_std"].sel(td)) == pytest.approx(last.sel(td).values.std())
    radius = metrics.spectral_radius(ds["W_rec"].sel(td))
    assert float(stats["spectral_radius_final"].sel(td)) == pytest.approx(float(radius[-1]))
    change = ds["W_out"].sel(td).values
    expected = np.linalg.norm(change[-1] - change[0])
    assert float(stats["change_norm_W_out"].sel(td)) == pytest.approx(expected)
    assert all("units" in var.attrs for var in stats.data_vars.values())


def test_time_to_threshold_sums_the_wall_time_of_the_trials_done():
    ds = learning_run()
    seconds = metrics.time_to_threshold(ds, 0.05)
    np.testing.assert_allclose(seconds.values, [40 * 0.2, 20 * 0.01])
    assert seconds.attrs["units"] == "s"
    assert np.isnan(metrics.time_to_threshold(ds, 0.001).values).all()


def test_summary_table_has_a_column_per_run_and_units_in_row_labels():
    ds = learning_run()
    table = metrics.summary_table({"a": ds, "b": ds.sel({"method": "bptt"}, drop=True)})
    assert list(table.columns) == ["a: td_anp", "a: bptt", "b"]
    assert all(label.endswith("]") for label in table.index)
    row = "training trials to 10 % of initial eval. loss [1]"
    assert table.loc[row].tolist() == [30.0, 20.0, 20.0]
    assert table.loc["mean wall-clock time per training trial [s]", "a: td_anp"] == 0.2
    single = metrics.summary_table(ds)
    assert list(single.columns) == ["td_anp", "bptt"]
    with pytest.raises(ValueError, match="labelled"):
        metrics.summary_table({"a": ds, "a: bptt": ds.sel({"method": "bptt"}, drop=True)})


def test_comparison_table_scores_similarity_with_the_reference():
    ds = learning_run()
    table = metrics.comparison_table(ds)
    cka = "linear CKA of hidden activity with bptt (last eval.) [1]"
    assert table.loc[cka, "bptt"] == pytest.approx(1.0)
    assert 0 <= table.loc[cka, "td_anp"] < 1
    assert table.loc["training time to 5 % of initial eval. loss [s]", "td_anp"] == pytest.approx(
        8.0
    )
    with pytest.raises(ValueError, match="reference"):
        metrics.comparison_table(ds, reference="np")


def test_table_markdown_escapes_pipes_and_marks_missing_values():
    table = metrics.summary_table({"run": learning_run().sel({"method": "td_anp"})})
    table.loc["training trials to 5 % of initial eval. loss [1]", "run"] = np.nan
    text = table_markdown(table, title="T")
    lines = text.splitlines()
    assert lines[0] == "# T" and lines[2] == "| statistic | run |"
    assert "| mean \\|pairwise correlation\\| of hidden units (last eval.) [1] |" in text
    assert "| training trials to 5 % of initial eval. loss [1] | – |" in text
    assert "| training trials to 30 % of initial eval. loss [1] | 20 |" in text
    assert all(line.count(" | ") == 1 for line in lines[4:] if "\\|" not in line)
