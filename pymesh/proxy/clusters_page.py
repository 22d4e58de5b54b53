"""Envoy's admin /clusters text: per cluster its circuit breaker thresholds, per host its counts,
health, weight and locality, one `cluster::...::value` line each, in Envoy's order.

high_priority shows Envoy's defaults: Istio sets thresholds for the default priority only, and
pymesh routes nothing at high priority. Host fields pymesh does not track (cx_total per host,
hostname, success rates, which need success-rate outlier detection Istio cannot configure) are
printed as Envoy prints them when unset, or left out when Envoy would show a real count.
"""

from __future__ import annotations

from typing import Mapping

from pymesh.policy.circuit_breaker import CircuitBreaker
from pymesh.routing.snapshot import Cluster, Endpoint

# Envoy's default thresholds, which high_priority keeps under Istio.
_ENVOY_DEFAULTS = (("max_connections", 1024), ("max_pending_requests", 1024), ("max_requests", 1024), ("max_retries", 3))


def _thresholds(cluster: Cluster) -> list[tuple[str, int]]:
    breaker = CircuitBreaker({}, cluster.connection_pool)
    return [("max_connections", breaker.max_connections), ("max_pending_requests", breaker.max_pending),
            ("max_requests", breaker.max_requests), ("max_retries", breaker.max_retries)]


def cluster_lines(cluster: Cluster) -> list[str]:
    name = cluster.name
    lines = [f"{name}::observability_name::{name}"]
    lines += [f"{name}::default_priority::{key}::{value}" for key, value in _thresholds(cluster)]
    lines += [f"{name}::high_priority::{key}::{value}" for key, value in _ENVOY_DEFAULTS]
    lines.append(f"{name}::added_via_api::true")
    return lines


def host_lines(cluster: Cluster, endpoint: Endpoint, state, cx_active: int) -> list[str]:
    """`state`: the cluster's ClusterState on this worker, or None (nothing counted yet)."""
    prefix = f"{cluster.name}::{endpoint.key}"
    stats = state.endpoint_stats.get(endpoint.key) if state is not None else None
    counts: list[tuple[str, object]] = [("cx_active", cx_active)]
    if stats is not None:
        counts += [("cx_connect_fail", stats.cx_connect_fail), ("rq_active", stats.rq_active),
                   ("rq_error", stats.rq_error), ("rq_success", stats.rq_total - stats.rq_error),
                   ("rq_timeout", stats.rq_timeout), ("rq_total", stats.rq_total)]
    region, zone, sub_zone = (endpoint.locality.split("/") + ["", "", ""])[:3]
    fields: list[tuple[str, object]] = counts + [
        ("hostname", ""),
        ("health_flags", state.health_flags(endpoint) if state is not None else "healthy"),
        ("weight", endpoint.weight),
        ("region", region), ("zone", zone), ("sub_zone", sub_zone),
        ("canary", "false"),
        ("priority", endpoint.priority),
        ("success_rate", -1),
        ("local_origin_success_rate", -1),
    ]
    lines = [f"{prefix}::{key}::{value}" for key, value in fields]
    lines += [f"{prefix}::label::{key}={value}" for key, value in sorted(endpoint.labels.items())]  # pymesh's own
    return lines


def render(clusters: Mapping[str, Cluster], states: Mapping, connections: Mapping[tuple[str, str], int]) -> str:
    """`connections`: open upstream connections by (cluster name, host address:port)."""
    lines: list[str] = []
    for name, cluster in sorted(clusters.items()):
        lines += cluster_lines(cluster)
        state = states.get(name)
        for endpoint in cluster.endpoints:
            lines += host_lines(cluster, endpoint, state, connections.get((name, endpoint.key), 0))
    return "\n".join(lines) + "\n"
