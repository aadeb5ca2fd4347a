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
    # compile the BPTT step once outside the timed loop: otherwise JAX's compilation
    # (0.4-1 s) lands in the first trial's wall time
    from bioperturb.reference import BPTTTrainer

    warm = BPTTTrainer(
        trainer.weights0,
        optimizer=optimizer or training.optimizer,
        lr=training.lr if lr is None else lr,
        **kw,
    )
    warm.step(tt.inputs[0], tt.targets[0], tt.mask[0])
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
    if "alignment" in ds:  # BPTT's update is the gradient itself; no rule estimate to score
        ds = ds.drop_vars(["alignment", "align_trial", "matrix"], errors="ignore")
    ds.attrs.update(rule="bptt", engine="jax-reference-float64")
    return ds


def combine_methods(datasets: dict[str, xr.Dataset]) -> xr.Dataset:
    """Concatenate runs along a new ``method`` dimension.

    A variable that only some runs have (e.g. the rule's ``alignment``) is kept and
    filled with NaN for the others.
    """
    names = sorted(set().union(*(ds.data_vars for ds in datasets.values())))
    parts = []
    for ds in datasets.values():
        missing = [n for n in names if n not in ds]
        for name in missing:
            donor = next(d for d in datasets.values() if name in d)[name]
            ds = ds.assign({name: xr.full_like(donor, np.nan, dtype=float)})
        parts.append(ds[names])
    out = xr.concat(
        parts, dim=xr.Variable("method", list(datasets)), combine_attrs="drop", join="outer"
    )
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
    """The rule's gradient estimate g of every training trial, at frozen weights.

    Needs ``training.lr = 0`` (the network stays at its initial weights). The whole tape
    runs in one simulation; a monitor on the trial clock reads each plastic synapse's
    ``acc_last`` (the estimate the optimiser saw) at every trial end. Returns
    ``{matrix: array (n_train_trials, post, pre)}`` (ΔW = −η g for SGD).
    """
    p = trainer.protocol
    if p.training.engine != "runtime":
        raise ValueError("update_samples needs training.engine = 'runtime' (it adds monitors)")
    if p.training.lr != 0:
        raise ValueError("update_samples needs training.lr = 0 (frozen weights)")
    if p.model.decorrelate and p.model.decor_lr != 0:
        raise ValueError("update_samples needs model.decor_lr = 0 (frozen lateral weights)")
    import brian2

    net = trainer.network
    for mon in net.monitors.values():
        mon.active = False
    mons = {
        name: brian2.StateMonitor(
            syn,
            "acc_last",
            record=True,
            clock=net.trial_clock,
            when="end",
            order=2,
            name=f"mon_estimate_{name.lower()}",
        )
        for name, syn in net.synapses.items()
        if "acc_last" in syn.variables
    }
    net.net.add(*mons.values())
    tape = trainer.tape
    duration = (1 + tape.n_steps * tape.n_trials) * trainer.protocol.model.dt
    trainer._run(duration)  # with the trainer's own random state
    # tick 0 is the reset step; tick k + 1 ends tape trial k
    rows = [k + 1 for k, (kind, _, _) in enumerate(tape.kinds) if kind == "train"]
    out = {}
    for name, mon in mons.items():
        syn = net.synapses[name]
        values = np.asarray(mon.acc_last)[:, rows].T  # (trials, synapses)
        mat = np.zeros((len(rows), *net.shape[name]))
        mat[:, syn.j[:], syn.i[:]] = values
        out[name] = mat
    net.net.remove(*mons.values())
    return out
