"""Typed, error-collecting access to YAML mappings read as Istio messages.

Every parser in pymesh.api reads fields through a `Reader` and small reusable converters
(`text`, `integer`, `duration`, `choice`, `message`, ...). A converter either returns the value
or records a `ConfigError` at the value's exact line and path and returns None, so a single pass
reports every problem and the per-kind parsers never repeat type checks or error formatting.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, TypeVar

from pymesh.api.duration import parse_duration
from pymesh.api.errors import ConfigError, ConfigWarning, field_path, index_path, key_path
from pymesh.api.shapes import Shape
from pymesh.api.yamltree import LineMap, LineSeq

T = TypeVar("T")


@dataclass(frozen=True)
class Slot:
    """A value with the line and path it was found at."""

    value: Any
    line: int
    path: str


class Sink:
    """Collects the errors of one document (a resource is dropped when it has any) and its
    warnings (which never drop it). `strict` turns "not applied" warnings into errors."""

    def __init__(self, file: str, *, strict: bool = False):
        self.file = file
        self.strict = strict
        self.errors: list[ConfigError] = []
        self.warnings: list[ConfigWarning] = []

    def add(self, line: int, path: str, message: str) -> None:
        self.errors.append(ConfigError(self.file, line, path, message))

    def at(self, slot: Slot, message: str) -> None:
        self.add(slot.line, slot.path, message)

    def warn(self, line: int, path: str, message: str) -> None:
        """A warning in Istio's sense: the configuration works, but probably not as meant."""
        self.warnings.append(ConfigWarning(self.file, line, path, message))

    def not_applied(self, line: int, path: str, message: str) -> None:
        """Something valid in Istio that pymesh leaves out: a warning, an error when strict."""
        (self.add if self.strict else self.warn)(line, path, message)


IGNORED_FIELD = "field has no effect in pymesh (ignored)"

Convert = Callable[[Sink, Slot], Any]  # the value, or None after recording an error
Check = Callable[[Any], str | None]  # a message when the value is wrong, else None

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", LineMap: "a mapping", LineSeq: "a list"}


def describe(value: Any) -> str:
    """A YAML-ish rendering of a wrong value for "expected X, got Y" messages."""
    if isinstance(value, LineMap):
        return "a mapping"
    if isinstance(value, LineSeq):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def expect(sink: Sink, slot: Slot, kind: type) -> bool:
    """True when the value has the YAML type `kind` (a bool is not an integer here)."""
    value = slot.value
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return True
    sink.at(slot, f"expected {_TYPE_NAMES[kind]}, got {describe(value)}")
    return False


# --- converters ----------------------------------------------------------------------------


def text(check: Check | None = None) -> Convert:
    """A string, optionally validated by `check`."""

    def convert(sink: Sink, slot: Slot) -> str | None:
        if not expect(sink, slot, str):
            return None
        problem = check(slot.value) if check else None
        if problem:
            sink.at(slot, problem)
            return None
        return slot.value

    return convert


def integer(low: int | None = None, high: int | None = None) -> Convert:
    """An integer within [low, high] (either bound optional)."""

    def convert(sink: Sink, slot: Slot) -> int | None:
        if not expect(sink, slot, int):
            return None
        value = slot.value
        if low is not None and high is not None and not low <= value <= high:
            sink.at(slot, f"must be between {low} and {high}, got {value}")
        elif low is not None and value < low:
            sink.at(slot, f"must be >= {low}, got {value}")
        elif high is not None and value > high:
            sink.at(slot, f"must be <= {high}, got {value}")
        else:
            return value
        return None

    return convert


PORT = integer(1, 65535)


_LARGEST = sys.float_info.max


def number(low: float | None = None, high: float | None = None) -> Convert:
    """A number (an Istio DoubleValue: integers count too) within [low, high], as a float."""

    def convert(sink: Sink, slot: Slot) -> float | None:
        value = slot.value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN: .nan
            sink.at(slot, f"expected a number, got {describe(value)}")
            return None
        if (low is not None and value < low) or (high is not None and value > high) or abs(value) > _LARGEST:
            if low is not None and high is not None:
                bounds = f"between {low:g} and {high:g}"
            else:
                bounds = f">= {low:g}" if low is not None else f"<= {high:g}" if high is not None else "within a float's range"
            # an int past a float's range cannot be formatted with :g (OverflowError)
            shown = f"{value:g}" if isinstance(value, float) or abs(value) <= _LARGEST else \
                f"a {len(str(abs(value)))}-digit integer"
            sink.at(slot, f"must be {bounds}, got {shown}")
            return None
        return float(value)

    return convert


def boolean(sink: Sink, slot: Slot) -> bool | None:
    return slot.value if expect(sink, slot, bool) else None


