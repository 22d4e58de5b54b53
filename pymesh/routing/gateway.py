"""A gateway proxy's snapshot (Istio's "router" node): the Gateways whose selector picks it,
their servers merged per port into listeners, and the VirtualServices bound to them.

What a port becomes, as Istio's gateway listener builder decides:
- HTTP, HTTP2, GRPC servers: one route table for the port, a virtual host per VirtualService
  host that intersects a server host (wildcards narrowed to the narrower of the two), only
  VirtualServices bound to that server's Gateway and allowed by its `namespace/` prefix; no
  implicit routes (an unknown host gets 404 NR); `tls.httpsRedirect` answers 301 to https;
- TCP (and MONGO, REDIS, MYSQL) servers: the first bound VirtualService `tcp` route;
- TLS/HTTPS servers with PASSTHROUGH: the bound VirtualService `tls` routes by SNI; with
  AUTO_PASSTHROUGH: the SNI names a cluster, `outbound_.<port>_.<subset>_.<host>`;
- TLS/HTTPS servers that terminate (SIMPLE, MUTUAL, ISTIO_MUTUAL, OPTIONAL_MUTUAL): one
  TlsServerChain each, with the route table (HTTPS) or TCP route (TLS) run after the handshake.
Every service exported to the gateway's namespace has its clusters (no Sidecar scoping).
A gateway server port listens on the targetPort of the gateway's own service for that port
(a ServiceEntry in its namespace selecting it), as Istio's gateways listen on their Service's
targetPort; otherwise on the port number.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pymesh.api import model
from pymesh.api.gateway import CIPHER_SUITES, HTTP_PROTOCOLS, MESH, TLS_PORT_PROTOCOLS
from pymesh.routing.authn import providers_for
from pymesh.routing.binding import bind, bound_gateways, gateway_key
from pymesh.routing.clusters import RuleIndex, outbound_clusters
from pymesh.routing.hosts import host_matches
from pymesh.routing.match import CompiledRoute, CompiledRouteTable, VirtualHost
from pymesh.routing.peer_authn import compose as compose_peer_authn
from pymesh.routing.proxy_config import effective as effective_proxy_config
from pymesh.routing.ratelimits import RateLimits
from pymesh.routing.registry import ServiceIndex
from pymesh.routing.routes import RouteContext
from pymesh.routing.scope import exported_to, selects
from pymesh.routing.sni import SniChain, SniTable
from pymesh.routing.telemetry import compile_telemetry
from pymesh.routing.snapshot import Listener, ProxyIdentity, Route, ServerTls, Snapshot, TcpRoute, TlsServerChain
from pymesh.routing.snapshot import WeightedCluster
from pymesh.security.authz import compile_authorizer

PASSTHROUGH_KINDS = frozenset({"passthrough", "auto"})
HTTPS_REDIRECT = model.HTTPRedirect(scheme="https", redirect_code=301)


@dataclass(frozen=True)
class BoundServer:
    """One Gateway server, with the Gateway it belongs to."""

    gateway: model.Gateway
    server: model.GatewayServer

    @property
    def key(self) -> str:
        return gateway_key(self.gateway)

    @property
    def protocol(self) -> str:
        return self.server.port.protocol

    @property
    def kind(self) -> str:
        """"http", "tcp", "passthrough", "auto" or "terminate": what the port does with it."""
        tls = self.server.tls
        if self.protocol in TLS_PORT_PROTOCOLS:
            if tls is None or tls.mode == "PASSTHROUGH":
                return "passthrough"
            return "auto" if tls.mode == "AUTO_PASSTHROUGH" else "terminate"
        return "http" if self.protocol in HTTP_PROTOCOLS else "tcp"

    def hosts(self) -> list[tuple[str, str]]:
        """(namespace or "*", dnsName) per server host; "." is the Gateway's namespace."""
        out = []
        for written in self.server.hosts:
            ns, slash, dns = written.partition("/")
            if not slash:
                ns, dns = "*", written
            out.append((self.gateway.metadata.namespace if ns == "." else ns, dns.lower()))
        return out

    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(dns for _, dns in self.hosts()))


def intersect(server_host: str, vs_host: str) -> str | None:
    """The names both cover, as one host (Istio's host.Names Intersection): the narrower one."""
    if host_matches(server_host, vs_host):
        return vs_host
    if host_matches(vs_host, server_host):
        return server_host
    return None


