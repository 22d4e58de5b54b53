"""TLS passthrough routing: the SniTable's Envoy-style matching (pure, table-driven) and what
compile_snapshot builds from VirtualService tls routes and TLS/HTTPS service ports."""

from __future__ import annotations

import pytest

from pymesh.api import model as m
from pymesh.routing.sni import SniChain, SniTable
from pymesh.routing.snapshot import TcpRoute, WeightedCluster
from routing_helpers import compile_, meta, se


def to(name: str) -> TcpRoute:
    return TcpRoute((WeightedCluster(name, 100),), 100)


TABLE = SniTable((
    SniChain(("a.example.com", "*.wild.example.com"), (), to("a")),
    SniChain(("*.example.com",), (), to("star")),
    SniChain(("*.deep.wild.example.com",), (), to("deep")),
    SniChain(("a.example.com",), (), to("shadowed")),  # a later chain never takes a name already taken
    SniChain(("vip.example.com",), ("198.18.0.0/16",), to("vip-narrow")),
    SniChain((), ("198.18.0.0/15",), to("vip-any-sni")),
    SniChain(("b.example.com",), ("198.18.5.5",), to("host-exact")),
    SniChain(("v6.example.com",), ("fd00::/8",), to("v6")),
))


@pytest.mark.parametrize("sni, destination, want", [
    ("a.example.com", None, "a"),
    ("x.wild.example.com", None, "a"),
    ("x.y.wild.example.com", None, "a"),  # multi-label wildcard, as Envoy's server_names
    ("x.deep.wild.example.com", None, "deep"),  # the longest wildcard suffix wins
    ("other.example.com", None, "star"),
    ("example.com", None, None),  # "*.example.com" does not cover the bare domain
    ("a.example.org", None, None),
    (None, None, None),  # no SNI: only a chain without server names would take it
    # the destination address is matched first, most specific prefix
    ("vip.example.com", "198.18.1.1", "vip-narrow"),
    ("a.example.com", "198.18.1.1", None),  # no backtracking to the address-less chains
    ("a.example.com", "198.19.0.1", "vip-any-sni"),
    (None, "198.19.0.1", "vip-any-sni"),
    ("b.example.com", "198.18.5.5", "host-exact"),
    ("vip.example.com", "198.18.5.5", None),
    ("a.example.com", "10.0.0.1", "a"),  # no subnet holds it: the chains without subnets
    ("v6.example.com", "fd00::1", "v6"),
    ("a.example.com", "not-an-ip", "a"),
])
def test_sni_table_matching(sni, destination, want):
    route = TABLE.match(sni, destination)
    assert (route.clusters[0].cluster if route else None) == want


def test_a_star_sni_host_takes_any_sni_and_none():
    table = SniTable((SniChain(("*",), (), to("star")),))
    assert table.match("anything.example", None) == to("star")
    assert table.match(None, None) == to("star")


HTTPS = m.ServicePort(443, "HTTPS", "https")
TLS = m.ServicePort(8443, "TLS", "tls")
PG = m.ServicePort(5432, "TCP", "pg")


def tls_vs(name, hosts, *routes, ns="default", tcp=()):
    return m.VirtualService(meta(name, ns), hosts=tuple(hosts), tls=tuple(routes), tcp=tuple(tcp))


def tls_route(sni, *dests, port=None, subnets=(), labels=None, namespace=""):
    return m.TLSRoute(
        match=(m.TLSMatchAttributes(sni_hosts=tuple(sni), destination_subnets=tuple(subnets), port=port,
                                    source_labels=labels or {}, source_namespace=namespace),),
        route=tuple(m.RouteDestination(m.Destination(host=h, port=p), weight=w) for h, p, w in dests),
    )


def names(listener, sni, destination=None):
    route = listener.sni_routes.match(sni, destination)
    return route and [(c.cluster, c.weight) for c in route.clusters]


def test_https_services_on_one_port_are_told_apart_by_sni():
    snap = compile_([se("a.example.com", HTTPS), se("b.example.com", HTTPS)])
    listener = snap.captured_outbound[443]
    assert listener.protocol == "HTTPS" and listener.route_table is None and listener.tcp_route is None
    assert names(listener, "a.example.com") == [("outbound|443||a.example.com", 100)]
    assert names(listener, "b.example.com") == [("outbound|443||b.example.com", 100)]
    assert names(listener, "c.example.com") is None and names(listener, None) is None
    assert not snap.warnings


def test_service_addresses_route_captured_connections_whatever_their_sni():
    snap = compile_([se("a.example.com", HTTPS, addresses=("198.18.0.7",))])
    listener = snap.captured_outbound[443]
    assert names(listener, "anything", "198.18.0.7") == [("outbound|443||a.example.com", 100)]
    assert names(listener, "a.example.com") == [("outbound|443||a.example.com", 100)]


def test_wildcard_service_host_is_a_wildcard_server_name():
    snap = compile_([se("*.wikipedia.org", TLS)])
    listener = snap.captured_outbound[8443]
    assert names(listener, "en.wikipedia.org") == [("outbound|8443||*.wikipedia.org", 100)]


