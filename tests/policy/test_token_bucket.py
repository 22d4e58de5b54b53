"""The token bucket with an injected clock: starts full, refills lazily per whole interval."""

from __future__ import annotations

from pymesh.policy.ratelimit import RateLimitRule, TokenBucket

RULE = RateLimitRule("default/limit#0", max_tokens=3, tokens_per_fill=2, fill_interval=1.0)


def test_starts_full_then_refuses():
    bucket = TokenBucket(RULE, now=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]


def test_refills_per_whole_interval_and_never_above_max():
    bucket = TokenBucket(RULE, now=0.0)
    for _ in range(3):
        bucket.take(0.0)
    assert not bucket.take(0.99)  # not a whole interval yet
    assert [bucket.take(1.0) for _ in range(3)] == [True, True, False]  # +2
    assert [bucket.take(60.0) for _ in range(4)] == [True, True, True, False]  # capped at 3


def test_partial_interval_is_kept_for_the_next_fill():
    bucket = TokenBucket(RateLimitRule("r", 1, 1, 1.0), now=0.0)
    assert bucket.take(0.0) and not bucket.take(1.5 - 0.6)
    assert bucket.take(1.5) and not bucket.take(1.9)
    assert bucket.take(2.0)  # the fill at 1.0 counted from 0.0, not from 1.5
