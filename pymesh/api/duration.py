"""Istio durations ("250ms", "1.5s", "1m30s") as float seconds.

Istio accepts both protobuf Duration strings ("1.5s") and Go-style durations ("250ms", "1h", "1m30s");
both are a sequence of decimal numbers, each with a unit. Parsed once at load time so nothing
downstream ever sees the string form.
"""

from __future__ import annotations

import re
from decimal import Decimal

# Summed in exact nanoseconds so that "100us" is 0.0001, not 9.999999999999999e-05.
_UNIT_NANOS = {
    "h": 3_600_000_000_000,
    "m": 60_000_000_000,
    "s": 1_000_000_000,
    "ms": 1_000_000,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign, as Go writes it
    "\u03bcs": 1_000,  # Greek small mu, which Go accepts too
    "ns": 1,
}
# "ms" must be tried before "m" so that "100ms" is not read as "100m" followed by junk.
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_PART = re.compile(_NUMBER + r"(ms|us|\u00b5s|\u03bcs|ns|h|m|s)")
_BARE_NUMBER = re.compile(_NUMBER + "$")

EXAMPLE = 'e.g. "250ms", "1.5s" or "1m30s"'


def parse_duration(text: str) -> float:
    """Seconds in `text`; ValueError naming the input when it is not a duration.

    A bare "0" is accepted (Go does too); every other number needs a unit. Negative durations
    are rejected: no Istio field has a meaning for them.
    """
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r}: expected a string with a unit, {EXAMPLE}")
    if text == "0":
        return 0.0
    if text.startswith("-"):
        raise ValueError(f"invalid duration {text!r}: must not be negative")
    body = text[1:] if text.startswith("+") else text
    if not body:
        raise ValueError(f"invalid duration {text!r}: empty, {EXAMPLE}")
    nanos, pos = Decimal(0), 0
    while pos < len(body):
        part = _PART.match(body, pos)
        if part is None:
            problem = "missing unit" if _BARE_NUMBER.match(body, pos) else "expected numbers with units"
            raise ValueError(f"invalid duration {text!r}: {problem} (h, m, s, ms, us or ns), {EXAMPLE}")
        nanos += Decimal(part.group(1)) * _UNIT_NANOS[part.group(2)]
        pos = part.end()
    return float(nanos) / 1e9
