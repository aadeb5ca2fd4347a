"""Task registry: one task per file, looked up by name."""

from __future__ import annotations

from bioperturb.tasks.base import Task, Trials
from bioperturb.tasks.copy import CopyTask
from bioperturb.tasks.delayed_match import DelayedMatchTask
from bioperturb.tasks.flip_flop import FlipFlopTask
from bioperturb.tasks.mackey_glass import MackeyGlassTask
from bioperturb.tasks.pattern import PatternTask
from bioperturb.tasks.perceptual_decision import PerceptualDecisionTask

__all__ = ["Task", "Trials", "TASKS", "get_task"]

TASKS: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (
        PatternTask,
        DelayedMatchTask,
        FlipFlopTask,
        CopyTask,
        MackeyGlassTask,
        PerceptualDecisionTask,
    )
}


def get_task(name: str) -> type[Task]:
    """The task class registered under ``name`` (KeyError lists the known names)."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task '{name}' (known: {', '.join(sorted(TASKS))})") from None
