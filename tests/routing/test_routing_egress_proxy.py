"""Sidecar outboundTrafficPolicy.egressProxy compiled into the snapshot's catch-all (Istio's
GetDestinationCluster for the catch-all virtual host and the virtualOutbound filter chain)."""

from __future__ import annotations

import pytest

from pymesh.api import model as m
from pymesh.routing.snapshot import TcpRoute, WeightedCluster
from routing_helpers import Req, compile_, meta, se

GATEWAY = "istio-egressgateway.istio-system.svc.cluster.local"
HTTP80 = m.ServicePort(80, "HTTP", "http")
HTTPS443 = m.ServicePort(443, "HTTPS", "https")
GW_SUBSET = m.DestinationRule(meta("egressgateway-for-cnn"), host=GATEWAY, subsets=(m.Subset(name="cnn"),))


def gateway_service():
    return se(GATEWAY, HTTP80, HTTPS443, ns="istio-system", name="istio-egressgateway")


def sidecar(proxy: m.Destination | None, policy: str = "ALLOW_ANY") -> m.Sidecar:
    return m.Sidecar(meta("default"), outbound_traffic_policy=policy, egress_proxy=proxy)


@pytest.mark.parametrize("proxy, cluster", [
    (m.Destination(host=GATEWAY, port=80), f"outbound|80||{GATEWAY}"),
    (m.Destination(host=GATEWAY, subset="cnn", port=443), f"outbound|443|cnn|{GATEWAY}"),
    # a short name is read in the Sidecar's namespace, as Istio's hosts are
    (m.Destination(host="egress", port=3128), "outbound|3128||egress.default.svc.cluster.local"),
])
def test_cluster_named_from_the_destination(proxy, cluster):
    services = [gateway_service(), se("egress.default.svc.cluster.local", m.ServicePort(3128, "TCP", "tcp"))]
    snap = compile_(services, rules=[GW_SUBSET], sidecars=[sidecar(proxy)])
    to = (WeightedCluster(cluster=cluster, weight=100),)
    assert snap.egress_proxy.route.clusters == to and snap.egress_proxy.route.total_weight == 100
    assert snap.egress_proxy.route.name == "allow_any" and snap.egress_proxy.route.timeout is None  # Istio: no timeout
    assert snap.egress_proxy.route.retries.attempts == 0  # and no retry policy (buildCatchAllVirtualHost)
    assert snap.egress_proxy.listener.tcp_route == TcpRoute(to, 100)
    assert cluster in snap.clusters and snap.warnings == ()


@pytest.mark.parametrize("sidecars", [
    [],  # no Sidecar: PassthroughCluster
    [sidecar(None)],
    [sidecar(m.Destination(host=GATEWAY, port=80), policy="REGISTRY_ONLY")],  # only under ALLOW_ANY
])
def test_no_egress_proxy(sidecars):
    assert compile_([gateway_service()], sidecars=sidecars).egress_proxy is None


@pytest.mark.parametrize("proxy, why", [
    (m.Destination(host="unknown.example.com", port=80), "outbound|80||unknown.example.com"),
    (m.Destination(host=GATEWAY, port=8080), f"outbound|8080||{GATEWAY}"),
    (m.Destination(host=GATEWAY, subset="nope", port=80), f"outbound|80|nope|{GATEWAY}"),
])
def test_missing_cluster_is_a_warning(proxy, why):
    snap = compile_([gateway_service()], rules=[GW_SUBSET], sidecars=[sidecar(proxy)])
    assert snap.egress_proxy.route.clusters[0].cluster == why and why not in snap.clusters
    assert len(snap.warnings) == 1 and "Sidecar default/default: outboundTrafficPolicy.egressProxy" in snap.warnings[0]


CNN = m.ServiceEntry(meta("cnn"), hosts=("edition.cnn.com",), ports=(HTTP80,))
ONLY_POLITICS = m.VirtualService(meta("cnn"), hosts=("edition.cnn.com",), http=(m.HTTPRoute(
    match=(m.HTTPMatchRequest(uri=m.StringMatch("prefix", "/politics")),),
    route=(m.HTTPRouteDestination(destination=m.Destination(host="edition.cnn.com")),)),))


@pytest.mark.parametrize("authority, path, want", [
    ("unknown.example.com", "/", f"outbound|80||{GATEWAY}"),  # Istio's catch-all virtual host
    ("edition.cnn.com", "/politics", "outbound|80||edition.cnn.com"),  # a known host: its own routes
    ("edition.cnn.com", "/sport", None),  # ... and a path none of them matches is 404 NR, as in Envoy
    (f"{GATEWAY}:80", "/", f"outbound|80||{GATEWAY}"),  # the gateway's own default route
])
def test_every_outbound_route_table_ends_with_the_catch_all(authority, path, want):
    proxy = m.Destination(host=GATEWAY, port=80)
    snap = compile_([gateway_service(), CNN], virtual_services=[ONLY_POLITICS], sidecars=[sidecar(proxy)])
    table = snap.captured_outbound[80].route_table
    assert table.virtual_hosts[-1].domains == ("*",) and table.virtual_hosts[-1].name == "allow_any"
    found = table.match(Req(authority=authority, path=path, port=80))
    assert (found[0].clusters[0].cluster if found else None) == want


def test_without_egress_proxy_no_catch_all():
    snap = compile_([gateway_service(), CNN], virtual_services=[ONLY_POLITICS], sidecars=[sidecar(None)])
    assert all("*" not in vh.domains for vh in snap.captured_outbound[80].route_table.virtual_hosts)
    assert snap.captured_outbound[80].route_table.match(Req(authority="unknown.example.com", port=80)) is None
