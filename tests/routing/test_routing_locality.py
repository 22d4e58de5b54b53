"""Locality priorities and weights as Istio's control plane computes them (pure)."""

import pytest

from pymesh.api import model
from pymesh.routing import locality
from pymesh.routing.snapshot import Endpoint

PROXY = "r1/z1/s1"


def eps(*localities: str, labels=None) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(f"10.0.0.{i}", 80, locality=loc, labels=labels or {}) for i, loc in enumerate(localities))


def priorities(endpoints, setting=None, failover=True, labels=None) -> list[int]:
    return [e.priority for e in locality.apply(endpoints, setting, PROXY, labels or {}, failover)]


def test_priority_by_how_much_of_the_locality_matches():
    endpoints = eps("r1/z1/s1", "r1/z1/s2", "r1/z2/s1", "r2/z1/s1", "")
    assert priorities(endpoints) == [0, 1, 2, 3, 3]


def test_priorities_have_no_gaps():
    assert priorities(eps("r1/z1/s1", "r2/z1/s1")) == [0, 1]


def test_failover_rule_puts_its_target_region_before_other_regions():
    setting = model.LocalityLbSetting(failover=(model.LocalityFailover("r1", "r3"),))
    assert priorities(eps("r1/z1/s1", "r2/a/b", "r3/a/b"), setting) == [0, 2, 1]


def test_failover_priority_labels_split_levels_first():
    setting = model.LocalityLbSetting(failover_priority=("net",))
    endpoints = (Endpoint("a", 1, labels={"net": "n1"}, locality="r2"), Endpoint("b", 1, labels={"net": "n2"}, locality=PROXY))
    assert priorities(endpoints, setting, labels={"net": "n1"}) == [0, 1]  # labels only: locality ignored
    assert priorities(endpoints, model.LocalityLbSetting(failover_priority=("net=n2",)), labels={"net": "n1"}) == [1, 0]


@pytest.mark.parametrize("failover, setting", [(False, None), (True, model.LocalityLbSetting(enabled=False))])
def test_no_priorities_without_outlier_detection_or_when_disabled(failover, setting):
    assert priorities(eps("r1/z1/s1", "r2/z1/s1"), setting, failover=failover) == [0, 0]


def test_no_priorities_for_a_proxy_without_locality():
    endpoints = eps("r1/z1/s1", "r2/z1/s1")
    assert locality.apply(endpoints, None, "", {}, True) == endpoints


def test_distribute_weights_matching_localities_and_drops_the_rest():
    rule = model.LocalityDistribute("r1/z1/*", (("r1/z1/*", 80), ("r1/z2/*", 20)))
    endpoints = eps("r1/z1/s1", "r1/z1/s2", "r1/z2/s1", "r2/z1/s1")
    out = locality.apply(endpoints, model.LocalityLbSetting(distribute=(rule,)), PROXY, {}, False)
    assert [(e.locality, e.locality_weight) for e in out] == [("r1/z1/s1", 40), ("r1/z1/s2", 40), ("r1/z2/s1", 20)]


def test_distribute_rule_for_another_locality_changes_nothing():
    rule = model.LocalityDistribute("r9/*", (("r1/*", 100),))
    endpoints = eps("r1/z1/s1", "r2/z1/s1")
    assert locality.apply(endpoints, model.LocalityLbSetting(distribute=(rule,)), PROXY, {}, False) == endpoints


@pytest.mark.parametrize("given, labels, expected", [
    ("r/z/s", {}, "r/z/s"),
    ("", {"topology.kubernetes.io/region": "r", "topology.kubernetes.io/zone": "z"}, "r/z"),
    ("", {"topology.kubernetes.io/zone": "z"}, ""),  # no region: no locality
])
def test_proxy_locality(given, labels, expected):
    assert locality.proxy_locality(given, labels) == expected
