import random
from collections import Counter

import pytest

from pymesh.api import model
from pymesh.policy.balancer import (
    LeastRequestBalancer,
    MaglevBalancer,
    PassthroughBalancer,
    RandomBalancer,
    RingHashBalancer,
    RoundRobinBalancer,
    make_balancer,
)
from pymesh.routing.snapshot import Endpoint

RR = model.LoadBalancerSettings(simple="ROUND_ROBIN")
RANDOM = model.LoadBalancerSettings(simple="RANDOM")
LEAST = model.LoadBalancerSettings(simple="LEAST_REQUEST")
RING = model.LoadBalancerSettings(consistent_hash=model.ConsistentHash(http_header_name="x-user"))
MAGLEV = model.LoadBalancerSettings(consistent_hash=model.ConsistentHash(http_header_name="x-user", maglev=True))
PASSTHROUGH = model.LoadBalancerSettings(simple="PASSTHROUGH")


def eps(*weights: int) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(f"10.0.0.{i}", 8080, weight=w) for i, w in enumerate(weights))


def names(balancer, n: int) -> str:
    return " ".join(balancer.pick().address.rsplit(".", 1)[1] for _ in range(n))


@pytest.mark.parametrize(
    "settings, cls",
    [
        (RR, RoundRobinBalancer),
        (model.LoadBalancerSettings(simple="round_robin"), RoundRobinBalancer),
        (RANDOM, RandomBalancer),
        (LEAST, LeastRequestBalancer),
        (model.LoadBalancerSettings(simple="LEAST_CONN"), LeastRequestBalancer),
        (model.LoadBalancerSettings(simple="UNSPECIFIED"), LeastRequestBalancer),
        (RING, RingHashBalancer),
        (MAGLEV, MaglevBalancer),
        (PASSTHROUGH, PassthroughBalancer),
        (model.LoadBalancerSettings(simple="RANDOM", consistent_hash=model.ConsistentHash(use_source_ip=True)), RingHashBalancer),
    ],
)
def test_make_balancer_picks_algorithm(settings, cls):
    assert type(make_balancer(settings, eps(1, 1), random.Random(0))) is cls


def test_make_balancer_rejects_unknown_algorithm():
    with pytest.raises(ValueError, match="FASTEST"):
        make_balancer(model.LoadBalancerSettings(simple="FASTEST"), eps(1))


def test_make_balancer_default_rng():
    assert make_balancer(RANDOM, eps(1, 1)).pick() is not None


@pytest.mark.parametrize("settings", [RR, RANDOM, LEAST, RING, MAGLEV])
def test_no_endpoints_gives_none(settings):
    b = make_balancer(settings, (), random.Random(0))
    assert b.pick() is None
    assert b.pick(b"key") is None


@pytest.mark.parametrize("settings", [RR, RANDOM, LEAST, RING, MAGLEV])
def test_excluding_everything_gives_none_and_restoring_works(settings):
    endpoints = eps(1, 1, 1)
    b = make_balancer(settings, endpoints, random.Random(0))
    b.set_excluded(endpoints)
    assert b.pick(b"k") is None and b.available == ()
    b.set_excluded(())
    assert b.pick(b"k") in endpoints and b.available == endpoints


@pytest.mark.parametrize("settings", [RR, RANDOM, LEAST, RING, MAGLEV])
def test_excluded_endpoint_is_never_picked(settings):
    endpoints = eps(1, 1, 1)
    b = make_balancer(settings, endpoints, random.Random(0))
    b.set_excluded(["10.0.0.1:8080"])  # by key; endpoints work too
    picked = {b.pick(f"k{i}".encode() if i % 2 else None).key for i in range(300)}
    assert picked == {endpoints[0].key, endpoints[2].key}


# --- ROUND_ROBIN -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "weights, expected",
    [
        ((1,), "0 0 0"),
        ((1, 1, 1), "0 1 2 0 1 2"),
        ((3, 1), "0 0 1 0 0 0 1 0"),  # interleaved, 3:1 per cycle of 4
        ((2, 1), "0 1 0 0 1 0"),
        ((4, 2), "0 1 0 0 1 0"),  # same as 2:1 (gcd)
        ((5, 3, 2), "0 1 2 0 0 1 0 2 1 0"),
        ((0, 1), "0 1 0 1"),  # weight below 1 counts as 1
    ],
)
def test_round_robin_order(fixed_random, weights, expected):
    b = make_balancer(RR, eps(*weights), fixed_random(0.0))
    assert names(b, len(expected.split())) == expected


