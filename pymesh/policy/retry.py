"""Retry decisions for one route, compiled once from Istio's `HTTPRetry`.

`retryOn` tokens follow Envoy's x-envoy-retry-on / x-envoy-retry-grpc-on, decided as Envoy's
RetryStateImpl does (wouldRetryFromReset / wouldRetryFromHeaders). Without a response (CF =
CONNECT_FAILURE, RS = REFUSED_STREAM, RST = RESET or an HTTP/2 stream reset, TO = per-try TIMEOUT):

    token                   CF  RS  RST TO  responses
    5xx                     y   y   y   y   500-599
    gateway-error           y   y   y   y   502, 503, 504
    reset                   y   y   y   y   -
    reset-before-request    y   *   *   *   -   (* only when no request byte went upstream yet)
    connect-failure         y   -   -   -   -
    refused-stream          -   y   -   -   -
    retriable-4xx           -   -   -   -   409
    retriable-status-codes  -   -   -   -   the bare codes listed alongside (e.g. "503")
    "503" (bare code)       -   -   -   -   that code (Istio adds retriable-status-codes itself)
    retriable-headers       -   -   -   -   a response carrying a header the request named in
                                            x-envoy-retriable-header-names (Istio has no field
                                            for Envoy's configured list, so that is the only one)
    envoy-ratelimited       -   -   -   -   a response with x-envoy-ratelimited: true; as in
                                            Envoy, with this token no other response is retried
    http3-post-connect-failure              accepted; pymesh has no HTTP/3, so it never fires
    cancelled, deadline-exceeded, internal, resource-exhausted, unavailable
                            -   -   -   -   responses whose grpc-status is that gRPC code

5xx and gateway-error include the failures with no response because Envoy counts any reset or
timeout as the 503/504 it turns into.

Istio's defaults: no `retries` block means attempts=2 with retryOn
"connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes" and code 503;
`attempts: 0` disables retries (and, as in Istio, the per-try timeout); `attempts` with no
`retryOn` keeps the default conditions. A retry prefers a host not tried yet (Envoy's
previous_hosts predicate, up to 5 re-picks), except for consistent-hash destinations unless
`retryIgnorePreviousHosts: true` (Istio's DefaultConsistentHashPolicy); `retryRemoteLocalities`
is Envoy's previous_priorities with update_frequency 2 (pymesh.policy.retry_hosts). `backoff` is
Envoy's base interval (default 25 ms), capped at 10 times the base.

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
from pymesh.http.message import Header
from pymesh.policy.outcome import NEVER_PROCESSED, Outcome

__all__ = [
    "DEFAULT_RETRY_ON",
    "IDEMPOTENT_METHODS",
    "Outcome",
    "RetryPolicy",
    "backoff",
    "backoff_interval_ms",
]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

DEFAULT_ATTEMPTS = 2
DEFAULT_RETRY_ON = ("connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes", "503")

BACKOFF_BASE = 0.025  # seconds, Envoy's default base interval
BACKOFF_MAX_FACTOR = 10  # Envoy's default max interval: 10 x base
BACKOFF_MAX = BACKOFF_BASE * BACKOFF_MAX_FACTOR

# Envoy's RetryPolicy bits, one per token.
_5XX, _GATEWAY, _RESET, _BEFORE_REQUEST, _CONNECT, _REFUSED, _4XX, _CODES, _HEADERS, _RATELIMITED, _HTTP3 = (
    1 << i for i in range(11))
_TOKENS = {
    "5xx": _5XX,
    "gateway-error": _GATEWAY,
    "reset": _RESET,
    "reset-before-request": _BEFORE_REQUEST,
    "connect-failure": _CONNECT,
    "refused-stream": _REFUSED,
    "retriable-4xx": _4XX,
    "retriable-status-codes": _CODES,
    "retriable-headers": _HEADERS,
    "envoy-ratelimited": _RATELIMITED,
    "http3-post-connect-failure": _HTTP3,  # no HTTP/3 upstreams: never fires
}
_ANY_FAILURE = _5XX | _GATEWAY | _RESET  # retry every failure without a response
_GRPC_TOKENS = {"cancelled": 1, "deadline-exceeded": 4, "resource-exhausted": 8, "internal": 13, "unavailable": 14}
_GATEWAY_CODES = frozenset({502, 503, 504})
RETRIABLE_HEADER_NAMES = b"x-envoy-retriable-header-names"
RATELIMITED = b"x-envoy-ratelimited"


class RandomLike(Protocol):
    def random(self) -> float: ...


def backoff_interval_ms(retry: int, base_ms: int, max_ms: int) -> int:
    """The upper bound (exclusive) of the wait before the `retry`-th retry (1 = the first).

    Envoy's JitteredExponentialBackOffStrategy: the interval starts at the base and doubles per
    retry while it is below half the max, then becomes the max.
    """
    interval = base_ms
    for _ in range(retry - 1):
        if interval >= max_ms // 2:
            return max_ms
        interval *= 2
    return interval


def backoff(retry: int, rng: RandomLike, base: float = BACKOFF_BASE, max_interval: float | None = None) -> float:
    """Seconds to wait before the `retry`-th retry (1 = the first): whole milliseconds drawn
    uniformly from [0, interval), Envoy's full jitter, so N proxies never retry in lockstep."""
    base_ms = max(1, round(base * 1000))
    max_ms = round(max_interval * 1000) if max_interval is not None else base_ms * BACKOFF_MAX_FACTOR
    return int(rng.random() * backoff_interval_ms(retry, base_ms, max(max_ms, base_ms))) / 1000.0