def duration(*, positive: bool = False, at_least: tuple[float, str] | None = None) -> Convert:
    """A duration string ("1.5s", "250ms") as float seconds; `at_least`: (a floor in seconds,
    the error for a value below it)."""

    def convert(sink: Sink, slot: Slot) -> float | None:
        if not isinstance(slot.value, str):
            sink.at(slot, f'expected a duration string such as "1.5s" or "250ms", got {describe(slot.value)}')
            return None
        try:
            seconds = parse_duration(slot.value)
        except ValueError as exc:
            sink.at(slot, str(exc))
            return None
        if positive and seconds <= 0:
            sink.at(slot, "must be greater than 0")
            return None
        if at_least is not None and seconds < at_least[0]:
            sink.at(slot, at_least[1])
            return None
        return seconds

    return convert


def _istio_duration(*, zero_disables: bool = False) -> Convert:
    """Istio's ValidateDuration: at least 1ms, in whole milliseconds. `zero_disables`: "0s" is
    accepted too, where Istio documents it as "disabled" (a route timeout, tcp.idleTimeout)."""
    seconds = duration()

    def convert(sink: Sink, slot: Slot) -> float | None:
        value = seconds(sink, slot)
        if value is None:
            return None
        millis = round(value * 1e9) / 1e6
        if zero_disables and value == 0:
            return value
        if millis < 1:
            sink.at(slot, "duration must be at least 1ms")
        elif millis != int(millis):
            sink.at(slot, "only durations to ms precision are supported")
        else:
            return value
        return None

    return convert


ISTIO_DURATION = _istio_duration()  # Istio's agent.ValidateDuration, on every duration it checks
ISTIO_DURATION_OR_ZERO = _istio_duration(zero_disables=True)


def choice(
    what: str,
    allowed: Iterable[str],
    *,
    aliases: dict[str, str] | None = None,
    not_yet: Iterable[str] = (),
    fold_case: bool = False,
) -> Convert:
    """One of a fixed set of names (an Istio enum). `aliases` map other accepted spellings to a
    canonical one; `not_yet` are valid Istio values that pymesh does not implement."""
    allowed, not_yet, aliases = tuple(allowed), frozenset(not_yet), aliases or {}

    def convert(sink: Sink, slot: Slot) -> str | None:
        if not expect(sink, slot, str):
            return None
        value = slot.value.upper() if fold_case else slot.value
        value = aliases.get(value, value)
        if value in allowed:
            return value
        if value in not_yet:
            sink.at(slot, f"{what} {value} is not supported yet")
        else:
            sink.at(slot, f"{what} {slot.value!r} is not valid (expected {or_list(allowed)})")
        return None

    return convert


def message(shape: Shape, build: Callable[[Reader], T]) -> Convert:
    """A nested mapping read by `build` through its own Reader."""

    def convert(sink: Sink, slot: Slot) -> T | None:
        if not expect(sink, slot, LineMap):
            return None
        return build(Reader(sink, slot.value, slot.path, shape, line=slot.line))

    return convert


def distinct(
    convert: Convert, key: Callable[[Any], Any] = lambda value: value, what: str = "entry"
) -> Convert:
    """`convert`, rejecting an item whose `key` was already seen in the same list (key None:
    not compared). Make a fresh one per list read: it remembers what it has seen."""
    seen: set[Any] = set()

    def wrapped(sink: Sink, slot: Slot) -> Any:
        value = convert(sink, slot)
        identity = None if value is None else key(value)
        if identity is None:
            return value
        if identity in seen:
            sink.at(slot, f"duplicate {what} {describe(identity)}")
            return None
        seen.add(identity)
        return value

    return wrapped


