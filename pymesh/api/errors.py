"""Configuration errors: what went wrong, and exactly where (file, line, Istio field path).

Every problem is reported as a `ConfigError` instead of raised, so one pass over the input can
list all of them at once; `ConfigInvalid` wraps the list for callers that want all-or-nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class ConfigError:
    """One problem in the configuration.

    `path` names the field the way the YAML spells it ("spec.http[0].retries.attempts"); map
    entries are written `labels[app]`. `line` is 1-based, 0 when the problem is the whole file.
    """

    file: str
    line: int
    path: str
    message: str

    def where(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} {self.path}" if self.path else where

    def __str__(self) -> str:
        return f"{self.where()}: {self.message}"


@dataclass(frozen=True)
class ConfigWarning(ConfigError):
    """A problem that does not stop the resource from loading: something pymesh does not apply
    (a kind it does not implement, an Istio field with no effect here) or a warning Istio's own
    validation gives. Printed by `pymesh analyze` and logged on load; never blocks."""

    def __str__(self) -> str:
        return f"{self.where()}: warning: {self.message}"


class ConfigInvalid(Exception):
    """Raised by the strict loaders; carries every error, not just the first."""

    def __init__(self, errors: Iterable[ConfigError]):
        self.errors: tuple[ConfigError, ...] = tuple(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


def field_path(parent: str, name: str) -> str:
    """Path of a field of a message: `spec` + `hosts` -> `spec.hosts`."""
    return f"{parent}.{name}" if parent else name


def index_path(parent: str, index: int) -> str:
    """Path of a list item: `spec.http` + 0 -> `spec.http[0]`."""
    return f"{parent}[{index}]"


def key_path(parent: str, key: object) -> str:
    """Path of a map entry (labels, headers, ports by name): `metadata.labels[app]`."""
    return f"{parent}[{key}]"
