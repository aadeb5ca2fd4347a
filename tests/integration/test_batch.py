"""Batches of training trials per weight update (``training.batch``, ``training.repeat``).

The optimiser steps on the mean of a batch's estimates; with ``repeat`` a batch is one trial
run ``batch`` times with fresh noise (noisy twins of one trial, in sequence). The estimates
are taken at the same weights (no step inside a batch), so the batched step equals the mean
of the per-trial estimates of a frozen network on the same noise.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xarray as xr

from bioperturb.config import ConfigError
from bioperturb.experiment import Experiment
from bioperturb.training import Trainer
from tests.conftest import make_protocol
from tests.integration.test_checkpoint import comparable

LR = 0.05


def batched(**overrides):
    base = dict(
        training__n_trials=4,
        training__eval_every=4,
        training__lr=LR,
        training__batch=2,
        output__alignment=False,
    )
    return make_protocol(**{**base, **overrides})


def frozen_estimates(protocol) -> dict[str, np.ndarray]:
    """Each training trial's estimate at the initial weights (the same trials and noise)."""
    frozen = protocol.replace(training=dataclasses.replace(protocol.training, lr=0.0))
    return Trainer(frozen).engine.update_samples()


@pytest.mark.parametrize("repeat", [False, True], ids=["trials", "repeat"])
def test_a_batch_steps_on_the_mean_of_its_estimates(repeat):
    """SGD, 2 trials per update: after the first batch, W = W0 − η (g1 + g2) / 2, where g_k
    are the estimates of a frozen network on the same trials and the same noise."""
    protocol = batched(training__n_trials=2, training__eval_every=2, training__repeat=repeat)
    trainer = Trainer(protocol)
    w0 = {m: w.copy() for m, w in trainer.weights0.items()}
    ds = trainer.run(progress=False)
    assert ds.attrs["status"] == "completed" and ds.attrs["trials_per_update"] == 2
    w1 = trainer.network.get_weights()
    samples = frozen_estimates(protocol)
    for m, g in samples.items():
        assert g.shape[0] == 2
        assert not np.allclose(g[0], g[1])  # two noise draws, two estimates
        np.testing.assert_allclose(w1[m], w0[m] - LR * g.mean(axis=0), rtol=1e-9, atol=1e-13)


def test_repeat_runs_one_trial_per_batch_and_steps_once_per_batch():
    exp = Experiment(batched(training__repeat=True, training__optimizer="adam"))
    tape, n = exp.tape, exp.tape.n_steps
    train = [k for k, (kind, _, _) in enumerate(tape.kinds) if kind == "train"]

    def rows(k):
        return slice(1 + k * n, 1 + (k + 1) * n)

    assert len(train) == 4
    for a, b in ((0, 1), (2, 3)):  # a batch: the same trial twice
        np.testing.assert_array_equal(tape.inputs[rows(train[a])], tape.inputs[rows(train[b])])
        np.testing.assert_array_equal(tape.targets[rows(train[a])], tape.targets[rows(train[b])])
    ends = [rows(k).stop - 1 for k in train]
    np.testing.assert_array_equal(tape.learn[ends], [1, 1, 1, 1])
    np.testing.assert_array_equal(tape.step[ends], [0, 1, 0, 1])
    assert tape.step.sum() == 2 and tape.learn.sum() == 4
    # Adam's step count k at each trial end: the coming step's inside a batch
    np.testing.assert_array_equal(tape.n_updates[ends], [1, 1, 2, 2])
    # the rows of the task's training trials: each batch's first (without repeat: all)
    assert [seg[4] for seg in exp.segments() if seg[0] == "train"] == [0, 0, 2, 2]
    plain = Experiment(batched())
    assert [seg[4] for seg in plain.segments() if seg[0] == "train"] == [0, 1, 2, 3]


def test_batch_one_is_the_per_trial_run():
    """batch = 1 is what every run did before batches existed: the same Dataset."""
    a = Trainer(make_protocol(training__n_trials=4, training__eval_every=2)).run(progress=False)
    b = Trainer(make_protocol(training__n_trials=4, training__eval_every=2, training__batch=1))
    b = b.run(progress=False)
    np.testing.assert_array_equal(a["W_rec"].values, b["W_rec"].values)
    np.testing.assert_array_equal(a["eval_loss"].values, b["eval_loss"].values)


def test_zero_noise_batch_gives_no_update():
    ds = Trainer(batched(model__sigma=0.0, training__optimizer="adam")).run(progress=False)
    for m in ("W_in", "W_rec", "W_out"):
        values = ds[m].values
        np.testing.assert_array_equal(values[-1], values[0])


