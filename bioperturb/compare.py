"""A rule-trained Brian2 network and its BPTT reference on the same protocol.

The reference starts from the same initial weights, sees the same training trials in the
same order, is evaluated at the same points on the same evaluation set, and records the
same variables (docs/data-model.md), so the two Datasets concatenate along a ``method``
dimension.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from bioperturb.dataset import Records, run_dataset
from bioperturb.modelspec import model_family
from bioperturb.networks.rate import LATERAL, connectivity
from bioperturb.training import Trainer

__all__ = ["reference_dataset", "combine_methods", "compare_protocol", "comparator_protocol"]


def _train_reference(trainer, weights0, make_trial, eval_batch, optimizer, lr, **kw):
    """BPTT on the trainer's trial sequence (see :func:`bioperturb.reference.train_bptt`)."""
    from bioperturb.reference import BPTTTrainer, train_bptt

    training = trainer.protocol.training
    opt = dict(optimizer=optimizer or training.optimizer, lr=training.lr if lr is None else lr)
    # compile the BPTT step once outside the timed loop: otherwise JAX's compilation
    # (0.4-1 s) lands in the first trial's wall time
    BPTTTrainer(weights0, **opt, **kw).step(*make_trial(0))
    return train_bptt(
        weights0, make_trial, eval_batch, training.n_trials, training.eval_every, **opt, **kw
    )


def _reference_run(
    trainer: Trainer, res: dict, traces: list[dict[str, list[np.ndarray]]], engine: str
) -> xr.Dataset:
    """The reference's training as a run Dataset, written like the rule's
    (:func:`bioperturb.dataset.run_dataset` on the same :class:`Experiment`).

    ``res``: what :func:`~bioperturb.reference.train_bptt` returns; ``traces``: per
    evaluation, the sampled ``activity`` and ``output`` of every condition, ``(samples,
    units)`` and ``(samples, outputs)`` arrays, and for a spiking reference its
    ``membrane`` samples and ``spikes`` ((n, 2) rows of neuron and time within the trial).
    A reference has no noisy twin and no instantaneous loss record (NaN) and no rule
    estimate to align (no ``alignment``).
    """
    exp = trainer.experiment
    n = len(res["loss"])
    rec = Records(
        loss=[float(x) for x in res["loss"]],
        loss_noisy=[np.nan] * n,
        loss_t=[np.full(exp.samples_per_trial, np.nan)] * n,
        wall_time=[float(x) for x in res["wall_time"]],
        eval_trial=[int(x) for x in res["eval_trial"]],
        eval_loss=[float(x) for x in res["eval_loss"]],
        weights=[{k: np.asarray(w[k]) for k in exp.weights0} for w in res["weights_eval"]],
    )
    for trace in traces:
        rec.activity += trace["activity"]
        rec.output += trace["output"]
        rec.membrane += trace.get("membrane", [])
        rec.spikes += trace.get("spikes", [])
    finite = np.all(np.isfinite(rec.loss)) and np.all(np.isfinite(rec.eval_loss))
    return run_dataset(
        exp,
        rec,
        shape={k: w.shape for k, w in exp.weights0.items()},
        lateral=(),
        engine=engine,
        status="completed" if finite else "diverged",
        status_reason="" if finite else "the reference's loss is not finite",
    )


