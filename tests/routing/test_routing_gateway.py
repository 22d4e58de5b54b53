"""Gateway binding and a gateway proxy's snapshot: which VirtualServices and matches apply to
which proxy (`gateways`), server hosts intersected with VirtualService hosts, and what each
kind of server port compiles to."""

from __future__ import annotations

import pytest

from pymesh.api import model as m
from pymesh.routing.binding import MESH_ONLY, bind, bound_gateways, resolve
from pymesh.routing.compile import compile_snapshot
from pymesh.routing.gateway import intersect
from pymesh.routing.snapshot import ProxyIdentity
from pymesh.routing.view import proxy_view

from routing_helpers import Req, dest, http, meta, se, vs

ROUTER = ProxyIdentity(workload="istio-ingressgateway", namespace="istio-system",
                       labels={"istio": "ingressgateway"}, kind="router")


def gw(name: str, *servers: m.GatewayServer, ns: str = "istio-system", selector=None) -> m.Gateway:
    return m.Gateway(meta(name, ns), servers=servers, selector={"istio": "ingressgateway"} if selector is None else selector)


def server(number: int, *hosts: str, protocol: str = "HTTP", name: str = "", tls: m.ServerTLSSettings | None = None,
           bind_to: str = "") -> m.GatewayServer:
    return m.GatewayServer(port=m.ServicePort(number, protocol, name or f"{protocol.lower()}-{number}"),
                           hosts=hosts or ("*",), tls=tls, bind=bind_to)


def compile_router(*resources, identity: ProxyIdentity = ROUTER):
    by_kind = {m.Gateway: "gateways", m.VirtualService: "virtual_services", m.ServiceEntry: "service_entries",
               m.DestinationRule: "destination_rules"}
    groups: dict[str, list] = {}
    for resource in resources:
        groups.setdefault(by_kind[type(resource)], []).append(resource)
    config = m.MeshConfig(**{k: tuple(v) for k, v in groups.items()})
    return compile_snapshot(config, identity, "v1"), config


def routed(snapshot, port: int, authority: str, path: str = "/", listen: int | None = None):
    (listener,) = [l for l in snapshot.listeners if l.port == (listen or port)]
    found = listener.route_table.match(Req(path=path, authority=authority, port=port))
    return found and found[0]


# --- binding -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, namespace, expected", [
    ("mesh", "default", "mesh"),
    ("bookinfo-gateway", "default", "default/bookinfo-gateway"),
    ("istio-system/gw", "default", "istio-system/gw"),
    ("gw.istio-system.svc.cluster.local", "default", "istio-system/gw"),  # the legacy FQDN form
    ("gw.prod", "default", "prod/gw"),
])
def test_resolve(name, namespace, expected):
    assert resolve(name, namespace) == expected


def _vs(gateways=(), matches=()):
    return vs("r", "reviews", http(dest("reviews"), match=matches), gateways=tuple(gateways))


GW1 = frozenset({"istio-system/gw1"})


@pytest.mark.parametrize("case, gateways, names, bound", [
    ("none means mesh", (), MESH_ONLY, True),
    ("none is not a gateway's", (), GW1, False),
    ("a gateway only", ("istio-system/gw1",), MESH_ONLY, False),
    ("a gateway only, on it", ("istio-system/gw1",), GW1, True),
    ("both", ("istio-system/gw1", "mesh"), MESH_ONLY, True),
    ("short name in the VirtualService's namespace", ("gw1",), GW1, False),
    ("short name, other namespace", ("gw1",), frozenset({"default/gw1"}), True),
])
def test_bound_or_not(case, gateways, names, bound):
    assert (bind(_vs(gateways), names) is not None) == bound, case


def test_bound_gateways():
    assert bound_gateways(_vs()) == MESH_ONLY
    assert bound_gateways(_vs(("gw", "mesh"))) == {"default/gw", "mesh"}


