"""compile_snapshot: services, clusters, Sidecar scoping, destinations, TCP and inbound."""

from __future__ import annotations

import pytest

from pymesh.api import model as m
from pymesh.routing.compile import compile_snapshot
from pymesh.routing.snapshot import ProxyIdentity, ServiceLabels, TcpRoute, WeightedCluster
from routing_helpers import Req, cluster_of, compile_, dest, ep, http, meta, route_of, se, vs

REVIEWS = "reviews.default.svc.cluster.local"
V = m.ServicePort(9080, "HTTP", "http")


def reviews(**kw):
    return se(REVIEWS, V, endpoints=[ep("10.0.0.1", version="v1"), ep("10.0.0.2", version="v2"), ep("10.0.0.3", version="v2")], **kw)


def rule(host="reviews", *subsets, ns="default", policy=None):
    return m.DestinationRule(meta("dr-" + host.split(".")[0], ns), host=host, traffic_policy=policy, subsets=tuple(subsets))


def subset(name, policy=None, **labels):
    return m.Subset(name=name, labels=labels, traffic_policy=policy)


def sidecar(*egress, ns="default", ingress=(), selector=None, name="sc", policy="ALLOW_ANY"):
    return m.Sidecar(meta(name, ns), workload_selector=selector, ingress=tuple(ingress), egress=tuple(egress), outbound_traffic_policy=policy)


def egress(*hosts, port=None, **kw):
    return m.EgressListener(hosts=hosts, port=port, **kw)


# --- services, endpoints, clusters ----------------------------------------------------------


def test_cluster_per_port_with_all_endpoints():
    snap = compile_([reviews()])
    c = snap.clusters[f"outbound|9080||{REVIEWS}"]
    assert [e.address for e in c.endpoints] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert (c.service_host, c.port, c.subset, c.protocol) == (REVIEWS, 9080, "", "HTTP")
    assert c.service_labels == ServiceLabels(REVIEWS, "reviews", "default")
    assert c.load_balancer == m.LoadBalancerSettings() and c.connection_pool == m.ConnectionPoolSettings()


@pytest.mark.parametrize(
    "port,endpoint_ports,want",
    [
        (m.ServicePort(80, "HTTP", "http"), {"http": 8080}, 8080),  # endpoint's named port
        (m.ServicePort(80, "HTTP", "http", target_port=9000), {}, 9000),  # targetPort
        (m.ServicePort(80, "HTTP", "http", target_port=9000), {"grpc": 1}, 9000),  # other name
        (m.ServicePort(80, "HTTP", ""), {"http": 8080}, 80),  # unnamed port: number
    ],
)
def test_endpoint_port(port, endpoint_ports, want):
    snap = compile_([se("a.example.com", port, endpoints=[ep("10.0.0.1", endpoint_ports)])])
    assert snap.clusters["outbound|80||a.example.com"].endpoints[0].port == want


def test_workload_entries_selected_in_the_same_namespace():
    we = lambda name, ns, **labels: m.WorkloadEntry(meta(name, ns), m.WorkloadEntrySpec("10.1.0." + name[-1], labels=labels))  # noqa: E731
    snap = compile_(
        [se(REVIEWS, V, endpoints=[ep("10.0.0.1")], workload_selector={"app": "reviews"})],
        workloads=[we("vm1", "default", app="reviews"), we("vm2", "default", app="other"), we("vm3", "prod", app="reviews")],
    )
    eps = snap.clusters[f"outbound|9080||{REVIEWS}"].endpoints
    assert [(e.address, e.workload, e.namespace) for e in eps] == [("10.0.0.1", "", "default"), ("10.1.0.1", "vm1", "default")]


def test_dns_service_without_endpoints_resolves_its_host():
    snap = compile_([se("api.example.com", m.ServicePort(443, "TLS", "https"), resolution="DNS")])
    assert snap.clusters["outbound|443||api.example.com"].endpoints[0].key == "api.example.com:443"


