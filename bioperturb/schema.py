"""Typed, documented parameter dataclasses with Brian2 units.

Every configurable block of bioperturb (a task's parameters, a rule's parameters, the
model, the training schedule) is a frozen dataclass whose fields are declared with
:func:`param`.  A field that carries a physical unit stores its value as a plain float in
SI base units (seconds, hertz, ...) and is written in TOML as a Brian2 quantity string,
e.g. ``duration = "500 ms"``.  :func:`from_mapping` builds such a dataclass from a TOML
table and raises :class:`ConfigError` naming the file, the key and the reason for every
problem; :func:`to_mapping` turns it back into TOML-ready values.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "ConfigError",
    "param",
    "from_mapping",
    "to_mapping",
    "parse_quantity",
    "format_quantity",
    "describe",
]


class ConfigError(ValueError):
    """A configuration problem, reported on one line as ``file: key: reason``."""

    def __init__(self, where: str, key: str, reason: str):
        self.where = where
        self.key = key
        self.reason = reason
        super().__init__(f"{where}: {key}: {reason}" if key else f"{where}: {reason}")


def param(
    default: Any = dataclasses.MISSING,
    *,
    unit: str | None = None,
    positive: bool = False,
    nonnegative: bool = False,
    choices: tuple[str, ...] | None = None,
    doc: str = "",
) -> Any:
    """Declare a dataclass field with its unit, bounds and documentation.

    Parameters
    ----------
    default
        Default value (in SI base units for a unit field).  Omit for a required key.
    unit
        Brian2 unit the value is written in, e.g. ``"second"`` or ``"hertz"``; the stored
        value is a float in that SI unit.  ``None`` for dimensionless numbers.
    positive, nonnegative
        Bounds checked when the value is read.
    choices
        Allowed strings for a string field.
    doc
        One-line description (shown by ``bioperturb list`` and in docs tables).
    """
    meta = {
        "unit": unit,
        "positive": positive,
        "nonnegative": nonnegative,
        "choices": choices,
        "doc": doc,
    }
    if isinstance(default, (list, dict)):
        frozen = tuple(default) if isinstance(default, list) else dict(default)
        return dataclasses.field(default_factory=lambda: frozen, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


def _unit_namespace() -> dict[str, Any]:
    from brian2.units import allunits, fundamentalunits, stdunits

    ns = {}
    for module in (allunits, stdunits):
        ns.update({n: getattr(module, n) for n in dir(module) if not n.startswith("_")})
    units = {k: v for k, v in ns.items() if isinstance(v, fundamentalunits.Unit)}
    units.setdefault("s", allunits.second)  # Brian2 spells it "second"; "1 s" is natural too
    return units


_UNITS: dict[str, Any] | None = None


def _units() -> dict[str, Any]:
    global _UNITS
    if _UNITS is None:
        _UNITS = _unit_namespace()
    return _UNITS


#: the unit grammar: products and quotients of unit names, numbers and parenthesised
#: groups, each optionally raised to a small integer power (``^`` or ``**``)
_TOKEN = re.compile(r"\s*(?:(\*\*|[-*/^()])|([A-Za-z_][A-Za-z_0-9]*)|(\d+(?:\.\d*)?|\.\d+))")
#: powers and nesting a unit can need; more is a typo or an attack, not a unit
_MAX_POWER, _MAX_DEPTH = 8, 8


def _unit_object(text: str):
    """Evaluate a unit expression such as ``ms``, ``mV``, ``1/s`` or ``m/s^2``.

    A small parser, never ``eval``: names must be Brian2 units, powers small integers;
    anything else raises ``ValueError`` with the reason.
    """
    tokens: list[str] = []
    pos, text = 0, str(text)
    while pos < len(text.rstrip()):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ValueError(f"'{text}' is not a unit (unexpected '{text[pos:].strip()[:10]}')")
        tokens.append(next(g for g in match.groups() if g is not None))
        pos = match.end()
    if not tokens:
        raise ValueError("empty unit")
    units = _units()
    at = 0

    def fail(reason: str):
        raise ValueError(f"'{text}' is not a unit ({reason})")

    def peek() -> str | None:
        return tokens[at] if at < len(tokens) else None

    def take() -> str:
        nonlocal at
        at += 1
        return tokens[at - 1]

    def product(depth: int):
        value = power(depth)
        while peek() in ("*", "/"):
            op = take()
            rhs = power(depth)
            value = value * rhs if op == "*" else value / rhs
        return value

    def power(depth: int):
        value = atom(depth)
        if peek() in ("^", "**"):
            take()
            sign = 1
            if peek() == "-":
                take()
                sign = -1
            exponent = take() if peek() is not None else fail("a power needs an exponent")
            if not exponent.isdigit() or not 0 < int(exponent) <= _MAX_POWER:
                fail(f"powers are whole numbers 1 … {_MAX_POWER}, got '{exponent}'")
            value = value ** (sign * int(exponent))
        return value

    def atom(depth: int):
        token = take() if peek() is not None else fail("ends too early")
        if token == "(":
            if depth >= _MAX_DEPTH:
                fail(f"more than {_MAX_DEPTH} nested parentheses")
            value = product(depth + 1)
            if peek() != ")":
                fail("a '(' is not closed")
            take()
            return value
        if token[0].isalpha() or token[0] == "_":
            if token not in units:
                raise ValueError(f"unknown unit '{token}'")
            return units[token]
        if token[0].isdigit() or token[0] == ".":
            return float(token)
        return fail(f"unexpected '{token}'")

    with np.errstate(all="raise"):
        try:
            value = product(0)
        except (ArithmeticError, FloatingPointError) as err:  # 1/(0 ms), huge powers
            fail(f"{type(err).__name__}: {err}")
    if at != len(tokens):
        fail(f"unexpected '{tokens[at]}'")
    return value


def parse_quantity(value: Any, unit: str) -> float:
    """Parse ``"10 ms"`` (or a bare number for dimensionless units) to SI float.

    Raises ``ValueError`` with the reason when the text is not a quantity or its
    dimensions do not match ``unit``.
    """
    from brian2.units.fundamentalunits import Quantity, get_dimensions

    target = _unit_object(unit)
    if isinstance(value, bool):
        raise ValueError(f"expected a quantity in units of {unit}, got a boolean")
    if isinstance(value, (int, float)):
        if get_dimensions(target).is_dimensionless:
            return float(value)
        raise ValueError(f'needs a unit, e.g. "{value} {_example(unit)}" (dimension of {unit})')
    if not isinstance(value, str):
        raise ValueError(f'expected a quantity string like "10 {_example(unit)}"')
    match = _QUANTITY.match(value)
    if not match:
        raise ValueError(f"'{value}' is not a number followed by a unit")
    number, unit_text = match.groups()
    quantity = float(number) * (_unit_object(unit_text) if unit_text else 1)
    q_dim = get_dimensions(quantity)
    t_dim = get_dimensions(target)
    if q_dim is not t_dim:
        raise ValueError(
            f"'{value}' has dimensions {q_dim}, expected {t_dim} (e.g. {_example(unit)})"
        )
    return float(Quantity(quantity) / target)


def _example(unit: str) -> str:
    return {"second": "ms", "hertz": "Hz", "volt": "mV", "amp": "nA", "siemens": "nS"}.get(
        unit, unit
    )


def format_quantity(value: float, unit: str) -> str:
    """Format an SI float as a Brian2 quantity string that :func:`parse_quantity` reads."""
    from brian2.units.fundamentalunits import get_dimensions

    if get_dimensions(_unit_object(unit)).is_dimensionless:
        return repr(float(value))
    preferred = {"second": "ms", "hertz": "Hz", "volt": "mV", "amp": "nA", "siemens": "nS"}
    disp = preferred.get(unit, unit)
    scale = float(_unit_object(disp) / _unit_object(unit))
    return f"{value / scale!r} {disp}"


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, meta: Mapping[str, Any], where: str, key: str) -> Any:
    tp, optional = _strip_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(where, key, "must not be empty")
    unit = meta.get("unit")
    try:
        if unit is not None:
            out: Any = parse_quantity(value, unit)
        elif tp is bool:
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {value!r}")
            out = value
        elif tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"expected an integer, got {value!r}")
            out = value
        elif tp is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"expected a number, got {value!r}")
            out = float(value)
        elif tp is str:
            if not isinstance(value, str):
                raise ValueError(f"expected a string, got {value!r}")
            out = value
        elif typing.get_origin(tp) is tuple:
            (inner,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"expected a list, got {value!r}")
            out = tuple(_coerce(v, inner, {}, where, f"{key}[{i}]") for i, v in enumerate(value))
        else:
            out = value
    except ValueError as err:
        raise ConfigError(where, key, str(err)) from None
    if isinstance(out, float) and not math.isfinite(out):
        raise ConfigError(where, key, f"must be finite, got {value!r}")
    if meta.get("positive") and isinstance(out, (int, float)) and not out > 0:
        raise ConfigError(where, key, f"must be positive, got {value!r}")
    if meta.get("nonnegative") and isinstance(out, (int, float)) and out < 0:
        raise ConfigError(where, key, f"must not be negative, got {value!r}")
    choices = meta.get("choices")
    if choices and out not in choices:
        raise ConfigError(where, key, f"must be one of {', '.join(choices)}; got {value!r}")
    return out


def from_mapping(cls: type, data: Mapping[str, Any], where: str, prefix: str = "") -> Any:
    """Build the dataclass ``cls`` from a TOML table, validating every key.

    ``where`` names the file (for error messages) and ``prefix`` the table, so that a
    problem is reported as ``protocol.toml: task.duration: needs a unit``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(where, prefix.rstrip("."), "expected a table")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        close = _closest(unknown[0], fields)
        hint = f" (did you mean '{close}'?)" if close else f" (known: {', '.join(sorted(fields))})"
        raise ConfigError(where, prefix + unknown[0], f"unknown key{hint}")
    kwargs = {}
    for name, f in fields.items():
        key = prefix + name
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], f.metadata, where, key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(where, key, "required key is missing")
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        try:
            check()
        except ValueError as err:  # "field: reason" names the field's key
            name, sep, reason = str(err).partition(": ")
            if sep and name in fields:
                raise ConfigError(where, prefix + name, reason) from None
            raise ConfigError(where, prefix.rstrip("."), str(err)) from None
    return obj


def _closest(word: str, options) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return found[0] if found else None


def to_mapping(obj: Any) -> dict[str, Any]:
    """TOML-ready values of a parameter dataclass (unit fields as quantity strings)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        unit = f.metadata.get("unit")
        if unit is not None:
            value = format_quantity(value, unit)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def describe(cls: type) -> list[tuple[str, str, str, str]]:
    """Rows ``(name, default, unit, doc)`` for documentation tables."""
    rows = []
    for f in dataclasses.fields(cls):
        unit = f.metadata.get("unit") or "1"
        if f.default is not dataclasses.MISSING:
            default = f.default
            # a unit field may default to None ("as another key": rule.tau_e_out)
            quantity = f.metadata.get("unit") and default is not None
            shown = format_quantity(default, unit) if quantity else repr(default)
        elif f.default_factory is not dataclasses.MISSING:
            shown = repr(f.default_factory())
        else:
            shown = "(required)"
        rows.append((f.name, shown, unit, f.metadata.get("doc", "")))
    return rows
