"""Retry decisions for one route, compiled once from Istio's `HTTPRetry`.

`retryOn` tokens follow Envoy's x-envoy-retry-on / x-envoy-retry-grpc-on. What each one retries
(CF = CONNECT_FAILURE, RS = REFUSED_STREAM, RST = RESET, TO = per-try TIMEOUT; a status means an
upstream response with that status):

    token                   CF  RS  RST TO  responses
    5xx                     y   y   y   y   500-599
    gateway-error           y   y   y   y   502, 503, 504
    reset                   y   y   y   y   -
    connect-failure         y   -   -   -   -
    refused-stream          -   y   -   -   -
    reset-before-request    y   -   -   -   -
    retriable-4xx           -   -   -   -   409
    retriable-status-codes  -   -   -   -   the bare codes listed alongside (e.g. "503")
    "503" (bare code)       -   -   -   -   that code (Istio adds retriable-status-codes itself)
    cancelled, deadline-exceeded, internal, resource-exhausted, unavailable
                            -   -   -   -   responses whose grpc-status is that gRPC code

5xx and gateway-error include the failures with no response because Envoy counts any reset or
timeout as the 503/504 it turns into. Envoy tokens pymesh does not implement (retriable-headers,
envoy-ratelimited, http3-post-connect-failure) are rejected by name rather than ignored.

Istio's defaults: no `retries` block means attempts=2 with retryOn
"connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes" and code 503;
`attempts: 0` disables retries (and, as in Istio, the per-try timeout); `attempts` with no
`retryOn` keeps the default conditions.

pymesh's rule beyond Istio: a request whose method is not idempotent (RFC 9110: anything but GET,
HEAD, OPTIONS, TRACE, PUT, DELETE, so POST, PATCH, CONNECT and unknown methods) is retried only
when the upstream provably never processed it (CONNECT_FAILURE, REFUSED_STREAM), unless it carries
an Idempotency-Key header. Why: duplicated payments and orders are the most common complaint about
mesh retries: a POST that timed out or got a 503 may well have been executed.

gRPC calls are POSTs, so the same rule holds for their failures without a response (a reset, a
timeout). But a gRPC status condition (unavailable, cancelled, ...) matches only a trailers-only
response: the server answered the call as a whole with that status and sent no response message,
which is gRPC's own statement of the outcome (UNAVAILABLE: "a transient condition ... corrected by
retrying"). Those are retried as Istio and Envoy do, whatever the method; a call that already
streamed a response message is committed and never retried.
"""

from __future__ import annotations

from typing import Iterable, Protocol

from pymesh.api import model
from pymesh.policy.outcome import NEVER_PROCESSED, Outcome

__all__ = [
    "DEFAULT_RETRY_ON",
    "IDEMPOTENT_METHODS",
    "Outcome",
    "RetryPolicy",
    "backoff",
]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

DEFAULT_ATTEMPTS = 2
DEFAULT_RETRY_ON = ("connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes", "503")

BACKOFF_BASE = 0.025  # seconds, Envoy's default base interval
BACKOFF_MAX = 0.25  # seconds, Envoy's default: 10 x base

_ALL_FAILURES = frozenset(_o for _o in Outcome if _o is not Outcome.RESPONSE)
_CF = frozenset({Outcome.CONNECT_FAILURE})
_NONE: frozenset = frozenset()

# token -> (outcomes without a response, response statuses, gRPC status codes)
_TOKENS: dict[str, tuple[frozenset, frozenset, frozenset]] = {
    "5xx": (_ALL_FAILURES, frozenset(range(500, 600)), _NONE),
    "gateway-error": (_ALL_FAILURES, frozenset({502, 503, 504}), _NONE),
    "reset": (_ALL_FAILURES, _NONE, _NONE),
    "connect-failure": (_CF, _NONE, _NONE),
    "refused-stream": (frozenset({Outcome.REFUSED_STREAM}), _NONE, _NONE),
    "reset-before-request": (_CF, _NONE, _NONE),
    "retriable-4xx": (_NONE, frozenset({409}), _NONE),
    "retriable-status-codes": (_NONE, _NONE, _NONE),  # the codes come as bare numbers
    "cancelled": (_NONE, _NONE, frozenset({1})),
    "deadline-exceeded": (_NONE, _NONE, frozenset({4})),
    "resource-exhausted": (_NONE, _NONE, frozenset({8})),
    "internal": (_NONE, _NONE, frozenset({13})),
    "unavailable": (_NONE, _NONE, frozenset({14})),
}
_UNSUPPORTED = frozenset({"retriable-headers", "envoy-ratelimited", "http3-post-connect-failure"})


