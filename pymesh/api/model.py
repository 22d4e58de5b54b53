"""The mesh's configuration resources as frozen dataclasses.

Field names follow Istio's (in snake_case); the loader in `pymesh.api.load` turns YAML into these
and validation reports problems with file:line and the Istio field path. Everything downstream
(routing, policy, proxy, control server) reads only these types, never raw YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

Labels = Mapping[str, str]


@dataclass(frozen=True)
class Source:
    """Where a resource came from, so errors and dumps can point at it."""

    file: str = "<memory>"
    line: int = 0


@dataclass(frozen=True)
class Metadata:
    name: str
    namespace: str = "default"
    labels: Labels = field(default_factory=dict)
    source: Source = field(default_factory=Source, compare=False)
    # only the annotations pymesh acts on (pymesh.api.common.KNOWN_ANNOTATIONS), e.g. istio.io/dry-run
    annotations: Labels = field(default_factory=dict)
    # Kubernetes' creationTimestamp as POSIX seconds; None when the file has none. Read only
    # where Istio orders resources by age (PeerAuthentication: the oldest wins).
    creation_timestamp: float | None = None


@dataclass(frozen=True)
class StringMatch:
    """Istio's StringMatch: exactly one of exact, prefix or regex."""

    kind: str  # "exact" | "prefix" | "regex"
    value: str


# --- ServiceEntry / WorkloadEntry -----------------------------------------------------------


@dataclass(frozen=True)
class ServicePort:
    number: int
    # HTTP | HTTP2 | GRPC | GRPC-WEB | TCP | HTTPS | TLS | MONGO | MYSQL | REDIS | UDP (upper-case),
    # or "" on a ServiceEntry port that does not say: sniffed per connection, as Istio
    protocol: str = "TCP"
    name: str = ""
    target_port: int | None = None


@dataclass(frozen=True)
class WorkloadEntrySpec:
    """A workload's address; also the type of ServiceEntry.spec.endpoints[]."""

    address: str
    ports: Mapping[str, int] = field(default_factory=dict)  # port name -> number
    labels: Labels = field(default_factory=dict)
    weight: int = 1
    service_account: str = ""
    locality: str = ""  # "region/zone/subzone" (any prefix of it), for locality load balancing
    # Istio's network: pymesh is one network, so an address is reached directly whatever it
    # says; an entry with a network and no address (behind that network's gateway) is unreachable
    network: str = ""
    # the workload (Deployment) name metrics report, as its proxy reports itself: a registered
    # proxy's --workload; not Istio YAML (there the entry's name stands for it)
    workload: str = ""


@dataclass(frozen=True)
class ServiceEntry:
    metadata: Metadata
    hosts: tuple[str, ...]
    addresses: tuple[str, ...] = ()
    ports: tuple[ServicePort, ...] = ()
    location: str = "MESH_EXTERNAL"  # MESH_EXTERNAL | MESH_INTERNAL
    # NONE | STATIC | DNS | DNS_ROUND_ROBIN | DYNAMIC_DNS. YAML without one reads as NONE, as
    # Istio's; this default is for entries built in code, which list their endpoints.
    resolution: str = "STATIC"
    endpoints: tuple[WorkloadEntrySpec, ...] = ()
    workload_selector: Labels | None = None  # selects WorkloadEntries (and registered proxies)
    export_to: tuple[str, ...] = ()
    # the names the service's certificates may carry: upstream TLS verifies them when the
    # DestinationRule names none (ISTIO_MUTUAL; SIMPLE/MUTUAL with an explicit sni), as Istio;
    # and a registered proxy with another identity is not one of its endpoints (control/membership.py)
    subject_alt_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkloadEntry:
    metadata: Metadata
    spec: WorkloadEntrySpec


# --- VirtualService --------------------------------------------------------------------------


@dataclass(frozen=True)
class HTTPMatchRequest:
    name: str = ""
    uri: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    scheme: StringMatch | None = None
    headers: Mapping[str, StringMatch] = field(default_factory=dict)  # lower-case names
    without_headers: Mapping[str, StringMatch] = field(default_factory=dict)
    query_params: Mapping[str, StringMatch] = field(default_factory=dict)
    port: int | None = None
    source_labels: Labels = field(default_factory=dict)
    ignore_uri_case: bool = False
    gateways: tuple[str, ...] = ()  # as written; empty: the VirtualService's own `gateways`


@dataclass(frozen=True)
class Destination:
    host: str
    subset: str = ""
    port: int | None = None