def test_match_gateways_replace_the_virtual_services():
    """A match naming gateways applies only on them (and ignores sourceLabels); a route whose
    every match names other gateways is dropped; a match without gateways follows the VS."""
    on_gw = m.HTTPMatchRequest(uri=m.StringMatch("prefix", "/gw"), gateways=("istio-system/gw1",),
                               source_labels={"app": "x"})
    on_mesh = m.HTTPMatchRequest(uri=m.StringMatch("prefix", "/mesh"), gateways=("mesh",))
    plain = m.HTTPMatchRequest(uri=m.StringMatch("prefix", "/plain"))
    service = vs("r", "reviews", http(dest("reviews"), match=(on_gw, on_mesh, plain)),
                 http(dest("reviews"), match=(on_gw,)), http(dest("ratings")),
                 gateways=("istio-system/gw1", "mesh"))
    mesh = bind(service, MESH_ONLY)
    assert [r.match for r in mesh.http] == [(on_mesh, plain), ()]
    gateway = bind(service, GW1)
    assert [[mt.uri.value for mt in r.match] for r in gateway.http] == [["/gw", "/plain"], ["/gw"], []]
    assert gateway.http[0].match[0].source_labels == {}
    untouched = _vs(("mesh",))
    assert bind(untouched, MESH_ONLY) is untouched


# --- hosts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("server_host, vs_host, expected", [
    ("*", "*", "*"),
    ("*", "bookinfo.com", "bookinfo.com"),
    ("*.example.com", "*", "*.example.com"),
    ("*.example.com", "a.example.com", "a.example.com"),
    ("a.example.com", "*.example.com", "a.example.com"),
    ("*.example.com", "*.b.example.com", "*.b.example.com"),
    ("*.example.com", "example.com", None),
    ("a.example.com", "b.example.com", None),
    ("*.example.com", "newexample.com", None),
])
def test_intersect(server_host, vs_host, expected):
    assert intersect(server_host, vs_host) == expected


PRODUCTPAGE = se("productpage.default.svc.cluster.local")


def test_bookinfo_gateway():
    gateway = gw("bookinfo-gateway", server(80, "*"), ns="default")
    match = tuple(m.HTTPMatchRequest(uri=m.StringMatch(kind, path)) for kind, path in
                  (("exact", "/productpage"), ("prefix", "/static")))
    service = vs("bookinfo", "*", http(dest("productpage", port=9080), match=match), gateways=("bookinfo-gateway",))
    snapshot, _ = compile_router(gateway, service, PRODUCTPAGE)
    (listener,) = snapshot.listeners
    assert (listener.name, listener.bind, listener.port, listener.direction) == ("gateway|0.0.0.0|80", "0.0.0.0", 80, "outbound")
    route = routed(snapshot, 80, "anything.example:31380", "/static/x")  # any port in the authority
    assert route.clusters[0].cluster == "outbound|9080||productpage.default.svc.cluster.local"
    assert routed(snapshot, 80, "x", "/nothing") is None  # 404 NR
    assert "outbound|9080||productpage.default.svc.cluster.local" in snapshot.clusters


def test_mesh_virtual_services_do_not_bind_to_gateways_and_gateway_ones_not_to_sidecars():
    gateway = gw("gw", server(80, "*"))
    mesh_only = vs("mesh-only", "productpage", http(dest("productpage")))
    snapshot, config = compile_router(gateway, mesh_only, PRODUCTPAGE)
    assert routed(snapshot, 80, "productpage.default.svc.cluster.local") is None
    on_gw = vs("edge", "productpage.default.svc.cluster.local", http(dest("productpage", subset="v9")),
               gateways=("istio-system/gw",))
    sidecar = compile_snapshot(m.MeshConfig(service_entries=(PRODUCTPAGE,), virtual_services=(on_gw,)),
                               ProxyIdentity(namespace="default"), "v1")
    found = sidecar.captured_outbound[9080].route_table.match(Req(authority="productpage"))
    assert found[0].clusters[0].cluster == "outbound|9080||productpage.default.svc.cluster.local"  # the default route


@pytest.mark.parametrize("server_hosts, vs_ns, vs_hosts, authority, reaches", [
    (("*",), "default", ("bookinfo.com",), "bookinfo.com", True),
    (("*",), "default", ("bookinfo.com",), "other.com", False),
    (("*.bookinfo.com",), "default", ("*",), "uk.bookinfo.com", True),
    (("*.bookinfo.com",), "default", ("*",), "bookinfo.com", False),
    (("default/*",), "default", ("a.com",), "a.com", True),
    (("prod/*",), "default", ("a.com",), "a.com", False),
    (("./a.com",), "istio-system", ("a.com",), "a.com", True),  # ".": the Gateway's namespace
    (("./a.com",), "default", ("a.com",), "a.com", False),
    (("*/a.com",), "prod", ("a.com", "b.com"), "b.com", False),
    (("uk.bookinfo.com", "eu.bookinfo.com"), "default", ("*.bookinfo.com",), "eu.bookinfo.com", True),
])
def test_server_hosts_limit_virtual_services(server_hosts, vs_ns, vs_hosts, authority, reaches):
    gateway = gw("gw", server(80, *server_hosts))
    service = vs("v", vs_hosts, http(dest("productpage.default.svc.cluster.local")), ns=vs_ns,
                 gateways=("istio-system/gw",))
    snapshot, _ = compile_router(gateway, service, PRODUCTPAGE)
    assert (routed(snapshot, 80, authority) is not None) == reaches


