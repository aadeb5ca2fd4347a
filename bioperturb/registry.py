"""Open registries of named classes (tasks, rules, model kinds) that users extend.

A :class:`Registry` is a read-only mapping ``name -> class``: ``TASKS["pattern"]``,
``"pattern" in TASKS`` and ``sorted(TASKS)`` work as on a dict. A name resolves to

* a **builtin**: the classes the package ships, given when the registry is made;
* a class **registered** with the decorator (``@register_task``, ``@register_rule``),
  under its ``name`` attribute or the name given (``@register_rule("my_rule")``);
* an **entry point** of the registry's group (``bioperturb.tasks``, ``bioperturb.rules``,
  ``bioperturb.models``) declared by an installed distribution, loaded on first use;
* an **import path** ``"package.module:Class"``: the module is imported and the class is
  registered under that full string.

Failures are one-line messages: an unknown name raises :class:`UnknownName` (a
``KeyError``) with a did-you-mean hint and the known names; a module that cannot be
imported, a missing attribute, an object of the wrong type or a name given to two
different classes raise :class:`RegistryError` (a ``ValueError``). The configuration
turns both into the usual ``file: key: reason`` error.

The modules that define decorator-registered classes are recorded
(:func:`registered_modules`), so that processes the package starts (the standalone build,
dask workers) import them again: see :mod:`bioperturb.plugins`.
"""

from __future__ import annotations

import difflib
import importlib
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

__all__ = [
    "Registry",
    "RegistryError",
    "UnknownName",
    "registered_modules",
    "REGISTRIES",
]

T = TypeVar("T", bound=type)

#: every registry made, by entry-point group
REGISTRIES: dict[str, Registry] = {}


