"""Envoy's priority levels and locality weights (pymesh.policy.priority), seeded."""

import random
from collections import Counter
from dataclasses import replace

import pytest

from pymesh.api import model
from pymesh.policy.balancer import make_balancer
from pymesh.routing.snapshot import Endpoint

LEAST = model.LoadBalancerSettings()
RING = model.LoadBalancerSettings(consistent_hash=model.ConsistentHash(http_header_name="x"))


def ep(i: int, priority: int = 0, locality: str = "", weight: int = 0) -> Endpoint:
    return Endpoint(f"10.0.{priority}.{i}", 80, locality=locality, priority=priority, locality_weight=weight)


LOCAL = tuple(ep(i, 0, "r1/z1") for i in range(4))
REMOTE = tuple(ep(i, 1, "r2/z1") for i in range(4))


def shares(b, n=4000) -> Counter:
    return Counter(b.pick(f"k{i}".encode()).priority for i in range(n))


def test_the_local_priority_takes_all_traffic_while_healthy():
    b = make_balancer(LEAST, LOCAL + REMOTE, random.Random(1))
    assert shares(b) == {0: 4000}
    assert b.loads() == [1.0, 0.0] or b.loads() == [1.0]


def test_rebuilt_over_healthy_endpoints_without_local_ones_fails_over():
    b = make_balancer(LEAST, REMOTE, random.Random(1))  # outlier detection left only the remote ones
    assert shares(b) == {1: 4000}
    assert make_balancer(LEAST, (), random.Random(1)).pick() is None


@pytest.mark.parametrize("healthy_local, expected_local", [(4, 1.0), (3, 1.0), (2, 0.7), (1, 0.35), (0, 0.0)])
def test_partial_health_spills_over_with_the_overprovisioning_factor(healthy_local, expected_local):
    b = make_balancer(LEAST, LOCAL[:healthy_local] + REMOTE, random.Random(2), all_endpoints=LOCAL + REMOTE)
    # Envoy: health = min(1, 1.4 * healthy / total); 3 of 4 is 1.05 -> still all local
    assert b.loads()[0] == pytest.approx(expected_local) if healthy_local else b.loads() == [1.0]
    assert shares(b)[0] / 4000 == pytest.approx(expected_local, abs=0.03)


def test_set_excluded_replans_and_keeps_request_counts():
    b = make_balancer(LEAST, LOCAL + REMOTE, random.Random(2))
    b.on_request_start(LOCAL[0])
    b.set_excluded(LOCAL)
    assert shares(b) == {1: 4000}
    b.set_excluded(())
    assert shares(b) == {0: 4000}
    assert b._owner[LOCAL[0].key].active(LOCAL[0]) == 1


def test_everything_unhealthy_normalises_what_is_left():
    # both levels at half health (1.4 * 1/4 = 0.35 each): loads normalised to 50/50
    b = make_balancer(LEAST, LOCAL[:1] + REMOTE[:1], random.Random(2), all_endpoints=LOCAL + REMOTE)
    assert b.loads() == pytest.approx([0.5, 0.5])


def test_locality_weights_split_traffic_and_follow_health():
    zone1 = tuple(replace(ep(i, 0, "r1/z1"), locality_weight=80) for i in range(2))
    zone2 = tuple(replace(ep(i + 2, 0, "r1/z2"), locality_weight=20) for i in range(2))
    b = make_balancer(RING, zone1 + zone2, random.Random(4))
    counts = Counter(b.pick(None).locality for _ in range(5000))
    assert counts["r1/z1"] / 5000 == pytest.approx(0.8, abs=0.03)
    b.set_excluded(zone1)
    assert {b.pick(None).locality for _ in range(200)} == {"r1/z2"}


def test_consistent_hash_within_a_priority_stays_consistent():
    b = make_balancer(RING, LOCAL + REMOTE, random.Random(1))
    assert [b.pick(b"user-1") for _ in range(20)] == [b.pick(b"user-1")] * 20
    assert b.pick(b"user-1").priority == 0
