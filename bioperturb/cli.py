"""Command line: ``bioperturb run | compare | sweep | collect | plot | list``.

Errors in user input (a bad protocol, an unwritable output folder) print one line naming
the file, key and reason and exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from bioperturb.schema import ConfigError

__all__ = ["main"]


class UsageError(Exception):
    """A problem with the user's input that is reported on one line."""


def _check_writable(path: Path, where: str = "", key: str = "") -> None:
    """Raise a one-line UsageError (naming ``where`` and ``key``) if ``path`` cannot be made."""
    from bioperturb.resources import existing_ancestor

    path = path.resolve()
    probe = existing_ancestor(path)
    if not probe.is_dir():
        why = f"{probe} is a file, not a directory"
    elif not os.access(probe, os.W_OK):
        why = f"no permission to write in {probe}"
    else:
        return
    prefix = "".join(f"{part}: " for part in (where, key) if part)
    raise UsageError(f"{prefix}{path}: output directory is not writable ({why})")


def _overrides(items: list[str]) -> dict[str, Any]:
    """The ``--set KEY=VALUE`` items as dotted overrides (a later item wins)."""
    from bioperturb.config import parse_override

    overrides: dict[str, Any] = {}
    for item in items:
        try:
            key, value = parse_override(item)
        except ValueError as err:
            raise UsageError(f"--set {item}: {err}") from None
        overrides[key] = value
    return overrides


def _load(args: argparse.Namespace):
    """The protocol of ``args.protocol`` with the ``--set`` overrides; an error about an
    overridden key names ``--set`` instead of the file."""
    from bioperturb.config import blame_override, load_protocol, print_note

    overrides = _overrides(args.set)
    try:
        protocol = load_protocol(args.protocol, overrides)
    except ConfigError as err:
        key, reason = blame_override(err, overrides, str(args.protocol))
        if key:
            raise ConfigError("--set", key, reason) from None
        raise
    for note in protocol.notes:  # e.g. which engine 'auto' chose, and why
        print_note(note)
    return protocol


def _cmd_run(args: argparse.Namespace) -> int:
    from bioperturb.runs import describe_run, run_protocol

    if _synaptic_file(args.protocol):
        return _cmd_run_synaptic(args)
    protocol = _load(args)
    out_dir = Path(args.out) if args.out else Path(protocol.output.dir)
    _check_writable(out_dir, *(("--out",) if args.out else (args.protocol, "output.dir")))
    if args.resume:
        _report_resume(protocol, out_dir)
    ds, path = run_protocol(
        protocol, out_dir=out_dir, progress=False if args.quiet else None, resume=args.resume
    )
    summary = describe_run(ds)
    accuracy = ""
    if "final_eval_accuracy" in summary:
        accuracy = f", accuracy {100 * summary['final_eval_accuracy']:.3g} %"
    print(
        f"{summary['status']}: {summary['trials']} trials, eval loss "
        f"{summary['initial_eval_loss']:.4g} -> {summary['final_eval_loss']:.4g}{accuracy}; "
        f"wrote {path}"
    )
    if summary["status"] == "interrupted":
        print(
            f"interrupted ({ds.attrs.get('status_reason', '')}); run the same command with "
            "--resume to go on",
            file=sys.stderr,
        )
        return 130
    return 0 if summary["status"] == "completed" else 1


def _synaptic_file(path: str) -> bool:
    """Whether ``path`` holds a synaptic protocol (``kind = "synaptic"``); a file that
    cannot be read is left to the training protocol's loader to report."""
    from bioperturb.config import read_toml_text
    from bioperturb.synaptic import is_synaptic

    try:
        data, _ = read_toml_text(Path(path), str(path))
    except ConfigError:
        return False
    return is_synaptic(data)


def _cmd_run_synaptic(args: argparse.Namespace) -> int:
    """``bioperturb run`` on a synaptic protocol: the whole grid in one Brian2 run."""
    from bioperturb.synaptic import load_synaptic, run_synaptic, write_synaptic

    if args.resume:
        raise UsageError("--resume: a synaptic protocol runs in one piece; run it again")
    overrides = _overrides(args.set)
    protocol = load_synaptic(args.protocol, overrides)
    out_dir = Path(args.out) if args.out else Path(protocol.output.dir)
    _check_writable(out_dir, *(("--out",) if args.out else (args.protocol, "output.dir")))
    ds = run_synaptic(protocol, progress=not args.quiet)
    path = write_synaptic(protocol, ds, out_dir)
    cells = ds.sizes["repetition"]
    for dim in protocol.dims:
        cells *= ds.sizes[dim]
    print(
        f"completed: {cells} cells ({' x '.join(protocol.dims) or 'one point'}) of "
        f"'{protocol.rule_name}' in {ds.attrs['wall_time_s']:.3g} s; wrote {path}"
    )
    return 0


def _report_resume(protocol, out_dir: Path) -> None:
    from bioperturb.checkpoint import read_checkpoint
    from bioperturb.runs import checkpoint_path

    path = checkpoint_path(protocol, out_dir)
    if path.exists():
        meta, _ = read_checkpoint(path)
        done, total = meta.get("trials_done", "?"), protocol.training.n_trials
        print(f"resuming from {path} ({done} of {total} trials done)", flush=True)


