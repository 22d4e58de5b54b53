"""portLevelSettings and subset trafficPolicy: each precedence case of Istio's merge
(pilot's MergeSubsetTrafficPolicy), read off the compiled clusters."""

from __future__ import annotations

from pymesh.api import model as m
from routing_helpers import compile_, ep, meta, se

HOST = "reviews.default.svc.cluster.local"
PORTS = (m.ServicePort(9080, "HTTP", "http"), m.ServicePort(9090, "HTTP", "admin"))

LEAST = m.LoadBalancerSettings("LEAST_REQUEST")
RANDOM = m.LoadBalancerSettings("RANDOM")
ROBIN = m.LoadBalancerSettings("ROUND_ROBIN")
POOL_TOP = m.ConnectionPoolSettings(max_connections=100)
POOL_PORT = m.ConnectionPoolSettings(max_connections=1)
POOL_SUB = m.ConnectionPoolSettings(max_pending_requests=7)
OUTLIER = m.OutlierDetection(consecutive_5xx=3)
DEFAULTS = (m.LoadBalancerSettings(), m.ConnectionPoolSettings(), None)


def on(port: int, **fields) -> m.PortTrafficPolicy:
    return m.PortTrafficPolicy(port=port, **fields)


def clusters(policy=None, subset_policy=None):
    """(load balancer, pool, outlier) per cluster name suffix: "9080", "9090", "v1:9080", "v1:9090"."""
    service = se(HOST, *PORTS, endpoints=[ep("10.0.0.1", version="v1")])
    subset = m.Subset(name="v1", labels={"version": "v1"}, traffic_policy=subset_policy)
    rule = m.DestinationRule(meta("dr"), host="reviews", traffic_policy=policy, subsets=(subset,))
    snap = compile_([service], rules=[rule])
    out = {}
    for port in (9080, 9090):
        for name, key in (("", str(port)), ("v1", f"v1:{port}")):
            c = snap.clusters[f"outbound|{port}|{name}|{HOST}"]
            out[key] = (c.load_balancer, c.connection_pool, c.outlier_detection)
    return out, snap


def test_port_entry_replaces_the_policy_on_its_port_only():
    top = m.TrafficPolicy(load_balancer=LEAST, connection_pool=POOL_TOP, outlier_detection=OUTLIER,
                          port_level_settings=(on(9090, load_balancer=RANDOM),))
    got, _ = clusters(top)
    assert got["9080"] == (LEAST, POOL_TOP, OUTLIER)
    # not inherited: the pool and outlier detection the entry leaves out are the defaults
    assert got["9090"] == (RANDOM, m.ConnectionPoolSettings(), None)
    assert got["v1:9090"] == got["9090"] and got["v1:9080"] == got["9080"]  # a subset without a policy


def test_subset_top_level_field_beats_the_rules_port_entry():
    top = m.TrafficPolicy(load_balancer=LEAST, connection_pool=POOL_TOP,
                          port_level_settings=(on(9090, load_balancer=ROBIN, connection_pool=POOL_PORT),))
    got, _ = clusters(top, m.TrafficPolicy(load_balancer=RANDOM))
    assert got["v1:9090"] == (RANDOM, POOL_PORT, None)  # the pool the subset leaves out: the rule's on 9090
    assert got["v1:9080"] == (RANDOM, POOL_TOP, None)
    assert got["9090"] == (ROBIN, POOL_PORT, None)


def test_subset_port_entry_replaces_everything_on_its_port():
    top = m.TrafficPolicy(load_balancer=LEAST, connection_pool=POOL_TOP, outlier_detection=OUTLIER,
                          port_level_settings=(on(9090, connection_pool=POOL_PORT),))
    sub = m.TrafficPolicy(connection_pool=POOL_SUB, port_level_settings=(on(9090, load_balancer=RANDOM),))
    got, _ = clusters(top, sub)
    assert got["v1:9090"] == (RANDOM, m.ConnectionPoolSettings(), None)  # nothing of the rule nor the subset's top
    assert got["v1:9080"] == (LEAST, POOL_SUB, OUTLIER)  # subset's pool over the rule's, the rest inherited


def test_subset_port_entry_without_a_rule_policy():
    sub = m.TrafficPolicy(load_balancer=LEAST, port_level_settings=(on(9080, outlier_detection=OUTLIER),))
    got, _ = clusters(None, sub)
    assert got["v1:9080"] == (m.LoadBalancerSettings(), m.ConnectionPoolSettings(), OUTLIER)
    assert got["v1:9090"] == (LEAST, m.ConnectionPoolSettings(), None)
    assert got["9080"] == got["9090"] == DEFAULTS


def test_an_entry_for_a_port_the_service_lacks_changes_nothing():
    top = m.TrafficPolicy(load_balancer=LEAST, port_level_settings=(on(8080, load_balancer=RANDOM),))
    got, snap = clusters(top)
    assert {got[k][0].simple for k in got} == {"LEAST_REQUEST"}
    assert snap.warnings == ()


def test_a_port_named_twice_uses_the_first_entry_and_warns():
    top = m.TrafficPolicy(port_level_settings=(on(9080, load_balancer=RANDOM), on(9080, load_balancer=LEAST)))
    sub = m.TrafficPolicy(port_level_settings=(on(9090, load_balancer=RANDOM), on(9090, load_balancer=LEAST)))
    got, snap = clusters(top, sub)
    assert got["9080"][0] == RANDOM and got["v1:9090"][0] == RANDOM
    assert snap.warnings == (
        "DestinationRule default/dr: trafficPolicy.portLevelSettings names port 9080 more than once; the first entry applies",
        "DestinationRule default/dr: subsets[v1].trafficPolicy.portLevelSettings names port 9090 more than once; "
        "the first entry applies",
    )