class UnknownName(KeyError):
    """No class of this name (the message lists the known names)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RegistryError(ValueError):
    """A name that cannot be resolved to a usable class, or a name given twice."""


def _describe(cls: Any) -> str:
    return f"{getattr(cls, '__module__', '?')}:{getattr(cls, '__qualname__', repr(cls))}"


def _dist_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) or "?"


class Registry(Mapping[str, type]):
    """Named classes of one kind: builtins, decorated classes, entry points, import paths.

    Parameters
    ----------
    kind
        What the classes are, for messages ("task", "rule", "model").
    base
        The class every entry must subclass (``None``: anything goes).
    group
        The entry-point group searched for plugins (``"bioperturb.tasks"``).
    builtins
        The shipped classes by name.
    """

    def __init__(
        self,
        kind: str,
        base: type | None,
        group: str,
        builtins: Mapping[str, type] | None = None,
    ):
        self.kind = kind
        self.base = base
        self.group = group
        self._builtins: dict[str, type] = dict(builtins or {})
        self._registered: dict[str, type] = {}  # by the decorator
        self._paths: dict[str, type] = {}  # by "module:Class"
        self._eps: dict[str, EntryPoint] = {}  # the group's entry points, by name
        self._ep_classes: dict[str, type] = {}  # those loaded so far
        self._scanned_for: tuple[str, ...] | None = None
        self._lock = threading.RLock()
        REGISTRIES[group] = self

    # -- registering ------------------------------------------------------------------
    def register(self, cls_or_name: T | str | None = None) -> Any:
        """Register a class; a decorator, bare or with a name.

        ``@TASKS.register`` registers under the class's own ``name`` attribute;
        ``@TASKS.register("interval")`` under the name given (and sets ``cls.name`` to it
        where the class does not define one itself). Registering a name that a builtin or
        another class holds raises :class:`RegistryError` naming both; registering the same
        class (same module and qualified name) again replaces it, so a module may be
        imported twice.
        """
        if isinstance(cls_or_name, type):
            return self._register(cls_or_name, None)
        if cls_or_name is not None and not isinstance(cls_or_name, str):
            raise TypeError(f"register() takes a class or a name, not {cls_or_name!r}")

        def decorator(cls: T) -> T:
            return self._register(cls, cls_or_name)

        return decorator

    def _register(self, cls: T, name: str | None) -> T:
        self._check_class(cls)
        if name is None:
            name = cls.__dict__.get("name")
            if not isinstance(name, str) or not name:
                raise RegistryError(
                    f"{self.kind} class {_describe(cls)} has no 'name' of its own: set "
                    f"name = '...' in the class or register it with a name "
                    f"(@register_{self.kind}('my_name'))"
                )
        elif "name" not in cls.__dict__:
            cls.name = name  # type: ignore[attr-defined]
        if ":" in name:
            raise RegistryError(f"{self.kind} name {name!r}: ':' is kept for import paths")
        with self._lock:
            if name in self._builtins and self._builtins[name] is not cls:
                raise RegistryError(
                    f"{self.kind} '{name}' of {_describe(cls)} clashes with the builtin "
                    f"{self.kind} '{name}' ({_describe(self._builtins[name])})"
                )
            old = self._registered.get(name)
            if old is not None and _describe(old) != _describe(cls):
                raise RegistryError(
                    f"{self.kind} '{name}' of {_describe(cls)} clashes with '{name}' "
                    f"registered by {_describe(old)}"
                )
            if name not in self._builtins:
                self._registered[name] = cls
        return cls

    def unregister(self, name: str) -> None:
        """Forget a decorator-registered or import-path class (builtins stay)."""
        with self._lock:
            self._registered.pop(name, None)
            self._paths.pop(name, None)

    def _check_class(self, obj: Any, what: str | None = None) -> None:
        if self.base is None or (isinstance(obj, type) and issubclass(obj, self.base)):
            return
        this = (
            f"class {_describe(obj)}" if isinstance(obj, type) else f"{type(obj).__name__} {obj!r}"
        )
        base = f"{self.base.__module__}.{self.base.__qualname__}"
        raise RegistryError(f"{what + ': ' if what else ''}{this} is not a subclass of {base}")

    # -- entry points -----------------------------------------------------------------
    def _scan(self) -> None:
        """Read the group's entry points again when sys.path has changed."""
        snapshot = tuple(sys.path)
        if self._scanned_for == snapshot:
            return
        found: dict[str, EntryPoint] = {}
        for ep in entry_points(group=self.group):
            other = found.get(ep.name)
            if other is not None and other.value != ep.value:
                raise RegistryError(
                    f"entry point {self.group} '{ep.name}' is declared twice: by "
                    f"{_dist_name(other)} ({other.value}) and by {_dist_name(ep)} ({ep.value})"
                )
            if ep.name in self._builtins:
                raise RegistryError(
                    f"entry point {self.group} '{ep.name}' of distribution {_dist_name(ep)} "
                    f"({ep.value}) clashes with the builtin {self.kind} '{ep.name}' "
                    f"({_describe(self._builtins[ep.name])})"
                )
            found[ep.name] = ep
        self._ep_classes = {
            k: v for k, v in self._ep_classes.items() if k in found and found[k] == self._eps[k]
        }
        self._eps = found
        self._scanned_for = snapshot

    def _load_entry_point(self, name: str) -> type:
        ep = self._eps[name]
        cls = self._ep_classes.get(name)
        if cls is not None:
            return cls
        module, _, attr = ep.value.partition(":")
        what = f"entry point {self.group} '{name}' of distribution {_dist_name(ep)}"
        cls = self._import(module.strip(), attr.strip(), what)
        registered = self._registered.get(name)
        if registered is not None and registered is not cls:
            raise RegistryError(
                f"{what} ({ep.value}) clashes with '{name}' registered by {_describe(registered)}"
            )
        self._ep_classes[name] = cls
        return cls

    # -- import paths -----------------------------------------------------------------
    def _import(self, module: str, attr: str, what: str) -> type:
        """``module.attr`` (``attr`` may be dotted), checked to be of the registry's kind."""
        if not module or not attr:
            raise RegistryError(f"{what}: expected 'package.module:Class'")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name and (module == err.name or module.startswith(err.name + ".")):
                raise UnknownName(
                    f"{what}: module '{module}' not found (is it installed, or its folder on "
                    f"sys.path / PYTHONPATH?)"
                ) from None
            raise RegistryError(f"{what}: importing '{module}' failed: {err}") from None
        except Exception as err:  # noqa: BLE001 - any error of the user's module
            raise RegistryError(
                f"{what}: importing '{module}' failed: {type(err).__name__}: {err}"
            ) from None
        obj: Any = mod
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise UnknownName(f"{what}: module '{module}' has no attribute '{attr}'")
            obj = getattr(obj, part)
        self._check_class(obj, what)
        return obj

    def _resolve_path(self, name: str) -> type:
        cls = self._paths.get(name)
        if cls is None:
            module, _, attr = name.partition(":")
            cls = self._import(module.strip(), attr.strip(), f"{self.kind} '{name}'")
            self._paths[name] = cls
        return cls

    # -- the mapping ------------------------------------------------------------------
    def __getitem__(self, name: str) -> type:
        with self._lock:
            if isinstance(name, str):
                self._scan()
                if name in self._builtins:
                    return self._builtins[name]
                if name in self._eps:
                    return self._load_entry_point(name)
                if name in self._registered:
                    return self._registered[name]
                if ":" in name:
                    return self._resolve_path(name)
            raise UnknownName(self.unknown_message(name))

    def unknown_message(self, name: Any) -> str:
        """``unknown task 'x' (did you mean 'y'? known: …)``."""
        known = sorted(self)
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown {self.kind} '{name}' ({hint}known: {', '.join(known)})"

    def __contains__(self, name: object) -> bool:
        try:
            self[name]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def names(self) -> list[str]:
        """Every name known without importing anything (builtins first)."""
        with self._lock:
            self._scan()
            out = list(self._builtins)
            for group in (self._eps, self._registered, self._paths):
                out += [name for name in group if name not in out]
            return out

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def origin(self, name: str) -> str:
        """Where ``name`` comes from: ``builtin``, ``entry point <dist>``,
        ``import path`` or ``registered in <module>``."""
        with self._lock:
            self._scan()
            if name in self._builtins:
                return "builtin"
            if name in self._eps:
                return f"entry point {_dist_name(self._eps[name])}"
            if name in self._registered:
                return f"registered in {self._registered[name].__module__}"
            if name in self._paths:
                return "import path"
        raise UnknownName(self.unknown_message(name))

    def is_builtin(self, cls: type) -> bool:
        """Whether ``cls`` is one of the shipped classes."""
        return any(cls is b for b in self._builtins.values())

    def registered_modules(self) -> list[str]:
        """The modules that define decorator-registered classes (in registration order)."""
        with self._lock:
            mods = [cls.__module__ for cls in self._registered.values()]
        return list(dict.fromkeys(mods))

    def __repr__(self) -> str:
        return f"<Registry of {self.kind}s ({self.group}): {', '.join(sorted(self))}>"


def registered_modules() -> list[str]:
    """The modules defining decorator-registered classes of every registry."""
    mods: list[str] = []
    for registry in REGISTRIES.values():
        mods += registry.registered_modules()
    return list(dict.fromkeys(mods))


def decorator_for(registry: Registry) -> Callable[..., Any]:
    """A ``register_<kind>`` decorator bound to ``registry`` (with a docstring)."""

    def register(cls_or_name: Any = None) -> Any:
        return registry.register(cls_or_name)

    register.__name__ = register.__qualname__ = f"register_{registry.kind}"
    register.__doc__ = (
        f"Register a {registry.kind} class: ``@register_{registry.kind}`` (under its ``name``) "
        f"or ``@register_{registry.kind}('name')``; see :meth:`Registry.register`."
    )
    return register
