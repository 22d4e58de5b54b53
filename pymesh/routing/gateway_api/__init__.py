"""The Gateway API translated into Istio's model, as Istio does it (pure: config in, config out).

`translate(config)` turns Gateway API Gateways into Istio Gateways (one per listener, selecting
the gateway proxies labelled gateway.networking.k8s.io/gateway-name=<name>) and HTTPRoutes,
GRPCRoutes, TCPRoutes and TLSRoutes into VirtualServices (http, tcp and tls routes): bound to
those Gateways for a Gateway parent, to `mesh` for a Service parent (GAMMA), one per parent and
host, holding the matches of every route attached there in the Gateway API's precedence order. It also computes each object's status conditions.
`apply(config)` is the configuration with the translation merged in and the Gateway API
resources removed: what the routing compiles, the same route tables as Istio's own resources.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

from pymesh.api import model
from pymesh.routing.gateway_api import conditions as c
from pymesh.routing.gateway_api.grants import Grants
from pymesh.routing.gateway_api.parents import GATEWAY_GROUP, GATEWAY_NAME_LABEL, Gateways, Listener
from pymesh.routing.gateway_api.rules import (
    L4_KINDS, RuleContext, Translated, service_host, translate_l4_rule, translate_rule,
)

__all__ = ["GATEWAY_NAME_LABEL", "ROUTE_SEMANTICS", "Translation", "apply", "by_age", "has_gateway_api", "translate"]

# Istio's marker on the VirtualServices it writes for Gateway API routes: the routing gives
# them the Gateway API's semantics where Istio's differ (a missing backend is a 500, not a 503).
ROUTE_SEMANTICS = ("internal.istio.io/route-semantics", "gateway")


@dataclass(frozen=True)
class Translation:
    gateways: tuple[model.Gateway, ...]
    virtual_services: tuple[model.VirtualService, ...]
    statuses: tuple[c.ObjectStatus, ...]


def has_gateway_api(config: model.MeshConfig) -> bool:
    return bool(config.kubernetes_gateways or config.http_routes or config.grpc_routes or config.tcp_routes
                or config.tls_routes or config.gateway_classes or config.reference_grants)


def apply(config: model.MeshConfig, translation: Translation | None = None) -> model.MeshConfig:
    """`config` with its Gateway API resources replaced by their translation (`translation`,
    when the caller has it already). The same object when it has none, so a mesh without them
    pays nothing."""
    if not has_gateway_api(config):
        return config
    t = translation or translate(config)
    return replace(config, gateways=config.gateways + t.gateways,
                   virtual_services=by_age(config.virtual_services + t.virtual_services),
                   gateway_classes=(), kubernetes_gateways=(), http_routes=(), grpc_routes=(), tcp_routes=(),
                   tls_routes=(), reference_grants=())


def by_age(resources: tuple) -> tuple:
    """Oldest first by creationTimestamp, as Istio merges the VirtualServices of one host (its
    translations carry their routes' age); those without one keep their order, after."""
    return tuple(sorted(resources, key=lambda r: (r.metadata.creation_timestamp is None,
                                                   r.metadata.creation_timestamp or 0.0)))


def translate(config: model.MeshConfig) -> Translation:
    grants = Grants(config.reference_grants)
    gateways = Gateways(config, grants)
    services = frozenset(h.lower() for se in config.service_entries for h in se.hosts)
    merged = _Merged()
    attached: dict[tuple[str, str, str], int] = {}
    statuses = []
    for route in config.http_routes + config.grpc_routes + config.tcp_routes + config.tls_routes:
        problems = c.Problems()
        ctx = RuleContext(route, grants, services, problems)
        if route.kind in L4_KINDS:
            translated: list = [translate_l4_rule(ctx, rule) for rule in route.rules]
        else:
            translated = [t for i, rule in enumerate(route.rules) for t in translate_rule(ctx, rule, i)]
        parents = []
        for ref in route.parent_refs:
            status = _attach(route, ref, gateways, services, translated, merged, attached)
            if status is not None:
                parents.append(c.ParentStatus(status[0], (status[1], problems.condition())))
        if parents:
            statuses.append(c.ObjectStatus(route.kind, route.metadata.namespace, route.metadata.name, parents=tuple(parents)))
    return Translation(tuple(gateways.istio), merged.virtual_services(), tuple(gateways.status(attached) + statuses))


def _attach(route: model.KubernetesRoute, ref: model.ObjectReference, gateways: Gateways, services: frozenset[str],
            translated: list, merged: _Merged, attached: dict) -> tuple[str, c.Condition] | None:
    """Bind the route's translated rules to one parent; its Accepted condition (None: a parent
    that is not pymesh's, which it leaves alone, as Istio does)."""
    namespace = ref.namespace or route.metadata.namespace
    label = parent_label(ref, namespace)
    if (ref.group, ref.kind) == ("", "Service"):
        host = service_host(ref.name, namespace)
        if host not in services:
            return label, c.Condition(c.ACCEPTED, False, c.NO_MATCHING_PARENT, f"parent service {host} not found")
        if route.kind == "TLSRoute":
            return label, c.Condition(c.ACCEPTED, False, c.UNSUPPORTED_VALUE, "a TLSRoute on a Service is not supported yet")
        routes = translated if ref.port is None or route.kind in L4_KINDS else [_with_port(t, ref.port) for t in translated]
        merged.add(("mesh", route.metadata.namespace, host, _family(route)), host, routes, route,
                   mesh_service_namespace=namespace, port=ref.port)
        return label, c.ok(c.ACCEPTED, "Route was valid")
    if (ref.group, ref.kind) != (GATEWAY_GROUP, "Gateway"):
        return None
    if (namespace, ref.name) not in gateways.gateways:
        return None  # not one of ours (another class), or no such Gateway
    listeners = gateways.listeners[(namespace, ref.name)]
    candidates = [l for l in listeners if (not ref.section_name or l.spec.name == ref.section_name)
                  and (ref.port is None or l.spec.port == ref.port)]
    if not candidates:
        what = f"sectionName {ref.section_name!r}" if ref.section_name else f"port {ref.port}"
        return label, c.Condition(c.ACCEPTED, False, c.NO_MATCHING_PARENT, f"{what} not found")
    allowed = [l for l in candidates if l.admits_namespace(route.metadata.namespace) and route.kind in l.kinds]
    if not allowed:
        selector = any(l.spec.allowed_namespaces.source == "Selector" for l in candidates)
        why = (" (allowedRoutes from Selector: pymesh knows a namespace's kubernetes.io/metadata.name label only)"
               if selector else "")
        return label, c.Condition(c.ACCEPTED, False, c.NOT_ALLOWED_BY_LISTENERS,
                                  f"no listener allows a {route.kind} from namespace {route.metadata.namespace}{why}")
    bound = 0
    for listener in allowed:
        hosts = listener.hostnames(route.hostnames)
        if hosts:
            bound += 1
            key = (namespace, ref.name, listener.spec.name)
            attached[key] = attached.get(key, 0) + 1
            for host in hosts:
                merged.add(("gateway", listener.istio_name, host, _family(route)), host, translated, route,
                           listener=listener, port=listener.spec.port)
    if not bound:
        return label, c.Condition(c.ACCEPTED, False, c.NO_MATCHING_LISTENER_HOSTNAME,
                                  "no hostnames matched the parent's listeners")
    return label, c.ok(c.ACCEPTED, "Route was valid")


def parent_label(ref: model.ObjectReference, namespace: str) -> str:
    label = f"{ref.kind} {namespace}/{ref.name}"
    if ref.section_name:
        label += f"/{ref.section_name}"
    return label + (f":{ref.port}" if ref.port else "")


def _family(route: model.KubernetesRoute) -> str:
    """Which VirtualService routes a route kind becomes: http (HTTPRoute, GRPCRoute), tcp or tls."""
    return {"TCPRoute": "tcp", "TLSRoute": "tls"}.get(route.kind, "http")


def _with_port(t: Translated, port: int) -> Translated:
    matches = tuple(replace(m, port=port) for m in t.route.match) or (model.HTTPMatchRequest(port=port),)
    return replace(t, route=replace(t.route, match=matches))


class _Merged:
    """Routes gathered per (parent, host): one VirtualService each, in precedence order."""

    def __init__(self) -> None:
        self._groups: dict[tuple, dict] = {}

    def add(self, key: tuple, host: str, routes: Iterable, route: model.KubernetesRoute, *,
            listener: Listener | None = None, mesh_service_namespace: str = "", port: int | None = None) -> None:
        group = self._groups.setdefault(key, {"host": host, "routes": [], "source": route.metadata.source,
                                              "listener": listener, "service_ns": mesh_service_namespace,
                                              "route_ns": route.metadata.namespace, "created": None, "port": port})
        group["routes"].extend(routes)
        created = route.metadata.creation_timestamp
        if created is not None and (group["created"] is None or created < group["created"]):
            group["created"] = created  # the oldest route's age: where Istio orders the merged routes

    def virtual_services(self) -> tuple[model.VirtualService, ...]:
        out = []
        # a consumer namespace's mesh routes come before the producer's for the same host
        for key, g in sorted(self._groups.items(), key=lambda item: item[0][0] == "mesh" and item[1]["route_ns"] == item[1]["service_ns"]):
            host = g["host"]
            routes = _routes(key[-1], g["routes"], host, g["port"])
            if key[0] == "gateway":
                listener: Listener = g["listener"]
                namespace, name = listener.namespace, f"{listener.istio_name.split('/', 1)[1]}-{_slug(host)}"
                gateways, export_to = (listener.istio_name,), ("*",)
            else:
                namespace = g["route_ns"]
                name = f"{_slug(host)}-mesh-{SUFFIX_MESH}"
                gateways = ("mesh",)
                export_to = ("*",) if namespace == g["service_ns"] else (".",)
            metadata = model.Metadata(name=name, namespace=namespace, source=g["source"],
                                      annotations=dict((ROUTE_SEMANTICS,)), creation_timestamp=g["created"])
            out.append(model.VirtualService(metadata=metadata, hosts=(host,), gateways=gateways, export_to=export_to,
                                            **routes))
        return tuple(out)


def _routes(family: str, gathered: list, host: str, port: int | None) -> dict:
    """The VirtualService's http routes in precedence order, or its tcp or tls routes (each
    rule's, in order; the listener's or parentRef's port, and for TLS the host as the SNI)."""
    if family == "http":
        return {"http": tuple(t.route for t in sorted(gathered, key=lambda t: t.key))}
    if family == "tcp":
        return {"tcp": tuple(model.TCPRoute(match=(model.L4MatchAttributes(port=port),) if port else (),
                                            route=r.destinations) for r in gathered)}
    return {"tls": tuple(model.TLSRoute(match=(model.TLSMatchAttributes(sni_hosts=(host,), port=port),),
                                        route=r.destinations) for r in gathered)}


SUFFIX_MESH = "istio-autogenerated-k8s-mesh"


def _slug(host: str) -> str:
    return host.replace("*", "wildcard")
