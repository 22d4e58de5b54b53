"""The service metrics name per cluster: Kubernetes-shaped hosts by their short name, others by
the host; inbound, the first ServiceEntry of the proxy's namespace that has it as an endpoint on
the listener's port (Istio's inbound cluster metadata), else unknown."""

from __future__ import annotations

import pytest

from pymesh.api import model as m
from pymesh.routing.service_labels import inbound_service, service_labels
from pymesh.routing.snapshot import ProxyIdentity, ServiceLabels
from routing_helpers import ep, meta, se

REVIEWS = "reviews.default.svc.cluster.local"
UNKNOWN = ServiceLabels()


@pytest.mark.parametrize("host, namespace, name", [
    (REVIEWS, "default", "reviews"),
    ("reviews.default.svc", "default", "reviews"),
    ("reviews.other.svc.cluster.local", "default", "reviews.other.svc.cluster.local"),  # not its namespace's
    ("reviews.local", "default", "reviews.local"),
    ("httpbin.org", "default", "httpbin.org"),
])
def test_service_name(host, namespace, name):
    assert service_labels(host, namespace) == ServiceLabels(host, name, namespace)


def selected(host, selector, number=9080, name="http", target=None, ns="default"):
    return se(host, m.ServicePort(number, "HTTP", name, target_port=target), ns=ns, workload_selector=selector)


def entry(name, address, ports, ns="default", **labels):
    return m.WorkloadEntry(meta(name, ns), m.WorkloadEntrySpec(address=address, ports=ports, labels=labels))


ME = ProxyIdentity(workload="reviews-v1", namespace="default", labels={"app": "reviews", "version": "v1"})
AT = ProxyIdentity(workload="reviews-v1", namespace="default", labels={}, ip="10.0.0.7")


@pytest.mark.parametrize("services, workloads, identity, port, expected", [
    # selected, own entry's named port
    ([selected(REVIEWS, {"app": "reviews"})], [entry("r1", "127.0.0.1", {"http": 15006}, app="reviews")], ME, 15006,
     ServiceLabels(REVIEWS, "reviews", "default")),
    # selected, no entry (static config): targetPort, else the number
    ([selected(REVIEWS, {"app": "reviews"}, target=8080)], [], ME, 8080, ServiceLabels(REVIEWS, "reviews", "default")),
    ([selected(REVIEWS, {"app": "reviews"})], [], ME, 9080, ServiceLabels(REVIEWS, "reviews", "default")),
    # another port, another namespace, not selected: unknown
    ([selected(REVIEWS, {"app": "reviews"})], [], ME, 7000, UNKNOWN),
    ([selected("reviews.other.svc.cluster.local", {"app": "reviews"}, ns="other")], [], ME, 9080, UNKNOWN),
    ([selected(REVIEWS, {"app": "ratings"})], [], ME, 9080, UNKNOWN),
    # the first that reaches the port wins, in file order
    ([selected("a.local", {"app": "reviews"}, number=1), selected("b.local", {"app": "reviews"}),
      selected("c.local", {"app": "reviews"})], [], ME, 9080, ServiceLabels("b.local", "b.local", "default")),
    # a static endpoint at the proxy's address
    ([se(REVIEWS, endpoints=[ep("10.0.0.7", {"http": 8000})])], [], AT, 8000, ServiceLabels(REVIEWS, "reviews", "default")),
    ([se(REVIEWS, endpoints=[ep("10.0.0.8", {"http": 8000})])], [], AT, 8000, UNKNOWN),
])
def test_inbound_service(services, workloads, identity, port, expected):
    config = m.MeshConfig(service_entries=tuple(services), workload_entries=tuple(workloads))
    assert inbound_service(config, identity, port) == expected
