"""The local rate limit's keyed buckets stay bounded whatever a client sends as the key: a
hostile client varying the header cannot grow the proxy's memory past MAX_BUCKETS."""

from __future__ import annotations

from types import SimpleNamespace

from pymesh.policy.ratelimit import RateLimitRule
from pymesh.proxy.ratelimit import MAX_BUCKETS, RATE_LIMITED, LocalRateLimit

RULE = RateLimitRule(name="default/rl#0", max_tokens=1, tokens_per_fill=1, fill_interval=60.0, key_header=b"x-user")


def request(user: bytes, stats: dict) -> SimpleNamespace:
    """What the filter reads of an exchange: its route's rule, the key header, the stats scope."""
    head = SimpleNamespace(header=lambda name: user if name == b"x-user" else None)
    metrics = SimpleNamespace(filter_stats=lambda listener, name: stats)
    return SimpleNamespace(route=SimpleNamespace(rate_limit=RULE), head=head, listener=SimpleNamespace(name="l"),
                           runtime=SimpleNamespace(telemetry=SimpleNamespace(metrics=metrics)))


def test_each_key_has_its_bucket_and_the_buckets_stay_bounded():
    stats = {"enabled": 0, "ok": 0, "enforced": 0, "rate_limited": 0}
    limit = LocalRateLimit(clock=lambda: 0.0)
    assert limit.on_request(request(b"alice", stats), None) is None
    assert limit.on_request(request(b"alice", stats), None) is RATE_LIMITED  # one token a minute
    assert limit.on_request(request(b"bob", stats), None) is None  # another key, another bucket
    for n in range(3 * MAX_BUCKETS):
        limit.on_request(request(b"user-%d" % n, stats), None)
        assert len(limit.buckets) <= MAX_BUCKETS
    assert stats["rate_limited"] == 1
