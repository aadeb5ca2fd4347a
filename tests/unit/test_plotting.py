"""Plots return labelled Figures and are written as PNG files, atomically."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import imread  # noqa: E402

import bioperturb.accessor  # noqa: E402, F401  (registers ds.bp)
from bioperturb import metrics, plotting  # noqa: E402
from bioperturb.report import standard_figures  # noqa: E402

pytestmark = pytest.mark.filterwarnings("error")


def make_run(seed: int = 0, n_trials: int = 30, n_units: int = 5) -> xr.Dataset:
    """A small run Dataset following docs/data-model.md (values synthetic)."""
    rng = np.random.default_rng(seed)
    trial = np.arange(n_trials)
    eval_trial = np.arange(0, n_trials + 1, 10)
    time = 0.01 * np.arange(20)
    n_eval, n_cond, n_out, n_in = eval_trial.size, 3, 2, 2
    activity = np.tanh(
        rng.normal(size=(n_eval, n_cond, 1, n_units)) * np.sin(2 * np.pi * 3 * time)[:, None]
        + rng.normal(size=(n_eval, n_cond, time.size, n_units)) * 0.1
    )
    w_out = rng.normal(size=(n_eval, n_out, n_units))

    def var(dims, values, units, long_name):
        return (dims, np.asarray(values, dtype=float), {"units": units, "long_name": long_name})

    return xr.Dataset(
        {
            "loss": var(("trial",), np.exp(-trial / 10) * (1 + rng.random(n_trials)), "1", "loss"),
            "eval_loss": var(("eval_trial",), np.exp(-eval_trial / 10), "1", "evaluation loss"),
            "wall_time": var(("trial",), 0.05 + 0.01 * rng.random(n_trials), "s", "wall time"),
            "W_in": var(
                ("eval_trial", "post", "input"), rng.normal(size=(n_eval, n_units, n_in)), "1", "U"
            ),
            "W_rec": var(
                ("eval_trial", "post", "pre"), rng.normal(size=(n_eval, n_units, n_units)), "1", "W"
            ),
            "W_out": var(("eval_trial", "output", "pre"), w_out, "1", "V"),
            "activity": var(("eval_trial", "condition", "time", "unit"), activity, "1", "rate r"),
            "output_y": var(
                ("eval_trial", "condition", "time", "output"),
                np.einsum("ectu,eou->ecto", activity, w_out),
                "1",
                "readout y",
            ),
            "target": var(
                ("condition", "time", "output"),
                np.ones((n_cond, time.size, n_out)) * np.sin(2 * np.pi * 2 * time)[:, None],
                "1",
                "target",
            ),
            "eval_mask": var(
                ("condition", "time"),
                np.broadcast_to(time >= 0.05, (n_cond, time.size)),
                "1",
                "mask",
            ),
        },
        coords={
            "trial": trial,
            "eval_trial": eval_trial,
            "time": ("time", time, {"units": "s"}),
            "condition": np.arange(n_cond),
            "unit": np.arange(n_units),
        },
    )


def labelled(ax) -> bool:
    return "[" in ax.get_xlabel() and "[" in ax.get_ylabel()


def data_axes(fig: Figure) -> list:
    """Axes other than colorbars."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def test_learning_curves_of_two_methods():
    runs = {"td_anp": make_run(0), "bptt": make_run(1)}
    fig = plotting.plot_learning_curves(runs)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert labelled(ax) and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "training trials done [1]"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:2] == ["td_anp", "bptt"]
    colors = {line.get_label(): line.get_color() for line in ax.get_lines()}
    assert colors["td_anp"] == plotting.PALETTE["td_anp"]
    assert colors["bptt"] == plotting.PALETTE["bptt"]


def test_learning_curves_against_wall_time_of_a_dataset_with_method_and_seed():
    seeds = [xr.concat([make_run(s), make_run(s + 10)], dim="method") for s in range(3)]
    combined = xr.concat(seeds, dim="seed").assign_coords(method=["np", "online_anp"])
    fig = plotting.plot_learning_curves(combined, x="wall_time", log=False)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "training wall-clock time [s]" and ax.get_yscale() == "linear"
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["np", "online_anp"]
    assert len(ax.collections) == 2  # one interquartile band per method


