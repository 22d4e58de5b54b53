import random

import pytest

from pymesh.api import model
from pymesh.policy.retry import BACKOFF_BASE, BACKOFF_MAX, Outcome, RetryPolicy, backoff, backoff_interval_ms, header_names

CF, RS, RST, TO, RESP = (
    Outcome.CONNECT_FAILURE,
    Outcome.REFUSED_STREAM,
    Outcome.RESET,
    Outcome.TIMEOUT,
    Outcome.RESPONSE,
)


def policy(retry_on: str, attempts: int = 3) -> RetryPolicy:
    return RetryPolicy.from_model(model.HTTPRetry(attempts=attempts, retry_on=(retry_on,)))


# (retryOn, outcome, status, retried?) for an idempotent GET with retries left.
CONDITIONS = [
    ("5xx", CF, None, True),
    ("5xx", RS, None, True),
    ("5xx", RST, None, True),
    ("5xx", TO, None, True),
    ("5xx", RESP, 500, True),
    ("5xx", RESP, 503, True),
    ("5xx", RESP, 599, True),
    ("5xx", RESP, 404, False),
    ("5xx", RESP, 200, False),
    ("gateway-error", CF, None, True),
    ("gateway-error", RS, None, True),
    ("gateway-error", RST, None, True),
    ("gateway-error", TO, None, True),
    ("gateway-error", RESP, 502, True),
    ("gateway-error", RESP, 503, True),
    ("gateway-error", RESP, 504, True),
    ("gateway-error", RESP, 500, False),
    ("gateway-error", RESP, 501, False),
    ("reset", CF, None, True),
    ("reset", RS, None, True),
    ("reset", RST, None, True),
    ("reset", TO, None, True),
    ("reset", RESP, 503, False),
    ("connect-failure", CF, None, True),
    ("connect-failure", RS, None, False),
    ("connect-failure", RST, None, False),
    ("connect-failure", TO, None, False),
    ("connect-failure", RESP, 503, False),
    ("refused-stream", RS, None, True),
    ("refused-stream", CF, None, False),
    ("refused-stream", RST, None, False),
    ("reset-before-request", CF, None, True),
    ("reset-before-request", RST, None, False),  # bytes went upstream (sent defaults to True)
    ("reset-before-request", RS, None, False),
    ("reset-before-request", TO, None, False),
    ("reset-before-request", RESP, 503, False),
    ("http3-post-connect-failure", CF, None, False),  # no HTTP/3: never fires
    ("http3-post-connect-failure", RST, None, False),
    ("retriable-headers", RESP, 503, False),  # no header names: nothing matches
    ("retriable-headers", CF, None, False),
    ("envoy-ratelimited", RESP, 429, False),  # without the header
    ("envoy-ratelimited", CF, None, False),
    ("retriable-4xx", RESP, 409, True),
    ("retriable-4xx", RESP, 429, False),
    ("retriable-4xx", CF, None, False),
    ("retriable-status-codes", RESP, 503, False),  # no codes listed: nothing to retry
    ("retriable-status-codes,503", RESP, 503, True),
    ("503", RESP, 503, True),  # bare code: Istio adds retriable-status-codes
    ("503", RESP, 502, False),
    ("503", CF, None, False),
    ("429, 503", RESP, 429, True),
    ("connect-failure,retriable-4xx", RESP, 409, True),
    ("connect-failure,retriable-4xx", CF, None, True),
]


@pytest.mark.parametrize("retry_on, outcome, status, expected", CONDITIONS)
def test_retry_on_conditions(retry_on, outcome, status, expected):
    assert policy(retry_on).should_retry(outcome, status, 0, "GET", False) is expected


