"""Envoy's priority levels and locality weighted balancing over per-group balancers.

Endpoints carry a priority (0 first; pymesh.routing.locality assigns them from the proxy's
locality, as Istio does) and, with `distribute`, a locality weight. Each priority level's health
is min(1, 1.4 * healthy / total) (Envoy's overprovisioning factor); level 0 takes as much of the
load as its health allows and the rest spills to the next levels in order. When the levels'
health adds up to less than 1 the loads are normalised, so traffic still goes where hosts are;
with no healthy host at all there is no pick (503 UH). Within a level, with locality weights, a
locality is chosen by weight * its own health; then the group's balancer picks the endpoint.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate
from typing import Callable, Iterable

from pymesh.routing.snapshot import Endpoint

OVERPROVISIONING = 1.4  # Envoy's default overprovisioning_factor (140)


class PriorityBalancer:
    """Looks like a Balancer to its user; one inner balancer per (priority, locality) group."""

    def __init__(self, endpoints: tuple[Endpoint, ...], healthy: set[str], factory: Callable, rng) -> None:
        self.endpoints = endpoints
        self._rng = rng
        weighted = any(ep.locality_weight for ep in endpoints)
        groups: dict[tuple[int, str], list[Endpoint]] = {}
        for ep in endpoints:
            groups.setdefault((ep.priority, ep.locality if weighted else ""), []).append(ep)
        self._groups = [(priority, max(1, members[0].locality_weight), factory(tuple(members)))
                        for (priority, _), members in sorted(groups.items())]
        self._owner = {ep.key: inner for _, _, inner in self._groups for ep in inner.endpoints}
        self._weighted = weighted
        self.set_excluded([ep for ep in endpoints if ep.key not in healthy])

    def set_excluded(self, excluded: Iterable[Endpoint | str]) -> None:
        excluded = list(excluded)
        for _, _, inner in self._groups:
            inner.set_excluded(excluded)
        self.available = tuple(ep for _, _, inner in self._groups for ep in inner.available)
        self._plan()

    def _plan(self) -> None:
        """Once per change of health: the load per level and the weight per group."""
        self._levels, self._cum_loads = self._compute(frozenset())
        self._excluded_plan: tuple[frozenset[int], tuple] = (frozenset(), (self._levels, self._cum_loads))

    def _compute(self, excluded: frozenset[int]) -> tuple[list, list[float]]:
        """The levels (priorities not in `excluded`) that have hosts and their cumulative loads."""
        levels: dict[int, list] = {}
        for priority, weight, inner in self._groups:
            if priority not in excluded:
                levels.setdefault(priority, []).append((weight, inner))
        plan = []
        for priority in sorted(levels):
            members = levels[priority]
            healthy = sum(len(inner.available) for _, inner in members)
            total = sum(len(inner.endpoints) for _, inner in members)
            health = min(1.0, OVERPROVISIONING * healthy / total) if total else 0.0
            choices = [(weight * _health(inner) if self._weighted else 1.0, inner)
                       for weight, inner in members if inner.available]
            if health and choices:
                plan.append((health, choices))
        total_health = sum(health for health, _ in plan)
        loads, left = [], 1.0
        for health, _ in plan:
            share = health / total_health if total_health < 1.0 else min(left, health)
            loads.append(share)
            left -= share
        levels_out = [(choices[0][1],) if len(choices) == 1 else
                      (None, list(accumulate(w for w, _ in choices)), [inner for _, inner in choices])
                      for _, choices in plan]
        return levels_out, list(accumulate(loads))

    def has_levels_besides(self, excluded: frozenset[int]) -> bool:
        """Some priority outside `excluded` has a healthy host (a retry can go there)."""
        return bool(self._plan_without(excluded)[0])

    def _plan_without(self, excluded: frozenset[int]) -> tuple:
        """The plan over the other levels, remembered for the last excluded set (retries ask
        for the same one a few times in a row)."""
        if self._excluded_plan[0] != excluded:
            self._excluded_plan = (excluded, self._compute(excluded))
        return self._excluded_plan[1]

    def loads(self) -> list[float]:
        """Each planned level's share of the traffic (for tests and the admin page)."""
        return [b - a for a, b in zip([0.0] + self._cum_loads, self._cum_loads)]

    def pick(self, hash_key: bytes | None = None, excluded: frozenset[int] | None = None) -> Endpoint | None:
        """An endpoint by the levels' loads; with `excluded` (a retry's previous priorities),
        by the loads over the other levels only."""
        if excluded:
            levels, cum_loads = self._plan_without(excluded)
        else:
            levels, cum_loads = self._levels, self._cum_loads
        if not levels:
            return None
        if len(levels) == 1:
            level = levels[0]
        else:
            i = bisect_right(cum_loads, self._rng.random() * cum_loads[-1])
            level = levels[min(i, len(levels) - 1)]
        if level[0] is not None:
            return level[0].pick(hash_key)
        _, cum, inners = level
        i = bisect_right(cum, self._rng.random() * cum[-1])
        return inners[min(i, len(inners) - 1)].pick(hash_key)

    def on_request_start(self, endpoint: Endpoint) -> None:
        inner = self._owner.get(endpoint.key)
        if inner is not None:
            inner.on_request_start(endpoint)

    def on_request_end(self, endpoint: Endpoint) -> None:
        inner = self._owner.get(endpoint.key)
        if inner is not None:
            inner.on_request_end(endpoint)


def _health(inner) -> float:
    return min(1.0, OVERPROVISIONING * len(inner.available) / len(inner.endpoints))
