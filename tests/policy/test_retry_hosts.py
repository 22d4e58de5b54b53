"""Where a retry goes (pymesh.policy.retry_hosts): Envoy's previous_hosts predicate with Istio's 5
re-picks, and previous_priorities with update_frequency 2, over seeded balancers."""

import random
from collections import Counter

from pymesh.api import model
from pymesh.policy.balancer import make_balancer
from pymesh.policy.retry_hosts import HOST_SELECTION_RETRY_MAX_ATTEMPTS, excluded_priorities, retry_host
from pymesh.routing.snapshot import Endpoint

ROUND_ROBIN = model.LoadBalancerSettings(simple="ROUND_ROBIN")
RANDOM = model.LoadBalancerSettings(simple="RANDOM")
RING = model.LoadBalancerSettings(consistent_hash=model.ConsistentHash(http_header_name="x"))


def ep(i: int, priority: int = 0) -> Endpoint:
    return Endpoint(f"10.0.{priority}.{i}", 80, locality=f"r{priority}/z", priority=priority)


THREE = (ep(1), ep(2), ep(3))


class CountingBalancer:
    """Always the same endpoint; counts the picks."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint, self.picks = endpoint, 0

    def pick(self, hash_key=None):
        self.picks += 1
        return self.endpoint


def test_a_retry_avoids_the_hosts_tried():
    balancer = make_balancer(RANDOM, THREE, random.Random(5))
    for n in range(300):
        tried = [THREE[n % 3]]
        assert retry_host(balancer, None, tried, True, False).key != tried[0].key


def test_two_hosts_tried_leave_the_third():
    balancer = make_balancer(ROUND_ROBIN, THREE, random.Random(6))
    assert {retry_host(balancer, None, [THREE[0], THREE[1]], True, False).key for _ in range(30)} == {THREE[2].key}


def test_re_picks_are_bounded_as_envoys():
    """At random, 6 picks all land on the two hosts tried with probability (2/3)^6 ~ 8.8%:
    then the last pick stands (Envoy does not search further)."""
    balancer = make_balancer(RANDOM, THREE, random.Random(6))
    picks = Counter(retry_host(balancer, None, [THREE[0], THREE[1]], True, False).key for _ in range(1000))
    assert 50 < 1000 - picks[THREE[2].key] < 130


def test_without_the_predicate_a_retry_may_land_on_the_same_host():
    balancer = make_balancer(RANDOM, THREE, random.Random(7))
    picks = Counter(retry_host(balancer, None, [THREE[0]], False, False).key for _ in range(300))
    assert picks[THREE[0].key] > 50


def test_one_host_is_retried_after_the_re_picks():
    """Envoy's chooseHost: 1 + host_selection_retry_max_attempts picks, then the last stands."""
    only = ep(9)
    balancer = CountingBalancer(only)
    assert retry_host(balancer, None, [only], True, False) is only
    assert balancer.picks == HOST_SELECTION_RETRY_MAX_ATTEMPTS + 1 == 6


def test_a_consistent_hash_keeps_its_host_when_not_avoiding():
    balancer = make_balancer(RING, THREE, random.Random(8))
    first = balancer.pick(b"user-1")
    assert all(retry_host(balancer, b"user-1", [first], False, False) == first for _ in range(20))


def test_no_host_is_no_host():
    balancer = make_balancer(ROUND_ROBIN, (), random.Random(1))
    assert retry_host(balancer, None, [ep(1)], True, True) is None


# --- previous priorities (retryRemoteLocalities) ---------------------------------------------------


def test_excluded_priorities_update_every_two_attempts():
    a, b, c = ep(1, 0), ep(2, 1), ep(3, 2)
    assert excluded_priorities([a]) == frozenset()  # fewer than update_frequency: original load
    assert excluded_priorities([a, a]) == {0}
    assert excluded_priorities([a, a, b]) == {0}  # kept until the next multiple of 2
    assert excluded_priorities([a, a, b, b]) == {0, 1}
    assert excluded_priorities([a, b, c, c, c]) == {0, 1, 2}


LOCAL = tuple(ep(i, 0) for i in range(3))
REMOTE = tuple(ep(i, 1) for i in range(3))


def test_remote_localities_move_the_second_retry_to_the_next_priority():
    balancer = make_balancer(ROUND_ROBIN, LOCAL + REMOTE, random.Random(2))
    assert {balancer.pick().priority for _ in range(50)} == {0}  # healthy local: all traffic local
    first_retry = {retry_host(balancer, None, [LOCAL[0]], True, True).priority for _ in range(50)}
    assert first_retry == {0}  # one host tried: Envoy keeps the original load
    second_retry = {retry_host(balancer, None, [LOCAL[0], LOCAL[1]], True, True).priority for _ in range(50)}
    assert second_retry == {1}
    without = {retry_host(balancer, None, [LOCAL[0], LOCAL[1]], True, False).priority for _ in range(50)}
    assert without == {0}  # the predicate alone stays local: LOCAL[2] is left


def test_all_priorities_tried_falls_back_to_the_original_load():
    balancer = make_balancer(ROUND_ROBIN, LOCAL + REMOTE, random.Random(3))
    tried = [LOCAL[0], REMOTE[0], LOCAL[1], REMOTE[1]]
    assert {retry_host(balancer, None, tried, False, True).priority for _ in range(30)} == {0}


def test_remote_localities_skip_a_level_with_no_healthy_host():
    balancer = make_balancer(ROUND_ROBIN, LOCAL + REMOTE, random.Random(4), all_endpoints=LOCAL + REMOTE)
    balancer.set_excluded(REMOTE)  # the remote level has nothing healthy: nowhere else to go
    assert {retry_host(balancer, None, [LOCAL[0], LOCAL[1]], False, True).priority for _ in range(30)} == {0}


def test_remote_localities_on_a_single_level_balancer_change_nothing():
    balancer = make_balancer(ROUND_ROBIN, THREE, random.Random(4))
    assert retry_host(balancer, None, [THREE[0], THREE[1]], True, True).key == THREE[2].key