@dataclass(frozen=True)
class HeaderOperations:
    set: Mapping[str, str] = field(default_factory=dict)
    add: Mapping[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class Headers:
    request: HeaderOperations = field(default_factory=HeaderOperations)
    response: HeaderOperations = field(default_factory=HeaderOperations)


@dataclass(frozen=True)
class HTTPRouteDestination:
    destination: Destination
    weight: int = 0  # 0 with a single destination means "all of it"
    headers: Headers = field(default_factory=Headers)


@dataclass(frozen=True)
class HTTPRedirect:
    uri: str = ""
    authority: str = ""
    port: int | None = None
    scheme: str = ""
    redirect_code: int = 301
    # derivePort: "" keeps the request's authority as it is (or `authority` without a port);
    # FROM_PROTOCOL_DEFAULT drops the port, FROM_REQUEST_PORT keeps the request's port
    derive_port: str = ""


@dataclass(frozen=True)
class HTTPRewrite:
    uri: str = ""
    authority: str = ""


@dataclass(frozen=True)
class HTTPDirectResponse:
    status: int
    body: str = ""


@dataclass(frozen=True)
class HTTPRetry:
    attempts: int
    per_try_timeout: float | None = None  # seconds
    retry_on: tuple[str, ...] = ()  # e.g. ("5xx", "connect-failure", "503")
    backoff: float | None = None  # seconds: Envoy's base interval (None: its 25 ms)
    retry_ignore_previous_hosts: bool | None = None  # None: Istio's default (avoid them, unless hashing)
    retry_remote_localities: bool = False


@dataclass(frozen=True)
class FaultDelay:
    fixed_delay: float  # seconds
    percentage: float = 100.0  # of requests; unset means all of them (Istio)


@dataclass(frozen=True)
class FaultAbort:
    """Exactly one of http_status and grpc_status (a gRPC code, read from its name)."""

    http_status: int | None = None
    grpc_status: int | None = None
    percentage: float = 100.0


@dataclass(frozen=True)
class HTTPFaultInjection:
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


@dataclass(frozen=True)
class CorsPolicy:
    allow_origins: tuple[StringMatch, ...] = ()  # allowOrigins, or the deprecated allowOrigin as exact
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None  # seconds
    allow_credentials: bool | None = None
    unmatched_preflights: str = "FORWARD"  # FORWARD | IGNORE


@dataclass(frozen=True)
class Delegate:
    """A root VirtualService route's `delegate`: the hostless VirtualService whose routes are
    merged in its place (pymesh.routing.delegation)."""

    name: str
    namespace: str = ""  # "" = the root VirtualService's namespace


@dataclass(frozen=True)
class HTTPRoute:
    name: str = ""
    match: tuple[HTTPMatchRequest, ...] = ()  # empty: matches everything
    route: tuple[HTTPRouteDestination, ...] = ()
    redirect: HTTPRedirect | None = None
    rewrite: HTTPRewrite | None = None
    direct_response: HTTPDirectResponse | None = None
    headers: Headers = field(default_factory=Headers)
    timeout: float | None = None  # seconds; None = no route timeout
    retries: HTTPRetry | None = None  # None = Istio's default policy
    fault: HTTPFaultInjection | None = None
    cors_policy: CorsPolicy | None = None
    # `mirror` (with mirrorPercentage, or the deprecated mirrorPercent) first, then `mirrors[]`
    mirrors: tuple[HTTPMirrorPolicy, ...] = ()
    delegate: Delegate | None = None  # a root route: no action of its own until merged


@dataclass(frozen=True)
class HTTPMirrorPolicy:
    """Where a copy of each selected request goes (Istio's HTTPMirrorPolicy)."""

    destination: Destination
    percentage: float = 100.0  # of requests; unset means all of them, 0 none (Istio)


@dataclass(frozen=True)
class L4MatchAttributes:
    port: int | None = None
    destination_subnets: tuple[str, ...] = ()
    source_labels: Labels = field(default_factory=dict)
    gateways: tuple[str, ...] = ()  # as written; empty: the VirtualService's own `gateways`


@dataclass(frozen=True)
class RouteDestination:
    destination: Destination
    weight: int = 0


@dataclass(frozen=True)
class TCPRoute:
    match: tuple[L4MatchAttributes, ...] = ()
    route: tuple[RouteDestination, ...] = ()


@dataclass(frozen=True)
class TLSMatchAttributes:
    """A TLS route's match: the ClientHello's SNI (exact or "*.example.com"), optionally
    narrowed by destination address, listener port and the proxy's labels."""

    sni_hosts: tuple[str, ...]  # lower-cased
    destination_subnets: tuple[str, ...] = ()
    port: int | None = None
    source_labels: Labels = field(default_factory=dict)
    source_namespace: str = ""  # "" = any: the proxy's namespace must be this one
    gateways: tuple[str, ...] = ()  # as written; empty: the VirtualService's own `gateways`


@dataclass(frozen=True)
class TLSRoute:
    """TLS passed through untouched, routed by SNI (the proxy does not terminate it)."""

    match: tuple[TLSMatchAttributes, ...] = ()
    route: tuple[RouteDestination, ...] = ()


@dataclass(frozen=True)
class VirtualService:
    metadata: Metadata
    hosts: tuple[str, ...]  # empty: a delegate, used only through a root's `delegate`
    http: tuple[HTTPRoute, ...] = ()
    tcp: tuple[TCPRoute, ...] = ()
    export_to: tuple[str, ...] = ()
    tls: tuple[TLSRoute, ...] = ()
    # As written: "mesh", "<gateway>" (the VirtualService's namespace) or "<namespace>/<gateway>".
    # Empty means "mesh" only, as Istio. pymesh.routing.binding resolves them.
    gateways: tuple[str, ...] = ()


# --- DestinationRule -------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsistentHash:
    """Exactly one key source is set."""

    http_header_name: str = ""
    http_cookie: str = ""  # cookie name
    use_source_ip: bool = False
    http_query_parameter_name: str = ""
    http_cookie_ttl: float | None = None  # httpCookie.ttl, seconds: set = generate the cookie if absent
    http_cookie_path: str = ""  # httpCookie.path, for a generated cookie
    http_cookie_attributes: tuple[tuple[str, str], ...] = ()  # httpCookie.attributes: (name, value)
    maglev: bool = False  # the hash algorithm: Maglev, else ring hash (Istio's default)
    minimum_ring_size: int = 1024  # ringHash.minimumRingSize (or the deprecated top-level one)
    maglev_table_size: int = 65537  # maglev.tableSize: a prime


@dataclass(frozen=True)
class Warmup:
    """Envoy's slow start: a new endpoint's weight ramps from minimum_percent to full."""

    duration: float  # seconds
    minimum_percent: float = 10.0
    aggression: float = 1.0


@dataclass(frozen=True)
class LocalityDistribute:
    source: str  # `from`: the proxy's locality pattern ("region/zone/*")
    to: tuple[tuple[str, int], ...]  # (endpoint locality pattern, percent); percents sum to 100


@dataclass(frozen=True)
class LocalityFailover:
    source: str  # `from` region
    to: str  # region


@dataclass(frozen=True)
class LocalityLbSetting:
    enabled: bool = True
    distribute: tuple[LocalityDistribute, ...] = ()
    failover: tuple[LocalityFailover, ...] = ()
    failover_priority: tuple[str, ...] = ()  # label names, optionally "name=value"


@dataclass(frozen=True)
class LoadBalancerSettings:
    simple: str = "LEAST_REQUEST"  # ROUND_ROBIN | LEAST_REQUEST | RANDOM | PASSTHROUGH; Istio's default since 1.14
    consistent_hash: ConsistentHash | None = None
    locality_lb: LocalityLbSetting | None = None  # None: Istio's mesh default (enabled, no rules)
    warmup: Warmup | None = None  # `warmup`, or the older `warmupDurationSecs`


@dataclass(frozen=True)
class TcpKeepalive:
    probes: int = 0  # 0: the kernel's default (net.ipv4.tcp_keepalive_probes)
    time: float | None = None  # idle seconds before the first probe; None: the kernel's
    interval: float | None = None  # seconds between probes; None: the kernel's


@dataclass(frozen=True)
class ConnectionPoolSettings:
    """Istio's connectionPool. The circuit-breaker limits are 0 when unset: Istio's default,
    2^32-1, i.e. no limit."""

    connect_timeout: float | None = None  # tcp.connectTimeout, seconds
    max_connections: int = 0  # tcp.maxConnections, over the cluster
    max_connection_duration: float | None = None  # tcp.maxConnectionDuration, seconds
    tcp_keepalive: TcpKeepalive | None = None  # tcp.tcpKeepalive
    max_pending_requests: int = 0  # http.http1MaxPendingRequests: waiting for a connection
    max_requests: int = 0  # http.http2MaxRequests: in flight, over the cluster, any protocol
    max_retries: int = 0  # http.maxRetries: retries in flight, over the cluster
    tcp_idle_timeout: float | None = None  # tcp.idleTimeout, seconds (TCP proxying)
    idle_timeout: float | None = None  # http.idleTimeout, seconds (upstream pool)
    max_requests_per_connection: int = 0  # 0 = unlimited
    h2_upgrade_policy: str = "DEFAULT"  # http.h2UpgradePolicy: DEFAULT | DO_NOT_UPGRADE | UPGRADE
    use_client_protocol: bool = False  # http.useClientProtocol: HTTP/2 upstream for HTTP/2 clients
    max_concurrent_streams: int = 0  # http.maxConcurrentStreams per upstream HTTP/2 connection; 0 = peer's


@dataclass(frozen=True)
class OutlierDetection:
    """Istio's OutlierDetection with the values Istio gives Envoy when a field is left out.

    A count of 0 disables that detector. Gateway errors are off unless set (Envoy's enforcing
    default is 0 and Istio only raises it for a set value); local-origin failures count apart
    only with `split_external_local_origin_errors`.
    """

    consecutive_5xx: int = 5  # consecutive5xxErrors
    consecutive_gateway: int = 0  # consecutiveGatewayErrors (502, 503, 504)
    consecutive_local_origin: int = 5  # consecutiveLocalOriginFailures (with the split only)
    split_external_local_origin_errors: bool = False
    interval: float = 10.0  # seconds between sweeps that return hosts
    base_ejection_time: float = 30.0  # seconds, times the host's ejection count
    max_ejection_percent: int = 10
    min_health_percent: int = 0  # below this share of healthy hosts, use all hosts (0: never)

    @property
    def max_ejection_time(self) -> float:
        """Envoy's max_ejection_time (Istio cannot set it): 300 s, or the base time if longer."""
        return max(300.0, self.base_ejection_time)


@dataclass(frozen=True)
class ClientTLSSettings:
    """Istio's ClientTLSSettings: how the sidecar originates TLS to the upstream. The file paths
    are read by the proxy; `credential_name` names a folder of --credentials-dir (tls.crt,
    tls.key, ca.crt, as a Kubernetes TLS secret mounts)."""

    mode: str = "DISABLE"  # DISABLE | SIMPLE | MUTUAL | ISTIO_MUTUAL
    client_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""  # "": the system's roots (SIMPLE, MUTUAL), as Istio
    ca_crl: str = ""
    credential_name: str = ""
    subject_alt_names: tuple[str, ...] = ()
    sni: str = ""
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class PortTrafficPolicy:
    """Istio's TrafficPolicy.PortTrafficPolicy: the policy of one service port. Every field but
    `port` is also a TrafficPolicy field, which it replaces whole for that port (None: default)."""

    port: int
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


@dataclass(frozen=True)
class RetryBudget:
    """Istio's trafficPolicy.retryBudget, Envoy's circuit-breaker retry_budget: retries in flight
    may be at most `percent`% of the requests in flight, and never fewer than
    `min_retry_concurrency`. It replaces maxRetries."""

    percent: float = 20.0  # Envoy's default
    min_retry_concurrency: int = 3  # Envoy's default


@dataclass(frozen=True)
class TrafficPolicy:
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    port_level_settings: tuple[PortTrafficPolicy, ...] = ()
    retry_budget: RetryBudget | None = None
    tls: ClientTLSSettings | None = None


@dataclass(frozen=True)
class Subset:
    name: str
    labels: Labels = field(default_factory=dict)
    traffic_policy: TrafficPolicy | None = None


@dataclass(frozen=True)
class DestinationRule:
    metadata: Metadata
    host: str
    traffic_policy: TrafficPolicy | None = None
    subsets: tuple[Subset, ...] = ()
    export_to: tuple[str, ...] = ()
    # workloadSelector.matchLabels: only for the proxies it selects in its own namespace, where it
    # beats a rule without one (None: every proxy the rule is exported to)
    workload_selector: Labels | None = None


# --- Sidecar ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngressListener:
    port: ServicePort
    bind: str = ""
    capture_mode: str = "DEFAULT"  # DEFAULT | IPTABLES | NONE
    default_endpoint: str = ""  # "127.0.0.1:8080" or "unix:///path"
    tls: ServerTLSSettings | None = None  # the sidecar terminates TLS for clients outside the mesh


@dataclass(frozen=True)
class EgressListener:
    hosts: tuple[str, ...]  # "namespace/dnsName", e.g. "*/*", "./reviews.default.svc.cluster.local"
    port: ServicePort | None = None
    bind: str = ""
    capture_mode: str = "DEFAULT"


@dataclass(frozen=True)
class Sidecar:
    metadata: Metadata
    workload_selector: Labels | None = None
    ingress: tuple[IngressListener, ...] = ()
    egress: tuple[EgressListener, ...] = ()
    outbound_traffic_policy: str = "ALLOW_ANY"  # ALLOW_ANY | REGISTRY_ONLY
    # outboundTrafficPolicy.egressProxy (ALLOW_ANY only): where traffic to a destination the mesh
    # does not know goes instead of where it was going; None: PassthroughCluster
    egress_proxy: Destination | None = None


# --- LocalRateLimit (pymesh's own kind) -------------------------------------------------------


@dataclass(frozen=True)
class RateLimitRule:
    max_tokens: int
    tokens_per_fill: int = 1
    fill_interval: float = 1.0  # seconds
    route: str = ""  # an HTTPRoute name; "" = every route
    direction: str = ""  # INBOUND | OUTBOUND; "" = both
    key_header: str = ""  # a bucket per value of this header
    key_source_ip: bool = False  # a bucket per client address


@dataclass(frozen=True)
class LocalRateLimit:
    metadata: Metadata
    workload_selector: Labels | None = None  # None: every workload in the namespace
    rules: tuple[RateLimitRule, ...] = ()


# --- RequestAuthentication (security.istio.io) ------------------------------------------------


@dataclass(frozen=True)
class PolicyTargetReference:
    """Istio's PolicyTargetReference (targetRef/targetRefs of the security kinds)."""

    kind: str
    name: str
    group: str = ""
    namespace: str = ""


@dataclass(frozen=True)
class JwtHeader:
    name: str  # lower-case
    prefix: str = ""


@dataclass(frozen=True)
class ClaimToHeader:
    header: str  # lower-case
    claim: str  # a claim name, or a dotted path to a nested one


@dataclass(frozen=True)
class JWTRule:
    issuer: str = ""  # "" only with jwks_uri (Istio allows it): any issuer
    audiences: tuple[str, ...] = ()  # empty: any audience
    jwks_uri: str = ""
    jwks: str = ""  # an inline JWK Set (JSON text)
    from_headers: tuple[JwtHeader, ...] = ()  # none of the three: Authorization Bearer and ?access_token
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()
    output_payload_to_header: str = ""
    forward_original_token: bool = False
    output_claim_to_headers: tuple[ClaimToHeader, ...] = ()
    timeout: float | None = None  # seconds, for fetching jwks_uri (None: 5 s)
    space_delimited_claims: tuple[str, ...] = ()  # split on spaces for authorization, besides scope and permission


@dataclass(frozen=True)
class RequestAuthentication:
    metadata: Metadata
    selector: Labels | None = None  # None: the namespace (the whole mesh in the root namespace)
    target_refs: tuple[PolicyTargetReference, ...] = ()  # targetRef and targetRefs
    jwt_rules: tuple[JWTRule, ...] = ()


# --- PeerAuthentication (security.istio.io) ---------------------------------------------------

MTLS_MODES = ("UNSET", "DISABLE", "PERMISSIVE", "STRICT")


@dataclass(frozen=True)
class PortMtls:
    port: int  # the workload's (target) port
    mode: str  # one of MTLS_MODES


@dataclass(frozen=True)
class PeerAuthentication:
    metadata: Metadata
    selector: Labels | None = None  # selector.matchLabels; None or empty: namespace (or mesh) wide
    mode: str = "UNSET"  # mtls.mode; UNSET (or no mtls) inherits from the wider scope
    port_level_mtls: tuple[PortMtls, ...] = ()  # only with a selector (validated)
# --- AuthorizationPolicy (security.istio.io) -------------------------------------------------


@dataclass(frozen=True)
class AuthzSource:
    """Istio's Source: each list is one condition (any value matches); all set ones must hold."""

    principals: tuple[str, ...] = ()
    not_principals: tuple[str, ...] = ()
    request_principals: tuple[str, ...] = ()
    not_request_principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()
    service_accounts: tuple[str, ...] = ()  # "sa" (the policy's namespace) or "ns/sa"
    not_service_accounts: tuple[str, ...] = ()
    ip_blocks: tuple[str, ...] = ()
    not_ip_blocks: tuple[str, ...] = ()
    remote_ip_blocks: tuple[str, ...] = ()
    not_remote_ip_blocks: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthzOperation:
    hosts: tuple[str, ...] = ()
    not_hosts: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()  # strings, as Istio's API has them
    not_ports: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    not_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthzCondition:
    key: str  # "request.headers[x-token]", "source.ip", ...
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthzRule:
    """Matches when one of `sources` (none: any), one of `operations` (none: any) and every
    condition match."""

    sources: tuple[AuthzSource, ...] = ()
    operations: tuple[AuthzOperation, ...] = ()
    when: tuple[AuthzCondition, ...] = ()


@dataclass(frozen=True)
class AuthorizationPolicy:
    metadata: Metadata
    selector: Labels | None = None  # None: every workload in the namespace (the mesh, in the root namespace)
    target_refs: tuple[PolicyTargetReference, ...] = ()  # targetRef and targetRefs
    action: str = "ALLOW"  # ALLOW | DENY | AUDIT | CUSTOM
    provider: str = ""  # CUSTOM only
    rules: tuple[AuthzRule, ...] = ()  # none: matches nothing (an ALLOW policy then denies all)
    dry_run: bool = False  # the istio.io/dry-run annotation: evaluated and counted, never enforced


# --- Gateway (networking.istio.io) ------------------------------------------------------------


@dataclass(frozen=True)
class ServerTLSSettings:
    """Istio's ServerTLSSettings. File paths and credentialName as written; the gateway proxy
    resolves them (pymesh.proxy.credentials) when it builds its contexts."""

    https_redirect: bool = False
    mode: str = "PASSTHROUGH"  # Istio's enum default; SIMPLE | MUTUAL | ISTIO_MUTUAL | AUTO_PASSTHROUGH | OPTIONAL_MUTUAL
    server_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""
    ca_crl: str = ""
    credential_name: str = ""
    credential_names: tuple[str, ...] = ()  # credentialNames: up to two (an RSA and an ECDSA one)
    subject_alt_names: tuple[str, ...] = ()  # a client certificate must carry one (MUTUAL)
    verify_certificate_spki: tuple[str, ...] = ()
    verify_certificate_hash: tuple[str, ...] = ()
    min_protocol_version: str = "TLS_AUTO"  # TLS_AUTO | TLSV1_0 | TLSV1_1 | TLSV1_2 | TLSV1_3
    max_protocol_version: str = "TLS_AUTO"
    cipher_suites: tuple[str, ...] = ()  # Envoy (OpenSSL) names, e.g. ECDHE-RSA-AES256-GCM-SHA384


@dataclass(frozen=True)
class GatewayServer:
    port: ServicePort  # number, protocol (upper-case: HTTP HTTPS HTTP2 GRPC TLS TCP MONGO ...), name
    hosts: tuple[str, ...]  # as written: "host", "*.example.com", "ns/host", "./host", "*/host"
    bind: str = ""
    name: str = ""
    default_endpoint: str = ""
    tls: ServerTLSSettings | None = None


@dataclass(frozen=True)
class Gateway:
    """An Istio Gateway: the servers a gateway proxy whose labels match `selector` opens."""

    metadata: Metadata
    servers: tuple[GatewayServer, ...] = ()
    selector: Labels = field(default_factory=dict)  # empty: every gateway proxy (Istio: all workloads)


# --- Gateway API (gateway.networking.k8s.io) -----------------------------------------------
# Read as written (camelCase values, Kubernetes defaults filled in); pymesh.routing.gateway_api
# translates them into Gateways and VirtualServices, as Istio does.


@dataclass(frozen=True)
class GatewayClass:
    metadata: Metadata
    controller_name: str
    parameters_ref: str = ""  # "group/kind ns/name": Istio reads a ConfigMap there; no effect in pymesh


@dataclass(frozen=True)
class ObjectReference:
    """A Gateway API reference (ParentReference, BackendObjectReference, SecretObjectReference):
    group "" is the core API; namespace "" is the referrer's own."""

    name: str
    group: str = ""
    kind: str = ""
    namespace: str = ""
    section_name: str = ""  # ParentReference only
    port: int | None = None


@dataclass(frozen=True)
class RouteNamespaces:
    source: str = "Same"  # allowedRoutes.namespaces.from: All | Same | Selector
    selector: Labels | None = None  # matchLabels, with Selector


@dataclass(frozen=True)
class RouteGroupKind:
    kind: str
    group: str = "gateway.networking.k8s.io"


@dataclass(frozen=True)
class GatewayTLSConfig:
    mode: str = "Terminate"  # Terminate | Passthrough
    certificate_refs: tuple[ObjectReference, ...] = ()  # kind Secret by default
    options: Labels = field(default_factory=dict)


@dataclass(frozen=True)
class GatewayListener:
    name: str
    port: int
    protocol: str  # HTTP | HTTPS | TLS | TCP | UDP (and domain-prefixed custom ones)
    hostname: str = ""  # "" matches every host
    tls: GatewayTLSConfig | None = None
    allowed_namespaces: RouteNamespaces = field(default_factory=RouteNamespaces)
    allowed_kinds: tuple[RouteGroupKind, ...] = ()  # empty: the protocol's route kinds


@dataclass(frozen=True)
class KubernetesGateway:
    """A Gateway API Gateway (not Istio's Gateway, `Gateway` above)."""

    metadata: Metadata
    gateway_class_name: str
    listeners: tuple[GatewayListener, ...] = ()
    addresses: tuple[tuple[str, str], ...] = ()  # (type, value): IPAddress | Hostname | NamedAddress


@dataclass(frozen=True)
class RouteHeaderMatch:
    name: str
    value: str
    type: str = "Exact"  # Exact | RegularExpression


@dataclass(frozen=True)
class HTTPRouteMatchSpec:
    path_type: str = "PathPrefix"  # Exact | PathPrefix | RegularExpression
    path: str = "/"
    headers: tuple[RouteHeaderMatch, ...] = ()
    query_params: tuple[RouteHeaderMatch, ...] = ()
    method: str = ""


@dataclass(frozen=True)
class HeaderModifier:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class PathModifier:
    type: str  # ReplaceFullPath | ReplacePrefixMatch
    value: str


@dataclass(frozen=True)
class RequestRedirectFilter:
    scheme: str = ""
    hostname: str = ""
    path: PathModifier | None = None
    port: int | None = None
    status_code: int = 302


@dataclass(frozen=True)
class URLRewriteFilter:
    hostname: str = ""
    path: PathModifier | None = None


@dataclass(frozen=True)
class RequestMirrorFilter:
    backend_ref: ObjectReference
    percent: float | None = None  # percent, or fraction as a percentage; None: all requests


@dataclass(frozen=True)
class RouteFilter:
    type: str  # RequestHeaderModifier | ResponseHeaderModifier | RequestRedirect | URLRewrite | RequestMirror | CORS | ExtensionRef
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None
    request_redirect: RequestRedirectFilter | None = None
    url_rewrite: URLRewriteFilter | None = None
    request_mirror: RequestMirrorFilter | None = None
    cors: CorsPolicy | None = None  # CORS (Gateway API 1.3): already in Istio's corsPolicy terms


@dataclass(frozen=True)
class RouteBackendRef:
    ref: ObjectReference
    weight: int = 1
    filters: tuple[RouteFilter, ...] = ()


@dataclass(frozen=True)
class RouteRetry:
    attempts: int | None = None
    backoff: float | None = None  # seconds
    codes: tuple[int, ...] = ()


@dataclass(frozen=True)
class GRPCMethodMatch:
    type: str = "Exact"  # Exact | RegularExpression
    service: str = ""
    method: str = ""


@dataclass(frozen=True)
class GRPCRouteMatchSpec:
    method: GRPCMethodMatch | None = None
    headers: tuple[RouteHeaderMatch, ...] = ()


@dataclass(frozen=True)
class RouteRule:
    """An HTTPRoute or GRPCRoute rule (a GRPCRoute's has grpc_matches, no timeouts)."""

    name: str = ""
    matches: tuple[HTTPRouteMatchSpec, ...] = ()
    grpc_matches: tuple[GRPCRouteMatchSpec, ...] = ()
    filters: tuple[RouteFilter, ...] = ()
    backend_refs: tuple[RouteBackendRef, ...] = ()
    request_timeout: float | None = None  # timeouts.request, seconds (0: none)
    backend_request_timeout: float | None = None  # timeouts.backendRequest
    retry: RouteRetry | None = None


@dataclass(frozen=True)
class KubernetesRoute:
    """An HTTPRoute, GRPCRoute, TCPRoute or TLSRoute (`kind`)."""

    metadata: Metadata
    kind: str  # HTTPRoute | GRPCRoute | TCPRoute | TLSRoute
    parent_refs: tuple[ObjectReference, ...] = ()
    hostnames: tuple[str, ...] = ()
    rules: tuple[RouteRule, ...] = ()


@dataclass(frozen=True)
class ReferenceGrant:
    metadata: Metadata
    grants_from: tuple[tuple[str, str, str], ...]  # (group, kind, namespace)
    grants_to: tuple[tuple[str, str, str], ...]  # (group, kind, name or "" for all)


# --- WorkloadGroup and ProxyConfig (networking.istio.io) -------------------------------------


@dataclass(frozen=True)
class HTTPHeader:
    name: str
    value: str = ""


@dataclass(frozen=True)
class HTTPHealthCheck:
    """ReadinessProbe.httpGet: healthy on a 2xx or 3xx answer, as Kubernetes' probe."""

    port: int
    path: str = ""
    host: str = ""  # "": the workload's own address (here: 127.0.0.1)
    scheme: str = "HTTP"  # HTTP | HTTPS (not verified, as Kubernetes' probe)
    headers: tuple[HTTPHeader, ...] = ()


@dataclass(frozen=True)
class TCPHealthCheck:
    """ReadinessProbe.tcpSocket: healthy when a connection opens."""

    port: int
    host: str = ""  # "": localhost


@dataclass(frozen=True)
class ExecHealthCheck:
    """ReadinessProbe.exec: healthy when the command exits 0."""

    command: tuple[str, ...]


@dataclass(frozen=True)
class ReadinessProbe:
    """How a VM's proxy checks its application (Istio's WorkloadGroup.probe; zero fields take
    Kubernetes' defaults, as Istio's agent does)."""

    initial_delay_seconds: int = 0
    timeout_seconds: int = 1
    period_seconds: int = 10
    success_threshold: int = 1
    failure_threshold: int = 3
    http_get: HTTPHealthCheck | None = None
    tcp_socket: TCPHealthCheck | None = None
    exec: ExecHealthCheck | None = None


@dataclass(frozen=True)
class WorkloadGroup:
    """The template the WorkloadEntry of each auto-registering proxy is made from."""

    metadata: Metadata
    template: WorkloadEntrySpec  # its address is the registering proxy's
    labels: Labels = field(default_factory=dict)  # spec.metadata.labels
    annotations: Labels = field(default_factory=dict)  # spec.metadata.annotations
    probe: ReadinessProbe | None = None


@dataclass(frozen=True)
class ProxyConfig:
    """Istio's ProxyConfig: per-proxy settings; only concurrency has an effect here."""

    metadata: Metadata
    selector: Labels | None = None  # selector.matchLabels; None: the namespace (root namespace: the mesh)
    concurrency: int | None = None  # 0: one worker per CPU, as Istio
    environment_variables: Labels = field(default_factory=dict)  # no effect: there is no container
    image_type: str = ""  # image.imageType; no effect: there is no container


# --- Telemetry (telemetry.istio.io) and Istio's MeshConfig (the istio ConfigMap) ---------------

WORKLOAD_MODES = ("CLIENT_AND_SERVER", "CLIENT", "SERVER")


@dataclass(frozen=True)
class TracingCustomTag:
    """Telemetry tracing.customTags[name]: exactly one of literal, environment, header."""

    name: str
    kind: str  # "literal" | "environment" | "header"
    value: str  # the literal, the variable's name or the header's (lower-case)
    default: str = ""


@dataclass(frozen=True)
class TelemetryTracing:
    """One tracing[] entry; None: not set here, so the wider scope's value stays."""

    mode: str = "CLIENT_AND_SERVER"
    providers: tuple[str, ...] = ()
    random_sampling_percentage: float | None = None
    disable_span_reporting: bool | None = None
    custom_tags: tuple[TracingCustomTag, ...] = ()
    use_request_id_for_trace_sampling: bool | None = None


@dataclass(frozen=True)
class TelemetryAccessLogging:
    mode: str = "CLIENT_AND_SERVER"
    providers: tuple[str, ...] = ()
    disabled: bool | None = None
    filter: str | None = None  # a CEL expression (checked by pymesh.telemetry.cel when loaded)


@dataclass(frozen=True)
class MetricTagOverride:
    tag: str
    operation: str = "UPSERT"  # UPSERT | REMOVE
    value: str = ""  # UPSERT: a CEL value expression


@dataclass(frozen=True)
class TelemetryMetricOverride:
    metric: str = "ALL_METRICS"  # an Istio metric enum name, or a customMetric name
    custom: bool = False  # match.customMetric rather than match.metric
    mode: str = "CLIENT_AND_SERVER"
    disabled: bool | None = None
    tag_overrides: tuple[MetricTagOverride, ...] = ()


@dataclass(frozen=True)
class TelemetryMetrics:
    providers: tuple[str, ...] = ()
    overrides: tuple[TelemetryMetricOverride, ...] = ()
    reporting_interval: float | None = None  # accepted, no effect (pymesh reports continuously)


@dataclass(frozen=True)
class Telemetry:
    metadata: Metadata
    selector: Labels | None = None  # selector.matchLabels; None: the namespace (root: the mesh)
    target_refs: tuple[PolicyTargetReference, ...] = ()
    tracing: tuple[TelemetryTracing, ...] = ()
    access_logging: tuple[TelemetryAccessLogging, ...] = ()
    metrics: tuple[TelemetryMetrics, ...] = ()


@dataclass(frozen=True)
class ExtensionProvider:
    """MeshConfig.extensionProviders[]: the kinds pymesh runs (zipkin, opentelemetry,
    envoyFileAccessLog, prometheus); the others are kept by name so a Telemetry naming one gets
    a clear warning instead of silently nothing."""

    name: str
    kind: str  # the MeshConfig field name: "zipkin", "opentelemetry", "envoyFileAccessLog", ...
    service: str = ""
    port: int = 0
    path: str = ""
    max_tag_length: int = 0  # 0: Istio's default (256)
    timeout: float | None = None
    headers: tuple[tuple[str, str], ...] = ()
    log_text: str = ""  # envoyFileAccessLog logFormat.text
    log_labels: tuple[tuple[str, str], ...] = ()  # envoyFileAccessLog logFormat.labels (JSON)
    otlp_http: bool = True  # opentelemetry: http given (False: Istio would export OTLP/gRPC)


@dataclass(frozen=True)
class IstioMeshConfig:
    """Istio's MeshConfig (the istio ConfigMap's data.mesh, or --mesh-config): the parts about
    telemetry pymesh applies; `no_effect` names the fields given that it does not."""

    source: Source = field(default_factory=Source, compare=False)
    extension_providers: tuple[ExtensionProvider, ...] = ()
    default_tracing: tuple[str, ...] = ()
    default_metrics: tuple[str, ...] = ("prometheus",)
    default_access_logging: tuple[str, ...] = ()
    enable_tracing: bool = True
    access_log_file: str = ""
    access_log_encoding: str = "TEXT"  # TEXT | JSON
    access_log_format: str = ""
    root_namespace: str = "istio-system"
    sampling: float | None = None  # defaultConfig.tracing.sampling (percent)
    zipkin_address: str = ""  # defaultConfig.tracing.zipkin.address ("host:port")
    max_path_tag_length: int = 0  # defaultConfig.tracing.maxPathTagLength
    no_effect: tuple[str, ...] = ()


# --- The whole configuration -----------------------------------------------------------------


# --- PythonFilter (pymesh.dev) ------------------------------------------------------------------

FILTER_PHASES = ("AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE")  # WasmPlugin's PluginPhase, in chain order
FILTER_MODES = ("UNDEFINED", "CLIENT", "SERVER", "CLIENT_AND_SERVER")  # WorkloadMode, as WasmPlugin's match


@dataclass(frozen=True)
class FilterModule:
    """Where a PythonFilter's class is: an importable `package.module:Class`, or a file beside
    the YAML that declares it (`file`, relative to that file's directory, and `class_name`)."""

    import_path: str = ""  # "package.module:Class"
    file: str = ""  # "filters/apikey.py": inside the declaring file's directory
    class_name: str = ""
    # the file's absolute path as resolved when the YAML was read ("" for import paths)
    resolved: str = ""
    # the file's text, put here by a control server run with --ship-filter-code (a proxy loads
    # it only with --accept-filter-code); "" otherwise
    source: str = ""

    def describe(self) -> str:
        return self.import_path or f"{self.file}:{self.class_name}"


@dataclass(frozen=True)
class FilterMatch:
    """WasmPlugin's TrafficSelector: which listener direction (mode) and ports."""

    mode: str = "UNDEFINED"
    ports: tuple[int, ...] = ()  # none: every port


@dataclass(frozen=True)
class PythonFilter:
    metadata: Metadata
    module: FilterModule
    selector: Labels | None = None  # selector.matchLabels; None: the namespace (root namespace: the mesh)
    target_refs: tuple[PolicyTargetReference, ...] = ()
    phase: str = "UNSPECIFIED_PHASE"
    priority: int = 0  # higher runs first within a phase (WasmPlugin's)
    match: tuple[FilterMatch, ...] = ()  # none: every listener
    plugin_config: Mapping[str, Any] | None = None  # free-form JSON handed to the filter (its config)
    fail_strategy: str = "FAIL_CLOSE"  # FAIL_CLOSE | FAIL_OPEN


@dataclass(frozen=True)
class MeshConfig:
    """Every resource pymesh understands, as loaded and validated from one or more sources."""

    service_entries: tuple[ServiceEntry, ...] = ()
    workload_entries: tuple[WorkloadEntry, ...] = ()
    virtual_services: tuple[VirtualService, ...] = ()
    destination_rules: tuple[DestinationRule, ...] = ()
    sidecars: tuple[Sidecar, ...] = ()
    local_rate_limits: tuple[LocalRateLimit, ...] = ()
    request_authentications: tuple[RequestAuthentication, ...] = ()
    peer_authentications: tuple[PeerAuthentication, ...] = ()
    authorization_policies: tuple[AuthorizationPolicy, ...] = ()
    gateways: tuple[Gateway, ...] = ()
    gateway_classes: tuple[GatewayClass, ...] = ()
    kubernetes_gateways: tuple[KubernetesGateway, ...] = ()
    http_routes: tuple[KubernetesRoute, ...] = ()
    grpc_routes: tuple[KubernetesRoute, ...] = ()
    tcp_routes: tuple[KubernetesRoute, ...] = ()  # v1alpha2
    tls_routes: tuple[KubernetesRoute, ...] = ()  # v1alpha2
    reference_grants: tuple[ReferenceGrant, ...] = ()
    workload_groups: tuple[WorkloadGroup, ...] = ()
    proxy_configs: tuple[ProxyConfig, ...] = ()
    telemetries: tuple[Telemetry, ...] = ()
    mesh_configs: tuple[IstioMeshConfig, ...] = ()  # at most one applies (pymesh.routing.telemetry)
    python_filters: tuple[PythonFilter, ...] = ()
