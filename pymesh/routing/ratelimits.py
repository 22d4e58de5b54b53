"""Which LocalRateLimit rules apply to a proxy's routes: resources in the proxy's namespace whose
workloadSelector matches its labels (none: all of the namespace), in file order; a route gets
the first rule naming it (or naming no route) for its direction."""

from __future__ import annotations

from dataclasses import dataclass

from pymesh.api import model
from pymesh.policy.ratelimit import RateLimitRule
from pymesh.routing.scope import selects
from pymesh.routing.snapshot import ProxyIdentity


@dataclass(frozen=True)
class RateLimits:
    rules: tuple[tuple[model.RateLimitRule, RateLimitRule], ...] = ()

    @classmethod
    def select(cls, config: model.MeshConfig, identity: ProxyIdentity) -> RateLimits:
        rules = []
        for resource in config.local_rate_limits:
            meta = resource.metadata
            if meta.namespace != identity.namespace or not selects(resource.workload_selector or {}, identity.labels):
                continue
            for index, rule in enumerate(resource.rules):
                compiled = RateLimitRule(
                    name=f"{meta.namespace}/{meta.name}#{index}", max_tokens=rule.max_tokens,
                    tokens_per_fill=rule.tokens_per_fill, fill_interval=rule.fill_interval,
                    key_header=rule.key_header.encode("latin-1"), key_source_ip=rule.key_source_ip,
                )
                rules.append((rule, compiled))
        return cls(tuple(rules))

    def for_route(self, route_name: str, direction: str) -> RateLimitRule | None:
        for rule, compiled in self.rules:
            if rule.route in ("", route_name) and rule.direction in ("", direction):
                return compiled
        return None


NONE = RateLimits()
