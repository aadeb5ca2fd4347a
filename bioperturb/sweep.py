"""Parameter sweeps on dask.distributed: one run per grid point, resumable, merged lazily.

A sweep file names a base protocol and a grid of overrides (dotted keys, as in
``bioperturb.config.load_protocol``)::

    base = "pattern_anp_rate.toml"      # relative to this file

    [grid]                              # every combination is one run
    seed = [0, 1, 2]
    "training.lr" = [0.001, 0.003]
    "rule.scale" = ["one", "sqrt_total"]

    [sweep]                             # all optional
    workers = 2                         # LocalCluster worker processes (default: CPU cores)
    scheduler = "tcp://10.0.0.5:8786"   # an existing dask scheduler instead of a LocalCluster
    out = "results/lr_sweep"            # default: results/<sweep file name>

Each grid point's protocol is resolved and validated before anything runs (with
``output.progress`` and ``output.figures`` turned off); its run is written to
``<out>/runs/<hash>.nc``, where ``hash`` is the first 16 hex digits of the SHA-256 of the
resolved protocol TOML. A run whose file exists is never recomputed, so running the same
command again resumes a sweep. A run that raises writes ``<hash>.failed.json`` (the
error on one line and the traceback) and is retried by the next invocation; a diverged run
is a finished run with ``status = "diverged"``. With ``training.checkpoint_every`` set in
the base protocol, each run also checkpoints to ``<hash>.ckpt.npz`` and continues from
there after a crash.

``<out>/sweep.json`` lists the swept keys and points; :func:`collect` merges the finished
runs into ``<out>/sweep.nc`` with one dimension per swept key (points not finished are
NaN; per-point ``status``, ``status_reason``, ``run`` and ``config`` variables say why),
opening the runs lazily with dask so that hundreds of runs fit in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import time
import tomllib
import traceback
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bioperturb import plugins
from bioperturb.config import (
    Protocol,
    blame_override,
    load_protocol,
    print_note,
    protocol_from_mapping,
    read_toml_text,
)
from bioperturb.dataset import write_dataset, write_text
from bioperturb.schema import ConfigError

__all__ = [
    "Sweep",
    "Point",
    "load_sweep",
    "run_sweep",
    "run_point",
    "collect",
    "combine_runs",
    "protocol_hash",
]

_TOP_KEYS = ("base", "grid", "sweep")
_SWEEP_KEYS = ("workers", "scheduler", "out")
MANIFEST = "sweep.json"
RESULT = "sweep.nc"


@dataclass(frozen=True)
class Point:
    """One grid point: the swept values, the resolved protocol and its hash."""

    values: dict[str, Any]
    protocol: Protocol
    toml: str
    hash: str


@dataclass(frozen=True)
class Sweep:
    path: Path
    base: Path
    grid: dict[str, list[Any]]
    points: list[Point]
    out: Path
    workers: int | None = None
    scheduler: str | None = None
    #: where the scheduler address came from, for error messages (the file or "--scheduler")
    scheduler_where: str = ""
    text: str = field(default="", repr=False)

    @property
    def keys(self) -> list[str]:
        return list(self.grid)

    @property
    def runs_dir(self) -> Path:
        return self.out / "runs"


def protocol_hash(toml_text: str) -> str:
    """Stable name of a resolved protocol: 16 hex digits of the SHA-256 of its TOML."""
    return hashlib.sha256(toml_text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- loading
def _read(path: Path) -> tuple[dict[str, Any], str]:
    return read_toml_text(path, str(path), kind="sweep TOML")


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"training": {"lr": [..]}}`` (unquoted dotted keys) -> ``{"training.lr": [..]}``."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _check_values(where: str, key: str, values: Any) -> list[Any]:
    if not isinstance(values, list):
        raise ConfigError(where, f"grid.{key}", f"expected a list of values, got {values!r}")
    if not values:
        raise ConfigError(where, f"grid.{key}", "empty list: give at least one value")
    for v in values:
        if isinstance(v, (dict, list)):
            raise ConfigError(where, f"grid.{key}", f"values must be scalars, got {v!r}")
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(where, f"grid.{key}", f"values must be finite, got {v!r}")
    kinds = {"number" if type(v) in (int, float) else type(v).__name__ for v in values}
    if len(kinds) > 1:
        raise ConfigError(
            where, f"grid.{key}", f"values must all have one type, got {sorted(kinds)}"
        )
    seen: list[Any] = []
    for v in values:
        if v in seen:
            raise ConfigError(where, f"grid.{key}", f"duplicate value {v!r}")
        seen.append(v)
    return list(values)


#: most grid points in one sweep (validating one takes milliseconds)
MAX_POINTS = 100_000

#: dask comm protocols a sweep connects to a scheduler with (ucx needs a GPU stack)
SCHEDULER_SCHEMES = ("tcp", "tls")


def load_sweep(
    path: str | Path,
    *,
    out: str | Path | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
) -> Sweep:
    """Read and validate a sweep file and resolve every grid point's protocol.

    ``out``, ``workers`` and ``scheduler`` override the file's ``[sweep]`` table. Every
    problem raises :class:`ConfigError` naming the file, the key and the reason.
    """
    path = Path(path)
    where = str(path)
    data, text = _read(path)
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise ConfigError(where, unknown[0], f"unknown key (known: {', '.join(_TOP_KEYS)})")

    base_text = data.get("base")
    if base_text is None:
        raise ConfigError(where, "base", "required key is missing (the base protocol file)")
    if not isinstance(base_text, str) or not base_text:
        raise ConfigError(where, "base", f"expected a path to a protocol file, got {base_text!r}")
    base = (path.parent / base_text) if not Path(base_text).is_absolute() else Path(base_text)
    if not base.exists():
        raise ConfigError(where, "base", f"file not found: {base}")
    if base.is_dir():
        raise ConfigError(where, "base", f"is a directory, expected a protocol file: {base}")

    options = data.get("sweep", {})
    if not isinstance(options, dict):
        raise ConfigError(where, "sweep", "expected a table")
    unknown = sorted(set(options) - set(_SWEEP_KEYS))
    if unknown:
        raise ConfigError(
            where, f"sweep.{unknown[0]}", f"unknown key (known: {', '.join(_SWEEP_KEYS)})"
        )
    file_workers = options.get("workers")
    if file_workers is not None and (
        isinstance(file_workers, bool) or not isinstance(file_workers, int) or file_workers < 1
    ):
        raise ConfigError(
            where, "sweep.workers", f"must be a positive integer, got {file_workers!r}"
        )
    file_scheduler = options.get("scheduler")
    if file_scheduler is not None and (not isinstance(file_scheduler, str) or not file_scheduler):
        raise ConfigError(
            where,
            "sweep.scheduler",
            f"expected an address like 'tcp://host:8786', got {file_scheduler!r}",
        )
    for address, at, key in (
        (file_scheduler, where, "sweep.scheduler"),
        (scheduler, "--scheduler", ""),
    ):
        scheme = address.split("://")[0] if address and "://" in address else "tcp"
        if address is not None and scheme not in SCHEDULER_SCHEMES:
            raise ConfigError(
                at,
                key,
                f"{address}: the '{scheme}' protocol is not supported (use "
                f"{' or '.join(s + '://host:port' for s in SCHEDULER_SCHEMES)})",
            )
    file_out = options.get("out")
    if file_out is not None and (not isinstance(file_out, str) or not file_out):
        raise ConfigError(where, "sweep.out", f"expected a directory path, got {file_out!r}")
    if workers is not None and workers < 1:
        raise ConfigError("--workers", "", f"must be a positive integer, got {workers}")

    if "grid" not in data:
        raise ConfigError(where, "grid", "required table is missing (swept keys -> value lists)")
    if not isinstance(data["grid"], dict):
        raise ConfigError(where, "grid", "expected a table of dotted keys -> lists of values")
    grid = {k: _check_values(where, k, v) for k, v in _flatten(data["grid"]).items()}
    if not grid:
        raise ConfigError(where, "grid", "is empty: give at least one key with a list of values")

    n_points = math.prod(len(v) for v in grid.values())
    if n_points > MAX_POINTS:
        raise ConfigError(
            where,
            "grid",
            f"{n_points:,} points (at most {MAX_POINTS:,} in one sweep; each is validated "
            "before anything runs): split the grid into several sweeps",
        )
    load_protocol(base)  # a problem of the base file itself names that file
    points: list[Point] = []
    by_hash: dict[str, dict[str, Any]] = {}
    notes: list[str] = []  # keys a grid point's rule/task/model switch drops, said once
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo, strict=True))
        try:
            protocol = load_protocol(base, values, note=notes.append)
        except ConfigError as err:
            key, reason = blame_override(err, values, str(base))
            if not key:
                detail = f"{err.key}: {err.reason}" if err.key else err.reason
                raise ConfigError(where, "grid", f"point {values}: {detail}") from None
            raise ConfigError(where, f"grid.{key}", reason) from None
        # a sweep writes each run to <out>/runs/<hash>.nc: output.dir plays no part, and
        # is normalised so that the hash depends only on what the run computes
        output = replace(protocol.output, progress=False, figures=False, dir=".")
        protocol = protocol.replace(output=output, source=where)
        plugins.check_portable(protocol, where, "a sweep's worker processes")
        toml_text = protocol.to_toml()
        digest = protocol_hash(toml_text)
        if digest in by_hash:
            raise ConfigError(
                where, "grid", f"points {by_hash[digest]} and {values} give the same protocol"
            )
        by_hash[digest] = values
        points.append(Point(values, protocol, toml_text, digest))

    for text in dict.fromkeys(notes):
        print_note(text)
    out_dir = Path(out if out is not None else file_out or f"results/{path.stem}")
    return Sweep(
        path=path,
        base=base,
        grid=grid,
        points=points,
        out=out_dir,
        workers=workers if workers is not None else file_workers,
        scheduler=scheduler if scheduler is not None else file_scheduler,
        scheduler_where="--scheduler" if scheduler is not None else where,
        text=text,
    )


# --------------------------------------------------------------------------- running
def _write_atomic(path: Path, text: str) -> None:
    write_text(path, text)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _record_failure(runs_dir: Path, run_hash: str, error: str, tb: str = "") -> None:
    record = {"hash": run_hash, "error": error, "traceback": tb}
    record["time"] = datetime.now(UTC).isoformat(timespec="seconds")
    _write_atomic(runs_dir / f"{run_hash}.failed.json", json.dumps(record, indent=1))


def _open_run(path: Path, **kwargs: Any) -> tuple[Any, str]:
    """(the run file at ``path`` opened with ``kwargs``, "") or (None, why it is unusable).

    A usable file opens as netCDF and holds a finished run (status ``completed`` or
    ``diverged``); a 0-byte, truncated or foreign file, or an interrupted run, does not.
    """
    import xarray as xr

    try:
        ds = xr.open_dataset(path, engine="netcdf4", **kwargs)
    except Exception as err:  # noqa: BLE001 - whatever the netCDF library says
        return None, f"unreadable: {_one_line(err)}"
    status = ds.attrs.get("status")
    problem = ""
    if "config" not in ds.attrs:
        problem = "not a bioperturb run (no config attribute)"
    elif status not in ("completed", "diverged"):
        problem = f"not a finished run (status {status!r})"
    if problem:
        ds.close()
        return None, problem
    return ds, ""


def run_file_problem(path: Path) -> str:
    """Why the run file at ``path`` cannot be reused ("" when it can); see :func:`_open_run`."""
    ds, problem = _open_run(path)
    if ds is not None:
        ds.close()
    return problem


def run_point(toml_text: str, runs_dir: str, run_hash: str) -> dict[str, Any]:
    """Run one resolved protocol into ``<runs_dir>/<hash>.nc`` (a dask task; never raises).

    Returns ``{"hash", "status", "reason", "seconds"}`` with status ``completed``,
    ``diverged`` or ``failed``.
    """
    tic = time.perf_counter()
    runs = Path(runs_dir)
    nc_path = runs / f"{run_hash}.nc"
    ckpt = runs / f"{run_hash}.ckpt.npz"
    try:
        from bioperturb.runs import train

        note = ""
        if nc_path.exists():
            problem = run_file_problem(nc_path)
            if not problem:
                return {"hash": run_hash, "status": "exists", "reason": "", "seconds": 0.0}
            nc_path.unlink()
            note = f"recomputed: {nc_path.name} was {problem}; "
        protocol = protocol_from_mapping(tomllib.loads(toml_text), f"<sweep run {run_hash}>")
        # a damaged or stale checkpoint: start afresh
        _, ds = train(
            protocol, checkpoint=ckpt, resume=True, progress=False, restart_bad_checkpoint=True
        )
        status = ds.attrs["status"]
        if status == "interrupted":
            raise KeyboardInterrupt("run interrupted")
        write_dataset(ds, nc_path)
        ckpt.unlink(missing_ok=True)
        (runs / f"{run_hash}.failed.json").unlink(missing_ok=True)
        reason = note + ds.attrs.get("status_reason", "")
    except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - recorded, sweep goes on
        message = _one_line(err)
        with contextlib.suppress(OSError):
            _record_failure(runs, run_hash, message, traceback.format_exc())
        return {
            "hash": run_hash,
            "status": "failed",
            "reason": message,
            "seconds": time.perf_counter() - tic,
        }
    return {
        "hash": run_hash,
        "status": status,
        "reason": reason,
        "seconds": time.perf_counter() - tic,
    }


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _import_brian2_plugin():
    from distributed.diagnostics.plugin import WorkerPlugin

    class ImportBrian2(WorkerPlugin):
        """Import Brian2 in each worker's main thread: it installs a SIGINT handler on
        import, which fails in the thread that runs tasks."""

        name = "bioperturb-import-brian2"

        def setup(self, worker):
            import brian2  # noqa: F401

    return ImportBrian2()


@contextlib.contextmanager
def _client(sweep: Sweep, n_tasks: int):
    from distributed import Client, LocalCluster

    if sweep.scheduler:
        try:
            client = Client(sweep.scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError, TypeError) as err:
            key = "sweep.scheduler" if sweep.scheduler_where != "--scheduler" else ""
            raise ConfigError(
                sweep.scheduler_where,
                key,
                f"cannot connect to {sweep.scheduler}: {_one_line(err)}",
            ) from None
        with client:
            yield client
        return
    n_workers = max(1, min(sweep.workers or _default_workers(), n_tasks))
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        # no dashboard, and the scheduler's own HTTP routes on a free port, not 8787
        # (a second cluster on the machine, e.g. another sweep, would warn and move)
        scheduler_kwargs={"dashboard_address": ":0"},
        silence_logs=logging.ERROR,
    )
    with cluster, Client(cluster) as client:
        yield client


def _manifest(sweep: Sweep) -> dict[str, Any]:
    return {
        "format": 1,
        "sweep_file": str(sweep.path),
        "base": str(sweep.base),
        "keys": sweep.keys,
        "grid": sweep.grid,
        "points": [{"hash": p.hash, "values": p.values, "config": p.toml} for p in sweep.points],
    }


def _check_sweep_disk(sweep: Sweep, todo: list[Point]) -> None:
    """Refuse, before any run, a sweep whose runs to do cannot fit on the output disk."""
    from bioperturb.resources import Estimate, check_disk, estimate_protocol

    # the runs, and the merged file about as large again
    total = 2 * sum(estimate_protocol(p.protocol).output for p in todo)
    need = Estimate(memory=0, output=total, parts={})
    what = f"the {len(todo)} runs still to do and the merged file"
    check_disk(need, sweep.out, str(sweep.path), "", what)


def run_sweep(sweep: Sweep, *, progress: bool = True, collect_at_end: bool = True) -> dict:
    """Run every grid point whose result is missing; then merge into ``<out>/sweep.nc``.

    Returns a summary: counts per status (``reused`` for runs already on disk), the list
    of per-run results, the merged file and the wall time.
    """
    tic = time.perf_counter()
    runs = sweep.runs_dir
    todo, damaged = [], []
    for p in sweep.points:
        path = runs / f"{p.hash}.nc"
        problem = run_file_problem(path) if path.exists() else "missing"
        if problem:
            todo.append(p)
        if problem not in ("", "missing"):
            damaged.append(f"{path} is {problem}: it is computed again")
    _check_sweep_disk(sweep, todo)
    for note in damaged:
        print_note(note)
    runs.mkdir(parents=True, exist_ok=True)
    _write_atomic(sweep.out / MANIFEST, json.dumps(_manifest(sweep), indent=1))
    results: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(sweep.points), initial=len(sweep.points) - len(todo), unit="run")
    try:
        if todo:
            from distributed import as_completed

            with _client(sweep, len(todo)) as client:
                client.register_plugin(_import_brian2_plugin())
                client.register_plugin(plugins.worker_plugin())  # user tasks and rules
                futures = {
                    client.submit(
                        run_point, p.toml, str(runs.resolve()), p.hash, key=f"bioperturb-{p.hash}"
                    ): p
                    for p in todo
                }
                for future in as_completed(futures):
                    point = futures[future]
                    try:
                        result = future.result()
                    except Exception as err:  # noqa: BLE001 - e.g. a worker killed by the OS
                        result = {"hash": point.hash, "status": "failed", "reason": _one_line(err)}
                        _record_failure(runs, point.hash, result["reason"])
                    results.append(result)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix_str(f"{result['status']} {point.values}", refresh=False)
    finally:
        if bar is not None:
            bar.close()
    counts = {"reused": len(sweep.points) - len(todo), "completed": 0, "diverged": 0, "failed": 0}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    finished = any((runs / f"{p.hash}.nc").exists() for p in sweep.points)
    merged = collect(sweep.out) if collect_at_end and finished else None
    return {
        "counts": counts,
        "results": results,
        "merged": merged,
        "seconds": time.perf_counter() - tic,
    }


# --------------------------------------------------------------------------- collecting
def _read_manifest(out_dir: Path) -> dict[str, Any]:
    path = out_dir / MANIFEST
    if not out_dir.is_dir():
        raise ConfigError(str(out_dir), "", "not a directory (expected a sweep's output)")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(str(path), "", "not found: is this a sweep's output folder?") from None
    except (OSError, ValueError) as err:
        raise ConfigError(str(path), "", f"unreadable sweep manifest ({_one_line(err)})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != 1:
        raise ConfigError(str(path), "", "unsupported sweep manifest format")
    return manifest


def combine_runs(out_dir: str | Path):
    """The runs of a sweep as one lazy (dask-backed) Dataset; close it when done."""
    import numpy as np
    import xarray as xr

    out_dir = Path(out_dir)
    manifest = _read_manifest(out_dir)
    keys: list[str] = manifest["keys"]
    grid: dict[str, list[Any]] = manifest["grid"]
    shape = tuple(len(grid[k]) for k in keys)
    runs = out_dir / "runs"
    by_values = {json.dumps([p["values"][k] for k in keys]): p for p in manifest["points"]}

    cells: dict[tuple[int, ...], Any] = {}
    status = np.empty(shape, dtype=object)
    reason = np.empty(shape, dtype=object)
    run_ids = np.empty(shape, dtype=object)
    configs = np.empty(shape, dtype=object)
    template = None
    opened = []
    for index in np.ndindex(*shape):
        values = [grid[k][i] for k, i in zip(keys, index, strict=True)]
        point = by_values[json.dumps(values)]
        path = runs / f"{point['hash']}.nc"
        run_ids[index], configs[index] = point["hash"], point["config"]
        ds, problem = _open_run(path, chunks={}) if path.is_file() else (None, "missing")
        if ds is not None:
            opened.append(ds)
            status[index] = ds.attrs.get("status", "")
            reason[index] = ds.attrs.get("status_reason", "")
            cells[index] = ds
            template = template if template is not None else ds
            continue
        failed = runs / f"{point['hash']}.failed.json"
        status[index], reason[index] = "missing", "not run yet"
        if problem != "missing":
            status[index], reason[index] = "damaged", f"{path.name} is {problem}"
        if failed.is_file():
            with contextlib.suppress(OSError, ValueError):
                status[index] = "failed"
                reason[index] = json.loads(failed.read_text()).get("error", "")
    if template is None:
        raise ConfigError(str(out_dir), "", "no finished runs to collect yet")

    blank = xr.full_like(template, np.nan, dtype=float).drop_attrs()
    ragged = _ragged_sizes(list(cells.values()))
    nested: Any = np.empty(shape, dtype=object)
    counts = {dim: np.zeros(shape, dtype=np.int64) for dim in ragged}
    for index in np.ndindex(*shape):
        ds = cells.get(index, blank)
        for dim, longest in ragged.items():  # pad to the longest run: NaN, with a count
            size = ds.sizes.get(dim, 0)
            counts[dim][index] = size if index in cells else 0
            if dim in ds.dims and size < longest:
                ds = ds.pad({dim: (0, longest - size)})
        per_run = ("config", "status", "status_reason", "created", "seed")
        ds = ds.drop_attrs(deep=False).assign_attrs(
            {k: v for k, v in template.attrs.items() if k not in per_run}
        )
        nested[index] = ds.expand_dims({k: [grid[k][i]] for k, i in zip(keys, index, strict=True)})
    combined = xr.combine_nested(
        nested.tolist(), concat_dim=keys, join="outer", combine_attrs="override"
    )
    coords = {k: grid[k] for k in keys}
    for dim, count in counts.items():
        combined[f"{dim}_count"] = xr.DataArray(
            count,
            coords=coords,
            dims=keys,
            attrs={
                "units": "1",
                "long_name": f"entries of the ragged '{dim}' dimension in this run; "
                f"the entries after them are padding (NaN)",
            },
        )
    for var in combined.variables.values():
        # a variable stored as integers in a run but padded or filled here is float with
        # NaN: never write NaN back through the run's integer encoding (a fill value
        # that looks like data)
        if var.dtype.kind == "f" and np.dtype(var.encoding.get("dtype", "f8")).kind in "iu":
            for key in ("dtype", "_FillValue", "missing_value"):
                var.encoding.pop(key, None)
    for name, table, long_name in (
        ("status", status, "completed, diverged, failed, damaged or missing"),
        ("status_reason", reason, "why a run diverged or failed"),
        ("run", run_ids, "hash of the resolved protocol; the run is runs/<run>.nc"),
        ("config", configs, "resolved protocol (TOML)"),
    ):
        combined[name] = xr.DataArray(
            table.astype(str), coords=coords, dims=keys, attrs={"long_name": long_name}
        )
    combined.attrs.update(
        {
            "title": f"bioperturb sweep {Path(manifest['sweep_file']).name}",
            "sweep_keys": json.dumps(keys),
            "sweep_file": manifest["sweep_file"],
            "sweep_base": manifest["base"],
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    combined.attrs.pop("status", None)
    combined.attrs.pop("status_reason", None)
    combined.set_close(lambda: [ds.close() for ds in opened])
    return combined


def _ragged_sizes(runs: list[Any]) -> dict[str, int]:
    """Dimensions without a coordinate whose length differs between runs -> longest.

    Such a dimension (``spike``: one entry per recorded spike of a LIF run) cannot be
    aligned by label; the runs are padded to the longest along it.
    """
    sizes: dict[str, set[int]] = {}
    for ds in runs:
        for dim, n in ds.sizes.items():
            if dim not in ds.coords:
                sizes.setdefault(dim, set()).add(n)
    return {dim: max(ns) for dim, ns in sizes.items() if len(ns) > 1}


def collect(out_dir: str | Path, path: str | Path | None = None) -> Path:
    """Merge a sweep's finished runs into ``<out_dir>/sweep.nc`` (atomically); return it."""
    from bioperturb.dataset import write_dataset

    out_dir = Path(out_dir)
    target = Path(path) if path is not None else out_dir / RESULT
    combined = combine_runs(out_dir)
    try:
        write_dataset(combined, target)
    finally:
        combined.close()
    return target