def test_https_redirect():
    gateway = gw("gw", server(80, "a.example.com", "b.example.com", tls=m.ServerTLSSettings(https_redirect=True)))
    service = vs("v", "a.example.com", http(dest("productpage.default.svc.cluster.local")), gateways=("istio-system/gw",))
    snapshot, _ = compile_router(gateway, service, PRODUCTPAGE)
    for host in ("a.example.com", "b.example.com"):  # b: no VirtualService, still redirected
        route = routed(snapshot, 80, host)
        assert route.redirect == m.HTTPRedirect(scheme="https", redirect_code=301)
    assert routed(snapshot, 80, "c.example.com") is None


def test_gateway_selection_and_the_listen_port():
    mine = gw("mine", server(80, "*"), ns="default")
    other = gw("other", server(81, "*"), selector={"istio": "egressgateway"})
    everyone = gw("everyone", server(82, "*"), selector={})
    own_service = m.ServiceEntry(meta("istio-ingressgateway", "istio-system"), hosts=("istio-ingressgateway.istio-system.svc.cluster.local",),
                                 ports=(m.ServicePort(80, "HTTP", "http2", target_port=8080),),
                                 workload_selector={"istio": "ingressgateway"})
    snapshot, _ = compile_router(mine, other, everyone, own_service)
    assert sorted(l.port for l in snapshot.listeners) == [82, 8080]


def test_servers_of_one_port_merge_and_a_conflicting_kind_is_dropped():
    a = gw("a", server(80, "a.com"))
    b = gw("b", server(80, "b.com", name="http-b"), server(80, "c.com", protocol="TCP", name="tcp"))
    va = vs("va", "a.com", http(dest("productpage.default.svc.cluster.local")), gateways=("istio-system/a",))
    vb = vs("vb", "*", http(dest("productpage.default.svc.cluster.local")), gateways=("istio-system/b",))
    snapshot, _ = compile_router(a, b, va, vb, PRODUCTPAGE)
    (listener,) = snapshot.listeners
    assert {vh.domains for vh in listener.route_table.virtual_hosts} == {("a.com",), ("b.com",)}
    assert any("conflicts with an earlier HTTP server" in w for w in snapshot.warnings)


def test_tcp_server():
    db = se("db.prod.svc.cluster.local", m.ServicePort(5555, "TCP", "tcp"), ns="prod")
    gateway = gw("gw", server(27017, "*", protocol="MONGO"))
    tcp = m.TCPRoute(match=(m.L4MatchAttributes(port=27017),),
                     route=(m.RouteDestination(m.Destination("db.prod.svc.cluster.local", port=5555)),))
    service = vs("mongo", "mongosvr.prod.svc.cluster.local", ns="prod", tcp=(tcp,), gateways=("istio-system/gw",))
    snapshot, _ = compile_router(gateway, service, db)
    (listener,) = snapshot.listeners
    assert listener.tcp_route.clusters[0].cluster == "outbound|5555||db.prod.svc.cluster.local"


def tls_vs(name: str, sni: str, host: str) -> m.VirtualService:
    route = m.TLSRoute(match=(m.TLSMatchAttributes(sni_hosts=(sni,)),),
                       route=(m.RouteDestination(m.Destination(host, port=443)),))
    return m.VirtualService(meta(name), hosts=(sni,), tls=(route,), gateways=("istio-system/gw",))


def test_passthrough_by_sni_and_auto_passthrough():
    passthrough = m.ServerTLSSettings(mode="PASSTHROUGH")
    gateway = gw("gw", server(443, "*.example.com", protocol="TLS", tls=passthrough),
                 server(15443, "*.local", protocol="TLS", name="auto", tls=m.ServerTLSSettings(mode="AUTO_PASSTHROUGH")))
    backends = [se(f"{n}.default.svc.cluster.local", m.ServicePort(443, "TLS", "tls"), name=n) for n in ("one", "two")]
    snapshot, _ = compile_router(gateway, tls_vs("one", "one.example.com", "one.default.svc.cluster.local"),
                                 tls_vs("two", "two.example.com", "two.default.svc.cluster.local"),
                                 tls_vs("outside", "x.other.com", "one.default.svc.cluster.local"), *backends)
    by_port = {l.port: l for l in snapshot.listeners}
    table = by_port[443].sni_routes
    assert table.match("two.example.com").clusters[0].cluster == "outbound|443||two.default.svc.cluster.local"
    assert table.match("x.other.com") is None  # not a host the server exposes
    auto = by_port[15443].sni_routes
    assert auto.match("outbound_.443_._.one.default.svc.cluster.local").clusters[0].cluster == \
        "outbound|443||one.default.svc.cluster.local"