# The idempotency rule: (method, idempotency key, outcome, status, retried?) under "5xx".
IDEMPOTENCY = [
    ("POST", False, CF, None, True),  # never reached the upstream
    ("POST", False, RS, None, True),  # refused: never processed
    ("POST", False, RST, None, False),  # may have been processed
    ("POST", False, TO, None, False),
    ("POST", False, RESP, 503, False),
    ("POST", True, RST, None, True),  # Idempotency-Key: the upstream deduplicates
    ("POST", True, TO, None, True),
    ("POST", True, RESP, 503, True),
    ("PATCH", False, RESP, 503, False),
    ("PATCH", False, CF, None, True),
    ("PATCH", True, RESP, 503, True),
    ("CONNECT", False, RESP, 503, False),
    ("PURGE", False, RESP, 503, False),  # unknown methods are not idempotent
    ("post", False, RESP, 503, False),  # methods are case-sensitive
    ("GET", False, RST, None, True),
    ("HEAD", False, RESP, 503, True),
    ("OPTIONS", False, TO, None, True),
    ("TRACE", False, RESP, 502, True),
    ("PUT", False, RESP, 503, True),
    ("DELETE", False, RST, None, True),
    ("POST", True, RESP, 200, False),  # a key never makes a success retryable
]


@pytest.mark.parametrize("method, key, outcome, status, expected", IDEMPOTENCY)
def test_non_idempotent_methods_retry_only_when_never_processed(method, key, outcome, status, expected):
    assert policy("5xx").should_retry(outcome, status, 0, method, key) is expected


@pytest.mark.parametrize(
    "outcome, status, grpc_status, expected",
    [
        (RESP, 200, 14, True),  # unavailable
        (RESP, 200, 1, True),  # cancelled
        (RESP, 200, 4, False),  # deadline-exceeded not in the default
        (RESP, 200, None, False),
        (RESP, 503, None, True),
        (RESP, 502, None, False),
        (RESP, 500, None, False),
        (CF, None, None, True),
        (RS, None, None, True),
        (RST, None, None, False),
        (TO, None, None, False),
    ],
)
def test_default_policy(outcome, status, grpc_status, expected):
    p = RetryPolicy.from_model(None)
    assert p.attempts == 2 and p.per_try_timeout is None
    assert p.should_retry(outcome, status, 0, "GET", False, grpc_status) is expected


def test_attempts_without_retry_on_keep_default_conditions():
    p = RetryPolicy.from_model(model.HTTPRetry(attempts=5, per_try_timeout=0.5))
    assert p.attempts == 5 and p.per_try_timeout == 0.5
    assert p.should_retry(RESP, 503, 4, "GET", False)
    assert not p.should_retry(RESP, 502, 0, "GET", False)


def test_user_retry_on_replaces_default_codes():
    p = policy("connect-failure")
    assert not p.should_retry(RESP, 503, 0, "GET", False)


@pytest.mark.parametrize(
    "token, grpc_status",
    [("cancelled", 1), ("deadline-exceeded", 4), ("resource-exhausted", 8), ("internal", 13), ("unavailable", 14)],
)
def test_grpc_conditions(token, grpc_status):
    """A gRPC status answer (trailers-only) is the server's word on the whole call: retried
    whatever the method; the POST rule still holds for failures without an answer."""
    p = policy(token)
    assert p.should_retry(RESP, 200, 0, "POST", True, grpc_status)
    assert not p.should_retry(RESP, 200, 0, "POST", True, 2)
    assert p.should_retry(RESP, 200, 0, "POST", False, grpc_status)
    assert not policy(f"{token},reset").should_retry(Outcome.RESET, None, 0, "POST", False)


@pytest.mark.parametrize("attempt, expected", [(0, True), (1, True), (2, True), (3, False), (10, False)])
def test_attempts_limit(attempt, expected):
    assert policy("5xx", attempts=3).should_retry(RESP, 503, attempt, "GET", False) is expected


def test_attempts_zero_disables_retries_and_per_try_timeout():
    p = RetryPolicy.from_model(model.HTTPRetry(attempts=0, per_try_timeout=1.0, retry_on=("5xx",)))
    assert not p.should_retry(CF, None, 0, "GET", False)
    assert p.per_try_timeout is None
    assert p.retryable(CF, None, "GET")  # the condition still matches: the limit is what stops it


