"""Load balancers over one cluster's endpoints.

A balancer is built once per endpoint set (per config snapshot) and all the work that depends on
the set happens then: schedules, cumulative weights, the hash ring. `pick` is a few list lookups.

Unhealthy endpoints (outlier detection) are taken out with `set_excluded`, which rebuilds only the
working set; active-request counts survive it. With every endpoint excluded `pick` returns None
(Istio's default minHealthPercent of 0 means no panic mode), and the proxy answers 503 UH.

Weights below 1 count as 1 (Envoy's minimum). Randomness comes only from the injected `rng`
(anything with `random() -> float`), and time only from the injected `clock`, so tests are
deterministic.

`make_balancer` composes: PASSTHROUGH, consistent hash (ring hash or Maglev) or a simple
algorithm; Envoy's slow start over ROUND_ROBIN and LEAST_REQUEST (`warmup`); and Envoy's
priority levels and locality weights (pymesh.policy.priority) when the endpoints carry them.
"""

from __future__ import annotations

import heapq
import itertools
import random
from bisect import bisect_left, bisect_right
from functools import reduce
from math import gcd
from time import monotonic
from typing import Callable, Iterable, Mapping, Protocol

from pymesh.api import model
from pymesh.policy.hashkey import stable_hash64
from pymesh.policy.priority import PriorityBalancer
from pymesh.policy.slowstart import SlowStart
from pymesh.routing.snapshot import Endpoint

