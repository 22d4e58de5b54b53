"""MeshConfig + the proxy's identity -> Snapshot: the one place that decides what a proxy sees.

All the work happens here, once per configuration; the proxy only matches against the result.
"""

from __future__ import annotations

from dataclasses import replace

from pymesh.api import model
from pymesh.routing import delegation, gateway_api
from pymesh.routing.authn import providers_for
from pymesh.routing.binding import MESH_ONLY, bind_all
from pymesh.routing.gateway import compile_gateway
from pymesh.routing.clusters import RuleIndex, inbound_cluster, inbound_name, outbound_clusters
from pymesh.routing.egress_proxy import compile_egress_proxy
from pymesh.routing.filter_loading import load_class
from pymesh.routing.peer_authn import compose as compose_peer_authn
from pymesh.routing.python_filters import Loader, compile_python_filters
from pymesh.routing.proxy_config import effective as effective_proxy_config
from pymesh.routing.ratelimits import RateLimits
from pymesh.routing.registry import ServiceIndex
from pymesh.routing.routes import RouteContext, inbound_route_table
from pymesh.routing.telemetry import compile_telemetry
from pymesh.routing.scope import ALL, EgressScope, exported_to, select_sidecar, selects
from pymesh.routing.service_labels import inbound_service
from pymesh.routing.snapshot import (Cluster, Listener, ProxyIdentity, ServerTls, Snapshot, TcpRoute, TlsServerChain,
                                     WeightedCluster)
from pymesh.security.authz import compile_authorizer

HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})
TLS_PROTOCOLS = frozenset({"TLS", "HTTPS"})
SNIFFED = ""  # a ServiceEntry port without a protocol: HTTP or not is told per connection, as Istio
NOT_PROXIED = frozenset({"UDP"})  # ports no listener is opened for (Istio's proxy has no UDP either)


def compile_snapshot(config: model.MeshConfig, identity: ProxyIdentity, version: str,
                     load_filters: Loader | None = load_class) -> Snapshot:
    """Implements pymesh.routing.snapshot.SnapshotCompiler: a sidecar's here, a gateway's
    (identity.kind "router") in pymesh.routing.gateway. PythonFilter classes are loaded with
    `load_filters` (a FilterLoadError rejects the snapshot); None leaves them unloaded, for
    views that only describe the chains."""
    config = gateway_api.apply(config)  # Gateway API resources, as the Istio ones they translate to
    config = delegation.apply(config)  # root VirtualServices with their delegates' routes merged in
    python_filters = compile_python_filters(config, identity, _served_by(config, identity), load_filters)
    if identity.kind == "router":
        snapshot = compile_gateway(config, identity, version)
        return replace(snapshot, python_filters=python_filters) if python_filters else snapshot
    ns = identity.namespace
    warnings: list[str] = []
    services = ServiceIndex.from_config(config, ns, warnings)
    clusters = outbound_clusters(services, RuleIndex(config, services, ns, warnings, identity.labels), identity)
    sidecar = select_sidecar(config.sidecars, ns, identity.labels)
    ingress = sidecar.ingress if sidecar else ()
    for entry in ingress:
        cluster = inbound_cluster(entry, ns, warnings, inbound_service(config, identity, entry.port.number))
        clusters[cluster.name] = cluster
    egress_proxy = compile_egress_proxy(sidecar, services, clusters, warnings)
    ctx = RouteContext(
        namespace=ns,
        labels=identity.labels,
        services=services,
        clusters=clusters,
        virtual_services=bind_all((vs for vs in config.virtual_services
                                   if exported_to(vs.export_to, vs.metadata.namespace, ns)), MESH_ONLY),
        warnings=warnings,
        rate_limits=RateLimits.select(config, identity),
        catch_all=egress_proxy.route if egress_proxy else None,
    )
    egress = []
    if sidecar is not None:
        egress = [(e, _egress_listener(ctx, e, sidecar.metadata.namespace)) for e in sidecar.egress if e.port]
    listeners = tuple(l for _, l in egress) + tuple(_ingress_listener(e, ctx.rate_limits, ns) for e in ingress)
    captured = _captured_outbound(ctx, sidecar, egress)
    authz = compile_authorizer(config, ns, identity.labels, _served_by(config, identity))
    if authz is not None:
        warnings += authz.warnings
    warnings += effective_proxy_config(config.proxy_configs, ns, identity.labels).warnings
    telemetry = compile_telemetry(config, identity, warnings)
    return Snapshot(
        version=version,
        identity=identity,
        listeners=listeners,
        clusters=clusters,
        config=config,
        outbound_traffic_policy=sidecar.outbound_traffic_policy if sidecar else "ALLOW_ANY",
        warnings=tuple(dict.fromkeys(warnings)),  # one per problem, though each port meets it again
        captured_outbound=captured,
        request_authn=providers_for(config, identity),
        peer_authn=compose_peer_authn(config.peer_authentications, ns, identity.labels),
        authz=authz,
        egress_proxy=egress_proxy,
        telemetry=telemetry,
        python_filters=python_filters,
    )