def _tokens(retry_on: Iterable[str]) -> list[str]:
    """Flatten ("5xx,503", " reset") into ["5xx", "503", "reset"]."""
    return [t.strip() for item in retry_on for t in item.split(",") if t.strip()]


class RetryPolicy:
    """Whether and when to retry one attempt; built once per route, asked once per failure."""

    __slots__ = ("attempts", "per_try_timeout", "retry_on", "ignore_previous_hosts", "remote_localities",
                 "any_status", "_bits", "_codes", "_grpc", "_base", "_max")

    def __init__(
        self,
        attempts: int = DEFAULT_ATTEMPTS,
        retry_on: Iterable[str] = DEFAULT_RETRY_ON,
        per_try_timeout: float | None = None,
        backoff_base: float = BACKOFF_BASE,
        backoff_max: float | None = None,
        ignore_previous_hosts: bool | None = None,
        remote_localities: bool = False,
    ) -> None:
        """`ignore_previous_hosts` None is Istio's default: avoid them unless the destination
        hashes consistently (see `avoids_previous_hosts`)."""
        if attempts < 0:
            raise ValueError(f"retries.attempts must be >= 0, got {attempts}")
        if per_try_timeout is not None and per_try_timeout <= 0:
            raise ValueError(f"retries.perTryTimeout must be > 0, got {per_try_timeout}")
        if backoff_base <= 0:
            raise ValueError(f"retries.backoff must be > 0, got {backoff_base}")
        bits = 0
        codes: set[int] = set()
        grpc: set[int] = set()
        tokens = _tokens(retry_on)
        for token in tokens:
            if token.isdigit():
                code = int(token)
                if not 100 <= code <= 599:
                    raise ValueError(f"retries.retryOn: {token!r} is not an HTTP status code")
                codes.add(code)
                bits |= _CODES  # Istio adds retriable-status-codes with the first bare code
            elif token in _TOKENS:
                bits |= _TOKENS[token]
            elif token in _GRPC_TOKENS:
                grpc.add(_GRPC_TOKENS[token])
            else:
                raise ValueError(f"retries.retryOn: unknown retry condition {token!r}")
        self.attempts = attempts
        self.per_try_timeout = per_try_timeout if attempts else None  # Istio drops it with retries
        self.retry_on = tuple(tokens)
        self.ignore_previous_hosts = ignore_previous_hosts
        self.remote_localities = remote_localities
        # retriable-headers and envoy-ratelimited may retry a response of any status, even a 200
        self.any_status = bool(attempts and bits & (_HEADERS | _RATELIMITED))
        self._bits = bits
        self._codes = frozenset(codes)
        self._grpc = frozenset(grpc)
        self._base = backoff_base
        self._max = backoff_max if backoff_max is not None else backoff_base * BACKOFF_MAX_FACTOR

    @classmethod
    def from_model(cls, retry: model.HTTPRetry | None) -> RetryPolicy:
        """Istio's semantics: None -> the default policy; empty retryOn -> default conditions."""
        if retry is None:
            return cls()
        return cls(retry.attempts, _tokens(retry.retry_on) or DEFAULT_RETRY_ON, retry.per_try_timeout,
                   retry.backoff or BACKOFF_BASE, None, retry.retry_ignore_previous_hosts,
                   retry.retry_remote_localities)

    @property
    def wants_header_names(self) -> bool:
        """retriable-headers is on: the request's x-envoy-retriable-header-names matter."""
        return bool(self._bits & _HEADERS)

    def avoids_previous_hosts(self, consistent_hash: bool) -> bool:
        """Envoy's previous_hosts predicate: Istio sets it unless the destination hashes
        consistently (a retry should keep its affinity), and retryIgnorePreviousHosts decides."""
        if self.ignore_previous_hosts is None:
            return not consistent_hash
        return self.ignore_previous_hosts

    def retryable(
        self,
        outcome: Outcome,
        status: int | None,
        method: str,
        has_idempotency_key: bool = False,
        grpc_status: int | None = None,
        *,
        sent: bool = True,
        headers: list[Header] = (),  # type: ignore[assignment]
        header_names: frozenset[bytes] = frozenset(),
    ) -> bool:
        """Would this attempt be retried if retries were left? (Also decides Envoy's URX flag.)

        `sent`: request bytes went upstream (reset-before-request needs them not to have);
        `headers`: the response's, for retriable-headers and envoy-ratelimited; `header_names`:
        what the request's x-envoy-retriable-header-names listed.
        """
        if outcome is Outcome.RESPONSE:
            if grpc_status is not None and grpc_status in self._grpc:
                return True  # a gRPC server's own status for the whole call: see the module docstring
            if not self._response_matches(status, headers, header_names):
                return False
        elif not self._failure_matches(outcome, sent):
            return False
        return outcome in NEVER_PROCESSED or has_idempotency_key or method in IDEMPOTENT_METHODS

    def _failure_matches(self, outcome: Outcome, sent: bool) -> bool:
        bits = self._bits
        if outcome is Outcome.CONNECT_FAILURE and bits & _CONNECT:
            return True
        if bits & _BEFORE_REQUEST and (not sent or outcome is Outcome.CONNECT_FAILURE):
            return True
        if bits & _ANY_FAILURE:
            return True
        return outcome is Outcome.REFUSED_STREAM and bool(bits & _REFUSED)

    def _response_matches(self, status: int | None, headers: list[Header], header_names: frozenset[bytes]) -> bool:
        bits = self._bits
        if bits & _RATELIMITED:  # Envoy: with this token it alone decides a response's retry
            return any(n == RATELIMITED and v == b"true" for n, v in headers)
        if status is None:
            return False
        if bits & _5XX and 500 <= status <= 599:
            return True
        if bits & _GATEWAY and status in _GATEWAY_CODES:
            return True
        if bits & _4XX and status == 409:
            return True
        if bits & _CODES and status in self._codes:
            return True
        return bool(bits & _HEADERS and header_names and any(n in header_names for n, _ in headers))

    def should_retry(
        self,
        outcome: Outcome,
        status: int | None,
        attempt: int,
        method: str,
        has_idempotency_key: bool = False,
        grpc_status: int | None = None,
        **facts,
    ) -> bool:
        """Retry now? `attempt` counts the retries already made (0 after the first try);
        `facts` as for `retryable`."""
        return attempt < self.attempts and self.retryable(outcome, status, method, has_idempotency_key, grpc_status,
                                                          **facts)

    def backoff(self, retry: int, rng: RandomLike) -> float:
        """Seconds to wait before the `retry`-th retry (1 = the first); see `backoff`."""
        return backoff(retry, rng, self._base, self._max)

    def __repr__(self) -> str:
        return f"RetryPolicy(attempts={self.attempts}, retry_on={self.retry_on!r}, per_try_timeout={self.per_try_timeout})"


def header_names(value: bytes | None) -> frozenset[bytes]:
    """x-envoy-retriable-header-names "X-Upstream-Retry, x-other" -> lower-case names."""
    if not value:
        return frozenset()
    return frozenset(name.strip().lower() for name in value.split(b",") if name.strip())