SCHEDULE_LIMIT = 1 << 14  # round-robin schedule entries; larger weight sums are scaled down
# Envoy's ring may grow to 8M entries; built in Python, pymesh stops at 256K (each host still
# gets its share of points, only the granularity is coarser past it).
RING_LIMIT = 1 << 18
WARMUP_SCALE = 100  # weights are multiplied by this while some endpoint warms up (integer weights)
PASSTHROUGH_CACHE = 1024  # original destinations remembered as Endpoint objects


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

    def __init__(self, endpoints: tuple[Endpoint, ...], rng: RandomLike, slow_start: SlowStart | None = None) -> None:
        self.endpoints = tuple(endpoints)
        self.available = self.endpoints
        self._rng = rng
        self._keys = tuple(ep.key for ep in self.endpoints)
        self._base_weights = self._weights = tuple(max(1, ep.weight) for ep in self.endpoints)
        self._indexes = tuple(range(len(self.endpoints)))
        self._prepare()
        if slow_start is not None and any(slow_start.factor(k, slow_start.clock()) < 1.0 for k in self._keys):
            self._slow = slow_start
            self._cold_pick = self.pick
            self.pick = self._warming_pick  # until every endpoint is warm: then the class's again
            self._reweigh(slow_start.clock())
        else:
            self._rebuild(self._indexes)

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
        self._indexes = tuple(i for i, k in enumerate(self._keys) if k not in keys)
        self.available = tuple(self.endpoints[i] for i in self._indexes)
        self._rebuild(self._indexes)

    def _prepare(self) -> None:
        """Once per endpoint set: work that does not depend on exclusions."""

    def _rebuild(self, indexes: tuple[int, ...]) -> None:
        """Once per change of the available set (indexes into `endpoints`) or of the weights."""
        raise NotImplementedError

    # slow start: weights recomputed every `step`, not per pick ----------------------------------

    def _warming_pick(self, hash_key: bytes | None = None) -> Endpoint | None:
        now = self._slow.clock()
        if now >= self._reweigh_at:
            self._reweigh(now)
        return self._cold_pick(hash_key)

    def _reweigh(self, now: float) -> None:
        factors = [self._slow.factor(k, now) for k in self._keys]
        if min(factors, default=1.0) >= 1.0:
            self._weights = self._base_weights
            del self.pick  # all warm: picks cost nothing extra from now on
        else:
            self._weights = tuple(max(1, round(w * WARMUP_SCALE * f)) for w, f in zip(self._base_weights, factors))
            self._reweigh_at = now + self._slow.step
        self._rebuild(self._indexes)


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
    the lower active / weight wins and a tie keeps the first, so idle endpoints share traffic
    in proportion to weight (as Envoy's scheduler does, and as slow start needs).
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
        return self.endpoints[b if active[b] * w[a] < active[a] * w[b] else a]


class RingHashBalancer(Balancer):
    """Envoy's ring hash (Istio's default consistentHash algorithm).

    Point j of an endpoint is the hash of "address:port_j", so an endpoint's points never depend
    on the other endpoints. Each endpoint of the lightest weight gets `minimum_ring_size` points
    (Envoy's default 1024), heavier ones proportionally more. Envoy instead shares the minimum
    among all hosts, which changes every host's point count when one host comes or goes and so
    moves ~1.5/N of the keys instead of 1/N; pymesh's ring is larger (never smaller than the
    minimum) and removing one of N equal endpoints moves exactly its own keys. Past RING_LIMIT
    points the counts are scaled down. The ring is rebuilt over the available endpoints, as
    Envoy rebuilds it over the healthy hosts. A request without a key lands on a random point.
    """

    def __init__(self, endpoints, rng, minimum_ring_size: int = 1024) -> None:
        self._ring_size = minimum_ring_size
        super().__init__(endpoints, rng)

    def _rebuild(self, indexes: tuple[int, ...]) -> None:
        weights = [self._weights[i] for i in indexes]
        points: list[tuple[int, int]] = []
        if indexes:
            lightest = min(weights)
            counts = _scaled([max(1, round(self._ring_size * w / lightest)) for w in weights], RING_LIMIT)
            for i, count in zip(indexes, counts):
                key = self._keys[i]
                points.extend((stable_hash64(f"{key}_{n}".encode()), i) for n in range(count))
            points.sort()
        self._points = [h for h, _ in points]
        self._owners = [self.endpoints[i] for _, i in points]

    def pick(self, hash_key: bytes | None = None) -> Endpoint | None:
        points = self._points
        if not points:
            return None
        h = stable_hash64(hash_key) if hash_key is not None else int(self._rng.random() * 2.0**64)
        j = bisect_left(points, h)
        return self._owners[j if j < len(points) else 0]


class MaglevBalancer(Balancer):
    """Envoy's Maglev: a lookup table of prime size (default 65537) filled by each endpoint's
    own permutation of the slots, in turns proportional to weight. Removing one of N endpoints
    moves its slots and a small share of others' (Maglev's "minimal disruption"); a pick is one
    modulo and one index. Built over the available endpoints, ordered by key, so every process
    builds the same table.
    """

    def __init__(self, endpoints, rng, table_size: int = 65537) -> None:
        self._size = table_size
        super().__init__(endpoints, rng)

    def _rebuild(self, indexes: tuple[int, ...]) -> None:
        size = self._size
        order = sorted(indexes, key=lambda i: self._keys[i])
        self._table = table = [None] * size if order else []
        if not order:
            return
        offset = {i: stable_hash64(self._keys[i].encode()) % size for i in order}
        skip = {i: stable_hash64(self._keys[i].encode(), seed=1) % (size - 1) + 1 for i in order}
        weight = self._weights
        heaviest = max(weight[i] for i in order)
        step = dict.fromkeys(order, 0)
        target = dict.fromkeys(order, 0)
        filled, turn = 0, 1
        while filled < size:
            for i in order:
                if turn * weight[i] < target[i]:
                    continue  # a lighter endpoint takes fewer turns (Envoy's target weights)
                target[i] += heaviest
                c = (offset[i] + skip[i] * step[i]) % size
                while table[c] is not None:
                    step[i] += 1
                    c = (offset[i] + skip[i] * step[i]) % size
                table[c] = self.endpoints[i]
                step[i] += 1
                filled += 1
                if filled == size:
                    break
            turn += 1

    def pick(self, hash_key: bytes | None = None) -> Endpoint | None:
        table = self._table
        if not table:
            return None
        h = stable_hash64(hash_key) if hash_key is not None else int(self._rng.random() * 2.0**64)
        return table[h % self._size]


class PassthroughBalancer(Balancer):
    """Istio's PASSTHROUGH (Envoy's ORIGINAL_DST cluster): the endpoint is where the captured
    connection was going, handed in as the "address:port" key. Without one (traffic that was
    not captured) there is no endpoint: 503 UH."""

    def _prepare(self) -> None:
        self._known: dict[bytes, Endpoint] = {}

    def _rebuild(self, indexes: tuple[int, ...]) -> None:
        pass  # no endpoint set to prepare: every pick names its own

    def pick(self, hash_key: bytes | None = None) -> Endpoint | None:
        if hash_key is None:
            return None
        endpoint = self._known.get(hash_key)
        if endpoint is None:
            address, _, port = hash_key.decode().rpartition(":")
            if len(self._known) >= PASSTHROUGH_CACHE:
                self._known.clear()
            endpoint = self._known[hash_key] = Endpoint(address=address.strip("[]"), port=int(port))
        return endpoint


_SIMPLE: dict[str, type[Balancer]] = {
    "ROUND_ROBIN": RoundRobinBalancer,
    "LEAST_REQUEST": LeastRequestBalancer,
    "LEAST_CONN": LeastRequestBalancer,  # Istio's deprecated name for LEAST_REQUEST
    "UNSPECIFIED": LeastRequestBalancer,  # Istio's default
    "RANDOM": RandomBalancer,
}
_WARMING = (RoundRobinBalancer, LeastRequestBalancer)  # Envoy's slow start supports only these


def make_balancer(
    settings: model.LoadBalancerSettings,
    endpoints: tuple[Endpoint, ...],
    rng: RandomLike | None = None,
    *,
    all_endpoints: tuple[Endpoint, ...] | None = None,
    born: Mapping[str, float] | None = None,
    clock: Callable[[], float] = monotonic,
) -> Balancer | PriorityBalancer:
    """The balancer a DestinationRule asks for over `endpoints` (the healthy ones); consistentHash
    wins over `simple`.

    Endpoints on several priority levels or with locality weights get Envoy's priority and
    locality balancing; give `all_endpoints` (healthy or not) and a priority that lost some of
    its hosts spills load to the next one gradually (Envoy's overprovisioning factor 1.4),
    otherwise a level counts as healthy while it has any endpoint. `born`: creation times of
    endpoints added after the cluster was first built, for `warmup` (slow start), on `clock`.
    """
    rng = random.Random() if rng is None else rng
    factory = _factory(settings, rng, born, clock)
    everything = tuple(endpoints) if all_endpoints is None else tuple(all_endpoints)
    if any(ep.priority or ep.locality_weight for ep in everything):
        return PriorityBalancer(everything, {ep.key for ep in endpoints}, factory, rng)
    balancer = factory(everything)
    if all_endpoints is not None:
        healthy = {ep.key for ep in endpoints}
        balancer.set_excluded([ep for ep in everything if ep.key not in healthy])
    return balancer


def _factory(settings: model.LoadBalancerSettings, rng: RandomLike, born: Mapping[str, float] | None,
             clock: Callable[[], float]) -> Callable[[tuple[Endpoint, ...]], Balancer]:
    """A function from an endpoint set to the balancer `settings` ask for."""
    ch = settings.consistent_hash
    if ch is not None:
        if ch.maglev:
            return lambda eps: MaglevBalancer(eps, rng, ch.maglev_table_size)
        return lambda eps: RingHashBalancer(eps, rng, ch.minimum_ring_size)
    simple = settings.simple.upper()
    if simple == "PASSTHROUGH":
        return lambda eps: PassthroughBalancer(eps, rng)
    cls = _SIMPLE.get(simple)
    if cls is None:
        raise ValueError(f"trafficPolicy.loadBalancer.simple: unsupported algorithm {settings.simple!r}")
    slow = SlowStart(settings.warmup, born, clock) if settings.warmup and born and cls in _WARMING else None
    return lambda eps: cls(eps, rng, slow)
