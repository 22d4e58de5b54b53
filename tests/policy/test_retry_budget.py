"""The retry budget in the circuit breaker (Istio's retryBudget, Envoy's retry_budget): retries in
flight at most percent% of the requests in flight, never fewer than minRetryConcurrency; it
replaces maxRetries."""

import pytest

from pymesh.api import model
from pymesh.policy.circuit_breaker import UNLIMITED, CircuitBreaker
from pymesh.telemetry.stats import CLUSTER_STATS


def breaker(budget=None, max_retries=0, active=0, retrying=0) -> CircuitBreaker:
    stats = dict.fromkeys(CLUSTER_STATS, 0)
    stats["upstream_rq_active"], stats["upstream_rq_retry_active"] = active, retrying
    return CircuitBreaker(stats, model.ConnectionPoolSettings(max_retries=max_retries), budget)


@pytest.mark.parametrize(
    "percent, minimum, active, limit",
    [
        (20.0, 3, 0, 3),  # nothing in flight: the minimum
        (20.0, 3, 10, 3),  # 20% of 10 is 2 < 3
        (20.0, 3, 25, 5),  # Envoy's own example: 5 retries with 25 requests
        (20.0, 3, 29, 5),  # truncated, as Envoy's uint64 conversion
        (20.0, 3, 1000, 200),
        (100.0, 1, 7, 7),
        (0.0, 2, 500, 2),
        (25.5, 5, 100, 25),
    ],
)
def test_budget_limit(percent, minimum, active, limit):
    assert breaker(model.RetryBudget(percent, minimum), active=active).retry_limit() == limit


def test_budget_replaces_max_retries():
    b = breaker(model.RetryBudget(), max_retries=100, active=10, retrying=3)
    assert not b.retry_allowed()
    assert b.stats["upstream_rq_retry_overflow"] == 1
    assert breaker(model.RetryBudget(), max_retries=1, active=10, retrying=2).retry_allowed()


def test_the_limit_follows_the_load():
    b = breaker(model.RetryBudget(20.0, 3), active=10, retrying=3)
    assert not b.retry_allowed()
    b.stats["upstream_rq_active"] = 20  # more requests in flight: room for a fourth retry
    assert b.retry_allowed()


def test_without_a_budget_max_retries_holds():
    assert breaker(max_retries=2, retrying=1).retry_allowed()
    assert not breaker(max_retries=2, retrying=2).retry_allowed()
    assert breaker().retry_limit() == UNLIMITED