def reference_dataset(
    trainer: Trainer,
    optimizer: str | None = None,
    lr: float | None = None,
    decorrelated: bool = False,
):
    """Train the BPTT rate reference on ``trainer``'s trials; return a Dataset like the rule's.

    ``optimizer`` and ``lr`` default to the protocol's training settings. For a LIF
    protocol the reference is a rate RNN (:func:`reference_model`); see also
    :func:`surrogate_dataset`. ``decorrelated``: decorrelated BP(TT) (DBP; Dalm et al.) —
    the reference reads its inputs through the protocol's decorrelation
    (``model.decorrelate``, ``model.decor_lr``), learnt by the network's local rule
    (:class:`bioperturb.reference.BPTTTrainer`'s ``lateral``); the rule label is ``"dbp"``.
    """
    from bioperturb.reference import forward

    p = trainer.protocol
    model, weights0 = reference_model(trainer)
    tt, ev = trainer.train_trials, trainer.eval_set
    kw = dict(dt=model.dt, tau=model.tau, b=np.full(model.n_hidden, model.bias))
    masks = connectivity(weights0, model)
    decor = {}
    if decorrelated:
        sites = tuple(getattr(p.model, "decorrelate", ()))
        if not sites or model_family(p.model.kind) != "rate":
            raise ValueError(
                "decorrelated: the protocol's rate model needs model.decorrelate (its sites "
                "and decor_lr are the reference's)"
            )
        names = [LATERAL[site][0] for site in sites]
        decor = dict(lateral={n: masks.get(n, True) for n in names}, decor_lr=p.model.decor_lr)
    res = _train_reference(
        trainer,
        weights0,
        lambda i: (tt.inputs[i], tt.targets[i], tt.mask[i]),
        (ev.inputs, ev.targets, ev.mask),
        optimizer,
        lr,
        masks=masks,
        **decor,
        **kw,
    )
    steps = trainer.experiment.sample_steps
    traces = []
    for w, d in zip(res["weights_eval"], res["lateral_eval"], strict=True):
        _, r, y = (np.asarray(x) for x in forward({**w, **d}, ev.inputs, **kw))
        traces.append(
            {
                "activity": list(r[:, steps][..., trainer.record_units]),
                "output": list(y[:, steps]),
            }
        )
    ds = _reference_run(trainer, res, traces, "jax-reference-float64")
    if model_family(p.model.kind) != "rate":  # the rate reference of a spiking network
        ds["activity"].attrs["long_name"] = "rate r = tanh(h) of the rate reference"
        ds.attrs["reference_model"] = (
            f"rate RNN, N = {model.n_hidden}, tau = tau_m = {model.tau} s, other parameters "
            f"from models/rate_rnn.toml"
        )
    ds.attrs["rule"] = "dbp" if decor else "bptt"
    if decor:
        ds.attrs["reference_decorrelation"] = (
            f"{', '.join(decor['lateral'])} learnt by the local rule, decor_lr = "
            f"{decor['decor_lr']:g}"
        )
    return ds


def surrogate_dataset(
    trainer: Trainer,
    optimizer: str | None = None,
    lr: float | None = None,
    beta: float = 10.0,
) -> xr.Dataset:
    """Surrogate-gradient BPTT of the LIF network itself (JAX twin, same initial weights).

    The forward pass is the Brian2 LIF network's (identical spikes on frozen input
    spikes; :mod:`bioperturb.reference.lif`); the Heaviside's derivative is replaced by
    SuperSpike's 1/(1 + β|v − v_th|)². Poisson-coded inputs are drawn by the reference
    from a generator seeded by the run's seed (same rates, other spikes).
    """
    from bioperturb.reference.lif import LIFDynamics, lif_forward

    p = trainer.protocol
    if model_family(p.model.kind) != "lif" or p.model.synapse != "current":
        raise ValueError(
            "surrogate_dataset needs a LIF protocol with current-based synapses "
            "(model.kind = 'lif', model.synapse = 'current')"
        )
    dyn = LIFDynamics.from_model(p.model, beta=beta)
    tt, ev = trainer.train_trials, trainer.eval_set
    rng = np.random.default_rng([p.seed, 1729])
    eval_spikes = dyn.input_spikes(ev.inputs, rng)

    def make_trial(i: int):
        return dyn.input_spikes(tt.inputs[i : i + 1], rng)[0], tt.targets[i], tt.mask[i]

    res = _train_reference(
        trainer,
        trainer.weights0,
        make_trial,
        (eval_spikes, ev.targets, ev.mask),
        optimizer,
        lr,
        dt=p.model.dt,
        tau=p.model.tau_m,
        dynamics=dyn,
        masks=trainer.network.masks,
    )
    steps = trainer.experiment.sample_steps
    traces = []
    for w in res["weights_eval"]:
        v, r, y, s = (np.asarray(x) for x in lif_forward(w, eval_spikes, dyn))
        spikes = []
        for cond in s:  # (steps, neurons) of each condition
            t, u = np.nonzero(cond)
            spikes.append(np.column_stack([u, t * p.model.dt]).astype(float))
        traces.append(
            {
                "activity": list(r[:, steps][..., trainer.record_units]),
                "output": list(y[:, steps]),
                "membrane": list(v[:, steps][..., trainer.record_units]),
                "spikes": spikes,
            }
        )
    ds = _reference_run(trainer, res, traces, "jax-lif-surrogate-float64")
    ds.attrs.update(
        rule="bptt_surrogate",
        surrogate=f"SuperSpike 1/(1 + beta |v - v_th|)^2, beta = {beta} per threshold unit",
    )
    return ds


