"""Telemetry metrics overrides applied to Istio's metrics: a disabled metric is not reported, a
REMOVE drops the dimension (as Istio's stats filter does: the label is gone, not emptied), an
UPSERT sets or adds a label from a value expression (pymesh.telemetry.cel).

A shaper is built once per snapshot and direction (CLIENT: outbound and gateways, SERVER:
inbound). Expressions are evaluated once per request into `request_values`, which the caller
makes part of its recorder key, so the labels of a series are worked out when its cells are
made, not per request. A series shaped here is stored under (name, value) pairs instead of the
family's positional values, so dropped and added labels render correctly.
"""

from __future__ import annotations

from dataclasses import dataclass

from pymesh.telemetry import cel
from pymesh.telemetry.metrics import (DURATION, REQUEST_BYTES, REQUEST_MESSAGES, REQUESTS, RESPONSE_BYTES,
                                      RESPONSE_MESSAGES, TCP_CLOSED, TCP_OPENED, TCP_RECEIVED, TCP_SENT, UNKNOWN,
                                      Family)
from pymesh.telemetry.policy import MetricOverride

FAMILY_OF = {
    "REQUEST_COUNT": REQUESTS.name, "REQUEST_DURATION": DURATION.name, "REQUEST_SIZE": REQUEST_BYTES.name,
    "RESPONSE_SIZE": RESPONSE_BYTES.name, "TCP_OPENED_CONNECTIONS": TCP_OPENED.name,
    "TCP_CLOSED_CONNECTIONS": TCP_CLOSED.name, "TCP_SENT_BYTES": TCP_SENT.name,
    "TCP_RECEIVED_BYTES": TCP_RECEIVED.name, "GRPC_REQUEST_MESSAGES": REQUEST_MESSAGES.name,
    "GRPC_RESPONSE_MESSAGES": RESPONSE_MESSAGES.name,
}


@dataclass(frozen=True)
class _Rule:
    disabled: bool
    removed: frozenset[str]
    upserts: tuple[tuple[str, int], ...]  # label name -> index into request_values


class MetricShaper:
    def __init__(self, overrides: tuple[MetricOverride, ...], mode: str):
        expressions: dict[str, int] = {}
        self.rules: dict[str, _Rule] = {}
        for override in overrides:
            if override.mode != mode or override.metric not in FAMILY_OF:
                continue
            upserts = tuple((tag, expressions.setdefault(value, len(expressions))) for tag, value in override.tags_set)
            self.rules[FAMILY_OF[override.metric]] = _Rule(override.disabled, frozenset(override.tags_removed), upserts)
        self._values = tuple(cel.compile_value(e) for e in expressions)
        self.attributes = frozenset(a for e in expressions for a in cel.attributes_used(e))

    @classmethod
    def build(cls, overrides: tuple[MetricOverride, ...], mode: str) -> MetricShaper | None:
        """None when no override is for this mode: the recorders then run unshaped, at no cost."""
        shaper = cls(overrides, mode)
        return shaper if shaper.rules else None

    def request_values(self, lookup: cel.Lookup) -> tuple[str, ...]:
        return tuple(value(lookup) or UNKNOWN for value in self._values)

    def labels(self, family: Family, values: tuple[str, ...], request_values: tuple[str, ...]):
        """The series key for `family`: its positional values when untouched, (name, value)
        pairs when shaped, None when the metric is disabled."""
        rule = self.rules.get(family.name)
        if rule is None:
            return values
        if rule.disabled:
            return None
        pairs = {name: value for name, value in zip(family.labels, values) if name not in rule.removed}
        for name, index in rule.upserts:
            pairs[name] = request_values[index]
        return tuple(pairs.items())
