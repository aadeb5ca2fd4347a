"""Task registry: one task per file, looked up by name; users add their own
(``@register_task``, entry point ``bioperturb.tasks``, or ``"module:Class"``)."""

from __future__ import annotations

from bioperturb.registry import Registry, decorator_for
from bioperturb.tasks.base import Task, Trials
from bioperturb.tasks.classify import ClassifyTask
from bioperturb.tasks.copy import CopyTask
from bioperturb.tasks.delayed_match import DelayedMatchTask
from bioperturb.tasks.digits import SequentialDigitsTask
from bioperturb.tasks.flip_flop import FlipFlopTask
from bioperturb.tasks.mackey_glass import MackeyGlassTask
from bioperturb.tasks.pattern import PatternTask
from bioperturb.tasks.perceptual_decision import PerceptualDecisionTask

__all__ = ["Task", "Trials", "TASKS", "get_task", "register_task"]

#: every task by name (a read-only mapping; see :class:`bioperturb.registry.Registry`)
TASKS = Registry(
    "task",
    Task,
    "bioperturb.tasks",
    {
        cls.name: cls
        for cls in (
            PatternTask,
            DelayedMatchTask,
            FlipFlopTask,
            CopyTask,
            MackeyGlassTask,
            PerceptualDecisionTask,
            SequentialDigitsTask,
            ClassifyTask,
        )
    },
)

register_task = decorator_for(TASKS)


def get_task(name: str) -> type[Task]:
    """The task class of ``name``: a registered name, an entry point or ``"module:Class"``.

    An unknown name raises KeyError (with a did-you-mean hint and the known names); an
    import path that does not give a Task raises ValueError.
    """
    return TASKS[name]
