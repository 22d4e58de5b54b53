from __future__ import annotations

import pytest

from pymesh.api.duration import parse_duration


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("0", 0.0),
        ("0s", 0.0),
        ("1s", 1.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("250ms", 0.25),
        ("100us", 0.0001),
        ("100\u00b5s", 0.0001),  # micro sign
        ("100\u03bcs", 0.0001),  # Greek mu
        ("10ns", 1e-08),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h2m3.5s", 3723.5),
        ("2h45m", 9900.0),
        ("1s500ms", 1.5),
        ("+5s", 5.0),
    ],
)
def test_good(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "invalid duration '': empty"),
        ("5", "invalid duration '5': missing unit"),
        ("1.5", "invalid duration '1.5': missing unit"),
        ("1m30", "invalid duration '1m30': missing unit"),
        ("-1s", "invalid duration '-1s': must not be negative"),
        ("1x", "invalid duration '1x': expected numbers with units"),
        ("s", "invalid duration 's': expected numbers with units"),
        (" 1s", "invalid duration ' 1s': expected numbers with units"),
        ("1 s", "invalid duration '1 s': expected numbers with units"),
        ("1sec", "invalid duration '1sec': expected numbers with units"),
        ("1d", "invalid duration '1d': expected numbers with units"),
        (5, "invalid duration 5: expected a string"),
    ],
)
def test_bad(text, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value).startswith(message)