def _check_comparators(protocol, names: list[str]) -> None:
    """Each ``--with`` rule runs on the protocol (one-line UsageError if not); notes."""
    from bioperturb.compare import comparator_protocol
    from bioperturb.config import print_note
    from bioperturb.schema import ConfigError

    if len(set(names)) < len(names):
        raise UsageError(f"--with: a rule is named twice: {' '.join(names)}")
    for name in names:
        try:
            other = comparator_protocol(protocol, name)
        except ConfigError as err:
            raise UsageError(f"--with {name}: {err.reason}") from None
        if other.engine.name != protocol.engine.name:
            print_note(f"--with {name}: runs on the {other.engine.name} engine")


def _cmd_compare(args: argparse.Namespace) -> int:
    from bioperturb.compare import compare_protocol

    protocol = _load(args)
    out_dir = Path(args.out) if args.out else Path(protocol.output.dir)
    _check_writable(out_dir)
    if args.credit:
        from bioperturb.credit import check_credit

        if args.credit < 2:
            raise UsageError(f"--credit: needs at least 2 draws, got {args.credit}")
        if any(k < 1 for k in args.horizons):
            raise UsageError(f"--horizons: truncations are whole steps >= 1, got {args.horizons}")
        try:
            check_credit(protocol)
        except ValueError as err:
            raise UsageError(f"--credit: {err}") from None
    _check_comparators(protocol, args.with_rules)
    ds, path = compare_protocol(
        protocol,
        out_dir=out_dir,
        progress=False if args.quiet else None,
        bptt_optimizer=args.bptt_optimizer,
        bptt_lr=args.bptt_lr,
        credit_draws=args.credit,
        horizons=tuple(args.horizons),
        with_rules=tuple(args.with_rules),
    )
    for method in ds["method"].values:
        ev = ds["eval_loss"].sel({"method": method}).values
        if not ev.size:
            continue
        accuracy = ""
        if "eval_accuracy" in ds:
            final = ds["eval_accuracy"].sel({"method": method}).values[-1]
            accuracy = f", accuracy {100 * final:.3g} %"
        print(f"{method}: eval loss {ev[0]:.4g} -> {ev[-1]:.4g}{accuracy}")
    if "credit_cosine" in ds:
        cos = ds["credit_cosine"].sel(matrix="W_rec")
        pairs = ", ".join(
            f"BPTT({int(k)}) {float(c):.2f}" for k, c in zip(cos.horizon, cos, strict=True)
        )
        print(f"credit (W_rec, cosine of the mean update with): {pairs}")
    print(f"wrote {path}")
    if ds.attrs.get("status") == "interrupted":
        why = ds.attrs.get("status_reason", "")
        print(f"interrupted ({why}): the BPTT reference was not trained", file=sys.stderr)
        return 130
    if ds.attrs.get("status", "completed") != "completed":
        print(f"{ds.attrs['status']}: {ds.attrs.get('status_reason', '')}", file=sys.stderr)
        return 1
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from bioperturb.sweep import load_sweep, run_sweep

    sweep = load_sweep(args.sweep, out=args.out, workers=args.workers, scheduler=args.scheduler)
    _check_writable(sweep.out, *(("--out",) if args.out else (args.sweep, "sweep.out")))
    print(
        f"sweep {sweep.path}: {len(sweep.points)} runs over {', '.join(sweep.keys)} -> {sweep.out}"
    )
    try:
        summary = run_sweep(sweep, progress=not args.quiet)
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; run the same command to go on", file=sys.stderr)
        return 130
    counts = ", ".join(f"{n} {status}" for status, n in summary["counts"].items() if n)
    for result in summary["results"]:
        if result["status"] == "failed":
            print(f"failed {result['hash']}: {result['reason']}", file=sys.stderr)
    merged = summary["merged"]
    print(f"{counts} in {summary['seconds']:.1f} s" + (f"; wrote {merged}" if merged else ""))
    return 1 if summary["counts"].get("failed") else 0