def selected_gateways(config: model.MeshConfig, identity: ProxyIdentity) -> tuple[model.Gateway, ...]:
    """The Gateways whose selector matches the proxy's labels, from any namespace (Istio's
    default; an empty selector picks every gateway proxy)."""
    return tuple(g for g in config.gateways if selects(g.selector, identity.labels))


@dataclass
class _Port:
    """The servers of one (bind, port) pair, in the order they were written."""

    bind: str
    number: int
    servers: list[BoundServer] = field(default_factory=list)


class GatewayCompiler:
    """One router snapshot's compilation: the services, clusters and bound VirtualServices are
    worked out once and shared by every port."""

    def __init__(self, config: model.MeshConfig, identity: ProxyIdentity):
        self.config = config
        self.identity = identity
        self.warnings: list[str] = []
        ns = identity.namespace
        services = ServiceIndex.from_config(config, ns, self.warnings)
        self.services = services
        clusters = outbound_clusters(services, RuleIndex(config, services, ns, self.warnings, identity.labels), identity)
        self.clusters = clusters
        exported = tuple(vs for vs in config.virtual_services if exported_to(vs.export_to, vs.metadata.namespace, ns))
        self.exported = exported
        self.ctx = RouteContext(namespace=ns, labels=identity.labels, services=services, clusters=clusters,
                                virtual_services=(), warnings=self.warnings, rate_limits=RateLimits.select(config, identity))
        self.gateways = selected_gateways(config, identity)
        self._bound: dict[str, tuple[model.VirtualService, ...]] = {}

    def bound(self, key: str) -> tuple[model.VirtualService, ...]:
        """The exported VirtualServices bound to the Gateway `key`, as that gateway sees them."""
        found = self._bound.get(key)
        if found is None:
            names = frozenset({key})
            found = self._bound[key] = tuple(b for vs in self.exported if (b := bind(vs, names)) is not None)
        return found

    def hosts_for(self, bs: BoundServer, vs: model.VirtualService) -> list[str]:
        """The VirtualService's hosts the server exposes: each intersection, once."""
        vs_ns = vs.metadata.namespace
        out: list[str] = []
        for ns, dns in bs.hosts():
            if ns != "*" and ns != vs_ns:
                continue
            for written in vs.hosts:
                host = self.services.canonical(written, vs_ns)
                both = intersect(dns, host)
                if both is not None and both not in out:
                    out.append(both)
        return out

    # --- ports ------------------------------------------------------------------------------

    def ports(self) -> list[_Port]:
        ports: dict[tuple[str, int], _Port] = {}
        for gateway in self.gateways:
            for server in gateway.servers:
                if server.bind.startswith("unix://"):
                    self.warnings.append(f"Gateway {gateway_key(gateway)}: server {server.port.name}: bind "
                                         f"{server.bind} (a unix socket) is not supported yet; server ignored")
                    continue
                bind_address = server.bind or self.identity.listen_address or "0.0.0.0"
                port = ports.setdefault((bind_address, server.port.number), _Port(bind_address, server.port.number))
                port.servers.append(BoundServer(gateway, server))
        return list(ports.values())

    def listener(self, port: _Port) -> Listener:
        """Istio's rule for a port shared by servers of different kinds: the first server's
        kind decides (HTTP and TLS cannot share a port); the others are dropped, with a warning."""
        servers = port.servers
        first = servers[0].kind
        family = {"http": {"http"}, "tcp": {"tcp"}}.get(first, {"passthrough", "auto", "terminate"})
        for bs in servers:
            if bs.kind not in family:
                self.warnings.append(f"Gateway {bs.key}: server {bs.server.port.name} ({bs.protocol}) on port "
                                     f"{port.number} conflicts with an earlier {servers[0].protocol} server there; ignored")
        servers = [bs for bs in servers if bs.kind in family]
        listen = self.listen_port(port.number)
        name = f"gateway|{port.bind}|{listen}"
        protocol = servers[0].protocol
        if first == "http":
            return Listener(name, "outbound", port.bind, listen, protocol, route_table=self.route_table(port.number, servers))
        if first == "tcp":
            return Listener(name, "outbound", port.bind, listen, protocol, tcp_route=self.tcp_route(port.number, servers))
        chains = tuple(self.tls_chain(port.number, bs) for bs in servers if bs.kind == "terminate")
        sni = self.sni_table(port.number, [bs for bs in servers if bs.kind in PASSTHROUGH_KINDS])
        return Listener(name, "outbound", port.bind, listen, protocol, sni_routes=sni, tls_servers=chains)

    def listen_port(self, number: int) -> int:
        """The targetPort of the gateway's own service for `number` (a ServiceEntry in the
        gateway's namespace whose workloadSelector picks it), else `number`."""
        for entry in self.config.service_entries:
            if entry.metadata.namespace != self.identity.namespace or not entry.workload_selector:
                continue
            if not selects(entry.workload_selector, self.identity.labels):
                continue
            for p in entry.ports:
                if p.number == number and p.target_port:
                    return p.target_port
        return number

    # --- HTTP -------------------------------------------------------------------------------

    def route_table(self, port: int, servers: list[BoundServer]) -> CompiledRouteTable:
        """Virtual hosts in server order, then VirtualService order; routes of several
        VirtualServices for one host merge in order, as Istio's gateway does."""
        routes: dict[str, list[CompiledRoute]] = {}
        redirect: set[str] = set()
        placed: set[tuple[str, int]] = set()  # (host, VirtualService): once, though two servers expose it
        for bs in servers:
            https_redirect = bs.server.tls is not None and bs.server.tls.https_redirect
            for vs in self.bound(bs.key):
                hosts = [h for h in self.hosts_for(bs, vs) if (h, id(vs)) not in placed] if vs.http else []
                compiled = self.ctx.http_routes(vs, port) if hosts else []
                for host in hosts:
                    placed.add((host, id(vs)))
                    routes.setdefault(host, []).extend(compiled)
                    if https_redirect:
                        redirect.add(host)
            if https_redirect:  # a redirecting server answers for its hosts with no VirtualService too
                for _, dns in bs.hosts():
                    routes.setdefault(dns, [])
                    redirect.add(dns)
        return CompiledRouteTable(port, (
            VirtualHost(name=f"{host}:{port}", domains=(host,),
                        routes=(_redirect_route(),) if host in redirect else tuple(compiled))
            for host, compiled in routes.items()
        ), strip_any_port=True)

    # --- TCP --------------------------------------------------------------------------------

    def tcp_route(self, port: int, servers: list[BoundServer]) -> TcpRoute | None:
        """The first `tcp` route of a bound VirtualService whose hosts the server exposes and
        whose match applies on this port (Istio's gateway TCP filter chain)."""
        for bs in servers:
            for vs in self.bound(bs.key):
                if not vs.tcp or not self.hosts_for(bs, vs):
                    continue
                for tr in vs.tcp:
                    if not tr.match or any(self.ctx.l4_applies(vs, m, port) for m in tr.match):
                        clusters, total = self.ctx.weighted(vs, tr.route, port)
                        return TcpRoute(clusters=clusters, total_weight=total)
        self.warnings.append(f"gateway port {port}: no VirtualService tcp route is bound; connections are closed")
        return None

    # --- TLS --------------------------------------------------------------------------------

    def sni_table(self, port: int, servers: list[BoundServer]) -> SniTable | None:
        chains: list[SniChain] = []
        for bs in servers:
            chains += self.auto_chains() if bs.kind == "auto" else self.passthrough_chains(port, bs)
        return SniTable(tuple(chains)) if chains else None

    def passthrough_chains(self, port: int, bs: BoundServer) -> list[SniChain]:
        """Each bound `tls` match's sniHosts, narrowed to the server's hosts."""
        chains = []
        for vs in self.bound(bs.key):
            if not vs.tls or not self.hosts_for(bs, vs):
                continue
            for tr in vs.tls:
                for m in tr.match:
                    if m.port is not None and m.port != port:
                        continue
                    names = tuple(dict.fromkeys(both for sni in m.sni_hosts for dns in bs.names()
                                                if (both := intersect(dns, sni)) is not None))
                    if names:
                        clusters, total = self.ctx.weighted(vs, tr.route, port)
                        chains.append(SniChain(names, m.destination_subnets, TcpRoute(clusters, total),
                                               f"{vs.metadata.namespace}/{vs.metadata.name}"))
        return chains

    def auto_chains(self) -> list[SniChain]:
        """AUTO_PASSTHROUGH: SNI `outbound_.<port>_.<subset>_.<host>` reaches that cluster."""
        chains = []
        for cluster in self.clusters.values():
            if cluster.service_host:
                sni = f"outbound_.{cluster.port}_.{cluster.subset}_.{cluster.service_host}"
                route = TcpRoute((WeightedCluster(cluster=cluster.name, weight=100),), 100)
                chains.append(SniChain((sni,), (), route, "AUTO_PASSTHROUGH"))
        return chains

    def tls_chain(self, port: int, bs: BoundServer) -> TlsServerChain:
        tls = bs.server.tls
        assert tls is not None  # a terminating server has TLS settings
        server_tls = ServerTls(tls.mode, self.known_ciphers(bs, tls), bs.gateway.metadata.namespace)
        if bs.protocol == "HTTPS":
            return TlsServerChain(bs.names(), server_tls, bs.protocol, route_table=self.route_table(port, [bs]))
        return TlsServerChain(bs.names(), server_tls, bs.protocol, tcp_route=self.tcp_route(port, [bs]))

    def known_ciphers(self, bs: BoundServer, tls: model.ServerTLSSettings) -> model.ServerTLSSettings:
        """Istio warns about cipher names Envoy does not know and leaves them (and repeats) out."""
        known = tuple(dict.fromkeys(c for c in tls.cipher_suites if c in CIPHER_SUITES))
        for unknown in dict.fromkeys(c for c in tls.cipher_suites if c not in CIPHER_SUITES):
            self.warnings.append(f"Gateway {bs.key}: server {bs.server.port.name}: cipher suite {unknown!r} is not "
                                 "supported by Envoy; ignored")
        return tls if known == tls.cipher_suites else replace(tls, cipher_suites=known)

    # --- the snapshot -----------------------------------------------------------------------

    def snapshot(self, version: str) -> Snapshot:
        listeners = tuple(self.listener(port) for port in self.ports())
        config, identity = self.config, self.identity
        authz = compile_authorizer(config, identity.namespace, identity.labels, lambda namespace, name: False)
        if authz is not None:
            self.warnings.extend(authz.warnings)
        self.warnings.extend(effective_proxy_config(config.proxy_configs, identity.namespace, identity.labels).warnings)
        telemetry = compile_telemetry(config, identity, self.warnings)
        return Snapshot(
            version=version,
            identity=identity,
            listeners=listeners,
            clusters=self.clusters,
            config=config,
            warnings=tuple(dict.fromkeys(self.warnings)),
            request_authn=providers_for(config, identity),
            peer_authn=compose_peer_authn(config.peer_authentications, identity.namespace, identity.labels),
            authz=authz,
            telemetry=telemetry,
        )


