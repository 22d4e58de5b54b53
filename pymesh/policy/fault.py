"""Fault injection decided per request (Envoy's fault filter): a delay first, then an abort,
each fired with its own draw of the random source (none for a part at 0%, which cannot fire).

Percentages become parts per million, as Istio hands them to Envoy (value * 10000 of a MILLION
denominator), so 0.0001% is the finest step; a draw fires when `int(r * MILLION) < numerator`,
Envoy's `random % denominator < numerator`. The random number is passed in (tests inject it).
"""

from __future__ import annotations

from dataclasses import dataclass

from pymesh.api import model

MILLION = 1_000_000


def per_million(percent: float) -> int:
    return int(round(percent * 10_000))


def fires(numerator: int, random: float) -> bool:
    return int(random * MILLION) < numerator


@dataclass(frozen=True)
class FaultPolicy:
    delay: float | None = None  # seconds
    delay_per_million: int = 0
    abort_status: int | None = None  # the HTTP status of the local reply (200 for a gRPC abort)
    abort_grpc_status: int | None = None
    abort_per_million: int = 0

    @classmethod
    def from_model(cls, fault: model.HTTPFaultInjection) -> FaultPolicy:
        delay, abort = fault.delay, fault.abort
        return cls(
            delay=delay.fixed_delay if delay else None,
            delay_per_million=per_million(delay.percentage) if delay else 0,
            # Envoy answers a gRPC-status abort with HTTP 200 (the status travels in grpc-status)
            abort_status=(abort.http_status or 200) if abort else None,
            abort_grpc_status=abort.grpc_status if abort else None,
            abort_per_million=per_million(abort.percentage) if abort else 0,
        )

    def delay_for(self, rng) -> float | None:
        """The delay to inject for a draw of `rng`, or None; a 0% delay draws nothing."""
        if self.delay_per_million and self.delay is not None and fires(self.delay_per_million, rng.random()):
            return self.delay
        return None

    def aborts(self, rng) -> bool:
        return self.abort_per_million > 0 and self.abort_status is not None and fires(self.abort_per_million, rng.random())