@pytest.mark.parametrize(
    ("overrides", "key", "reason"),
    [
        ({"training__eval_every": 3, "training__n_trials": 6}, "training.batch", "eval_every"),
        ({"training__n_trials": 5, "training__eval_every": 5}, "training.batch", "n_trials"),
        ({"training__checkpoint_every": 3}, "training.batch", "checkpoint_every"),
        ({"training__batch": 1, "training__repeat": True}, "training.repeat", "batch > 1"),
        ({"rule__apply": "online"}, "training.batch", "apply = 'trial_end'"),
        ({"training__antithetic": True}, "training.antithetic", "repeat = true"),
        (
            {"training__antithetic": True, "training__repeat": True, "training__batch": 3},
            "training.antithetic",
            "even batch",
        ),
        (
            {"training__antithetic": True, "training__repeat": True, "rule__name": "wp"},
            "training.antithetic",
            "no node noise",
        ),
        (
            {"training__antithetic": True, "training__repeat": True, "engine__name": "standalone"},
            "engine.name",
            "runtime engine",
        ),
    ],
    ids=[
        "eval_every",
        "n_trials",
        "checkpoint_every",
        "repeat-alone",
        "online",
        "antithetic-alone",
        "antithetic-odd",
        "antithetic-wp",
        "antithetic-standalone",
    ],
)
def test_impossible_batches_are_refused_by_key(overrides, key, reason):
    with pytest.raises(ConfigError) as err:
        batched(**overrides)
    assert err.value.key == key and reason in err.value.reason


# ---------------------------------------------------------------- antithetic pairs


def antithetic_np(antithetic: bool = True, **overrides):
    """NP with a whole-trial trace and a trial-end signal: the estimate of W_in and W_rec
    is (L̃ − L)·e with an eligibility e linear in the injected noise."""
    rule = {"name": "np", "signal": "trial_end", "tau_e": "10 s", "train": ["W_in", "W_rec"]}
    base = dict(
        rule=rule,
        model__sigma=0.1,
        training__n_trials=4,
        training__eval_every=4,
        training__repeat=True,
        training__antithetic=antithetic,
        output__alignment=False,
    )
    return batched(**{**base, **overrides})


def trial_losses(trainer) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) loss of every training trial the engine ran."""
    mon, kinds = trainer.engine._trial_mon, trainer.experiment.tape.kinds
    train = [k for k, (kind, _, _) in enumerate(kinds) if kind == "train"]
    clean, noisy = (np.diff(np.asarray(v[0]))[train] for v in (mon.L_cum, mon.L_n_cum))
    return clean, noisy


CYTHON = dict(
    engine__codegen="cython",
    model__n_hidden=50,
    task__duration="40 ms",
    training__n_trials=12,
    training__eval_every=12,
)


@pytest.mark.parametrize(
    ("antithetic", "extra"),
    [
        (True, {}),
        (False, {}),
        pytest.param(True, CYTHON, marks=pytest.mark.cython),
    ],
    ids=["antithetic", "independent", "antithetic-cython"],
)
def test_an_antithetic_pair_is_the_two_sided_estimate(antithetic, extra):
    """The mirror twin replays the first twin's draws negated: its eligibility is exactly
    −e, so its estimate is −(L̃⁻ − L)·e and the pair's mean ½(L̃⁺ − L̃⁻)·e, the two-sided
    (central-difference) estimate in which the baseline L cancels. Independent twins (the
    control) share no draws: their estimates are not proportional. The cython target
    draws from 20000-number buffers that it frees and refills (here 50 units × 40 steps
    a trial: a refill falls inside the pair of training trials 8 and 9): the saved
    contents go back into whichever buffer it holds."""
    trainer = Trainer(antithetic_np(antithetic, training__lr=0.0, **extra))
    est = trainer.engine.update_samples()
    clean, noisy = trial_losses(trainer)
    np.testing.assert_allclose(clean[0::2], clean[1::2], rtol=1e-12)  # twins of one trial
    for first in range(0, len(clean), 2):
        plus, minus = noisy[first] - clean[first], noisy[first + 1] - clean[first]
        assert abs(plus) > 1e-6 and abs(minus) > 1e-6
        for name in ("W_in", "W_rec"):
            e = est[name][first] / plus  # the first twin's eligibility
            pair = 0.5 * (est[name][first] + est[name][first + 1])
            two_sided = 0.5 * (noisy[first] - noisy[first + 1]) * e
            assert np.abs(e).max() > 1e-3
            if antithetic:
                np.testing.assert_allclose(pair, two_sided, rtol=1e-9, atol=1e-12)
            else:
                assert np.abs(pair - two_sided).max() > 0.1 * np.abs(two_sided).max()


def test_antithetic_pairs_without_noise_change_nothing():
    trainer = Trainer(antithetic_np(model__sigma=0.0, training__lr=0.0))
    est = trainer.engine.update_samples()
    for name in ("W_in", "W_rec"):
        assert not est[name].any()


def test_a_run_stopped_between_or_inside_pairs_resumes_identically(tmp_path):
    """A checkpoint between two pairs holds the random state saved for the coming first
    twin (it is saved at the end of the trial before it); one inside a pair holds the
    state already put back for the mirror twin."""

    class EveryTrial(Trainer):
        max_block = 1

        def _maybe_checkpoint(self, trial):
            self.save_checkpoint(tmp_path / f"after{trial + 1}.npz")

    protocol = antithetic_np()
    reference = comparable(EveryTrial(protocol).run())
    for k in (1, 2, 3):  # inside the first pair, between the pairs, inside the second
        again = Trainer(protocol)
        again.restore(tmp_path / f"after{k}.npz")
        assert (again.engine._pair_rng is not None) == (k == 2)
        xr.testing.assert_identical(comparable(again.run()), reference)