def test_subsets_select_endpoints_by_labels():
    snap = compile_([reviews()], rules=[rule("reviews", subset("v1", version="v1"), subset("v2", version="v2"))])
    assert [e.address for e in snap.clusters[f"outbound|9080|v1|{REVIEWS}"].endpoints] == ["10.0.0.1"]
    assert [e.address for e in snap.clusters[f"outbound|9080|v2|{REVIEWS}"].endpoints] == ["10.0.0.2", "10.0.0.3"]


def test_subset_policy_overrides_rule_policy_field_by_field():
    pool = m.ConnectionPoolSettings(connect_timeout=1.5, max_requests_per_connection=10)
    top = m.TrafficPolicy(load_balancer=m.LoadBalancerSettings("LEAST_REQUEST"), connection_pool=pool)
    sub = m.TrafficPolicy(load_balancer=m.LoadBalancerSettings("RANDOM"))
    snap = compile_([reviews()], rules=[rule("reviews", subset("v1", sub, version="v1"), subset("v2", version="v2"), policy=top)])
    base, v1, v2 = (snap.clusters[f"outbound|9080|{s}|{REVIEWS}"] for s in ("", "v1", "v2"))
    assert (base.load_balancer.simple, base.connection_pool) == ("LEAST_REQUEST", pool)
    assert (v1.load_balancer.simple, v1.connection_pool) == ("RANDOM", pool)
    assert (v2.load_balancer.simple, v2.connection_pool) == ("LEAST_REQUEST", pool)


@pytest.mark.parametrize(
    "rule_host,rule_ns,applies",
    [
        ("reviews", "default", True),  # short name in the service's namespace
        (REVIEWS, "prod", True),  # FQDN from anywhere
        ("reviews", "prod", False),  # short name means reviews.prod...
        ("*.svc.cluster.local", "default", True),  # wildcard
    ],
)
def test_destination_rule_host_resolution(rule_host, rule_ns, applies):
    policy = m.TrafficPolicy(load_balancer=m.LoadBalancerSettings("RANDOM"))
    snap = compile_([reviews()], rules=[rule(rule_host, ns=rule_ns, policy=policy)])
    assert (snap.clusters[f"outbound|9080||{REVIEWS}"].load_balancer.simple == "RANDOM") is applies


def test_exact_rule_beats_wildcard_and_unknown_rule_host_warns():
    snap = compile_(
        [reviews()],
        rules=[
            rule("*.svc.cluster.local", policy=m.TrafficPolicy(load_balancer=m.LoadBalancerSettings("RANDOM"))),
            rule("reviews", policy=m.TrafficPolicy(load_balancer=m.LoadBalancerSettings("LEAST_REQUEST"))),
            rule("nothing"),
        ],
    )
    assert snap.clusters[f"outbound|9080||{REVIEWS}"].load_balancer.simple == "LEAST_REQUEST"
    assert any("nothing.default.svc.cluster.local matches no service" in w for w in snap.warnings)


def test_duplicate_service_host_warns_and_keeps_the_first():
    snap = compile_([se("a.example.com", name="one"), se("a.example.com", m.ServicePort(81, "HTTP", "h"), name="two")])
    assert "outbound|9080||a.example.com" in snap.clusters and "outbound|81||a.example.com" not in snap.clusters
    assert any("default/two" in w and "already defined" in w for w in snap.warnings)


def test_export_to_hides_resources_from_other_namespaces():
    private = se("secret.example.com", ns="team", export_to=(".",))
    hidden_vs = vs("v", "reviews", http(dest("reviews", "v9")), export_to=(".",), ns="default")
    snap = compile_([private, reviews()], [hidden_vs], ns="prod")
    assert "outbound|9080||secret.example.com" not in snap.clusters
    assert route_of(snap, Req(authority=REVIEWS)).virtual_service == ""  # the VS is not exported to prod
    assert "outbound|9080||secret.example.com" in compile_([private], ns="team").clusters


# --- names, destinations, routes ------------------------------------------------------------


