"""Slow start (Istio's `warmup`): new endpoints' weight ramps up, with an injected clock."""

import random
from collections import Counter

import pytest

from pymesh.api import model
from pymesh.policy.balancer import make_balancer
from pymesh.policy.slowstart import SlowStart
from pymesh.routing.snapshot import Endpoint

EPS = tuple(Endpoint(f"10.0.0.{i}", 80) for i in range(4))
NEW = EPS[3].key


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("age, aggression, expected", [
    (0.0, 1.0, 0.1),  # Envoy's minimum weight percent (10) at the start
    (5.0, 1.0, 0.5),
    (9.99, 1.0, 0.999),
    (10.0, 1.0, 1.0),  # warm at the window's end
    (2.5, 2.0, 0.5),  # (0.25) ** (1/2)
    (0.4, 2.0, 0.2),
])
def test_factor_follows_envoys_formula(age, aggression, expected):
    slow = SlowStart(model.Warmup(10.0, aggression=aggression), {NEW: 100.0}, Clock())
    assert slow.factor(NEW, 100.0 + age) == pytest.approx(expected)
    assert slow.factor(EPS[0].key, 100.0) == 1.0  # there from the start: never in slow start


def share_of_new(balancer, n=4000) -> float:
    return Counter(balancer.pick().key for _ in range(n))[NEW] / n


@pytest.mark.parametrize("simple", ["ROUND_ROBIN", "LEAST_REQUEST"])
def test_new_endpoint_ramps_up_over_the_window(simple):
    clock = Clock()
    settings = model.LoadBalancerSettings(simple=simple, warmup=model.Warmup(10.0, minimum_percent=10))
    b = make_balancer(settings, EPS, random.Random(3), born={NEW: clock.now}, clock=clock)
    shares = []
    for age in (0.0, 2.5, 5.0, 10.0):
        clock.now = 100.0 + age
        shares.append(share_of_new(b))
    # weight factor 0.1, 0.25, 0.5, 1 against three warm endpoints of weight 1
    for share, factor in zip(shares, (0.1, 0.25, 0.5, 1.0)):
        assert share == pytest.approx(factor / (3 + factor), abs=0.04), shares
    assert "pick" not in vars(b)  # warm again: back to the plain pick


def test_random_and_hash_balancers_ignore_warmup():
    clock = Clock()
    settings = model.LoadBalancerSettings(simple="RANDOM", warmup=model.Warmup(10.0))
    b = make_balancer(settings, EPS, random.Random(3), born={NEW: clock.now}, clock=clock)
    assert share_of_new(b) == pytest.approx(0.25, abs=0.03)  # Envoy: ROUND_ROBIN and LEAST_REQUEST only


def test_without_new_endpoints_there_is_no_slow_start_cost():
    settings = model.LoadBalancerSettings(simple="ROUND_ROBIN", warmup=model.Warmup(10.0))
    b = make_balancer(settings, EPS, random.Random(3), born={}, clock=Clock())
    assert "pick" not in vars(b)
