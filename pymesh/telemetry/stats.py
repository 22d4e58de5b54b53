"""Proxy-internal counters for the admin `/stats` page, in Envoy's names and "name: value" lines.

Stats are declared in one list per scope (as Envoy's stats macros do): a scope is a plain dict
pre-filled with its names, so the request path does `stats["upstream_rq_retry"] += 1` (a dict
store, ~40 ns) and a misspelt name raises KeyError instead of inventing a stat. The dicts live in
the metrics `Store`, so `/stats` is one view across workers like `/metrics`. Names ending in
`_active` are gauges: incremented and decremented, dropped when their worker exits.
"""

from __future__ import annotations

CLUSTER_STATS = (
    "upstream_cx_total",
    "upstream_cx_connect_fail",
    "upstream_cx_connect_timeout",
    "upstream_rq_total",
    "upstream_rq_1xx",
    "upstream_rq_2xx",
    "upstream_rq_3xx",
    "upstream_rq_4xx",
    "upstream_rq_5xx",
    "upstream_rq_retry",
    "upstream_rq_retry_success",
    "upstream_rq_retry_limit_exceeded",
    "upstream_rq_retry_backoff_exponential",
    "upstream_rq_timeout",
    "upstream_rq_per_try_timeout",
    # circuit breaking (Istio's connectionPool): the gauges the limits apply to, and overflows
    "upstream_cx_active",
    "upstream_cx_overflow",
    "upstream_cx_max_duration_reached",
    "upstream_rq_active",
    "upstream_rq_pending_active",
    "upstream_rq_pending_total",
    "upstream_rq_pending_overflow",
    "upstream_rq_retry_active",
    "upstream_rq_retry_overflow",
    # backpressure: the proxy stopped (and restarted) reading a response because the client's
    # side could take no more
    "upstream_flow_control_paused_reading_total",
    "upstream_flow_control_resumed_reading_total",
)

# Added to a cluster's scope when it has outlier detection (pymesh.policy.outlier), as Envoy
# creates them with the detector; ejections_active is a gauge.
OUTLIER_DETECTION_STATS = (
    "outlier_detection.ejections_enforced_total",
    "outlier_detection.ejections_active",
    "outlier_detection.ejections_overflow",
    "outlier_detection.ejections_enforced_consecutive_5xx",
    "outlier_detection.ejections_detected_consecutive_5xx",
    "outlier_detection.ejections_enforced_consecutive_gateway_failure",
    "outlier_detection.ejections_detected_consecutive_gateway_failure",
    "outlier_detection.ejections_enforced_consecutive_local_origin_failure",
    "outlier_detection.ejections_detected_consecutive_local_origin_failure",
)

# Added to a cluster's scope when it originates TLS (Envoy's cluster.<name>.ssl.* of the TLS
# transport socket): handshakes done, handshakes failed, and why verification failed.
TLS_STATS = (
    "ssl.handshake",
    "ssl.connection_error",
    "ssl.fail_verify_error",  # the chain did not verify (untrusted CA, expired, revoked)
    "ssl.fail_verify_san",  # the chain verified, the name or SPIFFE identity did not match
    "ssl.fail_verify_no_cert",  # the server presented no certificate
)

LISTENER_STATS = (
    "downstream_cx_total",
    "downstream_cx_active",
    "downstream_rq_total",
    "downstream_rq_1xx",
    "downstream_rq_2xx",
    "downstream_rq_3xx",
    "downstream_rq_4xx",
    "downstream_rq_5xx",
    "downstream_cx_overflow",
    "downstream_cx_idle_timeout",
    "downstream_rq_header_timeout",
    "downstream_rq_idle_timeout",
    # backpressure: the proxy stopped (and restarted) reading a request body because the
    # upstream's side could take no more
    "downstream_flow_control_paused_reading_total",
    "downstream_flow_control_resumed_reading_total",
    # a connection no filter chain takes, closed: TLS that no SNI route (nor fallback) takes;
    # plaintext on a STRICT mTLS port (PeerAuthentication)
    "no_filter_chain_match",
    # inbound mutual TLS: handshakes done, and failed: no client certificate, a certificate that
    # does not verify (another CA, expired), any other TLS error; and no certificate of our own
    "ssl.handshake",
    "ssl.fail_verify_no_cert",
    "ssl.fail_verify_error",
    "ssl.connection_error",
    "ssl.no_workload_certificate",  # pymesh's own: Envoy would have no listener then
    # gateway TLS servers (pymesh.proxy.gateway_tls): a verified client certificate refused by
    # subjectAltNames or by the certificate pins; a server with no certificate loaded yet; its
    # context rebuilt from changed files, or changed files that did not load (pymesh's own)
    "ssl.fail_verify_san",
    "ssl.fail_verify_cert_hash",
    "server_ssl_socket_factory.downstream_context_secrets_not_ready",
    "server_ssl_socket_factory.ssl_context_update_by_sds",
    "server_ssl_socket_factory.ssl_context_update_rejected",
)

