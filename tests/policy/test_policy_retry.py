import random

import pytest

from pymesh.api import model
from pymesh.policy.retry import BACKOFF_BASE, BACKOFF_MAX, Outcome, RetryPolicy, backoff

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
    ("reset-before-request", RST, None, False),
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
        ("retriable-headers", "'retriable-headers' is not supported"),
        ("envoy-ratelimited", "not supported"),
        ("99", "not an HTTP status code"),
        ("600", "not an HTTP status code"),
        ("5XX", "unknown retry condition"),  # Envoy's tokens are case-sensitive
    ],
)
def test_bad_retry_on_is_rejected_by_name(retry_on, message):
    with pytest.raises(ValueError, match=message):
        policy(retry_on)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"attempts": -1}, "attempts must be >= 0"), ({"per_try_timeout": 0}, "perTryTimeout must be > 0")],
)
def test_bad_numbers_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)


# --- backoff -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attempt, upper",
    [(0, 0.025), (1, 0.075), (2, 0.175), (3, 0.25), (4, 0.25), (100, 0.25)],
)
def test_backoff_upper_bounds(fixed_random, attempt, upper):
    assert backoff(attempt, fixed_random(0.0)) == 0.0
    assert backoff(attempt, fixed_random(0.5)) == pytest.approx(upper / 2)
    assert backoff(attempt, fixed_random(0.999999)) == pytest.approx(upper, rel=1e-5)


def test_backoff_is_jittered_within_bounds():
    rng = random.Random(11)
    samples = [backoff(2, rng) for _ in range(2000)]
    assert 0 <= min(samples) < 0.01 and 0.165 < max(samples) < 0.175


def test_policy_backoff_uses_its_intervals(fixed_random):
    p = RetryPolicy(backoff_base=0.1, backoff_max=1.0)
    assert p.backoff(0, fixed_random(0.5)) == pytest.approx(0.05)
    assert p.backoff(5, fixed_random(0.5)) == pytest.approx(0.5)
    assert RetryPolicy().backoff(9, fixed_random(0.5)) == pytest.approx(BACKOFF_MAX / 2)
    assert BACKOFF_BASE == 0.025