def test_short_names_resolve_in_the_virtual_service_namespace():
    prod = se("reviews.prod.svc.cluster.local", V, ns="prod")
    virtual = [vs("r", "reviews", http(dest("reviews", "v1"), name="to-v1"), ns="prod")]
    snap = compile_([reviews(), prod], virtual, rules=[rule("reviews", subset("v1"), ns="prod")])
    assert cluster_of(snap, Req(authority="reviews.prod")) == "outbound|9080|v1|reviews.prod.svc.cluster.local"
    assert cluster_of(snap, Req(authority="reviews")) == f"outbound|9080||{REVIEWS}"  # untouched


def test_service_entry_short_host_is_found_by_the_same_string():
    snap = compile_([se("reviews", V)], [vs("r", "reviews", http(dest("reviews"), name="lit"))])
    assert cluster_of(snap, Req(authority="reviews")) == "outbound|9080||reviews"
    assert route_of(snap, Req(authority="reviews")).name == "lit"
    assert not snap.warnings


@pytest.mark.parametrize(
    "ports,dest_port,want",
    [
        ((V,), None, 9080),  # the service's only port
        ((V, m.ServicePort(9090, "HTTP", "admin")), None, 9080),  # several: the listener's
        ((V, m.ServicePort(9090, "HTTP", "admin")), 9090, 9090),  # explicit
    ],
)
def test_destination_port(ports, dest_port, want):
    snap = compile_([se("a.example.com", *ports), se("b.example.com", *ports)], [vs("r", "a.example.com", http(dest("b.example.com", port=dest_port)))])
    assert cluster_of(snap, Req(authority="a.example.com")) == f"outbound|{want}||b.example.com"


def test_weighted_destinations_and_header_ops():
    hdrs = m.Headers(request=m.HeaderOperations(set={"X-Canary": "1"}, remove=("X-Debug",)), response=m.HeaderOperations(add={"X-Via": "v2"}))
    r = http(
        dest("reviews", "v1", 90),
        m.HTTPRouteDestination(m.Destination("reviews", "v2"), weight=10, headers=hdrs),
        headers=m.Headers(request=m.HeaderOperations(add={"X-Route": "r1"})),
        timeout=2.0,
        retries=m.HTTPRetry(attempts=3),
    )
    snap = compile_([reviews()], [vs("r", "reviews", r)], rules=[rule("reviews", subset("v1", version="v1"), subset("v2", version="v2"))])
    route = route_of(snap, Req())
    assert route.total_weight == 100 and [(c.cluster, c.weight) for c in route.clusters] == [
        (f"outbound|9080|v1|{REVIEWS}", 90), (f"outbound|9080|v2|{REVIEWS}", 10)
    ]
    assert route.clusters[1].request_headers.set == (("x-canary", "1"),)
    assert route.clusters[1].request_headers.remove == ("x-debug",)
    assert route.clusters[1].response_headers.add == (("x-via", "v2"),)
    assert route.clusters[0].request_headers.empty
    assert route.request_headers.add == (("x-route", "r1"),)
    assert (route.timeout, route.retries, route.virtual_service) == (2.0, m.HTTPRetry(attempts=3), "default/r")
    assert not snap.warnings


def test_single_destination_gets_all_the_weight():
    route = route_of(compile_([reviews()], [vs("r", "reviews", http(dest("reviews")))]), Req())
    assert (route.clusters[0].weight, route.total_weight) == (100, 100)


def test_redirect_direct_response_and_rewrite_are_carried():
    redirect = m.HTTPRedirect(uri="/new", redirect_code=302)
    direct = m.HTTPDirectResponse(503, "down")
    rewrite = m.HTTPRewrite(uri="/v2/")
    routes = [
        http(redirect=redirect, match=[m.HTTPMatchRequest(uri=m.StringMatch("exact", "/old"))]),
        http(direct_response=direct, match=[m.HTTPMatchRequest(uri=m.StringMatch("exact", "/down"))]),
        http(dest("reviews"), rewrite=rewrite, match=[m.HTTPMatchRequest(uri=m.StringMatch("prefix", "/v1/"))]),
    ]
    table = compile_([reviews()], [vs("r", "reviews", *routes)]).captured_outbound[9080].route_table
    assert table.match(Req(path="/old"))[0].redirect == redirect
    assert table.match(Req(path="/down"))[0].direct_response == direct
    route, prefix = table.match(Req(path="/v1/x"))
    assert (route.rewrite, prefix) == (rewrite, "/v1/")