def test_accessor_draws_into_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    ds = make_run().assign_attrs(method="wp")
    assert ds.bp.plot_learning_curve(ax=ax) is fig
    assert ax.get_lines()[-1].get_color() == plotting.PALETTE["wp"]


def test_plot_activity_has_labelled_panels():
    fig = make_run().bp.plot_activity()
    heatmap, readout = data_axes(fig)
    assert heatmap.get_ylabel() == "sampled unit [1]"
    assert readout.get_xlabel() == "time [s]" and labelled(readout)
    assert fig.axes[-1].get_ylabel() == "rate r = tanh(h) [1]"  # colorbar
    with pytest.raises(ValueError, match="one run"):
        plotting.plot_activity(xr.concat([make_run(), make_run()], dim="method"))


def test_plot_weight_changes_one_panel_per_matrix():
    fig = plotting.plot_weight_changes(make_run())
    axes = data_axes(fig)
    assert [ax.get_xlabel() for ax in axes] == ["ΔW_in [1]", "ΔW_rec [1]", "ΔW_out [1]"]
    assert all(labelled(ax) for ax in axes)
    per_method = xr.concat([make_run(0), make_run(1)], dim="method").assign_coords(
        method=["np", "bptt"]
    )
    fig = plotting.plot_weight_changes(per_method)
    assert len(data_axes(fig)[0].patches) == 2  # one outline histogram per method


def test_plot_pca_labels_components_with_their_variance():
    fig = plotting.plot_pca(make_run())
    trajectories, scree = data_axes(fig)
    assert trajectories.get_xlabel().startswith("PC1 (") and labelled(trajectories)
    assert labelled(scree)


def test_save_figure_writes_png_at_150_dpi_atomically(tmp_path):
    fig = plotting.plot_learning_curves({"np": make_run()})
    fig.set_size_inches(4, 3)
    path = plotting.save_figure(fig, tmp_path / "figs" / "curve.png")
    assert path == tmp_path / "figs" / "curve.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert imread(path).shape[:2] == (3 * 150, 4 * 150)
    assert list(path.parent.iterdir()) == [path]  # no temporary file left
    with pytest.raises(ValueError, match="not supported"):
        plotting.save_figure(fig, tmp_path / "figs" / "curve.nope")
    assert list(path.parent.iterdir()) == [path]


def test_method_colours_are_fixed():
    assert plotting.method_color("TD_ANP") == plotting.PALETTE["td_anp"]
    assert plotting.method_color("e_prop") == plotting.method_color("e_prop")
    assert plotting.method_color("e_prop") not in plotting.PALETTE.values()


def two_methods() -> xr.Dataset:
    return xr.concat([make_run(0), make_run(1)], dim="method").assign_coords(
        method=["td_anp", "bptt"]
    )


def colours(ax) -> list[str]:
    return [line.get_color() for line in ax.get_lines()]


def test_learning_comparison_by_trials_and_by_wall_time():
    fig = plotting.plot_learning_comparison(two_methods())
    by_trial, by_time = data_axes(fig)
    assert by_trial.get_xlabel() == "training trials done [1]"
    assert by_time.get_xlabel() == "training wall-clock time [s]"
    assert by_trial.get_legend() is None and by_time.get_legend() is not None
    assert by_time.get_xscale() == "linear"  # equal costs per trial
    slow = two_methods()
    slow["wall_time"] = slow["wall_time"] * xr.DataArray([100.0, 1.0], dims="method")
    by_time = data_axes(plotting.plot_learning_comparison(slow))[1]
    assert by_time.get_xscale() == "log"
    eval_line = by_time.get_lines()[1]  # evaluations of the first method
    assert np.isnan(eval_line.get_xdata()[0])  # 0 s is not drawn on a log axis


def test_plot_spectrum_shows_radius_and_eigenvalues_per_method():
    ds = two_methods()
    ds["W_rec"][:, 0] = ds["W_rec"].isel(method=0, eval_trial=0)  # same start
    fig = plotting.plot_spectrum(ds)
    radius, plane = data_axes(fig)
    assert labelled(radius) and labelled(plane)
    assert radius.get_ylabel() == "spectral radius ρ(W_rec) [1]"
    td_anp = radius.get_lines()[0]
    assert td_anp.get_color() == plotting.PALETTE["td_anp"]
    expected = np.abs(np.linalg.eigvals(ds["W_rec"].isel(method=0).values)).max(axis=-1)
    np.testing.assert_allclose(td_anp.get_ydata(), expected)
    labels = [t.get_text() for t in plane.get_legend().get_texts()]
    assert labels[0] == "before training" and "after 30 trials (bptt)" in labels


