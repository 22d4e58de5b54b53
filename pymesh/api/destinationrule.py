"""DestinationRule: what happens to traffic once routed to a host (load balancing, connection
pools) and the named subsets routes can pick."""

from __future__ import annotations

from pymesh.api import checks, common, hosts, locality, model, shapes
from pymesh.api.client_tls import CLIENT_TLS
from pymesh.api.reader import (ISTIO_DURATION, ISTIO_DURATION_OR_ZERO, Reader, boolean, choice, distinct, duration, integer, message, number,
                               text)

SIMPLE = choice(
    "load balancer",
    ("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "PASSTHROUGH"),
    # LEAST_CONN is Istio's deprecated name for LEAST_REQUEST; UNSPECIFIED means "the default".
    aliases={"LEAST_CONN": "LEAST_REQUEST", "UNSPECIFIED": model.LoadBalancerSettings.simple},
)
_HASH_KEYS = ("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName")


def destination_rule(metadata: model.Metadata, r: Reader) -> model.DestinationRule:
    subset = distinct(message(shapes.SUBSET, _subset), lambda s: s.name or None, "subset name")
    selector = r.get("workloadSelector", message(shapes.MATCH_LABELS_SELECTOR, lambda s: common.labels(s, "matchLabels")))
    return model.DestinationRule(
        metadata=metadata,
        host=r.get("host", hosts.read_host(hosts.wildcard_domain), "", required=True),
        traffic_policy=r.get("trafficPolicy", TRAFFIC_POLICY),
        subsets=r.get_list("subsets", subset),
        export_to=common.export_to(r, metadata.namespace if metadata else "", own_only=selector is not None),
        workload_selector=selector,
    )


def _subset(r: Reader) -> model.Subset:
    return model.Subset(
        name=r.get("name", text(hosts.istio_label), "", required=True),
        labels=common.labels(r, "labels"),
        traffic_policy=r.get("trafficPolicy", TRAFFIC_POLICY),
    )


# The CRD's maxItems for portLevelSettings (Kubernetes rejects a longer list).
MAX_PORT_LEVEL_SETTINGS = 4096


def _traffic_policy(r: Reader) -> model.TrafficPolicy:
    if not r.data:
        r.error_here("traffic policy must set at least one field")
    port_level = r.get_list("portLevelSettings", message(shapes.PORT_TRAFFIC_POLICY, _port_traffic_policy))
    if len(port_level) > MAX_PORT_LEVEL_SETTINGS:
        r.error("portLevelSettings", f"at most {MAX_PORT_LEVEL_SETTINGS} entries, got {len(port_level)}")
    return model.TrafficPolicy(**_policy_fields(r), port_level_settings=port_level,
                               retry_budget=r.get("retryBudget", message(shapes.RETRY_BUDGET, _retry_budget)))


def _port_traffic_policy(r: Reader) -> model.PortTrafficPolicy:
    """Istio's validatePortTrafficPolicies: a port, and at least one policy for it. A port named
    twice is accepted, as Istio does; the first entry wins (the compiler warns)."""
    if not any(r.has(key) for key in ("loadBalancer", "connectionPool", "outlierDetection", "tls")):
        r.error_here("port traffic policy must have at least one field")
    return model.PortTrafficPolicy(port=r.get("port", common.PORT_SELECTOR, 0, required=True), **_policy_fields(r))


def _policy_fields(r: Reader) -> dict:
    """The fields a TrafficPolicy and a PortTrafficPolicy share."""
    return {
        "load_balancer": r.get("loadBalancer", message(shapes.LOAD_BALANCER, _load_balancer)),
        "connection_pool": r.get("connectionPool", message(shapes.CONNECTION_POOL, _connection_pool)),
        "outlier_detection": r.get("outlierDetection", message(shapes.OUTLIER_DETECTION, _outlier_detection)),
        "tls": r.get("tls", CLIENT_TLS),
    }


def _retry_budget(r: Reader) -> model.RetryBudget:
    """Istio's percent (a DoubleValue in [0, 100]; unset is Envoy's 20) and minRetryConcurrency
    (a uint32; 0, like unset, is Envoy's 3: Istio cannot tell them apart)."""
    defaults = model.RetryBudget()
    return model.RetryBudget(
        percent=r.get("percent", number(0, 100), defaults.percent),
        min_retry_concurrency=r.get("minRetryConcurrency", UINT32) or defaults.min_retry_concurrency,
    )


TRAFFIC_POLICY = message(shapes.TRAFFIC_POLICY, _traffic_policy)


def _load_balancer(r: Reader) -> model.LoadBalancerSettings:
    r.one_of(("simple", "consistentHash"), required=False)
    warmup = r.get("warmup", message(shapes.WARMUP, _warmup))
    if warmup is None:  # the older field; `warmup` wins when both are set, as in Istio
        seconds = r.get("warmupDurationSecs", duration())
        warmup = model.Warmup(seconds) if seconds else None
    return model.LoadBalancerSettings(
        simple=r.get("simple", SIMPLE, model.LoadBalancerSettings.simple),
        consistent_hash=r.get("consistentHash", message(shapes.CONSISTENT_HASH, _consistent_hash)),
        locality_lb=r.get("localityLbSetting", message(shapes.LOCALITY_LB_SETTING, locality.lb_setting)),
        warmup=warmup,
    )


def _warmup(r: Reader) -> model.Warmup:
    return model.Warmup(
        duration=r.get("duration", ISTIO_DURATION, 0.0, required=True),
        minimum_percent=r.get("minimumPercent", number(0, 100), model.Warmup.minimum_percent),
        aggression=r.get("aggression", number(1), model.Warmup.aggression),
    )


def _consistent_hash(r: Reader) -> model.ConsistentHash:
    r.one_of(_HASH_KEYS, required=True)
    algorithm = r.one_of(("ringHash", "maglev"), required=False)
    if algorithm and r.has("minimumRingSize"):
        r.error("minimumRingSize", f"only one of minimumRingSize or {algorithm} may be set (minimumRingSize is deprecated)")
    elif r.has("minimumRingSize"):
        r.warn("minimumRingSize", "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash "
               "configuration instead")
    use_source_ip = r.get("useSourceIp", boolean, False)
    if r.has("useSourceIp") and not use_source_ip:
        r.error("useSourceIp", "must be true when set (leave it out to hash on something else)")
    cookie = r.get("httpCookie", message(shapes.HTTP_COOKIE, _http_cookie), {})
    ring_size = r.get("minimumRingSize", RING_SIZE, 0) or r.get("ringHash", message(shapes.RING_HASH, _ring_hash), 0)
    return model.ConsistentHash(
        http_header_name=r.get("httpHeaderName", text(checks.match_header_name), ""),
        use_source_ip=use_source_ip,
        http_query_parameter_name=r.get("httpQueryParameterName", text(checks.not_empty), ""),
        maglev=algorithm == "maglev",
        minimum_ring_size=ring_size or model.ConsistentHash.minimum_ring_size,
        maglev_table_size=r.get("maglev", message(shapes.MAGLEV, _maglev), model.ConsistentHash.maglev_table_size),
        **cookie,
    )


# Envoy's RingHashLbConfig.minimum_ring_size limit; 0 means Envoy's default of 1024.
RING_SIZE = integer(0, 8_388_608)


def _ring_hash(r: Reader) -> int:
    return r.get("minimumRingSize", RING_SIZE, 0)


def _maglev(r: Reader) -> int:
    size = r.get("tableSize", integer(0), 0)
    if not size:
        r.error_here("tableSize must be set for maglev")
    elif size >= 5_000_011:
        r.error("tableSize", f"must be less than 5000011 for maglev, got {size}")
    elif not checks.is_prime(size):
        r.error("tableSize", f"must be a prime number for maglev, got {size}")
    return size


def _http_cookie(r: Reader) -> dict:
    return {
        "http_cookie": r.get("name", text(checks.not_empty), "", required=True),
        "http_cookie_ttl": r.get("ttl", duration()),
        "http_cookie_path": r.get("path", text(checks.cookie_octets), ""),
        "http_cookie_attributes": r.get_list("attributes", message(shapes.COOKIE_ATTRIBUTE, _cookie_attribute)),
    }


def _cookie_attribute(r: Reader) -> tuple[str, str]:
    return (r.get("name", text(checks.cookie_token), "", required=True), r.get("value", text(checks.cookie_octets), ""))


H2_UPGRADE_POLICY = choice("h2UpgradePolicy", ("DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"))


def _connection_pool(r: Reader) -> model.ConnectionPoolSettings:
    if not r.data:
        r.error_here("connection pool must set tcp or http")
    tcp = r.get("tcp", message(shapes.TCP_SETTINGS, _tcp_settings), {})
    http = r.get("http", message(shapes.HTTP_SETTINGS, _http_settings), {})
    return model.ConnectionPoolSettings(**tcp, **http)


def _tcp_settings(r: Reader) -> dict:
    return {
        "connect_timeout": r.get("connectTimeout", ISTIO_DURATION),
        "tcp_idle_timeout": r.get("idleTimeout", ISTIO_DURATION_OR_ZERO),
        "max_connections": r.get("maxConnections", integer(0), 0),
        "max_connection_duration": r.get("maxConnectionDuration", ISTIO_DURATION),
        "tcp_keepalive": r.get("tcpKeepalive", message(shapes.TCP_KEEPALIVE, _tcp_keepalive)),
    }


def _tcp_keepalive(r: Reader) -> model.TcpKeepalive:
    return model.TcpKeepalive(
        probes=r.get("probes", integer(0), 0),
        time=r.get("time", ISTIO_DURATION),
        interval=r.get("interval", ISTIO_DURATION),
    )


def _http_settings(r: Reader) -> dict:
    if r.data.get("h2UpgradePolicy") == "UPGRADE" and r.data.get("useClientProtocol") is True:
        r.error("useClientProtocol", "use client protocol must not be true when H2UpgradePolicy is UPGRADE")
    return {
        "idle_timeout": r.get("idleTimeout", ISTIO_DURATION),
        "max_requests_per_connection": r.get("maxRequestsPerConnection", integer(0), 0),
        "h2_upgrade_policy": r.get("h2UpgradePolicy", H2_UPGRADE_POLICY, "DEFAULT"),
        "use_client_protocol": r.get("useClientProtocol", boolean, False),
        "max_concurrent_streams": r.get("maxConcurrentStreams", integer(0), 0),
        "max_pending_requests": r.get("http1MaxPendingRequests", integer(0), 0),
        "max_requests": r.get("http2MaxRequests", integer(0), 0),
        "max_retries": r.get("maxRetries", integer(0), 0),
    }


# --- outlierDetection ---------------------------------------------------------------------------

UINT32 = integer(0, 2**32 - 1)  # Istio's UInt32Value counts
PERCENT = integer(0, 100)  # Istio's ValidatePercent




def _outlier_detection(r: Reader) -> model.OutlierDetection:
    """Istio's fields as Istio hands them to Envoy: a count left out keeps Envoy's default
    (5 for 5xx and local-origin, gateway errors off); the deprecated consecutiveErrors counts
    gateway errors instead of 5xx, as Istio translated it, unless the newer fields say otherwise."""
    defaults = model.OutlierDetection()
    split = r.get("splitExternalLocalOriginErrors", boolean, False)
    local = r.get("consecutiveLocalOriginFailures", UINT32)
    if local and not split:
        r.error("consecutiveLocalOriginFailures",
                "only counted with splitExternalLocalOriginErrors: true (set it, or leave this out)")
    legacy = r.get("consecutiveErrors", integer(0, 2**31 - 1))
    if legacy:
        r.warn("consecutiveErrors", "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors "
               "or consecutive5xxErrors instead")
    return model.OutlierDetection(
        consecutive_5xx=r.get("consecutive5xxErrors", UINT32, 0 if legacy else defaults.consecutive_5xx),
        consecutive_gateway=r.get("consecutiveGatewayErrors", UINT32, legacy or defaults.consecutive_gateway),
        consecutive_local_origin=local or defaults.consecutive_local_origin,
        split_external_local_origin_errors=split,
        interval=r.get("interval", ISTIO_DURATION, defaults.interval),
        base_ejection_time=r.get("baseEjectionTime", ISTIO_DURATION, defaults.base_ejection_time),
        # Istio passes 0 on as "unset", which is Envoy's default of 10%.
        max_ejection_percent=r.get("maxEjectionPercent", PERCENT) or defaults.max_ejection_percent,
        min_health_percent=r.get("minHealthPercent", PERCENT, defaults.min_health_percent),
    )
