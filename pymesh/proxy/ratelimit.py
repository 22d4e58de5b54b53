"""The local rate limit filter (Envoy's envoy.filters.http.local_ratelimit): one token bucket per
rule (and per key value when the rule has a key), refilled lazily from the loop's clock; a
request that finds its bucket empty gets Envoy's 429 "local_rate_limited" with
x-envoy-ratelimited (Envoy's header) and x-local-rate-limit (the one Istio's rate limit task
configures), flag RL.

Buckets live in this filter, made once per snapshot and per worker, so a configuration push
starts them full again (as Envoy's do when the filter config changes), and each worker limits on
its own (Envoy's buckets are per process). At most MAX_BUCKETS keyed buckets are kept: past
that they are dropped and start full, so a client cannot exhaust memory with header values.
"""

from __future__ import annotations

from pymesh.policy import flags
from pymesh.policy.ratelimit import TokenBucket
from pymesh.proxy.local_reply import LocalReply

MAX_BUCKETS = 10_000
RATE_LIMITED = LocalReply(429, flags.RL, b"local_rate_limited",
                          ((b"x-envoy-ratelimited", b"true"), (b"x-local-rate-limit", b"true")))


class LocalRateLimit:
    def __init__(self, clock) -> None:
        self.clock = clock  # the loop's time()
        self.buckets: dict[tuple[str, object], TokenBucket] = {}

    def on_request(self, exchange, request) -> LocalReply | None:
        rule = exchange.route.rate_limit
        if rule.key_header:
            key = exchange.head.header(rule.key_header)
        elif rule.key_source_ip:
            key = exchange.head.connection.source_ip
        else:
            key = None
        now = self.clock()
        bucket = self.buckets.get((rule.name, key))
        if bucket is None or bucket.rule is not rule:
            if len(self.buckets) >= MAX_BUCKETS:
                self.buckets.clear()
            bucket = self.buckets[(rule.name, key)] = TokenBucket(rule, now)
        stats = exchange.runtime.telemetry.metrics.filter_stats(exchange.listener.name, "local_rate_limit")
        stats["enabled"] += 1
        if bucket.take(now):
            stats["ok"] += 1
            return None
        stats["enforced"] += 1
        stats["rate_limited"] += 1
        return RATE_LIMITED
