"""TD-ANP learns: the noise-free evaluation loss falls well below its initial value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bioperturb.training import Trainer
from tests.conftest import make_protocol

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.cython
def test_td_anp_learns_pattern_task():
    # N = 50, 500 ms trials driven by a frozen random input. Calibrated here: with Adam
    # (lr 3e-3) the evaluation loss fell to 33%, 15%, 9.5%, 8.6% of its start after 10, 20,
    # 30, 40 trials (seed 3; 5% after 50). The readout alone (a linear regression on the
    # initial dynamics) is not the whole story: the test also requires W_rec and W_in to move.
    protocol = make_protocol(
        seed=3,
        model__n_hidden=50,
        model__sigma=0.05,
        task__duration="500 ms",
        task__input="random",
        task__n_inputs=5,
        training__n_trials=40,
        training__eval_every=20,
        training__optimizer="adam",
        training__lr=3e-3,
        engine__codegen="cython",
    )
    ds = Trainer(protocol).run()
    ev = ds["eval_loss"].values
    assert ds.attrs["status"] == "completed"
    assert ev[-1] < 0.3 * ev[0], ev
    assert np.all(np.isfinite(ds["loss"]))
    for name in ("W_in", "W_rec"):
        change = ds[name].isel(eval_trial=-1) - ds[name].isel(eval_trial=0)
        assert float(np.abs(change).max()) > 1e-3, name


#: (rule table, trials, required final/initial eval loss). Calibrated here with the same
#: protocol (N = 50, 500 ms, Adam 3e-3, seed 3, 100 trials; eval loss relative to its start
#: after 10, 20, …, 100 trials):
#:   np:         .37 .24 .16 .12 .11 .087 .070 .059 .047 .042
#:   wp:         .79 .66 .59 .52 .46 .40 .37 .33 .31 .29   (variance grows with #weights)
#:   online_anp: .44 .29 .28 .37 .28 .24 .21 .19 .17 .17   (τ_avg = 5 ms; biased, noisy)
#:   rflo:       .41 .28 .22 .19 (40 trials)                (random feedback B)
#:   rflo, B = W_outᵀ: .21 .10 .053 .034 (40 trials)
#: Thresholds leave a margin of about 1.5–2× over the calibrated values.
RULES = [
    ({"name": "np"}, 40, 0.3),
    ({"name": "wp", "sigma_w": 1e-3}, 60, 0.65),
    ({"name": "online_anp", "tau_avg": "5 ms"}, 60, 0.5),
    ({"name": "rflo"}, 40, 0.3),
    ({"name": "rflo", "feedback": "symmetric"}, 40, 0.1),
]


@pytest.mark.slow
@pytest.mark.cython
@pytest.mark.parametrize(
    ("rule", "n_trials", "bound"),
    RULES,
    ids=["np", "wp", "online_anp", "rflo", "rflo-symmetric"],
)
def test_rule_learns_pattern_task(rule, n_trials, bound):
    protocol = make_protocol(
        seed=3,
        rule=rule,
        model__n_hidden=50,
        model__sigma=0.0 if rule["name"] == "wp" else 0.05,
        task__duration="500 ms",
        task__input="random",
        task__n_inputs=5,
        training__n_trials=n_trials,
        training__eval_every=n_trials // 2,
        training__optimizer="adam",
        training__lr=3e-3,
        engine__codegen="cython",
        output__alignment=False,
    )
    ds = Trainer(protocol).run()
    ev = ds["eval_loss"].values
    assert ds.attrs["status"] == "completed"
    assert ev[-1] < bound * ev[0], ev


#: LIF pattern task: N = 100 LIF neurons, 100 frozen 10 Hz Poisson inputs, 500 ms trials,
#: Adam 3e-3, seed 3. Calibrated here (eval loss relative to its start after 10 … 60 trials):
#:   all matrices, τ_e = 30 ms on W_in/W_rec, readout per step:  .62 .45 .29 .19 .15 .14
#:   readout W_out alone (a reservoir of spike traces):           .64 .44 .30 .23 .18 .17
#:   W_in + W_rec alone, τ_e = 30 ms, σ = 0.2:                     .82 .66 .59 .56 .52 .45
#:   W_in + W_rec alone, τ_e = 0 (TD-ANP's same-step pairing):     1.2 1.06 1.18 1.14 1.13 1.17
#: On spikes the loss responds to a current perturbation only after the membrane has
#: integrated it and a spike has moved (~τ_m + τ_s later), so the same-step product has no
#: signal for the hidden weights; a trace of about τ_m bridges the delay
#: (docs/network-spiking.md). Thresholds leave a margin of about 1.5-2x.
LIF_LEARN = dict(
    model={"preset": "lif_rnn", "n_hidden": 100},
    seed=3,
    task__duration="500 ms",
    task__input="poisson",
    task__n_inputs=100,
    task__input_rate="10 Hz",
    training__n_trials=60,
    training__eval_every=30,
    training__optimizer="adam",
    training__lr=3e-3,
    engine__codegen="cython",
)


@pytest.mark.slow
@pytest.mark.cython
@pytest.mark.parametrize(
    "rule",
    # e-prop (random B) calibrated here: .80 .52 .34 .23 .17 .125 of the start after
    # 10, 20, …, 60 trials (seed 3), 19 Hz at the end
    [{"name": "td_anp", "tau_e": "30 ms", "tau_e_out": "0 ms"}, {"name": "eprop"}],
    ids=["td_anp-trace", "eprop"],
)
def test_lif_network_learns_pattern_task(rule):
    ds = Trainer(make_protocol(rule=rule, **LIF_LEARN)).run()
    ev = ds["eval_loss"].values
    assert ds.attrs["status"] == "completed"
    assert ev[-1] < 0.3 * ev[0], ev
    assert 1 < float(ds["rate"].isel(eval_trial=-1).mean()) < 50  # stays in a sane regime


@pytest.mark.slow
@pytest.mark.cython
def test_eprop_learns_the_shipped_lif_memory_task():
    """protocols/recall_eprop_lif.toml: recall of 1 of 2 items across 250 ms on spikes.
    Measured (seeds 1–3, 600 trials): 100 % on the 4 evaluation conditions from trial 50–100
    on, to the end; chance is 50 % (random-feedback e-prop and NP with a trace stay there,
    docs/network-spiking.md). 150 trials leave a margin of 1.5× over the slowest seed."""
    from bioperturb.config import load_protocol

    overrides = {"training.n_trials": 150, "output.figures": False, "output.progress": False}
    protocol = load_protocol(REPO / "protocols" / "recall_eprop_lif.toml", overrides)
    ds = Trainer(protocol).run()
    assert ds.attrs["status"] == "completed"
    assert float(ds["eval_accuracy"].values[-1]) == 1.0, ds["eval_accuracy"].values
    ev = ds["eval_loss"].values
    assert ev[-1] < 0.2 * ev[0], ev


@pytest.mark.slow
@pytest.mark.cython
def test_lif_hidden_weights_learn_with_a_trace():
    """Not only the readout: W_in and W_rec alone lower the loss when a trace credits them."""
    rule = {"name": "td_anp", "tau_e": "30 ms", "train": ["W_in", "W_rec"]}
    protocol = make_protocol(
        rule=rule, **{**LIF_LEARN, "model": {**LIF_LEARN["model"], "sigma": 0.2}}
    )
    ev = Trainer(protocol).run()["eval_loss"].values
    assert ev[-1] < 0.75 * ev[0], ev


@pytest.mark.slow
@pytest.mark.cython
def test_online_anp_trial_baseline_learns_pattern_task():
    # Online ANP with per-time-point baselines across trials (baseline = "trial", α = 0.8),
    # same protocol as above. Calibrated here (seed 3; eval loss relative to its start
    # after 10, 20, …, 100 trials): .49 .44 .24 .17 .12 .098 .085 .081 .074 .094; seeds 1
    # and 2 reached 10% after 15 and 45 trials. The temporal baseline (τ_avg = 5 ms) on
    # the same seed: .44 .29 .28 .37 .28 .24 (see RULES). Bound 0.25 after 60 trials: about
    # 2.5× the calibrated 0.098, and below the temporal baseline's 0.24.
    protocol = make_protocol(
        seed=3,
        rule={"name": "online_anp", "baseline": "trial", "baseline_rate": 0.8},
        model__n_hidden=50,
        model__sigma=0.05,
        task__duration="500 ms",
        task__input="random",
        task__n_inputs=5,
        training__n_trials=60,
        training__eval_every=30,
        training__optimizer="adam",
        training__lr=3e-3,
        engine__codegen="cython",
        output__alignment=False,
    )
    ds = Trainer(protocol).run()
    ev = ds["eval_loss"].values
    assert ds.attrs["status"] == "completed"
    assert ev[-1] < 0.25 * ev[0], ev
    for name in ("W_in", "W_rec"):
        change = ds[name].isel(eval_trial=-1) - ds[name].isel(eval_trial=0)
        assert float(np.abs(change).max()) > 1e-3, name


@pytest.mark.slow
@pytest.mark.cython
def test_miconi_learns_pattern_task():
    # Miconi (2017) as published (W_rec only, fixed readout, x³ trace, τ_avg = 0.33 ms,
    # per-condition baseline α_R = 0.25), kicks at 30 Hz instead of 3 Hz (faster on this
    # small network), N = 30, 300 ms trials, Adam 5e-3. Chance = the loss of a zero output
    # (0.105). Calibrated here (eval loss relative to its start after 50, 100, …, 500
    # trials; start 0.274 / 0.198 / 0.101 for seeds 1 / 2 / 3):
    #   seed 1: .29 .24 .17 .10 .089 .075 .055 .055 .044 .034
    #   seed 2: .67 .59 .54 .44 .37 .30 .29 .29 .24 .25
    #   seed 3: .69 .50 .49 .50 .44 .39 (to 300 trials)
    #   seed 3, 3 Hz kicks: .83 .76 .70 .70 .65 .63 .61 .60 .56 .55
    #   seed 3, all three matrices: .78 .60 .61 .61 .46 .46 .43 .66 5.6 4.5 (the readout's
    #   factor, y's own fluctuation, is mostly task-driven: training W_out destabilises)
    # Here, evaluating every 100 trials (evaluation trials draw from the same random
    # stream), seed 1 gave .225 and .101 of its start (0.26 of chance) after 100 and 200
    # trials. Bounds after 200 trials: 0.3 of the start and half of chance.
    protocol = make_protocol(
        seed=1,
        rule={"name": "miconi", "kick_rate": "30 Hz"},
        model__n_hidden=30,
        task__duration="300 ms",
        task__input="random",
        task__n_inputs=5,
        training__n_trials=200,
        training__eval_every=100,
        training__optimizer="adam",
        training__lr=5e-3,
        engine__codegen="cython",
        output__alignment=False,
    )
    trainer = Trainer(protocol)
    ds = trainer.run()
    ev = ds["eval_loss"].values
    tt = trainer.eval_set
    chance = float(0.5 * (tt.mask[0] @ (tt.targets[0] ** 2).sum(axis=1)) / tt.mask[0].sum())
    assert ds.attrs["status"] == "completed"
    assert ev[-1] < 0.3 * ev[0], ev
    assert ev[-1] < 0.5 * chance, (ev, chance)
    change = ds["W_rec"].isel(eval_trial=-1) - ds["W_rec"].isel(eval_trial=0)
    assert float(np.abs(change).max()) > 1e-3
    for name in ("W_in", "W_out"):  # not plastic by default
        assert float(np.abs(ds[name].isel(eval_trial=-1) - ds[name].isel(eval_trial=0)).max()) == 0
