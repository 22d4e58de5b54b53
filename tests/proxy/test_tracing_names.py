"""Span names as Istio's route decorators (getRouteOperation) name them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pymesh.proxy.tracing import operation_name
from pymesh.routing.snapshot import Route, WeightedCluster

ONE = (WeightedCluster("outbound|9080||productpage.default.svc.cluster.local", 100),)
TWO = (WeightedCluster("outbound|9080|v1|reviews.default.svc.cluster.local", 50),
       WeightedCluster("outbound|9080|v2|reviews.default.svc.cluster.local", 50))
BOOKINFO = (("exact", "/productpage"), ("prefix", "/static"), ("exact", "/login"), ("regex", "/api/v[12]/.*"))


def exchange(direction, clusters, uris=(), path="/", prefix=None, authority="productpage:9080"):
    cluster = SimpleNamespace(service_host="productpage.default.svc.cluster.local" if direction == "outbound" else "",
                              port=9080)
    return SimpleNamespace(
        route=Route(name="r", virtual_service="default/reviews", clusters=clusters, total_weight=100, uri_matches=uris),
        cluster_state=SimpleNamespace(cluster=cluster), listener=SimpleNamespace(direction=direction, port=8080),
        matched_prefix=prefix, head=SimpleNamespace(path=path, authority=authority))


@pytest.mark.parametrize("ex, name", [
    (exchange("outbound", ONE), "productpage.default.svc.cluster.local:9080/*"),
    (exchange("outbound", ONE, BOOKINFO, "/productpage?u=normal"), "productpage.default.svc.cluster.local:9080/productpage"),
    (exchange("outbound", ONE, BOOKINFO, "/static/x.css", prefix="/static"),
     "productpage.default.svc.cluster.local:9080/static*"),
    (exchange("outbound", ONE, BOOKINFO, "/api/v1/products"), "productpage.default.svc.cluster.local:9080/api/v[12]/.*"),
    (exchange("outbound", TWO), "reviews:8080/*"),  # several destinations: the VirtualService's name
    (exchange("inbound", ONE, authority="productpage:9080"), "productpage:8080/*"),
    (exchange("inbound", ONE, authority="[::1]"), "[::1]:8080/*"),
])
def test_operation_name(ex, name):
    assert operation_name(ex) == name
