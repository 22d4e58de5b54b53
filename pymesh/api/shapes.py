"""Every Istio message pymesh reads: the fields it supports and the Istio fields it knows but does
not implement yet.

This table is the one place that says what pymesh accepts. A field in `unsupported` is reported
as "field not supported by pymesh yet" (so Istio YAML that relies on it fails loudly instead of
being half-applied); any other field not in `fields` is an "unknown field". Names are Istio's
camelCase YAML names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    name: str  # Istio's message name, for programming errors only
    fields: frozenset[str]
    unsupported: frozenset[str] = frozenset()


def shape(name: str, fields: str, unsupported: str = "") -> Shape:
    return Shape(name, frozenset(fields.split()), frozenset(unsupported.split()))


# --- the resource envelope -------------------------------------------------------------------

# `status` is written by Kubernetes (kubectl get -o yaml); it is accepted and ignored.
RESOURCE = shape("Resource", "apiVersion kind metadata spec status")
# Bookkeeping fields Kubernetes adds are accepted and ignored so that `kubectl get -o yaml`
# output loads; only name, namespace and labels mean anything to pymesh.
METADATA = shape(
    "ObjectMeta",
    "name namespace labels annotations uid resourceVersion generation creationTimestamp "
    "deletionTimestamp deletionGracePeriodSeconds managedFields ownerReferences finalizers "
    "generateName selfLink",
)

# --- shared ----------------------------------------------------------------------------------

WORKLOAD_SELECTOR = shape("WorkloadSelector", "labels")
STRING_MATCH = shape("StringMatch", "exact prefix regex")
PORT_SELECTOR = shape("PortSelector", "number")
DESTINATION = shape("Destination", "host subset port")
HEADERS = shape("Headers", "request response")
HEADER_OPERATIONS = shape("HeaderOperations", "set add remove")

# --- ServiceEntry / WorkloadEntry ------------------------------------------------------------

SERVICE_ENTRY = shape(
    "ServiceEntry",
    "hosts addresses ports location resolution endpoints workloadSelector exportTo subjectAltNames",
)
SERVICE_PORT = shape("ServicePort", "number protocol name targetPort")
WORKLOAD_ENTRY = shape(
    "WorkloadEntry", "address ports labels weight serviceAccount locality", unsupported="network"
)

# --- VirtualService --------------------------------------------------------------------------

VIRTUAL_SERVICE = shape("VirtualService", "hosts gateways http tcp tls exportTo")
# A few fields are in Istio's CRDs under their proto name too (mirror_percent, jwks_uri): both
# spellings are accepted, as the API server does (Reader.spelling).
HTTP_ROUTE = shape(
    "HTTPRoute",
    "name match route redirect rewrite directResponse headers timeout retries fault corsPolicy "
    "mirror mirrors mirrorPercentage mirrorPercent mirror_percent",
    unsupported="delegate",
)
HTTP_MIRROR_POLICY = shape("HTTPMirrorPolicy", "destination percentage")
HTTP_FAULT_INJECTION = shape("HTTPFaultInjection", "delay abort")
# exponentialDelay is hidden in Istio's API and Istio's translation drops it.
FAULT_DELAY = shape("HTTPFaultInjection.Delay", "fixedDelay percentage percent", unsupported="exponentialDelay")
# http2Error: Istio's own validation rejects it ("HTTP/2 abort fault injection not supported yet").
# `percent` was removed from Abort in Istio's API, but Istio's bookinfo samples still carry it.
FAULT_ABORT = shape("HTTPFaultInjection.Abort", "httpStatus grpcStatus percentage percent", unsupported="http2Error")
PERCENT = shape("Percent", "value")
CORS_POLICY = shape(
    "CorsPolicy",
    "allowOrigins allowOrigin allowMethods allowHeaders exposeHeaders maxAge allowCredentials unmatchedPreflights",
)
HTTP_MATCH_REQUEST = shape(
    "HTTPMatchRequest",
    "name uri scheme method authority headers withoutHeaders queryParams port sourceLabels "
    "ignoreUriCase gateways",
    unsupported="sourceNamespace statPrefix",
)
HTTP_ROUTE_DESTINATION = shape("HTTPRouteDestination", "destination weight headers")
HTTP_REDIRECT = shape("HTTPRedirect", "uri authority port scheme redirectCode", unsupported="derivePort")
HTTP_REWRITE = shape("HTTPRewrite", "uri authority", unsupported="uriRegexRewrite")
HTTP_DIRECT_RESPONSE = shape("HTTPDirectResponse", "status body")
HTTP_BODY = shape("HTTPBody", "string", unsupported="bytes")
HTTP_RETRY = shape(
    "HTTPRetry",
    "attempts perTryTimeout retryOn retryRemoteLocalities retryIgnorePreviousHosts backoff",
)
TCP_ROUTE = shape("TCPRoute", "match route")
L4_MATCH_ATTRIBUTES = shape(
    "L4MatchAttributes", "port destinationSubnets sourceLabels gateways", unsupported="sourceNamespace sourceSubnet"
)
ROUTE_DESTINATION = shape("RouteDestination", "destination weight")
TLS_ROUTE = shape("TLSRoute", "match route")
TLS_MATCH_ATTRIBUTES = shape("TLSMatchAttributes", "sniHosts destinationSubnets port sourceLabels sourceNamespace gateways")

# --- DestinationRule -------------------------------------------------------------------------

DESTINATION_RULE = shape("DestinationRule", "host trafficPolicy subsets exportTo workloadSelector")
# istio.type.v1beta1.WorkloadSelector (DestinationRule's; Sidecar's and ServiceEntry's say `labels`)
MATCH_LABELS_SELECTOR = shape("type.v1beta1.WorkloadSelector", "matchLabels")
TRAFFIC_POLICY = shape(
    "TrafficPolicy",
    "loadBalancer connectionPool outlierDetection portLevelSettings retryBudget tls",
    unsupported="tunnel proxyProtocol",
)
PORT_TRAFFIC_POLICY = shape("TrafficPolicy.PortTrafficPolicy", "port loadBalancer connectionPool outlierDetection tls")
CLIENT_TLS_SETTINGS = shape(
    "ClientTLSSettings",
    "mode clientCertificate privateKey caCertificates caCrl credentialName subjectAltNames sni insecureSkipVerify",
)
LOAD_BALANCER = shape(
    "LoadBalancerSettings", "simple consistentHash localityLbSetting warmupDurationSecs warmup"
)
CONSISTENT_HASH = shape(
    "ConsistentHashLB",
    "httpHeaderName httpCookie useSourceIp httpQueryParameterName ringHash maglev minimumRingSize",
)
RING_HASH = shape("RingHash", "minimumRingSize")
MAGLEV = shape("MagLev", "tableSize")
HTTP_COOKIE = shape("HTTPCookie", "name ttl path attributes")
COOKIE_ATTRIBUTE = shape("HTTPCookie.Attribute", "name value")
WARMUP = shape("WarmupConfiguration", "duration minimumPercent aggression")
LOCALITY_LB_SETTING = shape("LocalityLoadBalancerSetting", "enabled distribute failover failoverPriority")
LOCALITY_DISTRIBUTE = shape("LocalityLoadBalancerSetting.Distribute", "from to")
LOCALITY_FAILOVER = shape("LocalityLoadBalancerSetting.Failover", "from to")
CONNECTION_POOL = shape("ConnectionPoolSettings", "tcp http")
TCP_SETTINGS = shape("TCPSettings", "connectTimeout idleTimeout maxConnections tcpKeepalive maxConnectionDuration")
TCP_KEEPALIVE = shape("TcpKeepalive", "probes time interval")
# http2KeepAlive (HTTP/2 PINGs to upstream connections) is in Istio's newest API only.
HTTP_SETTINGS = shape(
    "HTTPSettings",
    "idleTimeout maxRequestsPerConnection h2UpgradePolicy useClientProtocol maxConcurrentStreams "
    "http1MaxPendingRequests http2MaxRequests maxRetries",
    unsupported="http2KeepAlive",
)
OUTLIER_DETECTION = shape(
    "OutlierDetection",
    "consecutiveErrors consecutive5xxErrors consecutiveGatewayErrors consecutiveLocalOriginFailures "
    "splitExternalLocalOriginErrors interval baseEjectionTime maxEjectionPercent minHealthPercent",
)
RETRY_BUDGET = shape("RetryBudget", "percent minRetryConcurrency", unsupported="budgetInterval")
SUBSET = shape("Subset", "name labels trafficPolicy")

# --- Sidecar ---------------------------------------------------------------------------------

SIDECAR = shape(
    "Sidecar", "workloadSelector ingress egress outboundTrafficPolicy", unsupported="inboundConnectionPool"
)
INGRESS_LISTENER = shape(
    "IstioIngressListener", "port bind captureMode defaultEndpoint", unsupported="tls connectionPool"
)
EGRESS_LISTENER = shape("IstioEgressListener", "port bind captureMode hosts")
OUTBOUND_TRAFFIC_POLICY = shape("OutboundTrafficPolicy", "mode", unsupported="egressProxy")

# --- LocalRateLimit (pymesh.dev/v1alpha1: Istio has none; see pymesh.api.ratelimit) ------------

LOCAL_RATE_LIMIT = shape("LocalRateLimit", "workloadSelector rules")
RATE_LIMIT_RULE = shape("LocalRateLimit.Rule", "route direction tokenBucket key")
TOKEN_BUCKET = shape("TokenBucket", "maxTokens tokensPerFill fillInterval")
RATE_LIMIT_KEY = shape("LocalRateLimit.Key", "header sourceIp")

# --- security.istio.io: shared, and RequestAuthentication ------------------------------------

# The security kinds' selector is istio.type.v1beta1.WorkloadSelector (matchLabels), not the
# networking one (labels).
MATCH_LABELS_SELECTOR = shape("type.WorkloadSelector", "matchLabels")
POLICY_TARGET_REFERENCE = shape("PolicyTargetReference", "group kind name namespace")
REQUEST_AUTHENTICATION = shape("RequestAuthentication", "selector targetRef targetRefs jwtRules")
JWT_RULE = shape(
    "JWTRule",
    "issuer audiences jwksUri jwks_uri jwks fromHeaders fromParams fromCookies outputPayloadToHeader "
    "forwardOriginalToken outputClaimToHeaders timeout",
    unsupported="spaceDelimitedClaims presence",  # presence: Istio's newest API only
)
JWT_HEADER = shape("JWTHeader", "name prefix")
CLAIM_TO_HEADER = shape("ClaimToHeader", "header claim")

# --- PeerAuthentication (security.istio.io v1/v1beta1; it has no targetRef(s), unlike
# AuthorizationPolicy; portLevelTls is Istio-internal and not in the CRD) ----------------------

PEER_AUTHENTICATION = shape("PeerAuthentication", "selector mtls portLevelMtls")
MUTUAL_TLS = shape("PeerAuthentication.MutualTLS", "mode")
# --- AuthorizationPolicy (security.istio.io) -------------------------------------------------

AUTHORIZATION_POLICY = shape("AuthorizationPolicy", "selector targetRef targetRefs action provider rules")
EXTENSION_PROVIDER = shape("AuthorizationPolicy.ExtensionProvider", "name")
AUTHZ_RULE = shape("Rule", "from to when")
AUTHZ_RULE_FROM = shape("Rule.From", "source")
AUTHZ_RULE_TO = shape("Rule.To", "operation")
AUTHZ_SOURCE = shape(
    "Source",
    "principals notPrincipals requestPrincipals notRequestPrincipals namespaces notNamespaces "
    "serviceAccounts notServiceAccounts ipBlocks notIpBlocks remoteIpBlocks notRemoteIpBlocks",
)
AUTHZ_OPERATION = shape("Operation", "hosts notHosts ports notPorts methods notMethods paths notPaths")
AUTHZ_CONDITION = shape("Condition", "key values notValues")

# --- Gateway (networking.istio.io; tlsCertificates is in Istio's newest API only) --------------

GATEWAY = shape("Gateway", "servers selector")
GATEWAY_SERVER = shape("Server", "port bind hosts tls defaultEndpoint name")
GATEWAY_PORT = shape("Port", "number protocol name targetPort")
SERVER_TLS_SETTINGS = shape(
    "ServerTLSSettings",
    "httpsRedirect mode serverCertificate privateKey caCertificates caCrl credentialName credentialNames "
    "subjectAltNames verifyCertificateSpki verifyCertificateHash minProtocolVersion maxProtocolVersion cipherSuites",
    unsupported="tlsCertificates",
)

# --- WorkloadGroup and ProxyConfig (networking.istio.io) --------------------------------------

WORKLOAD_GROUP = shape("WorkloadGroup", "metadata template probe")
WORKLOAD_GROUP_METADATA = shape("WorkloadGroup.ObjectMeta", "labels annotations")
# The template is a WorkloadEntry whose address the registering proxy fills in. `network` is
# accepted there (Istio's own samples set it) and has no effect: pymesh is one network.
WORKLOAD_GROUP_TEMPLATE = shape("WorkloadGroup.template", "address ports labels weight serviceAccount locality network")
READINESS_PROBE = shape(
    "ReadinessProbe",
    "initialDelaySeconds timeoutSeconds periodSeconds successThreshold failureThreshold httpGet tcpSocket exec",
)
HTTP_HEALTH_CHECK = shape("HTTPHealthCheckConfig", "path port host scheme httpHeaders")
HTTP_HEADER = shape("HTTPHeader", "name value")
TCP_HEALTH_CHECK = shape("TCPHealthCheckConfig", "host port")
EXEC_HEALTH_CHECK = shape("ExecHealthCheckConfig", "command")
# targetRef picks a waypoint (ambient mode), which pymesh does not have
PROXY_CONFIG = shape("ProxyConfig", "selector concurrency environmentVariables image", unsupported="targetRef")
PROXY_IMAGE = shape("ProxyImage", "imageType")

# --- Telemetry (telemetry.istio.io v1, v1alpha1) ----------------------------------------------

TELEMETRY = shape("Telemetry", "selector targetRef targetRefs tracing accessLogging metrics")
PROVIDER_REF = shape("ProviderRef", "name")
# enableIstioTags (Istio 1.26) switches Istio's own span tags, which pymesh does not add
TRACING = shape(
    "Tracing",
    "match providers randomSamplingPercentage disableSpanReporting customTags useRequestIdForTraceSampling",
    unsupported="enableIstioTags",
)
WORKLOAD_MODE_SELECTOR = shape("TracingSelector", "mode")
CUSTOM_TAG = shape("Tracing.CustomTag", "literal environment header")
TAG_LITERAL = shape("Tracing.Literal", "value")
TAG_ENVIRONMENT = shape("Tracing.Environment", "name defaultValue")
TAG_HEADER = shape("Tracing.RequestHeader", "name defaultValue")
ACCESS_LOGGING = shape("AccessLogging", "match providers disabled filter")
ACCESS_LOGGING_FILTER = shape("AccessLogging.Filter", "expression")
METRICS = shape("Metrics", "providers overrides reportingInterval")
METRICS_OVERRIDES = shape("MetricsOverrides", "match disabled tagOverrides")
METRIC_SELECTOR = shape("MetricSelector", "metric customMetric mode")
TAG_OVERRIDE = shape("MetricsOverrides.TagOverride", "operation value")

# --- Istio's MeshConfig (the istio ConfigMap's data.mesh) --------------------------------------
# Istio reads it with protobuf's JSON parser, which takes a field under its JSON (camelCase) or
# proto (snake_case) name: pymesh.api.meshconfig accepts both. MESH_CONFIG_NO_EFFECT are
# Istio's fields that pymesh accepts and reports as having no effect.

CONFIG_MAP = shape("ConfigMap", "apiVersion kind metadata data binaryData immutable")
CONFIG_MAP_DATA = shape("ConfigMap.data", "mesh meshNetworks values")  # of istio-system/istio
MESH_CONFIG = shape(
    "MeshConfig",
    "extensionProviders defaultProviders enableTracing accessLogFile accessLogEncoding accessLogFormat "
    "defaultConfig rootNamespace",
)
MESH_CONFIG_NO_EFFECT = frozenset((
    "proxyListenPort proxyInboundListenPort proxyHttpPort connectTimeout protocolDetectionTimeout tcpKeepalive "
    "ingressClass ingressService ingressControllerMode ingressSelector enableEnvoyAccessLogService "
    "disableEnvoyListenerLog outboundTrafficPolicy inboundTrafficPolicy configSources enableAutoMtls "
    "trustDomain trustDomainAliases caCertificates defaultServiceExportTo defaultVirtualServiceExportTo "
    "defaultDestinationRuleExportTo localityLbSetting dnsRefreshRate h2UpgradePolicy inboundClusterStatName "
    "outboundClusterStatName certificates serviceSettings enablePrometheusMerge verifyCertificateAtClient ca "
    "discoverySelectors pathNormalization defaultHttpRetryPolicy meshMTLS tlsDefaults gatewayTopology "
    "serviceScopeConfigs thriftConfig mixerCheckServer mixerReportServer disablePolicyChecks "
    "disableMixerHttpReports policyCheckFailOpen sidecarToTelemetrySessionAffinity sdsUdsPath "
    "enableSdsTokenMount sdsUseK8sSaJwt reportBatchMaxEntries reportBatchMaxTime"
).split())
DEFAULT_PROVIDERS = shape("MeshConfig.DefaultProviders", "tracing metrics accessLogging")
PROXY_TRACING = shape(
    "ProxyConfig.Tracing", "sampling zipkin maxPathTagLength customTags lightstep datadog stackdriver openCensusAgent tlsSettings"
)
ZIPKIN_ADDRESS = shape("Tracing.Zipkin", "address")
MESH_EXTENSION_PROVIDER = shape(
    "MeshConfig.ExtensionProvider",
    "name zipkin opentelemetry envoyFileAccessLog prometheus envoyExtAuthzHttp envoyExtAuthzGrpc lightstep datadog "
    "stackdriver opencensus skywalking envoyHttpAls envoyTcpAls envoyOtelAls sds",
)
# traceContextOption picks B3 and/or W3C headers for Zipkin and enable64bitTraceId the trace id's
# length: choices pymesh's tracer does not offer per provider yet.
ZIPKIN_PROVIDER = shape("ZipkinTracingProvider", "service port maxTagLength path timeout headers",
                        unsupported="traceContextOption enable64bitTraceId")
OPENTELEMETRY_PROVIDER = shape("OpenTelemetryTracingProvider", "service port maxTagLength http grpc resourceDetectors",
                               unsupported="dynatraceSampler")
OTEL_HTTP = shape("HttpService", "path timeout headers")
OTEL_GRPC = shape("GrpcService", "timeout initialMetadata")
HTTP_HEADER_VALUE = shape("HttpHeader", "name value envName")
FILE_ACCESS_LOG_PROVIDER = shape("EnvoyFileAccessLogProvider", "path logFormat")
LOG_FORMAT = shape("LogFormat", "text labels", unsupported="omitEmptyValues")
