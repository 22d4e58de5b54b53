"""proxy_view: what a proxy is sent. Each case checks what is kept, and that compiling the view
gives the proxy the same listeners, routes and routed-to clusters as compiling the whole mesh."""

from __future__ import annotations

import pytest

from pymesh.api import model as m
from pymesh.routing.compile import compile_snapshot
from pymesh.routing.snapshot import ProxyIdentity
from pymesh.routing.view import proxy_view, view_key

HTTP = m.ServicePort(9080, "HTTP", "http")


def meta(name: str, ns: str = "default") -> m.Metadata:
    return m.Metadata(name=name, namespace=ns)


def se(name: str, *hosts: str, ns: str = "default", selector=None, export_to=(), ports=(HTTP,)) -> m.ServiceEntry:
    return m.ServiceEntry(meta(name, ns), hosts=hosts or (f"{name}.{ns}.svc.cluster.local",), ports=ports,
                          workload_selector=selector, export_to=tuple(export_to), location="MESH_INTERNAL")


def we(name: str, ns: str = "default", **labels: str) -> m.WorkloadEntry:
    return m.WorkloadEntry(meta(name, ns), m.WorkloadEntrySpec(address=f"10.0.0.{len(name)}", labels=labels))


def vs(name: str, host: str, *dests: str, ns: str = "default", export_to=()) -> m.VirtualService:
    route = m.HTTPRoute(route=tuple(m.HTTPRouteDestination(m.Destination(d)) for d in dests or (host,)))
    return m.VirtualService(meta(name, ns), hosts=(host,), http=(route,), export_to=tuple(export_to))


def dr(name: str, host: str, ns: str = "default", export_to=()) -> m.DestinationRule:
    return m.DestinationRule(meta(name, ns), host=host, subsets=(m.Subset("v1", {"version": "v1"}),),
                             export_to=tuple(export_to))


def sidecar(name: str, ns: str, *hosts: str, port: m.ServicePort | None = None, **selector: str) -> m.Sidecar:
    return m.Sidecar(meta(name, ns), workload_selector=selector or None, egress=(m.EgressListener(hosts, port=port),))


def me(ns: str = "default", **labels: str) -> ProxyIdentity:
    return ProxyIdentity(workload="me", namespace=ns, labels=labels)


def names(resources) -> list[str]:
    return [f"{r.metadata.namespace}/{r.metadata.name}" for r in resources]


def routed(config: m.MeshConfig, proxy: ProxyIdentity) -> dict:
    """The parts of the compiled snapshot requests use: listeners, captured ports, and every
    cluster a route or listener points at."""
    dump = compile_snapshot(config, proxy, "1").dump()
    used = set()
    for listener in dump["listeners"]:
        used.add(listener["default_cluster"])
        for wc in (listener["tcp_route"] or {}).get("clusters", ()):
            used.add(wc["cluster"])
        for vh in (listener["route_table"] or {}).get("virtual_hosts", ()):
            for route in vh["routes"]:
                used.update(wc["cluster"] for wc in route["clusters"])
    return {
        "listeners": dump["listeners"],
        "captured": dump["captured_outbound"],
        "clusters": [c for c in dump["clusters"] if c["name"] in used],
    }


def check(config: m.MeshConfig, proxy: ProxyIdentity) -> m.MeshConfig:
    view = proxy_view(config, proxy)
    assert routed(view, proxy) == routed(config, proxy)
    assert proxy_view(view, proxy) == view  # a view is its own view
    return view


def test_no_scoping_keeps_everything() -> None:
    config = m.MeshConfig(
        service_entries=(se("a", selector={"app": "a"}), se("b", ns="other")),
        workload_entries=(we("a1", app="a"), we("a2", app="a")),
        virtual_services=(vs("a", "a.default.svc.cluster.local"),),
        destination_rules=(dr("a", "a.default.svc.cluster.local"),),
        sidecars=(),
    )
    assert check(config, me()) == config


def test_export_to_hides_other_namespaces_private_resources() -> None:
    config = m.MeshConfig(
        service_entries=(se("pub", ns="shop"), se("priv", ns="shop", export_to=["."]), se("mine", export_to=["default"])),
        virtual_services=(vs("priv", "priv.shop.svc.cluster.local", ns="shop", export_to=["."]),),
        destination_rules=(dr("priv", "priv.shop.svc.cluster.local", ns="shop", export_to=["."]),),
    )
    view = check(config, me())
    assert names(view.service_entries) == ["shop/pub", "default/mine"]
    assert view.virtual_services == () and view.destination_rules == ()
    assert names(check(config, me("shop")).service_entries) == ["shop/pub", "shop/priv"]


def test_sidecar_egress_narrows_the_view() -> None:
    config = m.MeshConfig(
        service_entries=(se("a", selector={"app": "a"}), se("b", selector={"app": "b"}), se("c", ns="shop")),
        workload_entries=(we("a1", app="a"), we("b1", app="b"), we("stray", app="x")),
        virtual_services=(vs("b", "b.default.svc.cluster.local"), vs("c", "c.shop.svc.cluster.local", ns="shop")),
        destination_rules=(dr("a", "a"), dr("b", "b"), dr("wild", "*.svc.cluster.local", ns="shop")),
        sidecars=(sidecar("scope", "default", "./a.default.svc.cluster.local"), sidecar("other", "shop", "*/*")),
    )
    view = check(config, me())
    assert names(view.service_entries) == ["default/a"]
    assert names(view.workload_entries) == ["default/a1"]
    assert view.virtual_services == ()
    assert names(view.destination_rules) == ["default/a", "shop/wild"]
    assert names(view.sidecars) == ["default/scope"]


