"""Memory and disk a run will need, estimated from its protocol before any work is done.

A protocol that passes validation should not fail after hours for want of memory or
disk. :func:`estimate` adds up the large arrays a run allocates: the task's training
trials and the tape that lays them end to end (held twice, as arrays and as the
network's TimedArrays), the per-synapse state of the network (its weights, their
accumulators, eligibilities and optimiser moments) and the records kept for the Dataset
(weights at every evaluation, sampled traces, per-trial losses). The per-synapse cost is
an upper bound measured on each engine (Brian2's runtime objects keep indices and
several variables per synapse), not an exact count; everything else is exact to within
small terms. :func:`check_memory` refuses a run whose estimate exceeds the machine's
physical memory (``engine.check_memory = false`` lets it go ahead), and
:func:`check_disk` one whose Dataset cannot fit on the output folder's disk.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bioperturb.schema import ConfigError

if TYPE_CHECKING:
    from bioperturb.protocol import Protocol

__all__ = [
    "BYTES_PER_SYNAPSE",
    "MAX_TRIAL_STEPS",
    "Estimate",
    "estimate",
    "estimate_protocol",
    "physical_memory",
    "check_memory",
    "check_disk",
    "existing_ancestor",
    "human_bytes",
    "synapse_state_bytes",
    "sparse_slots",
]

#: upper bound of the bytes of state per synapse of W_rec, by engine (measured with
#: :func:`synapse_state_bytes`: Brian2's runtime Synapses keep int32 indices and several
#: float64 variables per synapse, 64 B for a TD-ANP trace with Adam; the standalone
#: program 32–56 B, docs/engines.md; the estimate leaves room for the rules' extras)
BYTES_PER_SYNAPSE = {"runtime": 200, "standalone": 120}

#: most steps one trial may have (the task's arrays are built per step)
MAX_TRIAL_STEPS = 1_000_000

#: tape columns besides inputs and targets (mask, noise, learn, step, m_inv, n_updates,
#: condition)
_TAPE_EXTRA = 7


#: the protocol key that sets the size of each part of the estimate
_KEY_OF_PART = {
    "training trials": "training.n_trials",
    "tape": "training.n_trials",
    "synapses": "model.n_hidden",
    "weights recorded": "training.eval_every",
    "traces recorded": "output.record_dt",
}


@dataclass(frozen=True)
class Estimate:
    """Bytes a run needs: ``memory`` in all (``parts`` by what), ``output`` on disk."""

    memory: int
    output: int
    parts: dict[str, int]

    def describe(self) -> str:
        biggest = sorted(self.parts.items(), key=lambda kv: -kv[1])[:3]
        return ", ".join(f"{name} {human_bytes(n)}" for name, n in biggest)


def synapse_state_bytes(syn: Any) -> int:
    """Bytes per synapse of a Brian2 ``Synapses`` object's own per-synapse arrays.

    Each array counts once: Brian2 names the index arrays several times (``i`` and
    ``_presynaptic_idx`` are ``_synaptic_pre``; ``j`` and ``_postsynaptic_idx`` are
    ``_synaptic_post``), as references to the same variable.
    """
    from brian2.core.variables import DynamicArrayVariable

    own = {
        id(var): var
        for var in syn.variables.values()
        if isinstance(var, DynamicArrayVariable) and var.owner.name == syn.name
    }
    return sum(np.dtype(var.dtype).itemsize for var in own.values())


def sparse_slots(n_post: int, n_pre: int, p: float) -> int:
    """Synapses a program stores for a sparse matrix of connection probability ``p``.

    The number of existing synapses is Binomial(n_post · n_pre, p) and changes with the
    seed, while a compiled program must not: it holds the mean plus 8 standard deviations
    (and 8) — a seed exceeds that with probability below 1e-15, and is refused if it does.
    """
    cells = n_post * n_pre
    return min(cells, int(np.ceil(cells * p + 8.0 * np.sqrt(cells * p * (1.0 - p)))) + 8)


def human_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def longest_period(task_params: object) -> float:
    """The task's longest duration parameter (in s): a trial has at least that many seconds."""
    import dataclasses

    longest = 0.0
    for f in dataclasses.fields(task_params):  # type: ignore[arg-type]
        value = getattr(task_params, f.name)
        if f.metadata.get("unit") == "second" and isinstance(value, int | float):
            longest = max(longest, float(value))
    return longest


