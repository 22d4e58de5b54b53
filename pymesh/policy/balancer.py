"""Load balancers over one cluster's endpoints.

A balancer is built once per endpoint set (per config snapshot) and all the work that depends on
the set happens then: schedules, cumulative weights, the hash ring. `pick` is a few list lookups.

Unhealthy endpoints (outlier detection) are taken out with `set_excluded`, which rebuilds only the
working set; active-request counts survive it. With every endpoint excluded `pick` returns None
(Istio's default minHealthPercent of 0 means no panic mode), and the proxy answers 503 UH.

Weights below 1 count as 1 (Envoy's minimum). Randomness comes only from the injected `rng`
(anything with `random() -> float`), so tests are deterministic.
"""

from __future__ import annotations

import heapq
import itertools
import random
from bisect import bisect_left, bisect_right
from functools import reduce
from math import gcd
from typing import Iterable, Protocol

from pymesh.api import model
from pymesh.policy.hashkey import stable_hash64
from pymesh.routing.snapshot import Endpoint

SCHEDULE_LIMIT = 1 << 14  # round-robin schedule entries; larger weight sums are scaled down
RING_VNODES = 160  # ring points per unit of weight (ketama's choice): ~8% share deviation
RING_LIMIT = 1 << 16  # ring points in all; larger weight sums are scaled down


class RandomLike(Protocol):
    def random(self) -> float: ...


def _none() -> None:
    return None