class RandomLike(Protocol):
    def random(self) -> float: ...


def backoff(attempt: int, rng: RandomLike, base: float = BACKOFF_BASE, max_interval: float = BACKOFF_MAX) -> float:
    """Seconds to wait before retry number `attempt` (0 for the first retry).

    Envoy's fully jittered exponential backoff: uniform in [0, base * (2**(attempt+1) - 1)),
    the upper bound capped at `max_interval`. Jitter keeps N proxies from retrying in lockstep.
    """
    upper = base * ((1 << (min(attempt, 30) + 1)) - 1)
    return rng.random() * (upper if upper < max_interval else max_interval)


def _tokens(retry_on: Iterable[str]) -> list[str]:
    """Flatten ("5xx,503", " reset") into ["5xx", "503", "reset"]."""
    return [t.strip() for item in retry_on for t in item.split(",") if t.strip()]


class RetryPolicy:
    """Whether and when to retry one attempt; built once per route, asked once per attempt."""

    __slots__ = ("attempts", "per_try_timeout", "retry_on", "_outcomes", "_statuses", "_grpc", "_base", "_max")

    def __init__(
        self,
        attempts: int = DEFAULT_ATTEMPTS,
        retry_on: Iterable[str] = DEFAULT_RETRY_ON,
        per_try_timeout: float | None = None,
        backoff_base: float = BACKOFF_BASE,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        if attempts < 0:
            raise ValueError(f"retries.attempts must be >= 0, got {attempts}")
        if per_try_timeout is not None and per_try_timeout <= 0:
            raise ValueError(f"retries.perTryTimeout must be > 0, got {per_try_timeout}")
        outcomes: set[Outcome] = set()
        statuses: set[int] = set()
        grpc: set[int] = set()
        tokens = _tokens(retry_on)
        for token in tokens:
            if token.isdigit():
                code = int(token)
                if not 100 <= code <= 599:
                    raise ValueError(f"retries.retryOn: {token!r} is not an HTTP status code")
                statuses.add(code)
            elif token in _TOKENS:
                o, s, g = _TOKENS[token]
                outcomes |= o
                statuses |= s
                grpc |= g
            elif token in _UNSUPPORTED:
                raise ValueError(f"retries.retryOn: {token!r} is not supported by pymesh")
            else:
                raise ValueError(f"retries.retryOn: unknown retry condition {token!r}")
        self.attempts = attempts
        self.per_try_timeout = per_try_timeout if attempts else None  # Istio drops it with retries
        self.retry_on = tuple(tokens)
        self._outcomes = frozenset(outcomes)
        self._statuses = frozenset(statuses)
        self._grpc = frozenset(grpc)
        self._base = backoff_base
        self._max = backoff_max

    @classmethod
    def from_model(cls, retry: model.HTTPRetry | None) -> RetryPolicy:
        """Istio's semantics: None -> the default policy; empty retryOn -> default conditions."""
        if retry is None:
            return cls()
        return cls(retry.attempts, _tokens(retry.retry_on) or DEFAULT_RETRY_ON, retry.per_try_timeout)

    def retryable(
        self,
        outcome: Outcome,
        status: int | None,
        method: str,
        has_idempotency_key: bool = False,
        grpc_status: int | None = None,
    ) -> bool:
        """Would this attempt be retried if retries were left? (Also decides Envoy's URX flag.)"""
        if outcome is Outcome.RESPONSE:
            if grpc_status is not None and grpc_status in self._grpc:
                return True  # a gRPC server's own status for the whole call: see the module docstring
            if status not in self._statuses:
                return False
        elif outcome not in self._outcomes:
            return False
        return outcome in NEVER_PROCESSED or has_idempotency_key or method in IDEMPOTENT_METHODS

    def should_retry(
        self,
        outcome: Outcome,
        status: int | None,
        attempt: int,
        method: str,
        has_idempotency_key: bool = False,
        grpc_status: int | None = None,
    ) -> bool:
        """Retry now? `attempt` counts the retries already made (0 after the first try)."""
        return attempt < self.attempts and self.retryable(outcome, status, method, has_idempotency_key, grpc_status)

    def backoff(self, attempt: int, rng: RandomLike) -> float:
        """Seconds to wait before retry number `attempt`; see `backoff`."""
        return backoff(attempt, rng, self._base, self._max)

    def __repr__(self) -> str:
        return f"RetryPolicy(attempts={self.attempts}, retry_on={self.retry_on!r}, per_try_timeout={self.per_try_timeout})"