def test_egress_with_a_port_counts_too_and_namespace_wildcards() -> None:
    config = m.MeshConfig(
        service_entries=(se("a"), se("b", ns="shop"), se("c", ns="ops")),
        sidecars=(sidecar("s", "default", "shop/*", port=HTTP),),
    )
    assert names(check(config, me()).service_entries) == ["shop/b"]


def test_the_sidecar_that_selects_the_proxy_applies() -> None:
    config = m.MeshConfig(
        service_entries=(se("a"), se("b")),
        sidecars=(sidecar("for-web", "default", "./b.default.svc.cluster.local", app="web"),
                  sidecar("rest", "default", "./a.default.svc.cluster.local")),
    )
    assert names(check(config, me(app="web")).service_entries) == ["default/b"]
    assert names(check(config, me(app="db")).service_entries) == ["default/a"]


def test_sidecar_without_egress_sees_everything() -> None:
    config = m.MeshConfig(service_entries=(se("a"), se("b")), sidecars=(m.Sidecar(meta("s")),))
    assert names(check(config, me()).service_entries) == ["default/a", "default/b"]


def test_destinations_of_visible_virtual_services_are_kept() -> None:
    config = m.MeshConfig(
        service_entries=(se("front"), se("back", ns="shop"), se("unrelated")),
        virtual_services=(vs("front", "front.default.svc.cluster.local", "back.shop.svc.cluster.local"),),
        destination_rules=(dr("back", "back.shop.svc.cluster.local", ns="shop"),),
        sidecars=(sidecar("s", "default", "./front.default.svc.cluster.local"),),
    )
    view = check(config, me())
    assert names(view.service_entries) == ["default/front", "shop/back"]
    assert names(view.destination_rules) == ["shop/back"]


def test_first_definition_of_a_host_still_wins() -> None:
    # "shared" is defined first in shop (out of scope) and again in default (in scope): the
    # whole mesh resolves it to shop's entry, so the view must keep that one too
    host = "shared.example.com"
    config = m.MeshConfig(
        service_entries=(se("first", host, ns="shop"), se("second", host, "own.example.com")),
        sidecars=(sidecar("s", "default", "./own.example.com"),),
    )
    assert names(check(config, me()).service_entries) == ["shop/first", "default/second"]


def test_workload_entries_only_in_the_selecting_service_namespace() -> None:
    config = m.MeshConfig(
        service_entries=(se("a", selector={"app": "a"}),),
        workload_entries=(we("here", app="a"), we("there", ns="shop", app="a")),
    )
    assert names(check(config, me()).workload_entries) == ["default/here"]


def test_view_key_groups_equal_proxies() -> None:
    assert view_key(me(app="a", v="1")) == view_key(ProxyIdentity(workload="x", namespace="default", labels={"v": "1", "app": "a"}))
    assert view_key(me(app="a")) != view_key(me("shop", app="a"))


@pytest.mark.parametrize("ns", ["default", "shop", "ops"])
def test_the_api_sample_configuration(ns) -> None:
    from pathlib import Path

    from pymesh.api.load import load_paths

    config = load_paths([str(Path(__file__).parent.parent / "api" / "data")]).config
    for labels in ({}, {"app": "ratings"}):
        check(config, me(ns, **labels))


def test_authorization_policies_of_the_namespace_and_the_root_are_sent() -> None:
    def policy(name: str, ns: str) -> m.AuthorizationPolicy:
        return m.AuthorizationPolicy(meta(name, ns), selector={"app": "a"}, rules=(m.AuthzRule(),))

    config = m.MeshConfig(authorization_policies=(policy("mine", "default"), policy("mesh", "istio-system"),
                                                  policy("theirs", "shop")))
    view = proxy_view(config, me(app="a"))
    assert names(view.authorization_policies) == ["default/mine", "istio-system/mesh"]
    assert compile_snapshot(view, me(app="a"), "1").authz.names == ["default/mine", "istio-system/mesh"]


def test_a_gateway_is_sent_its_gateways_and_the_virtual_services_bound_to_them() -> None:
    """A router (`pymesh gateway`) has no Sidecar: every service exported to its namespace, the
    Gateways selecting it, and only VirtualServices bound to one of those."""
    router = ProxyIdentity(workload="gw", namespace="istio-system", labels={"istio": "ingressgateway"}, kind="router")
    server = m.GatewayServer(port=m.ServicePort(80, "HTTP", "http"), hosts=("*",))
    mine = m.Gateway(meta("edge", "default"), servers=(server,), selector={"istio": "ingressgateway"})
    other = m.Gateway(meta("other", "default"), servers=(server,), selector={"istio": "egressgateway"})
    bound = m.VirtualService(meta("bound"), hosts=("a.example.com",), gateways=("edge",),
                             http=(m.HTTPRoute(route=(m.HTTPRouteDestination(m.Destination("a")),)),))
    elsewhere = m.VirtualService(meta("elsewhere"), hosts=("b.example.com",), gateways=("other",),
                                 http=(m.HTTPRoute(route=(m.HTTPRouteDestination(m.Destination("b")),)),))
    private = se("c", export_to=(".",))
    config = m.MeshConfig(
        service_entries=(se("a"), se("b", ns="prod"), private),
        virtual_services=(bound, elsewhere, vs("mesh", "a.default.svc.cluster.local")),
        destination_rules=(dr("a", "a"),),
        sidecars=(sidecar("narrow", "istio-system", "./*"),),  # a gateway has none: not applied
        gateways=(mine, other),
    )
    view = check(config, router)
    assert names(view.gateways) == ["default/edge"]
    assert names(view.virtual_services) == ["default/bound"]
    assert names(view.service_entries) == ["default/a", "prod/b"]
    assert view.sidecars == ()
    assert view_key(router) != view_key(ProxyIdentity(workload="gw", namespace="istio-system",
                                                      labels={"istio": "ingressgateway"}))