def test_plot_weight_drift_has_two_rows_per_matrix():
    fig = plotting.plot_weight_drift(two_methods())
    axes = data_axes(fig)
    assert len(axes) == 6 and all(labelled(ax) for ax in axes[3:])  # bottom row
    assert all("[" in ax.get_ylabel() for ax in axes[:3])  # top row shares the x axis
    assert axes[0].get_title() == "W_in"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["td_anp", "bptt"]
    assert colours(axes[0])[:2] == [plotting.PALETTE["td_anp"], plotting.PALETTE["bptt"]]


def test_plot_alignment_per_matrix_against_trials():
    ds = make_run().assign_attrs(rule="np")
    rng = np.random.default_rng(0)
    ds["alignment"] = xr.DataArray(
        rng.uniform(-0.2, 0.8, size=(ds.sizes["trial"], 2)),
        dims=("trial", "matrix"),
        coords={"matrix": ["W_rec", "all"]},
    )
    fig = ds.bp.plot_alignment()
    axes = data_axes(fig)
    assert [ax.get_title() for ax in axes] == ["W_rec", "all"]
    assert labelled(axes[0]) and axes[0].get_ylabel() == "cos(rule estimate, ∇L) [1]"
    assert axes[1].get_xlabel() == "training trials done [1]"  # shares the y axis
    assert plotting.PALETTE["np"] in colours(axes[0])
    with pytest.raises(ValueError, match="alignment"):
        plotting.plot_alignment(make_run())


def test_plot_similarity_compares_each_method_with_bptt():
    fig = plotting.plot_similarity(two_methods())
    cka, rsa = data_axes(fig)
    assert cka.get_ylabel() == "linear CKA with bptt [1]" and labelled(rsa)
    (line,) = cka.get_lines()
    assert line.get_label() == "td_anp" and line.get_color() == plotting.PALETTE["td_anp"]
    with pytest.raises(ValueError, match="bptt"):
        plotting.plot_similarity(make_run())


def test_a_single_run_takes_its_rules_colour():
    ds = make_run().assign_attrs(rule="td_anp")
    (ax,) = plotting.plot_learning_curves(ds).axes
    assert ax.get_lines()[-1].get_color() == plotting.PALETTE["td_anp"]
    runs = {"file_a": ds, "file_b": make_run().assign_attrs(rule="bptt")}
    ax = data_axes(plotting.plot_spectrum(runs))[0]
    assert [line.get_color() for line in ax.get_lines()[:2]] == [
        plotting.PALETTE["td_anp"],
        plotting.PALETTE["bptt"],
    ]


def test_plot_accuracy_one_line_per_method_over_chance():
    ds = two_methods()
    ds = ds.merge(metrics.accuracy(ds))
    (ax,) = plotting.plot_accuracy(ds).axes
    chance, td_anp, bptt = ax.get_lines()
    assert chance.get_linestyle() == "--"
    np.testing.assert_array_equal(chance.get_ydata(), [0.5, 0.5])  # 1 / 2 outputs
    assert colours(ax)[1:] == [plotting.PALETTE["td_anp"], plotting.PALETTE["bptt"]]
    expected = ds["eval_accuracy"].sel({"method": "bptt"})
    np.testing.assert_array_equal(bptt.get_xdata(), ds["eval_trial"])
    np.testing.assert_array_equal(bptt.get_ydata(), expected)
    assert labelled(ax) and ax.get_ylabel() == "evaluation accuracy [1]"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["chance (1/2)", "td_anp", "bptt"]
    with pytest.raises(ValueError, match="eval_accuracy"):
        plotting.plot_accuracy(make_run())


def test_the_accuracy_figure_is_standard_where_there_is_accuracy():
    ds = make_run()
    assert "accuracy" not in dict(standard_figures(ds))
    assert "accuracy" in dict(standard_figures(ds.merge(metrics.accuracy(ds))))
