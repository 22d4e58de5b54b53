"""Why an access-log record got its status: its response flags in Envoy's words (the access
log docs' %RESPONSE_FLAGS%), for `pymesh explain --log-line` and `--request-id`. Pure."""

from __future__ import annotations

from typing import Mapping

from pymesh.policy import flags

# Envoy's response flags (envoyproxy.io docs: access log format, %RESPONSE_FLAGS%), as users ask them
FLAG_MEANINGS = {
    flags.UH: "no healthy upstream host in the cluster: none known, or all ejected or unhealthy",
    flags.UF: "upstream connection failure: the proxy could not connect to the endpoint",
    flags.UO: "upstream overflow: the circuit breaker (connectionPool limits) was full",
    flags.NR: "no route configured for the request: no virtual host for its authority, or no route matched",
    flags.URX: "the request was rejected because the retry limit (attempts) was reached",
    flags.UT: "upstream request timeout (the route's timeout or the per-try timeout)",
    flags.UR: "the upstream reset the stream",
    flags.UC: "the upstream connection was terminated after the request was sent",
    flags.DI: "the request was delayed by fault injection",
    flags.FI: "the request was aborted by fault injection",
    flags.RL: "the request was rate limited locally (429)",
    flags.DC: "the downstream (client) connection was terminated",
    flags.DPE: "downstream protocol error: the request was malformed or too large",
    flags.UPE: "upstream protocol error: the upstream's response was not valid HTTP",
    flags.SI: "stream idle timeout: nothing moved on the request for too long",
    # Envoy's flags pymesh never sets, for lines from Envoy's own logs
    "NC": "upstream cluster not found",
    "DT": "the request or connection exceeded max_connection_duration or max_downstream_connection_duration",
    "LR": "the connection was reset locally (503)",
    "LH": "the local service failed its health check (503)",
    "UAEX": "the request was denied by the external authorization service",
    "RLSE": "the request was rejected because of an error in the rate limit service",
    "IH": "the request set an invalid value for a strictly-checked header (400)",
    "UMSDR": "the upstream request reached its max stream duration",
    "DF": "the request was terminated because of a DNS resolution failure",
    "OM": "the request was terminated by the overload manager",
    "DO": "the request was dropped by the cluster's drop_overloads (503)",
}


def explain_log_record(record: Mapping) -> dict:
    """Why an access-log record (pymesh's JSON access log, Istio's field names) got its status."""
    code = record.get("response_code")
    raw = record.get("response_flags") or flags.NONE
    codes = [f for f in str(raw).split(",") if f and f != flags.NONE]
    reasons = [f"{f}: {FLAG_MEANINGS.get(f, 'unknown response flag')}" for f in codes]
    attempts = record.get("upstream_request_attempt_count")
    if code == 403 and not codes:
        reasons.append("403 without a flag at an inbound proxy: RBAC: access denied by an AuthorizationPolicy "
                       "(or 401/403 by a RequestAuthentication's JWT check)")
    if flags.URX in codes and attempts:
        reasons.append(f"{attempts} attempts were made")
    if not reasons:
        reasons.append(f"answered {code} by the upstream {record.get('upstream_host') or ''}".rstrip()
                       if record.get("upstream_host") else f"status {code}, no response flag")
    return {"status": code, "flags": codes, "reasons": reasons, "route_name": record.get("route_name"),
            "upstream_cluster": record.get("upstream_cluster"), "upstream_host": record.get("upstream_host"),
            "request_id": record.get("request_id")}