def test_virtual_services_for_one_host_merge_in_file_order():
    first = vs("a", "reviews", http(dest("reviews"), match=[m.HTTPMatchRequest(uri=m.StringMatch("prefix", "/a"))], name="a"))
    second = vs("b", REVIEWS, http(dest("reviews"), name="rest"))
    table = compile_([reviews()], [first, second]).captured_outbound[9080].route_table
    assert [r.route.name for r in table.virtual_host("reviews").routes] == ["a", "rest"]


def test_hash_policy_comes_from_the_destination_rule():
    ch = m.ConsistentHash(http_header_name="x-user")
    policy = m.TrafficPolicy(load_balancer=m.LoadBalancerSettings(consistent_hash=ch))
    snap = compile_([reviews()], [vs("r", "reviews", http(dest("reviews")))], rules=[rule("reviews", policy=policy)])
    assert route_of(snap, Req()).hash_policy == ch


@pytest.mark.parametrize(
    "destination,why",
    [
        (dest("nope"), "host nope.default.svc.cluster.local is not a known service"),
        (dest("reviews", "v9"), "no DestinationRule subset 'v9'"),
        (dest("reviews", port=1234), f"service {REVIEWS} has no port 1234"),
    ],
)
def test_unknown_destination_still_routes_and_warns(destination, why):
    snap = compile_([reviews()], [vs("r", "reviews", http(destination))])
    route = route_of(snap, Req())
    assert route.clusters[0].cluster not in snap.clusters  # the proxy answers 503 for it
    assert len(snap.warnings) == 1 and why in snap.warnings[0] and "VirtualService default/r" in snap.warnings[0]


# --- Sidecar: selection, listeners, scoping -------------------------------------------------


def test_sidecar_selected_by_labels_else_namespace_default_else_none():
    by_labels = sidecar(egress("*/*", port=V), selector={"app": "web"}, name="web", policy="REGISTRY_ONLY")
    default = sidecar(egress("*/*", port=m.ServicePort(9090, "HTTP", "h")), name="default")
    elsewhere = sidecar(egress("*/*", port=m.ServicePort(7070, "HTTP", "h")), ns="prod", name="prod")
    sidecars = [default, by_labels, elsewhere]
    web = compile_([reviews()], sidecars=sidecars, labels={"app": "web", "v": "1"})
    assert [l.name for l in web.listeners] == ["egress|127.0.0.1|9080"] and web.outbound_traffic_policy == "REGISTRY_ONLY"
    api = compile_([reviews()], sidecars=sidecars, labels={"app": "api"})
    assert [l.name for l in api.listeners] == ["egress|127.0.0.1|9090"] and api.outbound_traffic_policy == "ALLOW_ANY"
    none = compile_([reviews()], sidecars=[by_labels, elsewhere], ns="default", labels={})
    assert none.listeners == () and none.outbound_traffic_policy == "ALLOW_ANY"


@pytest.mark.parametrize(
    "hosts,visible",
    [
        (("*/*",), {"reviews", "ratings", "api", "shop"}),
        (("./*",), {"reviews", "api", "shop"}),
        (("prod/*",), {"ratings"}),
        (("./reviews",), {"reviews"}),  # short dnsName read in the namespace
        (("*/api.example.com",), {"api"}),
        (("*/*.example.com",), {"api", "shop"}),
        (("~/*",), set()),
        (("./reviews.default.svc.cluster.local", "prod/*"), {"reviews", "ratings"}),
    ],
)
def test_egress_hosts_scope_the_listener(hosts, visible):
    services = [reviews(), se("ratings.prod.svc.cluster.local", V, ns="prod"), se("api.example.com", V), se("shop.example.com", V)]
    snap = compile_(services, sidecars=[sidecar(egress(*hosts, port=V))])
    table = snap.listeners[0].route_table
    names = {"reviews": REVIEWS, "ratings": "ratings.prod", "api": "api.example.com", "shop": "shop.example.com"}
    assert {short for short, authority in names.items() if table.match(Req(authority=authority))} == visible


