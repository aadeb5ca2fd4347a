"""Feed-forward stacks (``model.kind = "mlp"``, issue 19): the rate network with τ = dt,
a layered W_rec and one held perturbation per trial is an MLP; NP's mean update is the
backpropagation gradient, and iterative NP's; ANP and INP learn a shipped data set."""

from __future__ import annotations

import numpy as np
import pytest

from bioperturb.cli import main
from bioperturb.networks.mlp import init_mlp_weights, layer_masks, layer_slices
from bioperturb.training import Trainer
from tests.conftest import make_protocol, tiny_toml

pytest.importorskip("sklearn")

MLP = {"kind": "mlp", "layers": [6, 5], "dt": "1 ms", "sigma": 0.05}
IRIS = {
    "name": "classify",
    "dataset": "iris",
    "stimulus_duration": "2 ms",
    "response_duration": "1 ms",
}


def stack(**overrides):
    base = dict(
        task=IRIS,
        training__n_trials=4,
        training__eval_every=4,
        output__record_dt="1 ms",
        output__alignment=False,
    )
    return make_protocol(model=MLP, **{**base, **overrides})


def forward(weights, u, bias=0.0):
    """The MLP by hand: layer 1 from the input, each next layer from the one before."""
    sl = layer_slices((6, 5))
    r = np.tanh(weights["W_in"][sl[0]] @ u + bias)
    r = np.tanh(weights["W_rec"][sl[1], sl[0]] @ r + bias)
    return weights["W_out"][:, sl[1]] @ r


def test_masks_and_initial_weights_are_layered():
    masks = layer_masks((3, 2), n_in=4, n_out=2)
    assert masks["W_in"][:3].all() and not masks["W_in"][3:].any()
    assert masks["W_rec"][3:, :3].all() and masks["W_rec"].sum() == 6
    assert masks["W_out"][:, 3:].all() and masks["W_out"].sum() == 4
    assert masks["D_rec"].sum() == 9 + 4  # block-diagonal, within each layer
    protocol = stack()
    w = init_mlp_weights(np.random.default_rng(0), 4, 11, 3, protocol.model)
    full = layer_masks((6, 5), 4, 3)
    for name in ("W_in", "W_rec", "W_out"):
        assert np.all(w[name][~full[name]] == 0) and np.all(w[name][full[name]] != 0)
    # fan-in scaling: W_1 ~ N(0, g²/n_1)
    wide = stack(model__layers=[400, 400]).model
    big = init_mlp_weights(np.random.default_rng(1), 4, 800, 3, wide)
    assert np.std(big["W_rec"][400:, :400]) == pytest.approx(1 / np.sqrt(400), rel=0.02)


def test_the_settled_readout_is_the_mlp_forward_pass():
    """σ = 0, no plasticity: at the answer step y = V tanh(W_1 tanh(U u + b) + b) exactly."""
    protocol = stack(rule__name="none", model__bias=0.1, model__sigma=0.0)
    trainer = Trainer(protocol)
    ds = trainer.run(progress=False)
    weights = {name: ds[name].isel(eval_trial=0).values for name in ("W_in", "W_rec", "W_out")}
    y = ds["output_y"].isel(eval_trial=0)  # (condition, time, output)
    inputs = trainer.experiment.eval_set.inputs
    answer = int(np.nonzero(trainer.experiment.eval_set.mask[0])[0][0])
    for c in range(0, inputs.shape[0], 7):
        expect = forward(weights, inputs[c, 0], bias=0.1)
        np.testing.assert_allclose(y.values[c, answer], expect, rtol=1e-12, atol=1e-12)
    # W_in reaches layer 1 only, V reads the last layer only: the Brian2 synapses agree
    assert np.all(weights["W_in"][6:] == 0) and np.all(weights["W_out"][:, :6] == 0)


@pytest.mark.cython
def test_np_and_inp_mean_updates_are_the_backpropagation_gradient():
    """One held perturbation ξ per trial: E[(L̃ − L) ξ xᵀ / σ_ξ²] → ∇L (small σ), for
    every matrix of the stack; the absent synapses get no update. Iterative NP (one layer
    perturbed per trial) has the same mean, and its single-trial estimate of a layer is
    closer to the gradient: the loss difference carries no other layer's noise."""
    from bioperturb.credit import credit_diagnostics

    cosines, single = {}, {}
    for rule in ("np", "inp"):
        protocol = stack(
            rule__name=rule, model__sigma=0.005, engine__codegen="cython", task__input_scale=0.5
        )
        ds = credit_diagnostics(protocol, n_draws=1500, horizons=(1,))
        cosines[rule] = full = ds["credit_cosine"].isel(horizon=-1)
        single[rule] = ds["credit_cosine_single"].isel(horizon=-1)
        assert float(full.sel(matrix="all")) > 0.9, (rule, full.values)
        for m in ("W_in", "W_rec"):  # the perturbed layers: the score-function estimate
            assert float(full.sel(matrix=m)) > 0.95, (rule, m, full.values)
        # the readout's δy δyᵀ/‖δy‖² (3 outputs) preconditions its gradient (0.85 at 3,000 draws)
        assert float(full.sel(matrix="W_out")) > 0.7, (rule, full.values)
    for m in ("W_in", "W_rec"):  # measured 0.35 / 0.38 against NP's 0.20 / 0.27
        assert float(single["inp"].sel(matrix=m)) > float(single["np"].sel(matrix=m)) + 0.05, m


