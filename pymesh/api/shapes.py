"""Every Istio message pymesh reads: the fields it supports and the Istio fields it knows but does
not implement.

This table is the one place that says what pymesh accepts. A field of Istio's protos is never
called unknown: pymesh either implements it (`fields`), or ignores it with a warning (`ignored`),
or refuses the resource (`unsupported`). Any other name is an "unknown field". Names are Istio's
camelCase YAML names.

The rule for an Istio field pymesh does not implement:

- `ignored` ("field has no effect in pymesh (ignored)", a warning; an error under `--strict`)
  when leaving it out changes nothing about which requests are accepted, where they go and what
  is sent: stats names (statPrefix), tuning pymesh has no equivalent for (retryBudget's
  budgetInterval). The resource is applied without it.
- `unsupported` ("field not supported by pymesh yet", an error: the resource is not applied)
  when ignoring it would change behaviour: anything that decides who may send or receive
  (authentication, authorization, TLS, match conditions such as sourceNamespace, which would
  widen a match if dropped), where traffic goes (delegate, network, tunnel), or what is sent
  (rewrites, bodies, PROXY protocol). Half-applying such a resource is worse than refusing it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    name: str  # Istio's message name, for programming errors only
    fields: frozenset[str]
    unsupported: frozenset[str] = frozenset()
    ignored: frozenset[str] = frozenset()  # accepted with a warning (see the module's docstring)


def shape(name: str, fields: str, unsupported: str = "", ignored: str = "") -> Shape:
    return Shape(name, frozenset(fields.split()), frozenset(unsupported.split()), frozenset(ignored.split()))


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
WORKLOAD_ENTRY = shape("WorkloadEntry", "address ports labels weight serviceAccount locality network")

# --- VirtualService --------------------------------------------------------------------------

VIRTUAL_SERVICE = shape("VirtualService", "hosts gateways http tcp tls exportTo")
# A few fields are in Istio's CRDs under their proto name too (mirror_percent, jwks_uri): both
# spellings are accepted, as the API server does (Reader.spelling).
HTTP_ROUTE = shape(
    "HTTPRoute",
    "name match route redirect rewrite directResponse headers timeout retries fault corsPolicy "
    "mirror mirrors mirrorPercentage mirrorPercent mirror_percent delegate",
)
DELEGATE = shape("Delegate", "name namespace")
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
    unsupported="sourceNamespace",
    ignored="statPrefix",
)
HTTP_ROUTE_DESTINATION = shape("HTTPRouteDestination", "destination weight headers")
HTTP_REDIRECT = shape("HTTPRedirect", "uri authority port derivePort scheme redirectCode")
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
    ignored="http2KeepAlive",  # PINGs on idle upstream HTTP/2 connections: liveness tuning only
)
OUTLIER_DETECTION = shape(
    "OutlierDetection",
    "consecutiveErrors consecutive5xxErrors consecutiveGatewayErrors consecutiveLocalOriginFailures "
    "splitExternalLocalOriginErrors interval baseEjectionTime maxEjectionPercent minHealthPercent",
)
RETRY_BUDGET = shape("RetryBudget", "percent minRetryConcurrency", ignored="budgetInterval")
SUBSET = shape("Subset", "name labels trafficPolicy")

# --- Sidecar ---------------------------------------------------------------------------------

SIDECAR = shape(
    "Sidecar", "workloadSelector ingress egress outboundTrafficPolicy", unsupported="inboundConnectionPool"
)
INGRESS_LISTENER = shape(
    "IstioIngressListener", "port bind captureMode defaultEndpoint tls", unsupported="connectionPool"
)
EGRESS_LISTENER = shape("IstioEgressListener", "port bind captureMode hosts")
OUTBOUND_TRAFFIC_POLICY = shape("OutboundTrafficPolicy", "mode egressProxy")

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
    "forwardOriginalToken outputClaimToHeaders timeout spaceDelimitedClaims",
    unsupported="presence",  # presence: Istio's newest API only
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

# --- Gateway API (gateway.networking.k8s.io): its Go types' JSON names --------------------------

GATEWAY_CLASS = shape("GatewayClassSpec", "controllerName description parametersRef")
PARAMETERS_REFERENCE = shape("ParametersReference", "group kind name namespace")
K8S_GATEWAY = shape(
    "GatewaySpec", "gatewayClassName listeners addresses",
    unsupported="infrastructure backendTLS allowedListeners",
)
GATEWAY_ADDRESS = shape("GatewaySpecAddress", "type value")
LISTENER = shape("Listener", "name hostname port protocol tls allowedRoutes")
GATEWAY_TLS = shape("GatewayTLSConfig", "mode certificateRefs options", unsupported="frontendValidation")
SECRET_REFERENCE = shape("SecretObjectReference", "group kind name namespace")
ALLOWED_ROUTES = shape("AllowedRoutes", "namespaces kinds")
ROUTE_NAMESPACES = shape("RouteNamespaces", "from selector")
LABEL_SELECTOR = shape("LabelSelector", "matchLabels", unsupported="matchExpressions")
ROUTE_GROUP_KIND = shape("RouteGroupKind", "group kind")
K8S_HTTP_ROUTE = shape("HTTPRouteSpec", "parentRefs hostnames rules")
K8S_GRPC_ROUTE = shape("GRPCRouteSpec", "parentRefs hostnames rules")
PARENT_REFERENCE = shape("ParentReference", "group kind namespace name sectionName port")
HTTP_ROUTE_RULE = shape(
    "HTTPRouteRule", "name matches filters backendRefs timeouts retry", unsupported="sessionPersistence"
)
GRPC_ROUTE_RULE = shape("GRPCRouteRule", "name matches filters backendRefs", unsupported="sessionPersistence")
HTTP_ROUTE_MATCH = shape("HTTPRouteMatch", "path headers queryParams method")
HTTP_PATH_MATCH = shape("HTTPPathMatch", "type value")
HTTP_HEADER_MATCH = shape("HTTPHeaderMatch", "type name value")
GRPC_ROUTE_MATCH = shape("GRPCRouteMatch", "method headers")
GRPC_METHOD_MATCH = shape("GRPCMethodMatch", "type service method")
HTTP_ROUTE_FILTER = shape(
    "HTTPRouteFilter",
    "type requestHeaderModifier responseHeaderModifier requestRedirect urlRewrite requestMirror cors extensionRef",
    unsupported="externalAuth",
)
HTTP_HEADER_FILTER = shape("HTTPHeaderFilter", "set add remove")
HTTP_HEADER = shape("HTTPHeader", "name value")
HTTP_REQUEST_REDIRECT = shape("HTTPRequestRedirectFilter", "scheme hostname path port statusCode")
HTTP_PATH_MODIFIER = shape("HTTPPathModifier", "type replaceFullPath replacePrefixMatch")
HTTP_URL_REWRITE = shape("HTTPURLRewriteFilter", "hostname path")
HTTP_REQUEST_MIRROR = shape("HTTPRequestMirrorFilter", "backendRef percent fraction")
FRACTION = shape("Fraction", "numerator denominator")
LOCAL_OBJECT_REFERENCE = shape("LocalObjectReference", "group kind name")
BACKEND_REF = shape("HTTPBackendRef", "group kind name namespace port weight filters")
BACKEND_OBJECT_REFERENCE = shape("BackendObjectReference", "group kind name namespace port")
HTTP_ROUTE_TIMEOUTS = shape("HTTPRouteTimeouts", "request backendRequest")
HTTP_ROUTE_RETRY = shape("HTTPRouteRetry", "codes attempts backoff")
K8S_TCP_ROUTE = shape("TCPRouteSpec", "parentRefs rules")
K8S_TLS_ROUTE = shape("TLSRouteSpec", "parentRefs hostnames rules")
L4_ROUTE_RULE = shape("TCPRouteRule", "name backendRefs")
L4_BACKEND_REF = shape("BackendRef", "group kind name namespace port weight")
HTTP_CORS_FILTER = shape("HTTPCORSFilter", "allowOrigins allowCredentials allowMethods allowHeaders exposeHeaders maxAge")
REFERENCE_GRANT = shape("ReferenceGrantSpec", "from to")
REFERENCE_GRANT_FROM = shape("ReferenceGrantFrom", "group kind namespace")
REFERENCE_GRANT_TO = shape("ReferenceGrantTo", "group kind name")

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
# The template is a WorkloadEntry whose address the registering proxy fills in.
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

# --- PythonFilter (pymesh.dev v1alpha1), shaped after Istio's WasmPlugin ----------------------

# WasmPlugin's url, sha256, imagePullPolicy, imagePullSecret, pluginName, vmConfig and type have
# no meaning for a Python class (`module` replaces url): they are unknown fields here.
PYTHON_FILTER = shape("PythonFilter", "selector targetRef targetRefs module phase priority match pluginConfig failStrategy")
FILTER_MODULE = shape("PythonFilter.Module", "file class")
FILTER_MATCH = shape("WasmPlugin.TrafficSelector", "mode ports")
