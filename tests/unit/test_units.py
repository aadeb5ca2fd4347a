"""The unit grammar (``schema._unit_object``): a parser, never ``eval``.

Known answers for what units look like in protocols, one-line errors for the abuse that
``eval`` let through (huge powers, division by zero, calls, attributes, deep nesting), and
a property test: any text over the grammar's alphabet gives a float or a ValueError, fast.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bioperturb.schema import ConfigError, from_mapping, param, parse_quantity


@pytest.mark.parametrize(
    ("text", "unit", "value"),
    [
        ("10 ms", "second", 0.01),
        ("2 1/s", "hertz", 2.0),
        ("3 s^-1", "hertz", 3.0),
        ("2 (1/ms)", "hertz", 2000.0),
        ("1 metre/second**2", "metre/second^2", 1.0),
        ("2 ms * Hz", "1", 0.002),
        ("4 nS", "siemens", 4e-9),
        ("-1.5 mV", "volt", -1.5e-3),
    ],
)
def test_units_as_protocols_write_them(text, unit, value):
    assert parse_quantity(text, unit) == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("40 ms^9^9^9", "powers are whole numbers"),
        ("40 ms^100", "powers are whole numbers"),
        ("40 ms^1.5", "powers are whole numbers"),
        ("1/0 ms", "unexpected '/'"),
        ("40 1/(0*ms)", "divide by zero"),
        ("40 ms()", "unexpected '('"),
        ("40 ms.ms", "unexpected '.ms'"),
        ("40 " + "(" * 50 + "ms" + ")" * 50, "nested parentheses"),
        ("40 (ms", "not closed"),
        ("40 ms*", "ends too early"),
        ("40 __import__", "unknown unit '__import__'"),
        ("40 ms; import os", "unexpected ';"),
        ("40 " + "*".join(["ms"] * 400), "dimensions"),
    ],
)
def test_abuse_is_a_one_line_error(text, reason):
    tic = time.perf_counter()
    with pytest.raises(ValueError) as err:
        parse_quantity(text, "second")
    assert reason in str(err.value) and "\n" not in str(err.value)
    assert time.perf_counter() - tic < 1.0


def test_a_bad_unit_names_file_and_key():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Params:
        duration: float = param(1.0, unit="second", doc="d")

    with pytest.raises(ConfigError) as err:
        from_mapping(Params, {"duration": "40 ms^9^9^9"}, "p.toml", "task.")
    assert err.value.where == "p.toml" and err.value.key == "task.duration"


ALPHABET = st.sampled_from(
    ["ms", "s", "Hz", "mV", "metre", "1", "0", "2.5", "9", "*", "**", "/", "^", "-", "(", ")"]
    + [" ", ".", "e", "x", "_", ";"]
)


@settings(max_examples=400, deadline=1000)
@given(st.lists(ALPHABET, max_size=30).map("".join))
def test_any_text_is_a_float_or_a_value_error(text):
    try:
        value = parse_quantity(f"1 {text}", "second")
    except ValueError:
        return
    assert isinstance(value, float)