def reference_model(trainer: Trainer):
    """(rate model, initial weights) of the BPTT reference of ``trainer``'s protocol.

    For a rate protocol: the protocol's own model and initial weights. For a LIF protocol
    there is no exact gradient; the reference is a tanh rate RNN of the same size, dt
    and task, with τ = τ_m, the other parameters of the ``rate_rnn`` preset, and initial
    weights drawn by the rate initialiser from the run's weight stream.
    """
    p = trainer.protocol
    if trainer.experiment.model_spec.exact_gradient:
        return p.model, trainer.weights0
    from bioperturb.config import MODELS_DIR, RateConfig, read_toml_text
    from bioperturb.experiment import weight_rng
    from bioperturb.networks.rate import init_weights
    from bioperturb.schema import from_mapping

    preset = MODELS_DIR / "rate_rnn.toml"
    table = dict(read_toml_text(preset, str(preset))[0]["model"])
    table.update(
        n_hidden=p.model.n_hidden,
        dt=f"{p.model.dt} s",
        tau=f"{p.model.tau_m} s",
        output_init=p.model.output_init,
    )
    model = from_mapping(RateConfig, table, str(preset), "model.")
    n_in, n_out = trainer.task.n_inputs, trainer.task.n_outputs
    return model, init_weights(weight_rng(p.seed), n_in, model.n_hidden, n_out, model)


def combine_methods(datasets: dict[str, xr.Dataset]) -> xr.Dataset:
    """Concatenate runs along a new ``method`` dimension.

    A variable that only some runs have (e.g. the rule's ``alignment``) is kept and
    filled with NaN for the others.
    """
    names = sorted(set().union(*(ds.data_vars for ds in datasets.values())))
    if any("spike" in ds.dims for ds in datasets.values()):
        # ragged spike lists of different lengths: index them so that the outer join
        # pads the shorter ones with NaN
        datasets = {
            k: ds.assign_coords(spike=np.arange(ds.sizes["spike"])) if "spike" in ds.dims else ds
            for k, ds in datasets.items()
        }
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
    # the file's status is that of the first method that did not complete, if any
    status = {m: d.attrs.get("status", "completed") for m, d in datasets.items()}
    out.attrs["method_status"] = "; ".join(f"{m}: {s}" for m, s in status.items())
    failed = [m for m, s in status.items() if s != "completed"]
    if failed:
        out.attrs["status"] = status[failed[0]]
        out.attrs["status_reason"] = "; ".join(
            f"{m}: {datasets[m].attrs.get('status_reason', status[m])}" for m in failed
        )
    return out


def comparator_protocol(protocol, rule_name: str):
    """``protocol`` with its rule replaced by ``rule_name`` with that rule's defaults.

    The seed, model, task and training settings stay, so the comparator starts from the
    same initial weights and sees the same trials; its run is named
    ``<name>_with_<rule>``. Where the rule is not built into standalone programs it runs
    on the runtime engine. Raises :class:`~bioperturb.schema.ConfigError` (e.g. a rule
    that does not run on the protocol's model kind, or the protocol's own rule).
    """
    import tomllib

    from bioperturb.config import protocol_from_mapping
    from bioperturb.rules import get_rule
    from bioperturb.schema import ConfigError

    where = protocol.source
    try:
        rule_cls = get_rule(rule_name)
    except (KeyError, ValueError) as err:
        raise ConfigError(where, "rule.name", str(err).strip("'\"")) from None
    if rule_cls.name == protocol.rule_name:
        raise ConfigError(where, "rule.name", f"'{rule_name}' is the protocol's own rule")
    data = tomllib.loads(protocol.to_toml())
    data["rule"] = {"name": rule_name}
    data["name"] = f"{protocol.name}_with_{rule_cls.name}"
    if data["engine"]["name"] == "standalone" and not rule_cls.standalone:
        data["engine"]["name"] = "runtime"
        data["engine"]["fuse"] = "auto"
    return protocol_from_mapping(data, where)