def test_egress_scope_applies_to_virtual_services_by_their_namespace():
    services = [reviews(), se("ratings.prod.svc.cluster.local", V, ns="prod")]
    remote_vs = vs("r", REVIEWS, http(dest("ratings.prod.svc.cluster.local"), name="via-prod"), ns="prod")
    only_local = compile_(services, [remote_vs], sidecars=[sidecar(egress("./*", port=V))])
    assert route_of_listener(only_local, Req(authority="reviews")).name == "default"
    with_prod = compile_(services, [remote_vs], sidecars=[sidecar(egress("./*", "prod/*", port=V))])
    assert route_of_listener(with_prod, Req(authority="reviews")).name == "via-prod"


def route_of_listener(snap, req):
    return snap.listeners[0].route_table.match(req)[0]


def test_egress_listener_bind_and_protocol():
    snap = compile_([reviews()], sidecars=[sidecar(egress("*/*", port=m.ServicePort(9080, "http", "h"), bind="10.0.0.5"))])
    l = snap.listeners[0]
    assert (l.name, l.direction, l.bind, l.port, l.protocol) == ("egress|10.0.0.5|9080", "outbound", "10.0.0.5", 9080, "HTTP")


def test_captured_outbound_uses_port_egress_entries_then_the_catch_all():
    services = [reviews(), se("ratings.prod.svc.cluster.local", m.ServicePort(7000, "HTTP", "h"), ns="prod"), se("db.example.com", m.ServicePort(5432, "TCP", "pg"))]
    snap = compile_(services, sidecars=[sidecar(egress("./*", port=V), egress("prod/*"))])
    assert set(snap.captured_outbound) == {9080, 7000}  # db is in no scope
    assert snap.captured_outbound[9080] is snap.listeners[0]
    assert snap.captured_outbound[7000].name == "outbound|0.0.0.0|7000"
    no_capture = compile_(services, sidecars=[sidecar(egress("./*", port=V, capture_mode="NONE"), egress("*/*"))])
    assert no_capture.captured_outbound[9080].name == "outbound|0.0.0.0|9080"
    no_sidecar = compile_(services)
    assert set(no_sidecar.captured_outbound) == {9080, 7000, 5432}
    assert no_sidecar.captured_outbound[5432].tcp_route.clusters[0].cluster == "outbound|5432||db.example.com"


def test_captured_port_shared_by_http_and_tcp_warns():
    snap = compile_([se("a.example.com", m.ServicePort(80, "HTTP", "h")), se("b.example.com", m.ServicePort(80, "TCP", "t"))])
    assert snap.captured_outbound[80].protocol == "HTTP"
    assert any("outbound port 80" in w for w in snap.warnings)


# --- TCP ------------------------------------------------------------------------------------

PG = m.ServicePort(5432, "TCP", "pg")


def tcp_vs(*routes, hosts="db.example.com"):
    return vs("db", hosts, tcp=routes)


def tcp(*dests, match=()):
    return m.TCPRoute(match=tuple(match), route=tuple(m.RouteDestination(m.Destination(h, s), w) for h, s, w in dests))