# Envoy's tls_inspector listener filter (pymesh.proxy.tls_passthrough): what the ClientHellos
# of connections on SNI-routed listeners said. A hello that does not parse counts as not found.
TLS_INSPECTOR_SCOPE = "tls_inspector"
TLS_INSPECTOR_STATS = ("client_hello_too_large", "tls_found", "tls_not_found", "sni_found", "sni_not_found",
                       "alpn_found", "alpn_not_found")

# Request filters, per listener (Envoy's http.<stat_prefix>.<filter>. scopes).
FILTER_STATS = {
    "fault": ("delays_injected", "aborts_injected"),
    "cors": ("origin_valid", "origin_invalid"),
    "local_rate_limit": ("enabled", "enforced", "rate_limited", "ok"),
    "jwt_authn": ("allowed", "denied"),  # requests passed on (no token, or valid ones) and refused
    # AuthorizationPolicy (Envoy's RBAC filter; shadow_* per Istio's dry-run prefixes); `logged`
    # is pymesh's: requests an AUDIT policy matched
    "rbac": ("allowed", "denied", "logged", "istio_dry_run_allow_shadow_allowed", "istio_dry_run_allow_shadow_denied",
             "istio_dry_run_deny_shadow_allowed", "istio_dry_run_deny_shadow_denied"),
    # pymesh's own (Envoy has no stat for its shadows beyond the mirror cluster's upstream_rq_*):
    # copies started, in flight (a gauge), and dropped because the mirror had no host, no room
    # (its in-flight cap or circuit breaker) or could not keep up with the client's body
    "mirror": ("shadows_started", "shadows_active", "shadows_dropped_no_upstream", "shadows_dropped_overflow",
               "shadows_dropped_slow"),
}

# Tracing (pymesh.proxy.tracing). Per listener, Envoy's connection manager counts why each request
# was or was not traced (http.<stat_prefix>.tracing.*); per provider, its tracer's reports
# (tracing.opentelemetry.* / tracing.zipkin.*): spans sent, flushes by the timer, batches posted,
# failed (refused, an error status, a timeout) and dropped; spans_dropped is pymesh's own: spans
# the bounded export queue had no room for.
TRACING_DECISION_STATS = ("random_sampling", "service_forced", "client_enabled", "not_traceable", "health_check")
TRACER_STATS = ("spans_sent", "timer_flushed", "reports_sent", "reports_failed", "reports_dropped", "spans_dropped")

TCP_RBAC_SCOPE = "tcp.rbac"  # Istio's stat prefix "tcp." for the network RBAC filter

# Configuration reloads (file watch, SIGHUP), Envoy's xDS subscription names: rejected = the
# configuration is invalid or over a limit; failure = the load timed out or crashed.
CONFIG_RELOAD_SCOPE = "config_reload"
CONFIG_RELOAD_STATS = ("update_attempt", "update_success", "update_rejected", "update_failure")


def cluster_scope(cluster_name: str) -> str:
    return f"cluster.{cluster_name}"


def listener_scope(listener_name: str) -> str:
    return f"listener.{listener_name}"


def filter_scope(listener_name: str, filter_name: str) -> str:
    return f"http.{listener_name}.{filter_name}"


def tracing_scope(listener_name: str) -> str:
    return f"http.{listener_name}.tracing"


def tracer_scope(provider_kind: str) -> str:
    return f"tracing.{provider_kind}"


def render_stats(scopes: dict[str, dict[str, int]]) -> bytes:
    """Envoy's plain-text admin format: one "scope.name: value" line per stat, sorted."""
    lines = [
        f"{scope}.{name}: {value}\n"
        for scope, counters in sorted(scopes.items())
        for name, value in sorted(counters.items())
    ]
    return "".join(lines).encode()