def _cmd_collect(args: argparse.Namespace) -> int:
    from bioperturb.sweep import collect

    if args.out:
        _check_writable(Path(args.out).parent, "--out")
    else:
        _check_writable(Path(args.dir))
    path = collect(args.dir, args.out)
    print(f"wrote {path}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from bioperturb.config import MODELS_DIR
    from bioperturb.modelspec import MODELS
    from bioperturb.rules import RULES
    from bioperturb.tasks import TASKS

    for title, registry in (("tasks", TASKS), ("rules", RULES)):
        print(f"{title}:")
        try:
            names = registry.names()
        except ValueError as err:  # a plugin's entry point clashes with another name
            raise UsageError(str(err)) from None
        origins = {name: registry.origin(name) for name in names}
        for name in sorted(names, key=lambda n: (origins[n] != "builtin", n)):
            origin = origins[name]
            try:
                description = registry[name].meta.get("description", "")
            except (KeyError, ValueError) as err:  # a broken plugin: say so, list the rest
                description = f"cannot be loaded: {err}"
            print(f"  {name:20s} [{origin}] {description}")
    from bioperturb.synaptic import SYNAPTIC_RULES, supported_rules

    print("synaptic protocols (kind = 'synaptic', docs/synaptic.md): rules")
    for name in supported_rules():
        where = "synaptic only" if name in SYNAPTIC_RULES else "training code"
        print(f"  {name:20s} [{where}]")
    print("model kinds:")
    for kind in sorted(MODELS.names(), key=lambda n: (MODELS.origin(n) != "builtin", n)):
        try:
            doc = MODELS[kind].doc
        except (KeyError, ValueError) as err:
            doc = f"cannot be loaded: {err}"
        print(f"  {kind:20s} [{MODELS.origin(kind)}] {doc}")
    print("models:")
    for path in sorted(MODELS_DIR.glob("*.toml")):
        first = path.read_text().splitlines()[0].lstrip("# ")
        print(f"  {path.stem:16s} {first}")
    return 0


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a protocol key (repeatable), e.g. --set rule.name=np --set "
        "training.lr=1e-3; VALUE is a TOML value, else a string ('task.duration=40 ms'); "
        "switching rule.name, task.name or model.preset drops the file's keys the new "
        "choice does not take, with a note",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bioperturb",
        description="Noisy Brian2 RNNs learning with node-perturbation rules.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train a network as a protocol TOML file describes")
    run.add_argument("protocol", help="protocol TOML file")
    _add_set(run)
    run.add_argument("--out", help="output directory (default: the protocol's output.dir)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue from <out>/<name>.ckpt.npz (see training.checkpoint_every); "
        "a finished run is not recomputed",
    )
    run.set_defaults(func=_cmd_run)
    cmp = sub.add_parser(
        "compare", help="train a protocol's rule and its BPTT reference from the same start"
    )
    cmp.add_argument("protocol", help="protocol TOML file")
    _add_set(cmp)
    cmp.add_argument("--out", help="output directory (default: the protocol's output.dir)")
    cmp.add_argument("--quiet", action="store_true", help="no progress bar")
    cmp.add_argument("--bptt-optimizer", choices=("sgd", "adam"), help="default: as the rule's")
    cmp.add_argument("--bptt-lr", type=float, help="default: the protocol's training.lr")
    cmp.add_argument(
        "--credit",
        type=int,
        default=0,
        metavar="DRAWS",
        help="also measure which gradient the rule follows: cosine of its mean update over "
        "DRAWS trials at the initial weights with truncated and full BPTT "
        "(docs/temporal-credit.md)",
    )
    cmp.add_argument(
        "--horizons",
        type=int,
        nargs="+",
        default=[1, 10],
        metavar="K",
        help="BPTT truncations (steps) for --credit besides the full gradient (default: 1 10)",
    )
    cmp.add_argument(
        "--with",
        dest="with_rules",
        nargs="+",
        default=[],
        metavar="RULE",
        help="also train these rules (their defaults) from the same start on the same trials, "
        "e.g. --with rflo (a comparator with a per-neuron learning signal)",
    )
    cmp.set_defaults(func=_cmd_compare)
    swp = sub.add_parser(
        "sweep", help="run a base protocol over a grid of overrides on dask (resumable)"
    )
    swp.add_argument("sweep", help="sweep TOML file (base protocol, [grid], [sweep])")
    swp.add_argument("--out", help="output directory (default: the file's sweep.out)")
    swp.add_argument("--workers", type=int, help="LocalCluster worker processes (default: cores)")
    swp.add_argument("--scheduler", help="address of an existing dask scheduler (tcp://...)")
    swp.add_argument("--quiet", action="store_true", help="no progress bar")
    swp.set_defaults(func=_cmd_sweep)
    col = sub.add_parser("collect", help="merge a sweep's runs into <dir>/sweep.nc")
    col.add_argument("dir", help="the sweep's output directory")
    col.add_argument("--out", help="merged file (default: <dir>/sweep.nc)")
    col.set_defaults(func=_cmd_collect)
    lst = sub.add_parser(
        "list",
        help="list tasks and rules (with their origin), model kinds and presets",
    )
    lst.set_defaults(func=_cmd_list)
    plot = sub.add_parser("plot", help="write the standard figures of a result file (.nc)")
    plot.add_argument("result", help="result file written by run or compare")
    plot.add_argument("--out", help="folder for the PNG files (default: the result's folder)")
    plot.set_defaults(func=_cmd_plot)
    return parser


def _cmd_plot(args: argparse.Namespace) -> int:
    from bioperturb.report import plot_result

    for path in plot_result(args.result, args.out):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, UsageError) as err:
        if args.debug:
            raise
        print(f"bioperturb: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the machine, not the input: a full disk, a vanished folder
        if args.debug:
            raise
        where = f"{err.filename}: " if err.filename else ""
        print(f"bioperturb: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # outside a run's trial loop (e.g. while a program compiles)
        if args.debug:
            raise
        print("bioperturb: interrupted (files written so far are complete)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