@pytest.mark.parametrize(
    "routes,want",
    [
        # first matching route wins; a match without a port applies to any port
        ((tcp(("db.example.com", "a", 0), match=[m.L4MatchAttributes(port=6000)]), tcp(("db.example.com", "b", 0))), [("outbound|5432|b|db.example.com", 100)]),
        ((tcp(("db.example.com", "a", 0), match=[m.L4MatchAttributes(port=5432)]), tcp(("db.example.com", "b", 0))), [("outbound|5432|a|db.example.com", 100)]),
        ((tcp(("db.example.com", "a", 80), ("db.example.com", "b", 20), match=[m.L4MatchAttributes()]),), [("outbound|5432|a|db.example.com", 80), ("outbound|5432|b|db.example.com", 20)]),
        # sourceLabels are the proxy's own (decided at compile time)
        ((tcp(("db.example.com", "a", 0), match=[m.L4MatchAttributes(source_labels={"app": "other"})]), tcp(("db.example.com", "b", 0))), [("outbound|5432|b|db.example.com", 100)]),
        ((tcp(("db.example.com", "a", 0), match=[m.L4MatchAttributes(source_labels={"app": "web"})]),), [("outbound|5432|a|db.example.com", 100)]),
    ],
)
def test_tcp_routes(routes, want):
    dr = rule("db.example.com", subset("a"), subset("b"))
    snap = compile_([se("db.example.com", PG)], [tcp_vs(*routes)], rules=[dr], sidecars=[sidecar(egress("*/*", port=PG))], labels={"app": "web"})
    listener = snap.listeners[0]
    assert listener.route_table is None and listener.protocol == "TCP"
    assert [(c.cluster, c.weight) for c in listener.tcp_route.clusters] == want
    assert listener.tcp_route.total_weight == sum(w for _, w in want)


def test_tcp_without_virtual_service_goes_to_the_single_service_on_the_port():
    snap = compile_([se("db.example.com", PG)], sidecars=[sidecar(egress("*/*", port=PG))])
    assert snap.listeners[0].tcp_route == TcpRoute((WeightedCluster("outbound|5432||db.example.com", 100),), 100)


def test_tcp_with_several_services_and_no_virtual_service_has_no_route():
    snap = compile_([se("a.example.com", PG), se("b.example.com", PG)], sidecars=[sidecar(egress("*/*", port=PG))])
    assert snap.listeners[0].tcp_route is None
    assert any("several services" in w for w in snap.warnings)


def test_tcp_destination_subnets_are_reported_unsupported():
    routes = (tcp(("db.example.com", "", 0), match=[m.L4MatchAttributes(destination_subnets=("10.0.0.0/8",))]),)
    snap = compile_([se("db.example.com", PG), se("x.example.com", PG)], [tcp_vs(*routes)], sidecars=[sidecar(egress("*/*", port=PG))])
    assert snap.listeners[0].tcp_route is None
    assert any("destinationSubnets" in w for w in snap.warnings)


# --- inbound --------------------------------------------------------------------------------


def test_inbound_http_listener_routes_everything_to_the_app():
    ing = m.IngressListener(port=m.ServicePort(9080, "HTTP", "http"), default_endpoint="127.0.0.1:8080")
    snap = compile_([reviews()], [vs("r", "*", http(dest("reviews", "v9")))], sidecars=[sidecar(ingress=[ing])])
    (listener,) = snap.listeners
    assert (listener.name, listener.direction, listener.bind, listener.default_cluster) == ("ingress|0.0.0.0|9080", "inbound", "0.0.0.0", "inbound|9080||")
    for req in (Req(authority="anything:1", path="/x?y=1"), Req(authority="")):
        route, prefix = listener.route_table.match(req)
        assert ([c.cluster for c in route.clusters], prefix) == (["inbound|9080||"], None)
    cluster = snap.clusters["inbound|9080||"]
    assert ([e.key for e in cluster.endpoints], cluster.protocol, cluster.service_host) == (["127.0.0.1:8080"], "HTTP", "")