def _scaled(weights: list[int], limit: int) -> list[int]:
    """Weights scaled down (each kept >= 1) when their sum exceeds `limit`."""
    total = sum(weights)
    if total > limit:
        weights = [max(1, w * limit // total) for w in weights]
    return weights


class Balancer:
    """Common state: all endpoints, the available ones, and no-op request tracking."""

    def __init__(self, endpoints: tuple[Endpoint, ...], rng: RandomLike) -> None:
        self.endpoints = tuple(endpoints)
        self.available = self.endpoints
        self._rng = rng
        self._keys = tuple(ep.key for ep in self.endpoints)
        self._weights = tuple(max(1, ep.weight) for ep in self.endpoints)
        self._prepare()
        self._rebuild(tuple(range(len(self.endpoints))))

    def pick(self, hash_key: bytes | None = None) -> Endpoint | None:
        """An endpoint for the next request, or None when none is available."""
        raise NotImplementedError

    def on_request_start(self, endpoint: Endpoint) -> None:
        """A request to `endpoint` began (only LEAST_REQUEST cares)."""

    def on_request_end(self, endpoint: Endpoint) -> None:
        """A request to `endpoint` ended, however it ended."""

    def set_excluded(self, excluded: Iterable[Endpoint | str]) -> None:
        """Stop picking these endpoints (given as endpoints or "address:port" keys) until the
        next call; `set_excluded(())` brings every endpoint back."""
        keys = {e if isinstance(e, str) else e.key for e in excluded}
        indexes = tuple(i for i, k in enumerate(self._keys) if k not in keys)
        self.available = tuple(self.endpoints[i] for i in indexes)
        self._rebuild(indexes)

    def _prepare(self) -> None:
        """Once per endpoint set: work that does not depend on exclusions."""

    def _rebuild(self, indexes: tuple[int, ...]) -> None:
        """Once per change of the available set (indexes into `endpoints`)."""
        raise NotImplementedError


class RoundRobinBalancer(Balancer):
    """Weighted round robin over a precomputed schedule, so a pick is one `next()`.

    The schedule interleaves endpoints by earliest deadline (as Envoy's EDF scheduler does):
    weights 3:1 give a a b a, not a a a b. Each balancer starts at a random offset so that N
    worker processes do not all send their first request to the same endpoint.
    """

    def _rebuild(self, indexes: tuple[int, ...]) -> None:
        if not indexes:
            self._next = _none
            return
        items = [self.endpoints[i] for i in indexes]
        weights = [self._weights[i] for i in indexes]
        g = reduce(gcd, weights)
        weights = _scaled([w // g for w in weights], SCHEDULE_LIMIT)
        if max(weights) == 1:
            schedule = items
        else:
            # Endpoint i's k-th turn is due at (k - 1/2) / weight: mid-slot deadlines spread
            # the turns evenly; ties go to the lower index, so the schedule is deterministic.
            heap = [(0.5 / w, i, 1) for i, w in enumerate(weights)]
            heapq.heapify(heap)
            schedule = []
            for _ in range(sum(weights)):
                _, i, k = heap[0]
                schedule.append(items[i])
                heapq.heapreplace(heap, ((k + 0.5) / weights[i], i, k + 1))
        cycle = itertools.cycle(schedule)
        for _ in range(int(self._rng.random() * len(schedule))):  # random start offset
            next(cycle)
        self._next = cycle.__next__

    def pick(self, hash_key: bytes | None = None) -> Endpoint | None:
        return self._next()


class _Sampler:
    """Weighted random index into a list, precomputed: uniform when weights are equal."""

    __slots__ = ("n", "cum", "total")

    def __init__(self, weights: list[int]) -> None:
        self.n = len(weights)
        self.cum = list(itertools.accumulate(weights)) if weights and min(weights) != max(weights) else None
        self.total = self.cum[-1] if self.cum else self.n

    def index(self, rng: RandomLike) -> int:
        if self.cum is None:
            return int(rng.random() * self.n)
        i = bisect_right(self.cum, rng.random() * self.total)
        return i if i < self.n else self.n - 1  # float rounding at the very top


class RandomBalancer(Balancer):
    """Weighted random: stateless, so it needs no coordination between workers."""

    def _rebuild(self, indexes: tuple[int, ...]) -> None:
        self._items = [self.endpoints[i] for i in indexes]
        self._sampler = _Sampler([self._weights[i] for i in indexes])

    def pick(self, hash_key: bytes | None = None) -> Endpoint | None:
        if not self._items:
            return None
        return self._items[self._sampler.index(self._rng)]


class LeastRequestBalancer(Balancer):
    """Envoy's LEAST_REQUEST: power of two choices by active requests.

    Equal weights: two distinct random candidates, the one with fewer active requests wins (so
    the single busiest endpoint is never picked while others exist). Unequal weights (a
    simplification of Envoy's weight / (active + 1) scheduling): two weighted random candidates,
    the lower (active + 1) / weight wins.
    """

    def _prepare(self) -> None:
        self._active = [0] * len(self.endpoints)
        self._by_id = {id(ep): i for i, ep in enumerate(self.endpoints)}
        self._by_key = {k: i for i, k in enumerate(self._keys)}

    def _rebuild(self, indexes: tuple[int, ...]) -> None:
        self._indexes = indexes
        self._sampler = _Sampler([self._weights[i] for i in indexes])

    def _index_of(self, endpoint: Endpoint) -> int | None:
        i = self._by_id.get(id(endpoint))
        return i if i is not None else self._by_key.get(endpoint.key)

    def on_request_start(self, endpoint: Endpoint) -> None:
        i = self._index_of(endpoint)
        if i is not None:
            self._active[i] += 1

    def on_request_end(self, endpoint: Endpoint) -> None:
        i = self._index_of(endpoint)
        if i is not None and self._active[i] > 0:
            self._active[i] -= 1

    def active(self, endpoint: Endpoint) -> int:
        """Requests in flight to `endpoint` (for the admin page and tests)."""
        i = self._index_of(endpoint)
        return 0 if i is None else self._active[i]

    def pick(self, hash_key: bytes | None = None) -> Endpoint | None:
        indexes = self._indexes
        n = len(indexes)
        if n < 2:
            return self.endpoints[indexes[0]] if n else None
        active, rng, sampler = self._active, self._rng, self._sampler
        if sampler.cum is None:
            a = int(rng.random() * n)
            b = indexes[(a + 1 + int(rng.random() * (n - 1))) % n]
            a = indexes[a]
            return self.endpoints[b if active[b] < active[a] else a]
        a = indexes[sampler.index(rng)]
        b = indexes[sampler.index(rng)]
        w = self._weights
        return self.endpoints[b if (active[b] + 1) * w[a] < (active[a] + 1) * w[b] else a]


class RingHashBalancer(Balancer):
    """Consistent hashing on a ring (Istio's default consistentHash algorithm).

    Each endpoint owns RING_VNODES points per unit of weight, placed by hashing "address:port#n",
    so an endpoint's points do not depend on which other endpoints exist: removing or excluding
    one endpoint moves only the keys it owned (~1/N), and the same key keeps its endpoint while
    the set is stable, in every process. (Only past RING_LIMIT points are counts scaled down, and
    then depend on the set.) A request without a key lands on a random point.
    """

    def _prepare(self) -> None:
        replicas = _scaled([RING_VNODES * w for w in self._weights], RING_LIMIT) if self.endpoints else []
        self._ring = sorted(
            (stable_hash64(f"{key}#{n}".encode()), i)
            for i, (key, count) in enumerate(zip(self._keys, replicas))
            for n in range(count)
        )

    def _rebuild(self, indexes: tuple[int, ...]) -> None:
        keep = set(indexes)
        points = [(h, i) for h, i in self._ring if i in keep]
        self._points = [h for h, _ in points]
        self._owners = [self.endpoints[i] for _, i in points]

    def pick(self, hash_key: bytes | None = None) -> Endpoint | None:
        points = self._points
        if not points:
            return None
        h = stable_hash64(hash_key) if hash_key is not None else int(self._rng.random() * 2.0**64)
        j = bisect_left(points, h)
        return self._owners[j if j < len(points) else 0]


_SIMPLE: dict[str, type[Balancer]] = {
    "ROUND_ROBIN": RoundRobinBalancer,
    "LEAST_REQUEST": LeastRequestBalancer,
    "LEAST_CONN": LeastRequestBalancer,  # Istio's deprecated name for LEAST_REQUEST
    "UNSPECIFIED": LeastRequestBalancer,  # Istio's default
    "RANDOM": RandomBalancer,
}


def make_balancer(
    settings: model.LoadBalancerSettings,
    endpoints: tuple[Endpoint, ...],
    rng: RandomLike | None = None,
) -> Balancer:
    """The balancer a DestinationRule asks for; consistentHash wins over `simple`."""
    rng = random.Random() if rng is None else rng
    if settings.consistent_hash is not None:
        return RingHashBalancer(endpoints, rng)
    cls = _SIMPLE.get(settings.simple.upper())
    if cls is None:
        raise ValueError(f"trafficPolicy.loadBalancer.simple: unsupported algorithm {settings.simple!r}")
    return cls(endpoints, rng)