@pytest.mark.parametrize("weights", [(1, 1, 1, 1), (5, 3, 2), (7, 1, 100)])
def test_round_robin_honours_weights_exactly_per_cycle(weights):
    b = make_balancer(RR, eps(*weights), random.Random(3))
    cycle = sum(weights)
    counts = Counter(b.pick().address for _ in range(cycle * 4))
    assert [counts[f"10.0.0.{i}"] for i in range(len(weights))] == [4 * w for w in weights]


def test_round_robin_start_offset_comes_from_rng(fixed_random):
    b = make_balancer(RR, eps(1, 1, 1, 1), fixed_random(0.5))
    assert names(b, 4) == "2 3 0 1"


def test_round_robin_huge_weights_are_scaled(fixed_random):
    b = make_balancer(RR, eps(1_000_000, 3_000_000 + 1), fixed_random(0.0))
    counts = Counter(b.pick().address for _ in range(40_000))
    assert counts["10.0.0.1"] / counts["10.0.0.0"] == pytest.approx(3, rel=0.01)


# --- RANDOM ------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [(1, 1, 1, 1), (1, 2, 7)])
def test_random_distribution_follows_weights(weights):
    b = make_balancer(RANDOM, eps(*weights), random.Random(42))
    n = 50_000
    counts = Counter(b.pick().address for _ in range(n))
    for i, w in enumerate(weights):
        assert counts[f"10.0.0.{i}"] / n == pytest.approx(w / sum(weights), abs=0.01)


@pytest.mark.parametrize("value, expected", [(0.0, 0), (0.099, 0), (0.1, 1), (0.29, 1), (0.3, 2), (0.999999, 2)])
def test_random_weighted_boundaries(fixed_random, value, expected):
    endpoints = eps(1, 2, 7)
    assert make_balancer(RANDOM, endpoints, fixed_random(value)).pick() is endpoints[expected]


def test_random_is_deterministic_with_seed():
    a = make_balancer(RANDOM, eps(1, 1, 1), random.Random(7))
    b = make_balancer(RANDOM, eps(1, 1, 1), random.Random(7))
    assert names(a, 50) == names(b, 50)


# --- LEAST_REQUEST -----------------------------------------------------------------------------


def test_least_request_prefers_idle_endpoints():
    endpoints = eps(1, 1, 1, 1)
    b = make_balancer(LEAST, endpoints, random.Random(1))
    for _ in range(5):
        b.on_request_start(endpoints[0])
        b.on_request_start(endpoints[1])
    b.on_request_start(endpoints[2])
    counts = Counter(b.pick().key for _ in range(4000))
    counts = [counts[e.key] for e in endpoints]
    # Two distinct candidates: the busiest is never chosen, the idle one wins whenever sampled.
    assert counts[0] + counts[1] < counts[2] < counts[3]
    assert counts[3] / 4000 == pytest.approx(0.5, abs=0.03)  # sampled in half the pairs


def test_least_request_never_picks_the_single_busiest():
    endpoints = eps(1, 1, 1)
    b = make_balancer(LEAST, endpoints, random.Random(5))
    b.on_request_start(endpoints[1])
    assert endpoints[1].key not in {b.pick().key for _ in range(500)}


def test_least_request_tracks_start_and_end(fixed_random):
    endpoints = eps(1, 1)
    b = make_balancer(LEAST, endpoints, fixed_random(0.0))  # candidates: 0 then 1
    assert b.pick() is endpoints[0]
    b.on_request_start(endpoints[0])
    assert b.active(endpoints[0]) == 1
    assert b.pick() is endpoints[1]
    b.on_request_end(endpoints[0])
    b.on_request_end(endpoints[0])  # an extra end never goes negative
    assert b.active(endpoints[0]) == 0
    assert b.pick() is endpoints[0]