def _served_by(config: model.MeshConfig, identity: ProxyIdentity):
    """Whether this workload serves the service `name` of `namespace` (an AuthorizationPolicy
    targetRef): a ServiceEntry there with that host (or short name) whose workloadSelector
    matches the proxy's labels, or that lists the proxy's address as an endpoint."""

    def served(namespace: str, name: str) -> bool:
        for entry in config.service_entries:
            if entry.metadata.namespace != namespace:
                continue
            if name not in entry.hosts and not any(host.split(".", 1)[0] == name for host in entry.hosts):
                continue
            if entry.workload_selector and selects(entry.workload_selector, identity.labels):
                return True
            if identity.ip and any(e.address == identity.ip for e in entry.endpoints):
                return True
        return False

    return served


def _outbound_listener(ctx: RouteContext, name: str, bind: str, port: int, protocol: str, scope: EgressScope) -> Listener:
    if protocol == SNIFFED:  # the capture sniffer picks the route table (HTTP) or the tcp route
        return Listener(name, "outbound", bind, port, "SNIFF", route_table=ctx.route_table(port, scope),
                        tcp_route=ctx.tcp_route(port, scope))
    if protocol in HTTP_PROTOCOLS:
        return Listener(name, "outbound", bind, port, protocol, route_table=ctx.route_table(port, scope))
    if protocol in TLS_PROTOCOLS:  # TLS passed through: SNI routing only, as Istio (tcp routes do not apply)
        return Listener(name, "outbound", bind, port, protocol, sni_routes=ctx.sni_table(port, scope, tls_port=True))
    return Listener(name, "outbound", bind, port, protocol, tcp_route=ctx.tcp_route(port, scope),
                    sni_routes=ctx.sni_table(port, scope, tls_port=False))


def _egress_listener(ctx: RouteContext, entry: model.EgressListener, sidecar_namespace: str) -> Listener:
    """An egress entry with a port: a socket the app connects to (127.0.0.1 unless bound)."""
    port = entry.port.number  # type: ignore[union-attr]  # callers pass entries with a port
    bind = entry.bind or "127.0.0.1"
    scope = EgressScope.parse(entry.hosts, sidecar_namespace)
    return _outbound_listener(ctx, f"egress|{bind}|{port}", bind, port, entry.port.protocol.upper(), scope)  # type: ignore[union-attr]