def test_terminating_servers_become_chains():
    simple = m.ServerTLSSettings(mode="SIMPLE", credential_name="cert",
                                 cipher_suites=("ECDHE-RSA-AES128-GCM-SHA256", "NOT-A-CIPHER"))
    gateway = gw("gw", server(443, "a.example.com", protocol="HTTPS", tls=simple),
                 server(443, "b.example.com", protocol="HTTPS", name="b", tls=m.ServerTLSSettings(mode="MUTUAL", credential_name="b")),
                 server(443, "*.pass.com", protocol="TLS", name="pass", tls=m.ServerTLSSettings()))
    service = vs("v", "*", http(dest("productpage.default.svc.cluster.local")), gateways=("istio-system/gw",))
    snapshot, _ = compile_router(gateway, service, tls_vs("p", "x.pass.com", "productpage.default.svc.cluster.local"), PRODUCTPAGE)
    (listener,) = snapshot.listeners
    a, b = listener.tls_servers
    assert (a.server_names, a.tls.mode, a.tls.namespace, a.protocol) == (("a.example.com",), "SIMPLE", "istio-system", "HTTPS")
    assert a.tls.settings.cipher_suites == ("ECDHE-RSA-AES128-GCM-SHA256",)  # Istio drops the unknown one
    assert any("NOT-A-CIPHER" in w for w in snapshot.warnings)
    assert a.route_table.match(Req(authority="a.example.com", port=443))[0].clusters[0].cluster.endswith("productpage.default.svc.cluster.local")
    assert a.route_table.match(Req(authority="b.example.com", port=443)) is None  # each chain has its server's hosts
    assert b.tls.mode == "MUTUAL"
    assert listener.sni_routes.match("x.pass.com") is not None


def test_export_to_the_gateway_namespace():
    gateway = gw("gw", server(80, "*"))
    private = vs("private", "a.com", http(dest("productpage.default.svc.cluster.local")), gateways=("istio-system/gw",),
                 export_to=(".",))
    snapshot, _ = compile_router(gateway, private, PRODUCTPAGE)
    assert routed(snapshot, 80, "a.com") is None


def test_the_view_of_a_router_compiles_the_same():
    gateway = gw("gw", server(80, "*"))
    edge = vs("edge", "a.com", http(dest("productpage.default.svc.cluster.local")), gateways=("istio-system/gw",))
    mesh = vs("mesh", "productpage", http(dest("productpage")))
    snapshot, config = compile_router(gateway, edge, mesh, PRODUCTPAGE, gw("elsewhere", server(81, "*"), selector={"app": "x"}))
    view = proxy_view(config, ROUTER)
    assert [g.metadata.name for g in view.gateways] == ["gw"]
    assert [v.metadata.name for v in view.virtual_services] == ["edge"]
    again = compile_snapshot(view, ROUTER, "v1")
    assert [(l.name, l.port) for l in again.listeners] == [(l.name, l.port) for l in snapshot.listeners]
    assert routed(again, 80, "a.com") is not None
    sidecar_view = proxy_view(config, ProxyIdentity(namespace="default"))
    assert [v.metadata.name for v in sidecar_view.virtual_services] == ["mesh"] and sidecar_view.gateways == ()


def test_the_dump_shows_each_chains_routes():
    gateway = gw("gw", server(443, "a.example.com", protocol="HTTPS",
                              tls=m.ServerTLSSettings(mode="SIMPLE", credential_name="cert")))
    service = vs("v", "*", http(dest("productpage.default.svc.cluster.local")), gateways=("istio-system/gw",))
    snapshot, _ = compile_router(gateway, service, PRODUCTPAGE)
    (listener,) = snapshot.dump()["listeners"]
    (chain,) = listener["tls_servers"]
    assert chain["tls"]["settings"]["credential_name"] == "cert"
    assert [vh["domains"] for vh in chain["route_table"]["virtual_hosts"]] == [["a.example.com"]]