def test_least_request_matches_equal_endpoint_copies_and_ignores_strangers():
    endpoints = eps(1, 1)
    b = make_balancer(LEAST, endpoints, random.Random(0))
    b.on_request_start(Endpoint("10.0.0.1", 8080))  # equal, not identical
    b.on_request_start(Endpoint("192.0.2.1", 1))  # not in this set (e.g. an older snapshot's)
    b.on_request_end(Endpoint("192.0.2.1", 1))
    assert b.active(endpoints[1]) == 1


def test_least_request_counts_survive_exclusion():
    endpoints = eps(1, 1, 1)
    b = make_balancer(LEAST, endpoints, random.Random(0))
    b.on_request_start(endpoints[0])
    b.set_excluded([endpoints[2]])
    assert b.active(endpoints[0]) == 1
    assert {b.pick().key for _ in range(100)} == {endpoints[1].key}


def test_least_request_weighted_follows_weights_when_idle():
    endpoints = eps(1, 3)
    b = make_balancer(LEAST, endpoints, random.Random(2))
    counts = Counter(b.pick().key for _ in range(20_000))
    # Idle: ties keep the first (weighted) candidate, so shares follow the weights.
    assert counts[endpoints[1].key] / 20_000 == pytest.approx(0.75, abs=0.01)


def test_least_request_weighted_prefers_less_loaded_per_weight(fixed_random):
    endpoints = eps(1, 3)
    # candidate a = light (0.1 < 1/4), candidate b = heavy
    b = make_balancer(LEAST, endpoints, fixed_random(0.1, 0.9))
    for _ in range(3):
        b.on_request_start(endpoints[1])  # heavy: 3/3 > light: 0/1
    assert b.pick() is endpoints[0]
    b.on_request_start(endpoints[0])  # light: 1/1 = heavy: 3/3, a tie keeps the first
    assert b.pick() is endpoints[0]
    b.on_request_start(endpoints[0])  # light: 2/1 > heavy: 3/3
    assert b.pick() is endpoints[1]


def test_least_request_single_endpoint():
    endpoints = eps(1)
    b = make_balancer(LEAST, endpoints, random.Random(0))
    b.on_request_start(endpoints[0])
    assert b.pick() is endpoints[0]


# --- consistent hash ---------------------------------------------------------------------------

KEYS = [f"user-{i}".encode() for i in range(20_000)]


def mapping(b) -> list[str]:
    return [b.pick(k).key for k in KEYS]


def test_ring_hash_same_key_same_endpoint_across_instances():
    endpoints = eps(*[1] * 8)
    a = make_balancer(RING, endpoints, random.Random(1))
    b = make_balancer(RING, tuple(reversed(endpoints)), random.Random(2))  # order does not matter
    assert mapping(a) == mapping(b)
    assert [a.pick(KEYS[0]) for _ in range(10)] == [a.pick(KEYS[0])] * 10


def test_ring_hash_is_stable_across_processes():
    # blake2b, not hash(): a fixed key must land on the same endpoint in every process forever.
    b = make_balancer(RING, eps(*[1] * 5), random.Random(0))
    assert [b.pick(k).address for k in (b"alice", b"bob", b"carol")] == ["10.0.0.2", "10.0.0.0", "10.0.0.0"]


def test_ring_hash_spreads_keys_evenly():
    n = 10
    counts = Counter(mapping(make_balancer(RING, eps(*[1] * n), random.Random(0))))
    assert len(counts) == n
    mean = len(KEYS) / n
    assert all(0.75 * mean < c < 1.25 * mean for c in counts.values()), counts


def test_ring_hash_follows_weights():
    counts = Counter(mapping(make_balancer(RING, eps(1, 3), random.Random(0))))
    ratio = counts["10.0.0.1:8080"] / len(KEYS)
    assert ratio == pytest.approx(0.75, abs=0.05)


@pytest.mark.parametrize("n, removed", [(10, 3), (5, 0), (20, 19)])
def test_ring_hash_removal_moves_only_the_removed_endpoints_keys(n, removed):
    endpoints = eps(*[1] * n)
    before = mapping(make_balancer(RING, endpoints, random.Random(0)))
    rest = endpoints[:removed] + endpoints[removed + 1 :]
    after = mapping(make_balancer(RING, rest, random.Random(0)))
    moved = [i for i, (x, y) in enumerate(zip(before, after)) if x != y]
    assert all(before[i] == endpoints[removed].key for i in moved)
    assert len(moved) == before.count(endpoints[removed].key)
    assert len(moved) / len(KEYS) == pytest.approx(1 / n, rel=0.3)