def test_inbound_tcp_listener_and_endpoint_defaults():
    ing = m.IngressListener(port=m.ServicePort(5432, "TCP", "pg", target_port=15432), bind="10.0.0.5")
    bad = m.IngressListener(port=m.ServicePort(7000, "TCP", "x"), default_endpoint="nonsense")
    snap = compile_(sidecars=[sidecar(ingress=[ing, bad])])
    listener = snap.listeners[0]
    assert listener.name == "ingress|10.0.0.5|5432" and listener.route_table is None
    assert listener.tcp_route.clusters[0].cluster == "inbound|5432||"
    assert snap.clusters["inbound|5432||"].endpoints[0].key == "127.0.0.1:15432"
    assert snap.clusters["inbound|7000||"].endpoints[0].key == "127.0.0.1:7000"
    assert any("defaultEndpoint" in w for w in snap.warnings)


def test_compile_snapshot_signature():
    snap = compile_snapshot(m.MeshConfig(), ProxyIdentity(), "42")
    assert (snap.version, snap.listeners, dict(snap.clusters), snap.warnings) == ("42", (), {}, ())


def test_mirror_policies_compile_to_clusters_per_million_and_drop_zero_percent():
    """Istio's translation: mirror (mirrorPercentage) first, then mirrors[]; percentages as
    parts of a MILLION (value * 10000); a 0% mirror gets no policy; the cluster is named as a
    route destination's would be."""
    mirrors = (
        m.HTTPMirrorPolicy(m.Destination(host="reviews", subset="v2"), percentage=50.0),
        m.HTTPMirrorPolicy(m.Destination(host="reviews", port=9080), percentage=0.0001),
        m.HTTPMirrorPolicy(m.Destination(host="reviews", subset="v1"), percentage=0.0),
    )
    rules = [rule("reviews", subset("v1", version="v1"), subset("v2", version="v2"))]
    snap = compile_([reviews()], [vs("r", "reviews", http(dest("reviews", "v1"), mirrors=mirrors))], rules)
    route = route_of(snap, Req())
    assert [(p.cluster, p.per_million) for p in route.mirrors] == [
        (f"outbound|9080|v2|{REVIEWS}", 500_000), (f"outbound|9080||{REVIEWS}", 1)]


def test_mirror_on_a_redirect_route_is_ignored_as_in_envoy():
    mirrors = (m.HTTPMirrorPolicy(m.Destination(host="reviews")),)
    route_model = m.HTTPRoute(redirect=m.HTTPRedirect(uri="/elsewhere"), mirrors=mirrors)
    snap = compile_([reviews()], [vs("r", "reviews", route_model)])
    assert route_of(snap, Req()).mirrors == ()


@pytest.mark.parametrize("listener_port, bound", [(80, True), (9080, False)])
def test_a_vs_host_whose_service_lacks_the_port_is_bound_on_port_80_only(listener_port, bound):
    """Istio binds a VirtualService host on port 80 whatever its service's ports (the egress
    gateway mTLS task: curl http://my-nginx... for a 443-only Kubernetes Service), and on
    another port only if the service has it."""
    nginx = "my-nginx.mesh-external.svc.cluster.local"
    services = [se(nginx, m.ServicePort(443, "HTTPS", "https")),
                se("other.default.svc.cluster.local", m.ServicePort(80, "HTTP", "http"), V)]
    route = vs("nginx", nginx, http(dest("other.default.svc.cluster.local", port=listener_port)))
    snap = compile_(services, [route])
    found = snap.captured_outbound[listener_port].route_table.match(Req(authority=nginx, port=listener_port))
    assert (found is not None) is bound


def test_an_endpoint_behind_another_networks_gateway_is_left_out():
    """WorkloadEntry `network`: with an address the endpoint is reached directly (pymesh is one
    network); without one Istio reaches it through that network's gateway, which pymesh lacks."""
    near = m.WorkloadEntrySpec(address="127.0.0.2", network="network1")
    far = m.WorkloadEntrySpec(address="", network="network2")
    snap = compile_([se("db.example.com", endpoints=(near, far), resolution="STATIC")])
    cluster = snap.clusters["outbound|9080||db.example.com"]
    assert [e.address for e in cluster.endpoints] == ["127.0.0.2"]
    assert any("network2" in w and "left out" in w for w in snap.warnings)