def _ingress_listener(entry: model.IngressListener, rate_limits: RateLimits, namespace: str = "") -> Listener:
    """An ingress entry's listener. With `tls` the sidecar terminates TLS itself, as a gateway
    server does (one chain for any server name; pymesh.proxy.gateway_tls), then serves HTTP
    (HTTPS ports) or proxies TCP (TLS ports) to the app; PeerAuthentication does not apply."""
    port = entry.port.number
    bind = entry.bind or "0.0.0.0"
    protocol = entry.port.protocol.upper()
    cluster = inbound_name(port)
    if protocol in HTTP_PROTOCOLS or (entry.tls is not None and protocol == "HTTPS"):
        routing = {"route_table": inbound_route_table(port, cluster, rate_limits)}
    else:
        routing = {"tcp_route": TcpRoute(clusters=(WeightedCluster(cluster=cluster, weight=100),), total_weight=100)}
    name = f"ingress|{bind}|{port}"
    if entry.tls is not None:
        chain = TlsServerChain(("*",), ServerTls(entry.tls.mode, entry.tls, namespace), protocol, **routing)
        return Listener(name, "inbound", bind, port, protocol, default_cluster=cluster, tls_servers=(chain,))
    return Listener(name, "inbound", bind, port, protocol, default_cluster=cluster, **routing)


def _captured_outbound(
    ctx: RouteContext, sidecar: model.Sidecar | None, egress: list[tuple[model.EgressListener, Listener]]
) -> dict[int, Listener]:
    """Listeners for outbound traffic captured by iptables, by original destination port: an
    egress entry with that port (unless captureMode NONE), else the port-less egress entries'
    hosts (all of them when there is no Sidecar or it lists no egress), over every visible
    service port. A port that HTTP and TCP services share goes to whichever comes first."""
    out = {l.port: l for e, l in egress if e.capture_mode != "NONE"}
    if sidecar is None or not sidecar.egress:
        scope = ALL
    else:
        hosts = [h for e in sidecar.egress if e.port is None for h in e.hosts]
        if not hosts:
            return out
        scope = EgressScope.parse(hosts, sidecar.metadata.namespace)
    protocols: dict[int, str] = {}
    for svc in ctx.services.services:
        if not scope.allows(svc.namespace, svc.host):
            continue
        for p in svc.ports:
            protocol = p.protocol.upper()
            if protocol in NOT_PROXIED:
                continue
            first = protocols.setdefault(p.number, protocol)
            if _kind(first) != _kind(protocol):
                ctx.warnings.append(f"outbound port {p.number}: {svc.host} is {protocol or 'sniffed'} but an earlier "
                                    f"service is {first or 'sniffed'}; using {first or 'sniffed'}")
    for port, protocol in protocols.items():
        if port not in out:
            out[port] = _outbound_listener(ctx, f"outbound|0.0.0.0|{port}", "0.0.0.0", port, protocol, scope)
    return out


def _kind(protocol: str) -> str:
    """How a listener handles a protocol: parses HTTP, routes TLS by SNI, sniffs, or proxies bytes."""
    if protocol == SNIFFED:
        return "SNIFF"
    return "HTTP" if protocol in HTTP_PROTOCOLS else "TLS" if protocol in TLS_PROTOCOLS else "TCP"


def implicit_inbound(snapshot: Snapshot, port: int, address: str) -> tuple[Listener, Cluster]:
    """Inbound traffic captured for `port`: the Sidecar ingress entry for that port if there is
    one, else the app on `address`:`port` with the protocol sniffed (Istio's virtualInbound),
    spoken to the app as the caller spoke it (HTTP/2 for gRPC: useClientProtocol)."""
    for listener in snapshot.listeners:
        if listener.direction == "inbound" and listener.port == port:
            return listener, snapshot.clusters[listener.default_cluster]
    entry = model.IngressListener(
        port=model.ServicePort(number=port, protocol="HTTP", name=f"inbound-{port}"),
        default_endpoint=f"{address}:{port}",
    )
    listener = _ingress_listener(entry, RateLimits.select(snapshot.config, snapshot.identity))
    service = inbound_service(snapshot.config, snapshot.identity, port)
    cluster = replace(inbound_cluster(entry, snapshot.identity.namespace, [], service),
                      connection_pool=model.ConnectionPoolSettings(use_client_protocol=True))
    return replace(listener, name=f"inbound|{port}", protocol="SNIFF"), cluster
