"""Local rate limiting (Envoy's local_ratelimit token bucket), pure: a rule from a pymesh
LocalRateLimit resource, and the bucket it fills.

A bucket starts full (`max_tokens`) and gains `tokens_per_fill` every `fill_interval`, never
above `max_tokens`; each request takes one token or is refused. Refill is lazy: computed from the
clock when a request arrives, so an idle bucket costs nothing and no bucket has a timer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimitRule:
    name: str  # "namespace/name#index": the bucket's identity across requests
    max_tokens: int
    tokens_per_fill: int
    fill_interval: float  # seconds
    key_header: bytes = b""  # a bucket per value of this request header (lower case)
    key_source_ip: bool = False  # a bucket per client address


class TokenBucket:
    __slots__ = ("rule", "tokens", "filled_at")

    def __init__(self, rule: RateLimitRule, now: float) -> None:
        self.rule = rule
        self.tokens = rule.max_tokens
        self.filled_at = now

    def take(self, now: float) -> bool:
        rule = self.rule
        fills = int((now - self.filled_at) // rule.fill_interval)
        if fills > 0:
            self.tokens = min(rule.max_tokens, self.tokens + fills * rule.tokens_per_fill)
            self.filled_at += fills * rule.fill_interval
        if self.tokens > 0:
            self.tokens -= 1
            return True
        return False
