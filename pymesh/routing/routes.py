"""VirtualServices -> per-port route tables and TCP routes.

A route table is built per listener port: a port is fixed for a listener, so `match.port`, the
default destination port and which hosts are bound there are settled here, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from pymesh.api import model
from pymesh.http.message import HOP_BY_HOP
from pymesh.policy.fault import FaultPolicy, per_million
from pymesh.routing.cors import CompiledCors
from pymesh.routing.clusters import outbound_name
from pymesh.routing.hosts import domains_for, host_matches
from pymesh.routing.match import CompiledRoute, CompiledRouteTable, VirtualHost
from pymesh.routing.ratelimits import NONE as NO_RATE_LIMITS, RateLimits
from pymesh.routing.registry import Service, ServiceIndex
from pymesh.routing.scope import EgressScope, selects
from pymesh.routing.sni import SniChain, SniTable
from pymesh.routing.snapshot import NO_RETRIES, Cluster, HeaderOps, MirrorPolicy, Route, TcpRoute, WeightedCluster

_NO_HEADERS = HeaderOps()


def header_ops(ops: model.HeaderOperations, where: str, warnings: list[str]) -> HeaderOps:
    """Compiled header operations. Hop-by-hop and framing headers (Connection, Content-Length,
    Transfer-Encoding, Upgrade, ...) belong to each side's codec, which writes its own: an
    operation on one is dropped, with a warning (`pymesh analyze` prints it), since honouring it
    could make the proxy and its peer disagree about where a message ends."""
    if not (ops.set or ops.add or ops.remove):
        return _NO_HEADERS
    names = [k.lower() for k in (*ops.set, *ops.add, *ops.remove)]
    for name in sorted({n for n in names if n.encode("latin-1") in HOP_BY_HOP}):
        warnings.append(f"{where}: header operation on {name!r} ignored: the proxy writes that header itself")
    return HeaderOps(
        set=tuple((k.lower(), v) for k, v in ops.set.items() if not _codec_owned(k)),
        add=tuple((k.lower(), v) for k, v in ops.add.items() if not _codec_owned(k)),
        remove=tuple(k.lower() for k in ops.remove if not _codec_owned(k)),
    )


def _codec_owned(name: str) -> bool:
    return name.lower().encode("latin-1") in HOP_BY_HOP


@dataclass
class RouteContext:
    """What route compilation reads, and the warnings it leaves for analyze and /config_dump."""

    namespace: str  # the proxy's
    labels: Mapping[str, str]  # the proxy's (TCP sourceLabels are decided at compile time)
    services: ServiceIndex
    clusters: Mapping[str, Cluster]
    virtual_services: tuple[model.VirtualService, ...]  # those exported to the proxy
    warnings: list[str] = field(default_factory=list)
    rate_limits: RateLimits = NO_RATE_LIMITS
    # the Sidecar's egressProxy route: every outbound route table ends with a "*" virtual host to
    # it, as Istio's catch-all (allow_any) virtual host; None: no such host (passthrough is the
    # proxy's, for captured traffic)
    catch_all: Route | None = None

    def bound_hosts(self, vs: model.VirtualService, port: int, scope: EgressScope) -> list[str]:
        """The VS's hosts visible through `scope` that can be reached on `port`: a registered
        service must have that port, except on port 80, where Istio binds a VS host whatever
        its service's ports (route.buildSidecarVirtualHostsForVirtualService: a host with no
        service on the listener's port gets port 80, so `curl http://<a 443-only service>`
        reaches a VS route `match: port: 80`, as the egress gateway mTLS task does); wildcards
        and unregistered names are bound everywhere."""
        ns = vs.metadata.namespace
        out = []
        for written in vs.hosts:
            host = self.services.canonical(written, ns)
            svc = self.services.find(host, ns)
            if scope.allows(ns, host) and (svc is None or port == 80 or svc.port(port) is not None):
                out.append(host)
        return out

    def visible_services(self, port: int, scope: EgressScope) -> list[Service]:
        return [s for s in self.services.services if s.port(port) is not None and scope.allows(s.namespace, s.host)]

    # --- destinations ---------------------------------------------------------------------

    def cluster_for(self, vs: model.VirtualService, dest: model.Destination, port: int) -> str:
        """The cluster a destination names; a missing one still gets its name (the proxy answers
        503 for it, like Envoy's "cluster not found") and a warning."""
        ns = vs.metadata.namespace
        svc = self.services.find(dest.host, ns)
        host = svc.host if svc else self.services.canonical(dest.host, ns)
        if dest.port is not None:
            dest_port = dest.port
        elif svc is not None and len(svc.ports) == 1:
            dest_port = svc.ports[0].number
        else:
            dest_port = port
        name = outbound_name(dest_port, dest.subset, host)
        if name not in self.clusters:
            if svc is None:
                why = f"host {host} is not a known service"
            elif svc.port(dest_port) is None:
                why = f"service {host} has no port {dest_port}"
            else:
                why = f"no DestinationRule subset {dest.subset!r} for {host}"
            self.warnings.append(f"VirtualService {ns}/{vs.metadata.name}: destination {name}: {why}")
        return name

    def weighted(self, vs: model.VirtualService, dests: Iterable, port: int) -> tuple[tuple[WeightedCluster, ...], int]:
        """HTTPRouteDestination or RouteDestination list -> clusters and their total weight; a lone
        destination without a weight takes all traffic (weight 100), as in Istio."""
        dests = tuple(dests)
        out = []
        for d in dests:
            headers = getattr(d, "headers", None)
            weight = d.weight or (100 if len(dests) == 1 else 0)
            out.append(
                WeightedCluster(
                    cluster=self.cluster_for(vs, d.destination, port),
                    weight=weight,
                    request_headers=self.header_ops(headers.request, vs) if headers else _NO_HEADERS,
                    response_headers=self.header_ops(headers.response, vs) if headers else _NO_HEADERS,
                )
            )
        return tuple(out), sum(wc.weight for wc in out)

    def mirror_policies(self, vs: model.VirtualService, policies: Iterable[model.HTTPMirrorPolicy],
                        port: int) -> tuple[MirrorPolicy, ...]:
        """Mirror destinations name clusters as route destinations do; a 0% mirror is left out
        (Istio writes none). Only forwarding routes mirror: Envoy has no mirror on a redirect
        or a direct response."""
        compiled = (MirrorPolicy(self.cluster_for(vs, p.destination, port), per_million(p.percentage)) for p in policies)
        return tuple(m for m in compiled if m.per_million > 0)

    def header_ops(self, ops: model.HeaderOperations, vs: model.VirtualService) -> HeaderOps:
        return header_ops(ops, f"VirtualService {vs.metadata.namespace}/{vs.metadata.name}", self.warnings)

    def hash_policy(self, clusters: tuple[WeightedCluster, ...]) -> model.ConsistentHash | None:
        """The DestinationRule's consistentHash when every destination cluster agrees on one."""
        policies = {c.load_balancer.consistent_hash if (c := self.clusters.get(wc.cluster)) else None for wc in clusters}
        return policies.pop() if len(policies) == 1 else None

    # --- HTTP -----------------------------------------------------------------------------

    def http_routes(self, vs: model.VirtualService, port: int) -> list[CompiledRoute]:
        vs_name = f"{vs.metadata.namespace}/{vs.metadata.name}"
        # Istio marks the VirtualServices it writes for Gateway API routes (pymesh.routing.gateway_api)
        missing_status = 500 if vs.metadata.annotations.get("internal.istio.io/route-semantics") == "gateway" else 503
        out = []
        for r in vs.http:
            clusters, total = self.weighted(vs, r.route, port) if r.route else ((), 0)
            route = Route(
                name=r.name,
                virtual_service=vs_name,
                clusters=clusters,
                total_weight=total,
                redirect=r.redirect,
                direct_response=r.direct_response,
                rewrite=r.rewrite,
                timeout=r.timeout,
                retries=r.retries,
                request_headers=self.header_ops(r.headers.request, vs),
                response_headers=self.header_ops(r.headers.response, vs),
                hash_policy=self.hash_policy(clusters),
                fault=FaultPolicy.from_model(r.fault) if r.fault else None,
                cors=CompiledCors.from_model(r.cors_policy) if r.cors_policy else None,
                rate_limit=self.rate_limits.for_route(r.name, "OUTBOUND"),
                mirrors=self.mirror_policies(vs, r.mirrors, port) if r.route else (),
                uri_matches=tuple((m.uri.kind, m.uri.value) if m.uri is not None else ("", "") for m in r.match),
                missing_cluster_status=missing_status,
            )
            compiled = CompiledRoute.build(route, r.match, port)
            if compiled is not None:
                out.append(compiled)
        return out

    def default_route(self, host: str, port: int) -> CompiledRoute:
        clusters = (WeightedCluster(cluster=outbound_name(port, "", host), weight=100),)
        route = Route(name="default", virtual_service="", clusters=clusters, total_weight=100, hash_policy=self.hash_policy(clusters),
                      rate_limit=self.rate_limits.for_route("default", "OUTBOUND"))
        return CompiledRoute(route=route, matches=(), matchers=())

    def domains(self, host: str, port: int) -> tuple[str, ...]:
        """The host's names, plus its service's virtual IPs: a client that calls the address
        (Host: 198.18.0.5:8080), captured by iptables, reaches the service's routes, as in Istio."""
        svc = self.services.find(host, self.namespace)
        addresses = svc.addresses if svc is not None else ()
        return domains_for(host, port, self.namespace) + tuple(
            domain for address in addresses for domain in (address, f"{address}:{port}")
        )

    def route_table(self, port: int, scope: EgressScope) -> CompiledRouteTable:
        """Virtual hosts for the VirtualServices bound to `port` (several for one host merge in
        file order), then one default virtual host per service on `port` that no VS host covers."""
        routes_by_host: dict[str, list[CompiledRoute]] = {}
        for vs in self.virtual_services:
            hosts = self.bound_hosts(vs, port, scope) if vs.http else []
            routes = self.http_routes(vs, port) if hosts else []
            if routes:  # a VS whose routes all name other ports leaves the default route in place
                for host in hosts:
                    routes_by_host.setdefault(host, []).extend(routes)
        vs_hosts = list(routes_by_host)
        for svc in self.visible_services(port, scope):
            if not any(host_matches(h, svc.host) for h in vs_hosts):
                routes_by_host[svc.host] = [self.default_route(svc.host, port)]
        hosts = [VirtualHost(name=f"{host}:{port}", domains=self.domains(host, port), routes=tuple(routes))
                 for host, routes in routes_by_host.items()]
        if self.catch_all is not None:
            hosts.append(VirtualHost(name=self.catch_all.name, domains=("*",),
                                     routes=(CompiledRoute(route=self.catch_all, matches=(), matchers=()),)))
        return CompiledRouteTable(port, hosts)

    # --- TCP ------------------------------------------------------------------------------

    def l4_applies(self, vs: model.VirtualService, m: model.L4MatchAttributes, port: int) -> bool:
        if m.destination_subnets:  # a dedicated listener has no destination address to test
            self.warnings.append(f"VirtualService {vs.metadata.namespace}/{vs.metadata.name}: tcp match destinationSubnets is not supported; match skipped")
            return False
        return (m.port is None or m.port == port) and selects(m.source_labels, self.labels)

    def tcp_route(self, port: int, scope: EgressScope) -> TcpRoute | None:
        """The first VS tcp route that applies on `port` (no match list: always); else the one
        service on that port. With several services and no VS the listener cannot tell them apart
        (no destination address here), so it gets no route and a warning."""
        for vs in self.virtual_services:
            if not vs.tcp or not self.bound_hosts(vs, port, scope):
                continue
            for tr in vs.tcp:
                if not tr.match or any(self.l4_applies(vs, m, port) for m in tr.match):
                    clusters, total = self.weighted(vs, tr.route, port)
                    return TcpRoute(clusters=clusters, total_weight=total)
        services = self.visible_services(port, scope)
        if len(services) == 1:
            return self.service_tcp_route(services[0], port)
        if services:
            hosts = ", ".join(s.host for s in services)
            self.warnings.append(f"TCP port {port}: several services ({hosts}) and no VirtualService tcp route; no route")
        return None


    # --- TLS passthrough -------------------------------------------------------------------

    def sni_table(self, port: int, scope: EgressScope, tls_port: bool) -> SniTable | None:
        """The SNI chains on `port`, as Istio builds a sidecar's outbound TLS filter chains: each
        VirtualService tls match that applies here, the first of identical (sniHosts,
        destinationSubnets) pairs winning; on a TLS/HTTPS port also, for each service no such
        VirtualService covers, a chain by its host name (and one by its addresses, which a
        captured connection's destination can match). None when nothing routes by SNI."""
        chains, routed = self._virtual_service_tls_chains(port, scope, tls_port)
        if tls_port:
            for vs in self.virtual_services:
                if vs.tcp and self.bound_hosts(vs, port, scope):
                    self.warnings.append(f"VirtualService {vs.metadata.namespace}/{vs.metadata.name}: tcp routes do not "
                                         f"apply on TLS port {port} (TLS is routed by tls routes, as in Istio)")
            for svc in self.visible_services(port, scope):
                if any(host_matches(h, svc.host) for h in routed):
                    continue
                route = self.service_tcp_route(svc, port)
                if svc.addresses:
                    chains.append(SniChain((), svc.addresses, route))
                chains.append(SniChain((svc.host,), (), route))
        return SniTable(tuple(chains)) if chains else None

    def _virtual_service_tls_chains(self, port: int, scope: EgressScope, tls_port: bool) -> tuple[list[SniChain], list[str]]:
        """The chains of the tls matches that apply on `port`, and the VS hosts they cover."""
        chains: list[SniChain] = []
        seen: set[tuple] = set()
        routed: list[str] = []
        for vs in self.virtual_services:
            hosts = self.bound_hosts(vs, port, scope) if vs.tls else []
            if not hosts:
                continue
            # On a TCP port (pymesh's extension: Istio reads the hello on TLS ports only) a match
            # must name the port or the VS a service on it, so a wildcard VS does not make every
            # TCP port wait for a ClientHello.
            on_port = tls_port or any(self.services.find(h, vs.metadata.namespace) is not None for h in hosts)
            for tr in vs.tls:
                for m in tr.match:
                    if not self._tls_match_applies(m, port, on_port):
                        continue
                    routed.extend(hosts)
                    key = (m.sni_hosts, m.destination_subnets)
                    if key not in seen:
                        seen.add(key)
                        clusters, total = self.weighted(vs, tr.route, port)
                        chains.append(SniChain(m.sni_hosts, m.destination_subnets, TcpRoute(clusters, total),
                                               f"{vs.metadata.namespace}/{vs.metadata.name}"))
        return chains, routed

    def _tls_match_applies(self, m: model.TLSMatchAttributes, port: int, on_port: bool) -> bool:
        """Istio's matchTLS (port, sourceLabels, sourceNamespace), decided for this proxy."""
        port_ok = m.port == port if m.port is not None else on_port
        return port_ok and selects(m.source_labels, self.labels) and m.source_namespace in ("", self.namespace)

    def service_tcp_route(self, svc: Service, port: int) -> TcpRoute:
        return TcpRoute(clusters=(WeightedCluster(cluster=outbound_name(port, "", svc.host), weight=100),), total_weight=100)


# Istio's inbound routes carry no retry policy (BuildDefaultHTTPInboundRoute; only outbound routes
# get retry.DefaultPolicy()): the caller's sidecar retries, the app's answer passes through once


def inbound_route_table(port: int, cluster: str, rate_limits: RateLimits = NO_RATE_LIMITS) -> CompiledRouteTable:
    """Inbound traffic goes to the local app whatever its authority, never retried; no
    VirtualService applies (a LocalRateLimit may: its rules name the route by its cluster, or
    name none)."""
    route = Route(name=cluster, virtual_service="", clusters=(WeightedCluster(cluster=cluster, weight=100),), total_weight=100,
                  retries=NO_RETRIES, rate_limit=rate_limits.for_route(cluster, "INBOUND"))
    vh = VirtualHost(name=f"inbound|{port}", domains=("*",), routes=(CompiledRoute(route=route, matches=(), matchers=()),))
    return CompiledRouteTable(port, (vh,))
