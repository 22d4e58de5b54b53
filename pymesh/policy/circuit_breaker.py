"""Envoy's cluster circuit breakers, set by Istio's connectionPool: limits on the cluster's open
connections (tcp.maxConnections), on requests waiting for a connection (http1MaxPendingRequests),
on requests in flight (http2MaxRequests, any protocol) and on retries in flight (maxRetries).

The counts are the cluster's gauges in its /stats scope (`upstream_cx_active`,
`upstream_rq_pending_active`, `upstream_rq_active`, `upstream_rq_retry_active`), so they outlive
a configuration reload and every pool of the cluster sees the same ones; a breaker object only
holds the limits of the current configuration. An unset limit is Istio's default, 2^32-1: none.
Overflow is answered at once with 503 and flag UO and never retried (Envoy's router does not
retry an overflow). The limits hold per worker: with `--concurrency N` each worker has them.

A retry budget (Istio's trafficPolicy.retryBudget) replaces maxRetries, as in Envoy: retries in
flight may be at most percent% of the requests in flight and pending, never fewer than
minRetryConcurrency. pymesh's `upstream_rq_active` already counts the requests waiting for a
connection (Envoy keeps them apart in `upstream_rq_pending_active`), so it alone is that sum.
"""

from __future__ import annotations

from pymesh.api.model import ConnectionPoolSettings, RetryBudget

UNLIMITED = 2**32 - 1


class CircuitBreaker:
    __slots__ = ("stats", "max_connections", "max_pending", "max_requests", "max_retries", "budget")

    def __init__(self, stats: dict[str, int], settings: ConnectionPoolSettings, budget: RetryBudget | None = None) -> None:
        self.stats = stats
        self.max_connections = settings.max_connections or UNLIMITED
        self.max_pending = settings.max_pending_requests or UNLIMITED
        self.max_requests = settings.max_requests or UNLIMITED
        self.max_retries = settings.max_retries or UNLIMITED
        self.budget = budget

    def connection_allowed(self) -> bool:
        """Another connection may open; when not, counted as Envoy's upstream_cx_overflow."""
        if self.stats["upstream_cx_active"] < self.max_connections:
            return True
        self.stats["upstream_cx_overflow"] += 1
        return False

    def pending_allowed(self) -> bool:
        if self.stats["upstream_rq_pending_active"] < self.max_pending:
            return True
        self.stats["upstream_rq_pending_overflow"] += 1
        return False

    def request_allowed(self) -> bool:
        # Envoy counts a max_requests overflow as upstream_rq_pending_overflow too.
        if self.stats["upstream_rq_active"] < self.max_requests:
            return True
        self.stats["upstream_rq_pending_overflow"] += 1
        return False

    def retry_limit(self) -> int:
        """Retries that may be in flight now: maxRetries, or what the retry budget allows."""
        budget = self.budget
        if budget is None:
            return self.max_retries
        return max(int(budget.percent / 100.0 * self.stats["upstream_rq_active"]), budget.min_retry_concurrency)

    def retry_allowed(self) -> bool:
        if self.stats["upstream_rq_retry_active"] < self.retry_limit():
            return True
        self.stats["upstream_rq_retry_overflow"] += 1
        return False