def test_a_unix_socket_bind_is_left_out_with_a_warning():
    gateway = gw("gw", server(0, "*", bind_to="unix:///var/run/gw.sock"), server(80, "*", bind_to="127.0.0.2"))
    snapshot, _ = compile_router(gateway)
    assert [(l.bind, l.port) for l in snapshot.listeners] == [("127.0.0.2", 80)]
    assert any("unix socket" in w for w in snapshot.warnings)


def test_a_host_two_servers_expose_gets_the_routes_once():
    gateway = gw("gw", server(80, "*", name="a"), server(80, "*.example.com", name="b"))
    service = vs("v", "a.example.com", http(dest("productpage.default.svc.cluster.local")), gateways=("istio-system/gw",))
    snapshot, _ = compile_router(gateway, service, PRODUCTPAGE)
    (listener,) = snapshot.listeners
    (vhost,) = listener.route_table.virtual_hosts
    assert (vhost.domains, len(vhost.routes)) == (("a.example.com",), 1)


def test_gateway_warnings_for_analyze():
    from pymesh.routing.gateway import gateway_warnings

    config = m.MeshConfig(
        gateways=(gw("gw", server(80, "*"), server(80, "*", protocol="TCP", name="tcp"),
                     server(443, "*", protocol="HTTPS", name="https",
                            tls=m.ServerTLSSettings(mode="SIMPLE", credential_name="c", cipher_suites=("RC4",)))),),
        virtual_services=(vs("v", "*", http(dest("productpage.default.svc.cluster.local")),
                             gateways=("istio-system/gw", "missing", "mesh")),),
        service_entries=(PRODUCTPAGE,))
    assert gateway_warnings(config) == [
        "VirtualService default/v: gateway default/missing not found",
        "Gateway istio-system/gw: server tcp (TCP) on port 80 conflicts with an earlier HTTP server there; ignored",
        "Gateway istio-system/gw: server https: cipher suite 'RC4' is not supported by Envoy; ignored",
    ]


def test_istios_egress_gateway_task_routes_the_sidecar_to_the_gateway_and_the_gateway_out():
    """The "Egress gateways" task's VirtualService: bound to the mesh and the egress gateway,
    each match naming one of them, so a sidecar sends edition.cnn.com to the gateway and the
    gateway sends it out."""
    egress = ProxyIdentity(workload="istio-egressgateway", namespace="istio-system",
                           labels={"istio": "egressgateway"}, kind="router")
    gateway = gw("istio-egressgateway", server(80, "edition.cnn.com"), ns="default",
                 selector={"istio": "egressgateway"})
    cnn = se("edition.cnn.com", m.ServicePort(80, "HTTP", "http"), name="cnn")
    own = se("istio-egressgateway.istio-system.svc.cluster.local", m.ServicePort(80, "HTTP", "http"),
             ns="istio-system", name="istio-egressgateway")
    to_gateway = http(dest("istio-egressgateway.istio-system.svc.cluster.local", port=80, weight=100),
                      match=(m.HTTPMatchRequest(gateways=("mesh",), port=80),))
    out = http(dest("edition.cnn.com", port=80, weight=100),
               match=(m.HTTPMatchRequest(gateways=("istio-egressgateway",), port=80),))
    service = vs("direct-cnn-through-egress-gateway", "edition.cnn.com", to_gateway, out,
                 gateways=("istio-egressgateway", "mesh"))
    at_gateway, config = compile_router(gateway, service, cnn, own, identity=egress)
    assert routed(at_gateway, 80, "edition.cnn.com").clusters[0].cluster == "outbound|80||edition.cnn.com"
    sidecar = compile_snapshot(config, ProxyIdentity(namespace="default"), "v1")
    found = sidecar.captured_outbound[80].route_table.match(Req(authority="edition.cnn.com", port=80))
    assert found[0].clusters[0].cluster == "outbound|80||istio-egressgateway.istio-system.svc.cluster.local"


def test_the_listen_address_for_servers_without_bind():
    local = ProxyIdentity(namespace="istio-system", labels={"istio": "ingressgateway"}, kind="router",
                          listen_address="127.0.0.1")
    snapshot, _ = compile_router(gw("gw", server(80, "*"), server(81, "*", bind_to="127.0.0.2")), identity=local)
    assert [(l.bind, l.port) for l in snapshot.listeners] == [("127.0.0.1", 80), ("127.0.0.2", 81)]