def test_retryable_ignores_the_attempt_count():
    p = policy("5xx", attempts=1)
    assert p.retryable(RESP, 503, "GET") and not p.should_retry(RESP, 503, 1, "GET", False)
    assert not p.retryable(RESP, 200, "GET")


def test_retry_on_tokens_are_kept_flattened():
    assert policy(" 5xx , 503,,reset ").retry_on == ("5xx", "503", "reset")


@pytest.mark.parametrize(
    "retry_on, message",
    [
        ("5xx,bogus", "unknown retry condition 'bogus'"),
        ("99", "not an HTTP status code"),
        ("600", "not an HTTP status code"),
        ("5XX", "unknown retry condition"),  # Envoy's tokens are case-sensitive
    ],
)
def test_bad_retry_on_is_rejected_by_name(retry_on, message):
    with pytest.raises(ValueError, match=message):
        policy(retry_on)


@pytest.mark.parametrize(
    "outcome, sent, expected",
    [(CF, False, True), (RST, False, True), (TO, False, True), (RS, False, True),
     (RST, True, False), (TO, True, False), (RS, True, False), (CF, True, True)],
)
def test_reset_before_request_needs_nothing_sent(outcome, sent, expected):
    """Envoy retries a reset under reset-before-request only when no request byte went out
    (a per-try timeout while still connecting, say); a connect failure never sent any."""
    assert policy("reset-before-request").should_retry(outcome, None, 0, "GET", sent=sent) is expected


RETRY_HEADER = [(b"x-upstream-retry", b"1")]


@pytest.mark.parametrize(
    "status, headers, names, expected",
    [
        (503, RETRY_HEADER, frozenset({b"x-upstream-retry"}), True),
        (200, RETRY_HEADER, frozenset({b"x-upstream-retry"}), True),  # any status
        (503, RETRY_HEADER, frozenset({b"x-other"}), False),
        (503, [], frozenset({b"x-upstream-retry"}), False),
        (503, RETRY_HEADER, frozenset(), False),
    ],
)
def test_retriable_headers_match_the_names_the_request_gave(status, headers, names, expected):
    assert policy("retriable-headers").should_retry(RESP, status, 0, "GET", headers=headers,
                                                    header_names=names) is expected


def test_header_names_are_read_like_envoy():
    assert header_names(b"X-Upstream-Retry, x-other ,,") == frozenset({b"x-upstream-retry", b"x-other"})
    assert header_names(None) == frozenset() == header_names(b"")


LIMITED = [(b"x-envoy-ratelimited", b"true")]


@pytest.mark.parametrize(
    "retry_on, status, headers, expected",
    [
        ("envoy-ratelimited", 429, LIMITED, True),
        ("envoy-ratelimited", 503, LIMITED, True),
        ("envoy-ratelimited", 429, [(b"x-envoy-ratelimited", b"yes")], False),  # Envoy wants "true"
        ("envoy-ratelimited", 429, [], False),
        # As Envoy's wouldRetryFromHeaders: with envoy-ratelimited, no other response is retried.
        ("envoy-ratelimited,5xx", 503, [], False),
        ("envoy-ratelimited,5xx", 503, LIMITED, True),
    ],
)
def test_envoy_ratelimited(retry_on, status, headers, expected):
    assert policy(retry_on).should_retry(RESP, status, 0, "GET", headers=headers) is expected


def test_envoy_ratelimited_keeps_the_failure_conditions():
    assert policy("envoy-ratelimited,5xx").should_retry(RST, None, 0, "GET")
    assert policy("envoy-ratelimited,connect-failure").should_retry(CF, None, 0, "GET")


