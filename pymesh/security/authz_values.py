"""The value side of AuthorizationPolicy matching: a field's list of values compiled once into a
test of one request attribute, with Istio's rules for each kind of value (pymesh.security.authz
uses them; see its docstring for the semantics)."""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Any, Callable, Iterable

from pymesh.routing.regex import full_matcher


class Strings:
    """Istio's StringMatcher over a list of values: exact set, prefix and suffix tuples, and
    "*" (any non-empty string; with `present_star`, any present value, even empty)."""

    __slots__ = ("exact", "prefixes", "suffixes", "star", "lower", "present_star")

    def __init__(self, values: Iterable[str], *, ignore_case: bool = False, present_star: bool = False,
                 prefix: str = "") -> None:
        exact, prefixes, suffixes, star = set(), [], [], False
        for value in values:
            if ignore_case:
                value = value.lower()
            if value == "*":
                star = True
            elif value.startswith("*"):
                suffixes.append(value[1:])
            elif value.endswith("*"):
                prefixes.append(prefix + value[:-1])
            else:
                exact.add(prefix + value)
        self.exact, self.prefixes, self.suffixes = frozenset(exact), tuple(prefixes), tuple(suffixes)
        self.star, self.lower, self.present_star = star, ignore_case, present_star

    def __call__(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.star and (value or self.present_star):
            return True
        if self.lower:
            value = value.lower()
        return value in self.exact or (bool(self.prefixes) and value.startswith(self.prefixes)) or (
            bool(self.suffixes) and value.endswith(self.suffixes))


class Globs:
    """Namespaces: Istio turns "*" anywhere into ".*" of a regex (so "*" here also matches an
    empty namespace of a present identity); plain names are a set."""

    __slots__ = ("exact", "pattern")

    def __init__(self, values: Iterable[str]) -> None:
        values = tuple(values)
        self.exact = frozenset(v for v in values if "*" not in v)
        wild = [".*".join(re.escape(part) for part in v.split("*")) for v in values if "*" in v]
        self.pattern = full_matcher("|".join(wild)) if wild else None  # RE2: linear, as Istio's

    def __call__(self, value: str | None) -> bool:
        if value is None:
            return False
        return value in self.exact or (self.pattern is not None and self.pattern(value))


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> Any:
    """A peer's address, parsed once; an IPv4-mapped IPv6 address (a dual-stack socket) as the
    IPv4 address it is, so IPv4 blocks match it."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    return address.ipv4_mapped or address if address.version == 6 else address


class Networks:
    """ipBlocks and the IP keys: single addresses and CIDR ranges, v4 and v6."""

    __slots__ = ("networks",)

    def __init__(self, values: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(v, strict=False) for v in values)

    def __call__(self, value: str | None) -> bool:
        address = _address(value) if value else None
        if address is None:
            return False
        for network in self.networks:
            if address.version == network.version and address in network:
                return True
        return False


class Ports:
    __slots__ = ("ports",)

    def __init__(self, values: Iterable[str]) -> None:
        self.ports = frozenset(int(v) for v in values)

    def __call__(self, value: int | None) -> bool:
        return value in self.ports


class AnyItem:
    """A list-valued attribute (JWT audiences, a list claim): any item matching is a match."""

    __slots__ = ("test",)

    def __init__(self, test: Strings) -> None:
        self.test = test

    def __call__(self, value: Any) -> bool:
        if isinstance(value, str):
            return self.test(value)
        if isinstance(value, (list, tuple)):
            for item in value:
                if isinstance(item, str) and self.test(item):
                    return True
        return False


def never(value: Any) -> bool:
    """Envoy filter metadata keys: pymesh's filters write none, so no value ever matches."""
    return False


def paths(values: tuple[str, ...]) -> Callable[[Any], bool]:
    """Istio's path rules, and Envoy's URI templates ({*} one segment, {**} the rest)."""
    templates = [v for v in values if "{*}" in v or "{**}" in v]
    plain = Strings([v for v in values if v not in templates])
    if not templates:
        return plain
    patterns = full_matcher("|".join(_template(t) for t in templates))
    return lambda value: plain(value) or (value is not None and patterns(value))


def _template(template: str) -> str:
    parts = []
    for segment in template.split("/"):
        parts.append({"{*}": "[^/]+", "{**}": ".*"}.get(segment, re.escape(segment)))
    return "/".join(parts)