def test_inp_perturbs_one_layer_per_trial_and_is_np_on_one_layer():
    """Trial k perturbs layer k mod L only (its estimate × L); with one layer, INP is NP."""
    from bioperturb.engines.runtime import RuntimeEngine
    from bioperturb.experiment import Experiment

    def samples(rule, **model):
        p = stack(rule__name=rule, training__lr=0.0, training__n_trials=6, **model)
        return RuntimeEngine(Experiment(p)).update_samples()

    inp = samples("inp")
    assert not inp["W_in"][1::2].any() and not inp["W_rec"][0::2].any()
    assert np.abs(inp["W_in"][0::2]).min(axis=(1, 2)).max() == 0  # the absent synapses
    assert np.all(np.abs(inp["W_in"][0::2]).max(axis=(1, 2)) > 0)
    assert np.all(np.abs(inp["W_rec"][1::2]).max(axis=(1, 2)) > 0)
    one = {"model__layers": [6], "task__stimulus_duration": "1 ms"}
    a, b = samples("inp", **one), samples("np", **one)
    for m in ("W_in", "W_out"):
        assert np.abs(a[m]).max() > 0
        np.testing.assert_array_equal(a[m], b[m], err_msg=m)
    # a one-layer stack (no layer-to-layer synapse at all) trains and is recorded
    ds = Trainer(stack(rule__name="inp", training__n_trials=2, **one)).run(progress=False)
    assert ds.attrs["status"] == "completed" and not ds["W_rec"].values.any()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rule", "training"),
    [
        ("td_anp", {"n_trials": 1500}),
        # the paper's INP: each sample twice (batch = L = 2), one layer per run
        ("inp", {"n_trials": 2000, "batch": 2, "repeat": True}),
    ],
)
def test_anp_and_inp_learn_the_digits_well_above_chance(rule, training):
    """Activity-based NP and iterative NP on two hidden layers of 32: chance is 10 %."""
    protocol = make_protocol(
        model={**MLP, "layers": [32, 32]},
        task={**IRIS, "dataset": "digits"},
        rule__name=rule,
        training__eval_every=training["n_trials"],
        training__lr=0.001,
        training__optimizer="adam",
        output__record_dt="1 ms",
        output__alignment=False,
        engine__codegen="cython",
        **{f"training__{k}": v for k, v in training.items()},
    )
    ds = Trainer(protocol).run(progress=False)
    acc = ds["eval_accuracy"].values
    assert acc[0] < 0.2 and acc[-1] > 0.5, acc
    assert ds["eval_loss"].values[-1] < 0.5 * ds["eval_loss"].values[0]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"task.stimulus_duration": "1 ms"}, "model.layers"),  # 2 layers, loss at step 2
        (
            {"training.antithetic": "true", "training.repeat": "true", "training.batch": "2"},
            "training.antithetic",
        ),
        ({"rule.name": "miconi"}, "rule.name"),
        ({"model.layers": "[]"}, "model.layers"),
    ],
)
def test_impossible_stacks_are_one_line_errors(tmp_path, capsys, overrides, key):
    path = tmp_path / "p.toml"
    path.write_text(
        tiny_toml(
            model={"preset": "mlp", "layers": [4, 3]},
            task=IRIS,
            training={"n_trials": 2, "eval_every": 2},
            output={"record_dt": "1 ms"},
        )
    )
    args = ["run", str(path), "--out", str(tmp_path / "out")]
    for k, v in overrides.items():
        args += ["--set", f"{k}={v}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert key in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_inp_needs_a_feed_forward_stack():
    from bioperturb.schema import ConfigError

    with pytest.raises(ConfigError, match=r"rule\.name: 'inp' runs on model\.kind = 'mlp'"):
        make_protocol(rule__name="inp")


def test_classify_splits_stratified_and_standardises_on_the_training_part():
    from bioperturb.tasks import get_task

    task_cls = get_task("classify")
    params = task_cls.Params(dataset="wine", eval_fraction=0.25)
    task = task_cls(params, 0.001)
    assert task.n_inputs == 13 and task.n_outputs == 3 and task.n_steps == 3
    ev = task.eval_trials()
    labels = ev.targets[:, -1].argmax(axis=1)
    assert np.bincount(labels).tolist() == [15, 18, 12]  # 25 % of 59, 71, 48
    assert not set(task.eval_index) & set(task.train_index)
    train = task.trials(np.random.default_rng(0), 4000).inputs[:, 0]
    assert np.abs(train.mean(axis=0)).max() < 0.1 and np.abs(train.std(axis=0) - 1).max() < 0.1
    assert np.all(ev.inputs == ev.inputs[:, :1])  # held for the whole trial
    assert ev.mask[:, :2].sum() == 0 and np.all(ev.mask[:, 2] == 1)
    with pytest.raises(ValueError, match="eval_fraction"):
        task_cls.Params(eval_fraction=1.0).check()


def test_short_trials_run_hundreds_per_runtime_block():
    """Every net.run re-creates Brian2's code objects: a stack's 3-step trials run
    ⌊2000 / 3⌋ per block, a 100-step trial keeps the 20 of MAX_BLOCK."""
    from bioperturb.engines.runtime import RuntimeEngine
    from bioperturb.engines.standalone import StandaloneEngine

    runtime = RuntimeEngine.__new__(RuntimeEngine)
    assert runtime.block_trials(3) == 666 and runtime.block_trials(100) == 20
    standalone = StandaloneEngine.__new__(StandaloneEngine)
    assert standalone.block_trials(3) == StandaloneEngine.MAX_BLOCK
