"""The compiled form of a proxy's configuration: what the data plane consults per request.

`pymesh.routing.compile.compile_snapshot` builds a `Snapshot` once per configuration; the proxy only
calls `RouteTable.match` and reads the frozen objects here on the request path. Nothing in this
module does I/O, so the same snapshot can be built by a static-config proxy or pushed from the
control server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping, Protocol

from pymesh.api import model
from pymesh.policy.fault import FaultPolicy
from pymesh.routing.peer_authn import PeerAuthnPolicy
from pymesh.telemetry.policy import DEFAULT as DEFAULT_TELEMETRY, TelemetryPolicy

# Which optional request filters a route needs, one bit each: `Route.filter_set` indexes the
# listener's prebuilt chains (pymesh.proxy.filters.chains_for), so a route without them pays nothing.
ROUTE_HEADERS, CORS, FAULT, RATE_LIMIT = 1, 2, 4, 8
FILTER_SETS = 16


class RequestView(Protocol):
    """What route matching may look at; the HTTP/1.1 and HTTP/2 handlers both provide it."""

    method: str
    path: str  # request target as sent: path plus optional "?query"
    authority: str  # Host header or :authority, possibly with ":port"
    scheme: str  # "http" | "https"
    headers: Mapping[str, str]  # lower-case names; repeated headers joined with ","
    source_labels: Mapping[str, str]  # the labels of the workload this proxy serves (sourceLabels)


@dataclass(frozen=True)
class Endpoint:
    address: str  # IP or DNS name
    port: int
    labels: Mapping[str, str] = field(default_factory=dict)
    weight: int = 1
    workload: str = ""  # workload name for metrics (destination_workload), if known
    namespace: str = ""
    locality: str = ""  # "region/zone/subzone", as the WorkloadEntry or endpoint gave it
    priority: int = 0  # Envoy's priority level: 0 is tried first (locality failover)
    locality_weight: int = 0  # locality weighted load balancing (distribute); 0 = not weighted
    service_account: str = ""  # the workload's service account (WorkloadEntry.serviceAccount), if known

    @cached_property
    def key(self) -> str:
        """"address:port", made once: pools, balancers and telemetry look it up per request."""
        return f"{self.address}:{self.port}"


# Istio's injector labels sidecar pods so; auto mTLS uses ISTIO_MUTUAL to endpoints carrying it.
TLS_MODE_LABEL = "security.istio.io/tlsMode"
TLS_MODE_ISTIO = "istio"


@dataclass(frozen=True)
class UpstreamTls:
    """How a cluster originates TLS (pymesh.routing.tls compiles it; pymesh.proxy.upstream_tls
    builds the contexts once per cluster). Shown whole in /config_dump, insecureSkipVerify too."""

    mode: str  # SIMPLE | MUTUAL | ISTIO_MUTUAL
    settings: model.ClientTLSSettings  # the files, credentialName, insecureSkipVerify as configured
    sni: str = ""  # "": the request's host (Istio's auto SNI, SIMPLE and MUTUAL only)
    subject_alt_names: tuple[str, ...] = ()  # the server may present one of these (exact)
    # ISTIO_MUTUAL without the DestinationRule's subjectAltNames: the destination's service
    # accounts as (namespace, name), whose SPIFFE IDs are accepted too. With neither these nor
    # subject_alt_names: any identity of our trust domain.
    service_accounts: tuple[tuple[str, str], ...] = ()
    auto: bool = False  # auto mTLS: only for endpoints labelled security.istio.io/tlsMode=istio


@dataclass(frozen=True)
class ServiceLabels:
    """The service a cluster's metrics name (destination_service, _name, _namespace), compiled
    from the ServiceEntry: the outbound cluster's own, the inbound cluster's the one that selects
    this proxy on that port (Istio's inbound cluster metadata; "unknown" when none does)."""

    host: str = "unknown"
    name: str = "unknown"
    namespace: str = "unknown"


@dataclass(frozen=True)
class Cluster:
    """One upstream: a service host and port, optionally narrowed to a subset (Envoy's cluster)."""

    name: str  # Envoy style: "outbound|9080|v1|reviews.default.svc.cluster.local"
    service_host: str  # FQDN of the service ("" for passthrough/inbound)
    port: int
    subset: str
    protocol: str  # HTTP | HTTP2 | GRPC | TCP
    endpoints: tuple[Endpoint, ...]
    load_balancer: model.LoadBalancerSettings
    connection_pool: model.ConnectionPoolSettings
    service_labels: ServiceLabels = ServiceLabels()  # for metrics only (service_host is an authority)
    outlier_detection: model.OutlierDetection | None = None  # None: no host is ever ejected
    retry_budget: model.RetryBudget | None = None  # None: maxRetries limits retries in flight
    tls: UpstreamTls | None = None  # the DestinationRule's tls (None: DISABLE, or none set)
    auto_mtls: UpstreamTls | None = None  # no tls set and some endpoint is a sidecar: ISTIO_MUTUAL to those
    # ServiceEntry resolution DYNAMIC_DNS (load_balancer PASSTHROUGH): an HTTP request's endpoint
    # is its own host on this cluster's port, resolved when connecting (Envoy's dynamic forward proxy)
    dynamic_dns: bool = False


@dataclass(frozen=True)
class HeaderOps:
    """Header mutations compiled to lower-case names, applied in order: remove, set, add."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()
    empty: bool = field(init=False, repr=False, compare=False)  # read per request: a field, not a property

    def __post_init__(self) -> None:
        object.__setattr__(self, "empty", not (self.set or self.add or self.remove))


@dataclass(frozen=True)
class WeightedCluster:
    cluster: str  # key into Snapshot.clusters
    weight: int
    request_headers: HeaderOps = field(default_factory=HeaderOps)
    response_headers: HeaderOps = field(default_factory=HeaderOps)


@dataclass(frozen=True)
class MirrorPolicy:
    """Envoy's request mirror policy as Istio writes it: a copy of the request to `cluster` for
    `per_million` of a million requests (pymesh.proxy.mirror sends it)."""

    cluster: str  # key into Snapshot.clusters
    per_million: int  # > 0: Istio writes no policy for a 0% mirror


# Istio's inbound, passthrough (allow_any) and egress-proxy routes have no retry policy; only
# routes built for services get the default one (pymesh.policy.retry).
NO_RETRIES = model.HTTPRetry(attempts=0)


@dataclass(frozen=True)
class Route:
    """A matched HTTP route: exactly one of forward (clusters), redirect or direct_response."""

    name: str
    virtual_service: str  # "namespace/name" of the source VirtualService, "" if implicit
    clusters: tuple[WeightedCluster, ...] = ()
    total_weight: int = 0
    redirect: model.HTTPRedirect | None = None
    direct_response: model.HTTPDirectResponse | None = None
    rewrite: model.HTTPRewrite | None = None
    uri_prefix_matched: str | None = None  # for prefix rewrite: the prefix that matched
    timeout: float | None = None  # seconds; None = none
    retries: model.HTTPRetry | None = None  # None = Istio default policy
    request_headers: HeaderOps = field(default_factory=HeaderOps)
    response_headers: HeaderOps = field(default_factory=HeaderOps)
    hash_policy: model.ConsistentHash | None = None  # filled from the chosen cluster's DR by the proxy
    fault: FaultPolicy | None = None
    cors: Any = None  # a pymesh.routing.cors.CompiledCors
    rate_limit: Any = None  # a pymesh.policy.ratelimit.RateLimitRule
    mirrors: tuple[MirrorPolicy, ...] = ()
    # the (kind, value) of each match block's uri, ("", "") for none: a span's name (Istio's route
    # decorator, pymesh.proxy.tracing) says which path the route matched
    uri_matches: tuple[tuple[str, str], ...] = ()
    # the status for a destination whose cluster does not exist: Envoy's 503, or the 500 the
    # Gateway API requires for its routes' invalid backends (Istio's cluster_not_found_response_code)
    missing_cluster_status: int = 503
    filter_set: int = field(init=False, repr=False, compare=False)  # read per request: a field

    def __post_init__(self) -> None:
        headers = (self.rewrite is not None or not self.request_headers.empty
                   or any(not c.request_headers.empty for c in self.clusters))
        filter_set = ((ROUTE_HEADERS if headers else 0) | (CORS if self.cors else 0)
                      | (FAULT if self.fault else 0) | (RATE_LIMIT if self.rate_limit else 0))
        object.__setattr__(self, "filter_set", filter_set)


class RouteTable(Protocol):
    def match(self, request: RequestView) -> tuple[Route, str | None] | None:
        """First matching route for the request, with the uri prefix that matched (for
        rewrites), or None (the proxy answers 404 NR)."""


@dataclass(frozen=True)
class TcpRoute:
    clusters: tuple[WeightedCluster, ...]
    total_weight: int


@dataclass(frozen=True)
class Listener:
    """A socket the proxy opens, from a Sidecar ingress/egress entry."""

    name: str  # e.g. "egress|127.0.0.1|9080", "ingress|0.0.0.0|8000"
    direction: str  # "outbound" | "inbound"
    bind: str
    port: int
    protocol: str  # HTTP | HTTP2 | GRPC | TCP | TLS | HTTPS ("HTTP" also sniffs nothing: it is HTTP/1.1)
    route_table: Any = None  # RouteTable for HTTP listeners
    tcp_route: TcpRoute | None = None  # TCP listeners
    default_cluster: str = ""  # inbound: the cluster pointing at defaultEndpoint
    # A pymesh.routing.sni.SniTable when TLS passing through is routed by its ClientHello (TLS and
    # HTTPS ports, TCP ports with VirtualService tls routes); tcp_route is then the fallback.
    sni_routes: Any = None
    # A gateway port whose servers terminate TLS: the ClientHello's SNI picks one of these (see
    # TlsServerChain); a name none of them serves falls to sni_routes (PASSTHROUGH servers of the
    # same port), else the handshake is refused.
    tls_servers: tuple["TlsServerChain", ...] = ()


@dataclass(frozen=True)
class EgressProxy:
    """Sidecar outboundTrafficPolicy.egressProxy: where outbound traffic for a destination no
    route knows goes under ALLOW_ANY instead of where it was going (Istio's catch-all virtual
    host and virtualOutbound filter chain point at this cluster instead of PassthroughCluster)."""

    route: Route  # every outbound route table's last virtual host, "*": HTTP for a host no other serves
    listener: Listener  # TCP: a port no service has, bytes no SNI route takes, non-HTTP on an HTTP port


@dataclass(frozen=True)
class ServerTls:
    """How one Gateway server terminates TLS (pymesh.proxy.gateway_tls builds its contexts and
    reloads them when the files change)."""

    mode: str  # SIMPLE | MUTUAL | ISTIO_MUTUAL | OPTIONAL_MUTUAL
    settings: model.ServerTLSSettings  # files and credentialName as written, versions, ciphers, SANs
    namespace: str  # the Gateway's: where credentialName is looked up


@dataclass(frozen=True)
class TlsServerChain:
    """One terminating Gateway server on a port (Envoy's filter chain matched by server name):
    SNI `server_names` (exact, "*.suffix" wildcards, "*" any), its TLS, and what runs on the
    decrypted stream: HTTP routes (HTTPS/HTTP2/GRPC servers) or a TCP route (TLS servers)."""

    server_names: tuple[str, ...]
    tls: ServerTls
    protocol: str  # HTTPS | TLS | ...: the server's port protocol
    route_table: Any = None  # RouteTable after termination (HTTP-speaking servers)
    tcp_route: TcpRoute | None = None  # TLS servers terminated then proxied as TCP


@dataclass(frozen=True)
class ProxyIdentity:
    workload: str = "unknown"
    namespace: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"
    ip: str = ""
    locality: str = ""  # "region/zone/subzone": where this proxy runs, for locality load balancing
    # Istio's node type: "sidecar" (a workload's proxy) or "router" (a gateway, `pymesh gateway`:
    # it serves Gateway resources whose selector matches its labels and has no Sidecar scoping)
    kind: str = "sidecar"
    # a gateway's address for the servers that name no `bind` ("": 0.0.0.0, as Istio's gateways)
    listen_address: str = ""


@dataclass(frozen=True)
class Snapshot:
    version: str
    identity: ProxyIdentity
    listeners: tuple[Listener, ...]
    clusters: Mapping[str, Cluster]
    config: model.MeshConfig
    outbound_traffic_policy: str = "ALLOW_ANY"
    warnings: tuple[str, ...] = ()  # compile problems (unknown destinations, ...) for analyze/config_dump
    # outbound traffic captured by iptables, by original destination port (Istio's per-port
    # outbound listeners); may share Listener objects with `listeners`
    captured_outbound: Mapping[int, Listener] = field(default_factory=dict)
    # the JWT rules of the RequestAuthentications that apply to this proxy (routing/authn.py):
    # pymesh.security.jwt.Provider; empty, no JWT filter runs
    request_authn: tuple[Any, ...] = ()
    # the PeerAuthentication mode of each inbound port (the workload's port number)
    peer_authn: PeerAuthnPolicy = field(default_factory=PeerAuthnPolicy)
    # the AuthorizationPolicies that apply to this workload's inbound traffic
    # (a pymesh.security.authz.Authorizer); None: no policy applies, nothing is checked
    authz: Any = None
    egress_proxy: EgressProxy | None = None  # None: PassthroughCluster (or BlackHole, REGISTRY_ONLY)
    # tracing, access logging and metrics overrides for this proxy (pymesh.telemetry.policy)
    telemetry: TelemetryPolicy = DEFAULT_TELEMETRY
    # the Python filters (pymesh.filters.FilterSpec) of each listener direction ("inbound",
    # "outbound"); empty: no user filter runs and the chains are the built-in ones alone
    python_filters: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def dump(self, include_secrets: bool = False) -> dict:
        """JSON-able view for /config_dump (secrets redacted unless asked for)."""
        from pymesh.routing.dump import dump_snapshot

        return dump_snapshot(self, include_secrets)


class SnapshotCompiler(Protocol):
    def __call__(self, config: model.MeshConfig, identity: ProxyIdentity, version: str) -> Snapshot: ...