def _redirect_route() -> CompiledRoute:
    route = Route(name="https_redirect", virtual_service="", redirect=HTTPS_REDIRECT)
    return CompiledRoute(route=route, matches=(), matchers=())


def compile_gateway(config: model.MeshConfig, identity: ProxyIdentity, version: str) -> Snapshot:
    """Implements pymesh.routing.snapshot.SnapshotCompiler for identity.kind == "router"."""
    return GatewayCompiler(config, identity).snapshot(version)



def gateway_warnings(config: model.MeshConfig) -> list[str]:
    """What `pymesh analyze` can say about Gateways before any gateway runs: each Gateway
    compiled as a gateway proxy in its namespace with its selector's labels would compile it,
    and VirtualServices naming a Gateway that does not exist (Istio's IST0101)."""
    known = {gateway_key(g) for g in config.gateways}
    warnings = []
    for vs in config.virtual_services:
        for name in sorted(bound_gateways(vs) - known - {MESH}):
            warnings.append(f"VirtualService {vs.metadata.namespace}/{vs.metadata.name}: gateway {name} not found")
    seen = set()
    for gateway in config.gateways:
        identity = ProxyIdentity(workload="gateway", namespace=gateway.metadata.namespace, labels=gateway.selector,
                                 kind="router")
        key = (identity.namespace, frozenset(identity.labels.items()))
        if key not in seen:
            seen.add(key)
            warnings += GatewayCompiler(config, identity).snapshot("analyze").warnings
    return list(dict.fromkeys(warnings))
