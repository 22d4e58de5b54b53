"""Short builders for routing tests: config as model objects, a request view, a compile call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from pymesh.api import model as m
from pymesh.routing.compile import compile_snapshot
from pymesh.routing.snapshot import ProxyIdentity, Snapshot


@dataclass
class Req:
    """The test's RequestView (the proxy has its own)."""

    path: str = "/"
    authority: str = "reviews"
    method: str = "GET"
    scheme: str = "http"
    port: int = 9080  # the listener it arrives on: which route table route_of asks
    headers: Mapping[str, str] = field(default_factory=dict)
    source_labels: Mapping[str, str] = field(default_factory=dict)


def meta(name: str, ns: str = "default") -> m.Metadata:
    return m.Metadata(name=name, namespace=ns)


def ep(address: str, ports: Mapping[str, int] | None = None, **labels: str) -> m.WorkloadEntrySpec:
    return m.WorkloadEntrySpec(address=address, ports=ports or {}, labels=labels)


def se(host: str, *ports: m.ServicePort, ns: str = "default", endpoints=(), name: str = "", **kw) -> m.ServiceEntry:
    ports = ports or (m.ServicePort(9080, "HTTP", "http"),)
    return m.ServiceEntry(meta(name or host.split(".")[0], ns), hosts=(host,), ports=ports, endpoints=tuple(endpoints), **kw)


def dest(host: str, subset: str = "", weight: int = 0, port: int | None = None) -> m.HTTPRouteDestination:
    return m.HTTPRouteDestination(destination=m.Destination(host=host, subset=subset, port=port), weight=weight)


def http(*dests: m.HTTPRouteDestination, match=(), **kw) -> m.HTTPRoute:
    return m.HTTPRoute(match=tuple(match), route=dests, **kw)


def vs(name: str, hosts, *routes: m.HTTPRoute, ns: str = "default", tcp=(), **kw) -> m.VirtualService:
    hosts = (hosts,) if isinstance(hosts, str) else tuple(hosts)
    return m.VirtualService(meta(name, ns), hosts=hosts, http=routes, tcp=tuple(tcp), **kw)


def compile_(
    services=(), virtual_services=(), rules=(), sidecars=(), workloads=(), ns: str = "default", labels=None
) -> Snapshot:
    config = m.MeshConfig(
        service_entries=tuple(services),
        workload_entries=tuple(workloads),
        virtual_services=tuple(virtual_services),
        destination_rules=tuple(rules),
        sidecars=tuple(sidecars),
    )
    return compile_snapshot(config, ProxyIdentity(workload="me", namespace=ns, labels=labels or {}), "v1")


def route_of(snapshot: Snapshot, req: Req):
    """The route (or None) a request gets through the captured-outbound listener for its port."""
    found = snapshot.captured_outbound[req.port].route_table.match(req)
    return found and found[0]


def cluster_of(snapshot: Snapshot, req: Req) -> str | None:
    route = route_of(snapshot, req)
    return route.clusters[0].cluster if route else None