def check_trial_length(protocol: Protocol, where: str) -> None:
    """Refuse, before the task is built, a period of more than :data:`MAX_TRIAL_STEPS` steps."""
    seconds = longest_period(protocol.task)
    steps = seconds / protocol.model.dt
    if steps > MAX_TRIAL_STEPS:
        raise ConfigError(
            where,
            "model.dt",
            f"{protocol.model.dt:g} s makes the task's {seconds:g} s period about {steps:.3g} "
            f"steps (a trial may have at most {MAX_TRIAL_STEPS:,}): use a larger model.dt",
        )


def estimate(protocol: Protocol, n_steps: int, n_in: int, n_out: int, n_cond: int) -> Estimate:
    """What a run of ``protocol`` needs, given its task's trial shape."""
    t, o, m = protocol.training, protocol.output, protocol.model
    n = m.n_hidden
    n_evals = t.n_trials // t.eval_every + 1
    p = getattr(m, "p_connect", 1.0)
    # W_rec's synapses: what the engine stores (the runtime engine: the existing ones)
    rec = n * n if p >= 1 else sparse_slots(n, n, p)
    samples = max(1, round(n_steps * m.dt / o.record_dt))
    rows = 1 + (t.n_trials + n_evals * n_cond) * n_steps  # row 0: the reset step
    f8 = 8
    weights = n * n + n * n_in + n_out * n
    parts = {
        "training trials": t.n_trials * n_steps * (n_in + n_out + 1) * f8,
        "tape": 2 * rows * (n_in + n_out + _TAPE_EXTRA) * f8,
        "synapses": (weights - n * n + rec) * BYTES_PER_SYNAPSE[protocol.engine.name],
        "weights recorded": n_evals * weights * f8,
        "traces recorded": n_evals * n_cond * samples * (o.n_record_units + n_out) * f8
        + t.n_trials * (samples + 3) * f8,
    }
    output = parts["weights recorded"] + parts["traces recorded"]
    return Estimate(memory=sum(parts.values()), output=output, parts=parts)


def estimate_protocol(protocol: Protocol) -> Estimate:
    """:func:`estimate` for a validated protocol (its task is built to learn its shape)."""
    from bioperturb.tasks import get_task

    task = get_task(protocol.task_name)(protocol.task, protocol.model.dt)
    n_cond = task.eval_trials().n_trials
    return estimate(protocol, task.n_steps, task.n_inputs, task.n_outputs, n_cond)


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def check_memory(protocol: Protocol, need: Estimate, where: str) -> None:
    """Refuse a run that needs more memory than the machine has (unless told not to)."""
    have = physical_memory()
    if not protocol.engine.check_memory or have is None or need.memory <= have:
        return
    biggest = max(need.parts, key=need.parts.__getitem__)
    raise ConfigError(
        where,
        _KEY_OF_PART[biggest],
        f"the run would need about {human_bytes(need.memory)} of memory "
        f"({need.describe()}), more than this machine's {human_bytes(have)}: use fewer "
        f"units, trials or evaluations (or set engine.check_memory = false)",
    )


def existing_ancestor(path: Path) -> Path:
    """``path`` resolved, or its nearest parent that exists (a folder not made yet)."""
    probe = path.resolve()
    while not probe.exists():
        probe = probe.parent
    return probe


def check_disk(
    need: Estimate, out_dir: Path, where: str, key: str, what: str = "the run's Dataset"
) -> None:
    """Refuse a run whose Dataset (``what``) will not fit on the disk of ``out_dir``."""
    probe = existing_ancestor(Path(out_dir))
    free = shutil.disk_usage(probe).free
    if need.output > free:
        raise ConfigError(
            where,
            key,
            f"{what} would take about {human_bytes(need.output)}, but only "
            f"{human_bytes(free)} is free on {probe}",
        )