def test_virtual_service_tls_routes_replace_the_default_chain_of_the_services_they_cover():
    routes = (
        tls_route(["a.example.com"], ("a.example.com", None, 70), ("b.example.com", None, 30)),
        tls_route(["*.sub.example.com"], ("c.example.com", None, 0), port=443),
        tls_route(["x.example.com"], ("c.example.com", None, 0), port=8443),  # another port
        tls_route(["y.example.com"], ("c.example.com", None, 0), labels={"app": "other"}),  # not this proxy
        tls_route(["z.example.com"], ("c.example.com", None, 0), namespace="elsewhere"),  # not its namespace
        tls_route(["n.example.com"], ("c.example.com", None, 0), namespace="default"),
    )
    services = [se(h, HTTPS) for h in ("a.example.com", "b.example.com", "c.example.com")]
    snap = compile_(services, [tls_vs("v", ["*.example.com"], *routes)], labels={"app": "me"})
    listener = snap.captured_outbound[443]
    assert names(listener, "a.example.com") == [("outbound|443||a.example.com", 70), ("outbound|443||b.example.com", 30)]
    assert names(listener, "q.sub.example.com") == [("outbound|443||c.example.com", 100)]
    # every service is covered by the VS host *.example.com: no default chains, unknown names unmatched
    assert names(listener, "b.example.com") is None
    assert names(listener, "x.example.com") is None and names(listener, "y.example.com") is None
    assert names(listener, "z.example.com") is None
    assert names(listener, "n.example.com") == [("outbound|443||c.example.com", 100)]
    assert listener.sni_routes.chains[0].source == "default/v"


def test_a_service_the_tls_virtual_service_does_not_cover_keeps_its_default_chain():
    snap = compile_([se("a.example.com", HTTPS), se("other.example.org", HTTPS)],
                    [tls_vs("v", ["a.example.com"], tls_route(["a.example.com"], ("a.example.com", None, 0)))])
    assert names(snap.captured_outbound[443], "other.example.org") == [("outbound|443||other.example.org", 100)]


def test_identical_runtime_matches_keep_the_first():
    first = tls_route(["a.example.com"], ("a.example.com", None, 0))
    second = tls_route(["a.example.com"], ("b.example.com", None, 0))
    snap = compile_([se("a.example.com", HTTPS), se("b.example.com", HTTPS)], [tls_vs("v", ["*.example.com"], first, second)])
    assert len(snap.captured_outbound[443].sni_routes.chains) == 1


def test_tcp_routes_do_not_apply_on_a_tls_port_and_say_so():
    tcp = m.TCPRoute(route=(m.RouteDestination(m.Destination(host="a.example.com")),))
    snap = compile_([se("a.example.com", HTTPS)], [tls_vs("v", ["a.example.com"], tcp=[tcp])])
    listener = snap.captured_outbound[443]
    assert listener.tcp_route is None
    assert names(listener, "a.example.com") == [("outbound|443||a.example.com", 100)]
    assert any("tcp routes do not apply on TLS port 443" in w for w in snap.warnings)


def test_opaque_port_with_tls_routes_inspects_and_falls_back_to_its_tcp_route():
    snap = compile_([se("db.example.com", PG)],
                    [tls_vs("v", ["db.example.com"], tls_route(["db.example.com"], ("db.example.com", None, 0)))])
    listener = snap.captured_outbound[5432]
    assert listener.protocol == "TCP"
    assert names(listener, "db.example.com") == [("outbound|5432||db.example.com", 100)]
    assert listener.tcp_route == to("outbound|5432||db.example.com")


def test_a_wildcard_tls_virtual_service_leaves_tcp_ports_alone_unless_a_match_names_the_port():
    wild = tls_vs("v", ["*.example.com"], tls_route(["*.example.com"], ("a.example.com", None, 0)),
                  tls_route(["db.example.com"], ("db.example.com", None, 0), port=5432))
    snap = compile_([se("a.example.com", HTTPS), se("db.example.com", PG), se("mq.example.org", m.ServicePort(5672, "TCP", "amqp"))],
                    [wild])
    assert snap.captured_outbound[5672].sni_routes is None
    assert [c.server_names for c in snap.captured_outbound[5432].sni_routes.chains] == [("db.example.com",)]
    assert names(snap.captured_outbound[443], "x.example.com") == [("outbound|443||a.example.com", 100)]


def test_opaque_port_without_tls_routes_does_not_inspect():
    snap = compile_([se("db.example.com", PG)])
    assert snap.captured_outbound[5432].sni_routes is None


def test_tls_destination_subnets_are_kept_for_the_proxy_to_match():
    route = tls_route(["a.example.com"], ("a.example.com", None, 0), subnets=["10.1.0.0/16"])
    snap = compile_([se("a.example.com", HTTPS)], [tls_vs("v", ["a.example.com"], route)])
    listener = snap.captured_outbound[443]
    assert names(listener, "a.example.com", "10.1.2.3") == [("outbound|443||a.example.com", 100)]
    assert names(listener, "a.example.com", "10.2.0.1") is None
    assert names(listener, "a.example.com") is None  # a dedicated listener cannot know the address


def test_tls_and_tcp_services_sharing_a_port_warn():
    snap = compile_([se("a.example.com", HTTPS), se("db.example.com", m.ServicePort(443, "TCP", "tcp"))])
    assert any("outbound port 443" in w for w in snap.warnings)


def test_dump_shows_the_chains():
    snap = compile_([se("a.example.com", HTTPS)])
    [listener] = [l for l in snap.dump()["listeners"] if l["port"] == 443]
    assert listener["sni_routes"]["chains"][0]["server_names"] == ["a.example.com"]