@pytest.mark.parametrize("settings", [RING, MAGLEV], ids=["ring", "maglev"])
@pytest.mark.parametrize("n", [3, 7, 16])
@pytest.mark.parametrize("change", ["add", "remove"])
def test_one_endpoint_more_or_less_remaps_about_one_nth_of_the_keys(settings, n, change):
    endpoints = eps(*[1] * (n + 1))
    small = mapping(make_balancer(settings, endpoints[:n], random.Random(0)))
    large = mapping(make_balancer(settings, endpoints, random.Random(0)))
    before, after, size = (small, large, n + 1) if change == "add" else (large, small, n + 1)
    moved = sum(x != y for x, y in zip(before, after)) / len(KEYS)
    assert 0.7 / size < moved < 1.3 / size  # the added or removed endpoint's share, and little more


@pytest.mark.parametrize("settings", [RING, MAGLEV], ids=["ring", "maglev"])
def test_consistent_hash_shares_are_even(settings):
    n = 8
    counts = Counter(mapping(make_balancer(settings, eps(*[1] * n), random.Random(0))))
    assert all(0.8 < c * n / len(KEYS) < 1.2 for c in counts.values()) and len(counts) == n


def test_ring_hash_minimum_ring_size_sets_the_points():
    small = make_balancer(RING, eps(1, 1), random.Random(0))
    assert len(small._points) == 2 * 1024  # Envoy's default minimum, per lightest endpoint
    custom = model.ConsistentHash(http_header_name="x", minimum_ring_size=64)
    b = make_balancer(model.LoadBalancerSettings(consistent_hash=custom), eps(1, 3), random.Random(0))
    assert Counter(o.key for o in b._owners) == {"10.0.0.0:8080": 64, "10.0.0.1:8080": 192}


def test_maglev_table_has_the_configured_prime_size_and_follows_weights():
    ch = model.ConsistentHash(http_header_name="x", maglev=True, maglev_table_size=251)
    b = make_balancer(model.LoadBalancerSettings(consistent_hash=ch), eps(1, 3), random.Random(0))
    counts = Counter(e.key for e in b._table)
    assert sum(counts.values()) == 251
    assert counts["10.0.0.1:8080"] / 251 == pytest.approx(0.75, abs=0.02)


def test_maglev_same_key_same_endpoint_in_any_order_and_exclusion_equals_removal():
    endpoints = eps(*[1] * 6)
    a = make_balancer(MAGLEV, endpoints, random.Random(1))
    assert mapping(a) == mapping(make_balancer(MAGLEV, tuple(reversed(endpoints)), random.Random(2)))
    a.set_excluded([endpoints[2]])
    assert mapping(a) == mapping(make_balancer(MAGLEV, endpoints[:2] + endpoints[3:], random.Random(0)))


def test_ring_hash_exclusion_equals_removal():
    endpoints = eps(*[1] * 6)
    b = make_balancer(RING, endpoints, random.Random(0))
    b.set_excluded([endpoints[4]])
    assert mapping(b) == mapping(make_balancer(RING, endpoints[:4] + endpoints[5:], random.Random(0)))


def test_ring_hash_without_key_picks_at_random(fixed_random):
    endpoints = eps(*[1] * 4)
    b = make_balancer(RING, endpoints, random.Random(9))
    assert len({b.pick(None).key for _ in range(200)}) == 4
    assert make_balancer(RING, endpoints, fixed_random(0.999999)).pick() in endpoints  # wraps


# --- PASSTHROUGH -------------------------------------------------------------------------------


def test_passthrough_goes_to_the_original_destination_given_as_key():
    b = make_balancer(PASSTHROUGH, (), random.Random(0))
    first = b.pick(b"10.1.2.3:8080")
    assert (first.address, first.port) == ("10.1.2.3", 8080)
    assert b.pick(b"10.1.2.3:8080") is first  # one Endpoint per destination: one pool
    v6 = b.pick(b"[::1]:9")
    assert (v6.address, v6.port) == ("::1", 9)
    assert b.pick(None) is None  # not captured: nowhere to go (503 UH)
