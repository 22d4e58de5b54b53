"""How one attempt at the upstream ended, classified once.

The router turns whatever happened on the wire into an `Outcome` (plus the status code when a
response head arrived); `classify` turns that into the response flag and the status the downstream
sees. The same result feeds retries, metrics, the access log, the circuit breaker and outlier
detection, so they can never disagree about what a failure was.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from pymesh.policy import flags


class Outcome(enum.Enum):
    RESPONSE = "response"  # a full response head arrived; its status decides
    CONNECT_FAILURE = "connect-failure"  # no connection: the upstream never received the request
    REFUSED_STREAM = "refused-stream"  # HTTP/2 REFUSED_STREAM: received but provably not processed
    RESET = "reset"  # connection reset/closed after sending, before a full response head
    STREAM_RESET = "stream-reset"  # HTTP/2: the upstream reset the stream (RST_STREAM), not the connection
    TIMEOUT = "timeout"  # the per-try timeout fired before a response head


# Outcomes after which the upstream application has certainly not acted on the request: the only
# ones where replaying a non-idempotent request is safe.
NEVER_PROCESSED = frozenset({Outcome.CONNECT_FAILURE, Outcome.REFUSED_STREAM})


class Classification(NamedTuple):
    flags: str  # Envoy response flags, "-" when none
    status: int  # what the downstream gets: the upstream's status or the local reply's
    local_reply: bool  # True when the proxy must write the response itself

    @property
    def is_error(self) -> bool:
        """A 5xx (upstream or local): what consecutive5xxErrors and error-rate metrics count."""
        return self.status >= 500


# Local failures: (flag, status of the local reply). Envoy answers connection problems with 503
# and timeouts with 504.
_LOCAL = {
    Outcome.CONNECT_FAILURE: (flags.UF, 503),
    Outcome.REFUSED_STREAM: (flags.UR, 503),
    Outcome.RESET: (flags.UC, 503),
    Outcome.STREAM_RESET: (flags.UR, 503),
    Outcome.TIMEOUT: (flags.UT, 504),
}
_LOCAL_CLASSIFIED = {
    (outcome, exhausted): Classification(flags.join(flag, flags.URX if exhausted else flags.NONE), status, True)
    for outcome, (flag, status) in _LOCAL.items()
    for exhausted in (False, True)
}
_RESPONSE_FLAGS = (flags.NONE, flags.URX)


def classify(outcome: Outcome, status: int | None = None, retries_exhausted: bool = False) -> Classification:
    """Flags and downstream status for the final attempt.

    `retries_exhausted` is true when the attempt was retryable but the retry limit was reached
    (Envoy's URX), e.g. `policy.retryable(...) and not policy.should_retry(...)`.
    """
    if outcome is Outcome.RESPONSE:
        if status is None:
            raise ValueError("a RESPONSE outcome needs its status code")
        return Classification(_RESPONSE_FLAGS[retries_exhausted], status, False)
    return _LOCAL_CLASSIFIED[outcome, bool(retries_exhausted)]