def test_any_status_only_for_header_conditions():
    assert policy("retriable-headers").any_status and policy("envoy-ratelimited").any_status
    assert not policy("5xx,503").any_status and not RetryPolicy.from_model(None).any_status
    assert not policy("retriable-headers", attempts=0).any_status


@pytest.mark.parametrize(
    "ignore, consistent_hash, expected",
    [(None, False, True), (None, True, False), (True, True, True), (False, False, False)],
)
def test_previous_hosts_as_istio_sets_them(ignore, consistent_hash, expected):
    """Istio adds Envoy's previous_hosts predicate by default, but not for consistent-hash
    destinations (DefaultConsistentHashPolicy); retryIgnorePreviousHosts overrides both."""
    p = RetryPolicy.from_model(model.HTTPRetry(attempts=2, retry_ignore_previous_hosts=ignore))
    assert p.avoids_previous_hosts(consistent_hash) is expected
    assert RetryPolicy.from_model(None).avoids_previous_hosts(False)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"attempts": -1}, "attempts must be >= 0"), ({"per_try_timeout": 0}, "perTryTimeout must be > 0")],
)
def test_bad_numbers_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)


# --- backoff -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "retry, base, cap, interval",
    [
        # Envoy's defaults: 25, 50, 100, 200 (doubled while under half the max), then the max
        (1, 25, 250, 25), (2, 25, 250, 50), (3, 25, 250, 100), (4, 25, 250, 200), (5, 25, 250, 250),
        (6, 25, 250, 250), (1000, 25, 250, 250),
        (1, 100, 1000, 100), (4, 100, 1000, 800), (5, 100, 1000, 1000),
        (1, 7, 7, 7), (3, 7, 7, 7),  # base == max
    ],
)
def test_backoff_interval_is_envoys_jittered_exponential(retry, base, cap, interval):
    assert backoff_interval_ms(retry, base, cap) == interval


@pytest.mark.parametrize("retry, upper", [(1, 0.025), (2, 0.050), (3, 0.100), (4, 0.200), (5, 0.25), (100, 0.25)])
def test_backoff_bounds(fixed_random, retry, upper):
    """Whole milliseconds in [0, interval): Envoy's random() % interval."""
    assert backoff(retry, fixed_random(0.0)) == 0.0
    assert backoff(retry, fixed_random(0.5)) == int(upper * 500) / 1000  # whole ms, rounded down
    assert backoff(retry, fixed_random(0.999999)) == pytest.approx(upper - 0.001)


def test_backoff_is_jittered_within_bounds_with_a_seeded_source():
    """The proxy's seedable source (--random-seed) gives the same waits for the same seed."""
    from pymesh.proxy import random_source

    random_source.seed(11)
    samples = [backoff(3, random_source.RNG) for _ in range(2000)]
    random_source.seed(11)
    assert samples == [backoff(3, random_source.RNG) for _ in range(2000)]
    assert min(samples) == 0.0 and max(samples) == 0.099
    assert len(set(samples)) == 100  # every millisecond of [0, 100) drawn
    assert all(s * 1000 == int(round(s * 1000)) for s in samples)


def test_policy_backoff_uses_istios_base(fixed_random):
    """Istio's `backoff` is Envoy's base interval; the max stays 10 times it."""
    p = RetryPolicy.from_model(model.HTTPRetry(attempts=3, backoff=0.1))
    assert p.backoff(1, fixed_random(0.5)) == pytest.approx(0.05)
    assert p.backoff(5, fixed_random(0.5)) == pytest.approx(0.5)
    assert p.backoff(50, fixed_random(0.999999)) == pytest.approx(0.999)
    assert RetryPolicy().backoff(9, fixed_random(0.5)) == pytest.approx(BACKOFF_MAX / 2)
    assert BACKOFF_BASE == 0.025 and BACKOFF_MAX == 0.25


def test_bad_backoff_is_rejected():
    with pytest.raises(ValueError, match="backoff must be > 0"):
        RetryPolicy(backoff_base=0)