def or_list(names: Iterable[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


# --- the reader ----------------------------------------------------------------------------


class Reader:
    """One mapping read as one Istio message of the given shape.

    Unknown and known-but-unsupported fields are reported as soon as the reader is made; the
    typed getters then report wrong types and values. Getters return a default after an error
    (the resource is discarded anyway), so parsers stay straight-line code.
    """

    def __init__(self, sink: Sink, data: LineMap, path: str, shape: Shape, *, line: int | None = None):
        self.sink = sink
        self.data = data
        self.path = path
        self.shape = shape
        self.line = data.line if line is None else line
        for key in data:
            self._check_known(key)

    def _check_known(self, key: Any) -> None:
        name = str(key)
        if name in self.shape.fields:
            return
        if name in self.shape.ignored:
            self.sink.not_applied(self.data.key_lines[key], field_path(self.path, name), IGNORED_FIELD)
            return
        if name in self.shape.unsupported:
            problem = "field not supported by pymesh yet"
        else:
            problem = "unknown field" + _suggestion(name, self.shape.fields | self.shape.unsupported | self.shape.ignored)
        self.sink.add(self.data.key_lines[key], field_path(self.path, name), problem)

    # where things are

    def path_of(self, key: str) -> str:
        return field_path(self.path, key)

    def line_of(self, key: str) -> int:
        return self.data.key_lines.get(key, self.line)

    def error(self, key: str, problem: str) -> None:
        """Report a problem with field `key` (at its line, or this mapping's when absent)."""
        self.sink.add(self.line_of(key), self.path_of(key), problem)

    def warn(self, key: str, problem: str) -> None:
        """A warning about field `key`: Istio accepts it, but it is probably not what was meant."""
        self.sink.warn(self.line_of(key), self.path_of(key), problem)

    def warn_here(self, problem: str) -> None:
        self.sink.warn(self.line, self.path, problem)

    def error_here(self, problem: str) -> None:
        """Report a problem with this mapping as a whole."""
        self.sink.add(self.line, self.path, problem)

    # raw access

    def has(self, key: str) -> bool:
        """Present and not null (YAML null means unset, as in Kubernetes)."""
        assert key in self.shape.fields | self.shape.unsupported | self.shape.ignored, (
            f"{self.shape.name} has no field {key!r}")
        return self.data.get(key) is not None

    def slot(self, key: str, *, required: bool = False) -> Slot | None:
        if not self.has(key):
            if required:
                self.error(key, "required field is missing")
            return None
        return Slot(self.data[key], self.line_of(key), self.path_of(key))

    # typed access

    def get(self, key: str, convert: Convert, default: Any = None, *, required: bool = False) -> Any:
        slot = self.slot(key, required=required)
        if slot is None:
            return default
        value = convert(self.sink, slot)
        return default if value is None else value

    def get_list(self, key: str, convert: Convert, *, required: bool = False) -> tuple:
        """A list whose items all go through `convert`; `required` also rejects an empty list."""
        slot = self.slot(key, required=required)
        if slot is None or not expect(self.sink, slot, LineSeq):
            return ()
        if required and not slot.value:
            self.sink.at(slot, "must not be empty")
        items = []
        for index, (value, line) in enumerate(zip(slot.value, slot.value.item_lines)):
            converted = convert(self.sink, Slot(value, line, index_path(slot.path, index)))
            if converted is not None:
                items.append(converted)
        return tuple(items)

    def get_map(
        self, key: str, convert: Convert, *, check_key: Check | None = None, lower_keys: bool = False
    ) -> dict:
        """A map of string keys (label, header or port names) to values that go through `convert`."""
        slot = self.slot(key)
        if slot is None or not expect(self.sink, slot, LineMap):
            return {}
        result: dict[str, Any] = {}
        for name, value in slot.value.items():
            entry = Slot(value, slot.value.key_lines[name], key_path(slot.path, name))
            if not isinstance(name, str):
                self.sink.at(entry, f"expected a string key, got {describe(name)}")
                continue
            problem = check_key(name) if check_key else None
            if problem:
                self.sink.at(entry, problem)
                continue
            if lower_keys:
                name = name.lower()
                if name in result:
                    self.sink.at(entry, f"duplicate key {name!r} (names are case-insensitive)")
                    continue
            converted = convert(self.sink, entry)
            if converted is not None:
                result[name] = converted
        return result

    def spelling(self, json_name: str, proto_name: str) -> str:
        """The key a field is set under when Istio's CRD lists it under both its JSON and its
        proto name (jwksUri and jwks_uri): one field, so setting both is an error."""
        if self.has(json_name) and self.has(proto_name):
            self.error(proto_name, f"{proto_name} is {json_name} under its proto name: set only one")
        return proto_name if self.has(proto_name) else json_name

    def one_of(self, keys: tuple[str, ...], *, required: bool) -> str | None:
        """The one field of `keys` that is set (Istio's oneof); reports none or several."""
        present = [key for key in keys if self.has(key)]
        for extra in present[1:]:
            self.error(extra, f"only one of {or_list(keys)} may be set (also found {present[0]})")
        if not present and required:
            self.error_here(f"one of {or_list(keys)} is required")
        return present[0] if present else None


def _suggestion(name: str, known: frozenset[str]) -> str:
    """' (did you mean "perTryTimeout"?)' for per_try_timeout, perTryTimout, matchLabels->labels..."""

    def squash(word: str) -> str:
        return word.replace("_", "").replace("-", "").lower()

    candidates = sorted(known)
    same = [c for c in candidates if squash(c) == squash(name)]
    contained = [
        c for c in candidates if len(c) >= 4 and (squash(c) in squash(name) or squash(name) in squash(c))
    ]
    close = same or difflib.get_close_matches(name, candidates, n=1, cutoff=0.8) or contained
    return f' (did you mean "{close[0]}"?)' if close else ""
