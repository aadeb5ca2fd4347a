"""A rule-trained Brian2 network and its BPTT reference on the same protocol.

The reference starts from the same initial weights, sees the same training trials in the
same order, is evaluated at the same points on the same evaluation set, and records the
same variables (docs/data-model.md), so the two Datasets concatenate along a ``method``
dimension.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from bioperturb.training import Trainer

__all__ = ["reference_dataset", "combine_methods", "update_samples", "compare_protocol"]


def reference_dataset(trainer: Trainer, optimizer: str | None = None, lr: float | None = None):
    """Train the BPTT reference on ``trainer``'s trials; return a Dataset like the rule's.

    ``optimizer`` and ``lr`` default to the protocol's training settings.
    """
    from bioperturb.reference import forward, train_bptt

    p = trainer.protocol
    model, training = p.model, p.training
    tt, ev = trainer.train_trials, trainer.eval_set
    kw = dict(dt=model.dt, tau=model.tau, b=np.full(model.n_hidden, model.bias))
    res = train_bptt(
        trainer.weights0,
        lambda i: (tt.inputs[i], tt.targets[i], tt.mask[i]),
        (ev.inputs, ev.targets, ev.mask),
        training.n_trials,
        training.eval_every,
        optimizer=optimizer or training.optimizer,
        lr=training.lr if lr is None else lr,
        **kw,
    )
    if not trainer.records.loss:
        raise ValueError("run the rule's trainer first: its Dataset is the template")
    ds = trainer.to_dataset().copy(deep=True)
    steps = np.rint(ds["time"].values / model.dt).astype(int)
    acts, outs = [], []
    for w in res["weights_eval"]:
        _, r, y = forward(w, ev.inputs, **kw)
        acts.append(r[:, steps][..., trainer.record_units])
        outs.append(y[:, steps])
    n = len(res["loss"])
    ds = ds.isel(trial=slice(0, n))
    ds["loss"].values = res["loss"]
    ds["loss_noisy"].values = np.full(n, np.nan)  # no noisy twin in BPTT
    ds["loss_t"].values = np.full((n, ds.sizes["time"]), np.nan)
    ds["wall_time"].values = res["wall_time"]
    ds["eval_loss"].values = res["eval_loss"]
    ds["activity"].values = np.array(acts)
    ds["output_y"].values = np.array(outs)
    for name in ("W_in", "W_rec", "W_out"):
        ds[name].values = np.array([w[name] for w in res["weights_eval"]])
    ds.attrs.update(rule="bptt", engine="jax-reference-float64")
    return ds


def combine_methods(datasets: dict[str, xr.Dataset]) -> xr.Dataset:
    """Concatenate runs along a new ``method`` dimension (variables they share)."""
    common = set.intersection(*(set(ds.data_vars) for ds in datasets.values()))
    parts = [ds[sorted(common)] for ds in datasets.values()]
    out = xr.concat(parts, dim=xr.Variable("method", list(datasets)), combine_attrs="drop")
    first = next(iter(datasets.values()))
    out.attrs = {k: v for k, v in first.attrs.items() if k not in ("rule", "engine")}
    out.attrs["methods"] = ", ".join(datasets)
    out.attrs["engines"] = "; ".join(f"{m}: {d.attrs['engine']}" for m, d in datasets.items())
    return out


def compare_protocol(
    protocol,
    out_dir=None,
    progress: bool | None = None,
    bptt_optimizer: str | None = None,
    bptt_lr: float | None = None,
):
    """Train the protocol's rule and the BPTT reference; write ``<name>_compare.nc``.

    Returns the combined Dataset (``method`` = [rule name, "bptt"]) and its path.
    """
    from pathlib import Path

    from bioperturb.dataset import write_dataset

    out = Path(out_dir if out_dir is not None else protocol.output.dir)
    trainer = Trainer(protocol)
    rule_ds = trainer.run(progress=progress)
    bptt_ds = reference_dataset(trainer, optimizer=bptt_optimizer, lr=bptt_lr)
    bptt_ds.attrs["bptt_optimizer"] = bptt_optimizer or protocol.training.optimizer
    bptt_ds.attrs["bptt_lr"] = protocol.training.lr if bptt_lr is None else bptt_lr
    ds = combine_methods({protocol.rule_name: rule_ds, "bptt": bptt_ds})
    path = write_dataset(ds, out / f"{protocol.name}_compare.nc")
    if protocol.output.figures:
        from bioperturb.plotting import plot_learning_curves, save_figure

        runs = {protocol.rule_name: rule_ds, "bptt": bptt_ds}
        save_figure(plot_learning_curves(runs), out / f"{protocol.name}_compare_trials.png")
        save_figure(
            plot_learning_curves(runs, x="wall_time"), out / f"{protocol.name}_compare_time.png"
        )
    return ds, path


def update_samples(trainer: Trainer) -> dict[str, np.ndarray]:
    """The rule's gradient estimate on each training trial, all at the initial weights.

    Runs the trainer's tape, but after every training trial reads the weight change and
    puts the initial weights back, so every estimate is taken at the same point. Needs
    ``optimizer = "sgd"``, ``lr = 1`` and no clipping, so that the change is −acc.
    Returns ``{matrix: array (n_train_trials, post, pre)}`` of estimates g (ΔW = −η g).
    """
    training = trainer.protocol.training
    if training.optimizer != "sgd" or training.lr != 1.0 or training.max_step > 0:
        raise ValueError("update_samples needs training.optimizer = 'sgd', lr = 1, max_step = 0")
    import brian2

    net = trainer.network
    brian2.seed(trainer.brian_seed)
    for mon in net.monitors.values():
        mon.active = False
    dt = trainer.protocol.model.dt
    net.net.run(dt * brian2.second, namespace=net.namespace)
    w0 = net.get_weights()
    samples: dict[str, list[np.ndarray]] = {name: [] for name in w0}
    for kind, _, _ in trainer.tape.kinds:
        net.net.run(trainer.tape.n_steps * dt * brian2.second, namespace=net.namespace)
        if kind != "train":
            continue
        w = net.get_weights()
        for name in w0:
            samples[name].append(w0[name] - w[name])
        net.set_weights(w0)
    return {name: np.array(v) for name, v in samples.items()}