def compare_protocol(
    protocol,
    out_dir=None,
    progress: bool | None = None,
    bptt_optimizer: str | None = None,
    bptt_lr: float | None = None,
    credit_draws: int = 0,
    horizons: tuple[int, ...] = (1, 10),
    with_rules: tuple[str, ...] = (),
):
    """Train the protocol's rule and the BPTT reference; write ``<name>_compare.nc``.

    ``with_rules``: more rules (registered names, with their defaults) trained from the
    same start on the same trials with the same optimiser, between the rule and the
    reference (:func:`comparator_protocol`), e.g. ``("rflo",)``.

    A run that is interrupted (SIGINT, SIGTERM) is written with the runs before it and
    its ``status``; the reference is not trained.

    Returns the combined Dataset (``method`` = [rule name, *with_rules, "bptt"], plus
    "dbp" for a rate protocol with ``model.decorrelate``: the reference reading the same
    decorrelated inputs, D learnt by the same rule (:func:`reference_dataset`), and
    "bptt_surrogate" for a LIF protocol with current-based synapses: surrogate-gradient
    BPTT of the LIF network itself) and its path. With ``output.figures`` also
    ``<name>_compare_trials.png``, ``<name>_compare_time.png`` (learning curves against
    trials and wall time) and, for a task scored by accuracy,
    ``<name>_compare_accuracy.png``. ``credit_draws`` > 0 adds the rule's credit
    diagnostics at the initial weights (:func:`bioperturb.credit.credit_diagnostics` with
    that many draws and BPTT truncated at ``horizons``): ``credit_cosine`` and the rest.
    """
    from pathlib import Path

    from bioperturb.dataset import write_dataset

    if credit_draws:
        from bioperturb.credit import check_credit, credit_diagnostics

        check_credit(protocol)  # before any training

    from bioperturb.runs import train

    others = [comparator_protocol(protocol, name) for name in with_rules]  # before any work
    out = Path(out_dir if out_dir is not None else protocol.output.dir)
    trainer, last = train(protocol, progress=progress)
    runs = {protocol.rule_name: last}
    pending = list(others)
    while pending and last.attrs["status"] != "interrupted":
        other = pending.pop(0)
        last = runs[other.rule_name] = train(other, progress=progress)[1]
    if last.attrs["status"] == "interrupted":  # keep the trials so far; no reference
        ds = combine_methods(runs)
        ds.attrs.update(status="interrupted", status_reason=last.attrs["status_reason"])
        return ds, write_dataset(ds, out / f"{protocol.name}_compare.nc")
    bptt_ds = reference_dataset(trainer, optimizer=bptt_optimizer, lr=bptt_lr)
    bptt_ds.attrs["bptt_optimizer"] = bptt_optimizer or protocol.training.optimizer
    bptt_ds.attrs["bptt_lr"] = protocol.training.lr if bptt_lr is None else bptt_lr
    runs["bptt"] = bptt_ds
    if getattr(protocol.model, "decorrelate", ()) and model_family(protocol.model.kind) == "rate":
        runs["dbp"] = dbp = reference_dataset(
            trainer, optimizer=bptt_optimizer, lr=bptt_lr, decorrelated=True
        )
        dbp.attrs.update({k: bptt_ds.attrs[k] for k in ("bptt_optimizer", "bptt_lr")})
    if not trainer.experiment.model_spec.exact_gradient and (
        getattr(protocol.model, "synapse", None) == "current"
    ):
        runs["bptt_surrogate"] = surrogate_dataset(trainer, optimizer=bptt_optimizer, lr=bptt_lr)
    ds = combine_methods(runs)
    if credit_draws:
        credit = credit_diagnostics(protocol, n_draws=credit_draws, horizons=horizons)
        ds = ds.merge(credit, combine_attrs="override")
        ds.attrs.update(credit.attrs)
    path = write_dataset(ds, out / f"{protocol.name}_compare.nc")
    if protocol.output.figures:
        from bioperturb.plotting import plot_accuracy, plot_learning_curves, save_figure

        save_figure(plot_learning_curves(runs), out / f"{protocol.name}_compare_trials.png")
        save_figure(
            plot_learning_curves(runs, x="wall_time"), out / f"{protocol.name}_compare_time.png"
        )
        if "eval_accuracy" in ds:
            save_figure(plot_accuracy(runs), out / f"{protocol.name}_compare_accuracy.png")
    return ds, path
