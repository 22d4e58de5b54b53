"""DestinationRule's circuit-breaker fields (connectionPool tcp.maxConnections,
maxConnectionDuration, tcpKeepalive; http.http1MaxPendingRequests, http2MaxRequests,
maxRetries): Istio's circuit-breaking task's rule is accepted, unset limits are Istio's "none",
and bad values are named by field path."""

from __future__ import annotations

from pymesh.api.load import load_text
from pymesh.api.model import TcpKeepalive

DR = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin, namespace: default}
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
%s
"""


def pool(body: str):
    result = load_text(DR % body, "dr.yaml")
    return result, (result.config.destination_rules[0].traffic_policy.connection_pool if result.ok else None)


def test_istios_circuit_breaking_task_rule():
    result, settings = pool("""\
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1""")
    assert result.ok, result.errors
    assert (settings.max_connections, settings.max_pending_requests, settings.max_requests_per_connection) == (1, 1, 1)


def test_every_field():
    result, settings = pool("""\
      tcp: {maxConnections: 100, maxConnectionDuration: 30m, tcpKeepalive: {probes: 3, time: 7200s, interval: 75s}}
      http: {http1MaxPendingRequests: 10, http2MaxRequests: 1000, maxRetries: 3}""")
    assert result.ok, result.errors
    assert (settings.max_connections, settings.max_connection_duration) == (100, 1800.0)
    assert settings.tcp_keepalive == TcpKeepalive(probes=3, time=7200.0, interval=75.0)
    assert (settings.max_pending_requests, settings.max_requests, settings.max_retries) == (10, 1000, 3)


def test_unset_limits_are_no_limits():
    result, settings = pool("      tcp: {connectTimeout: 1s}")
    assert result.ok
    assert (settings.max_connections, settings.max_pending_requests, settings.max_requests, settings.max_retries) == (0, 0, 0, 0)
    assert settings.tcp_keepalive is None and settings.max_connection_duration is None


def test_bad_values_are_named():
    result, _ = pool("""\
      tcp: {maxConnections: -1, maxConnectionDuration: 0s, tcpKeepalive: {probes: -2, time: soon}}
      http: {http1MaxPendingRequests: -1, http2MaxRequests: "many", maxRetries: 1.5}""")
    prefix = "spec.trafficPolicy.connectionPool"
    messages = sorted(str(e).split(" ", 1)[1] for e in result.errors)
    bad_time = [m for m in messages if m.startswith(f"{prefix}.tcp.tcpKeepalive.time: ")]
    assert len(bad_time) == 1 and "soon" in bad_time[0]
    assert [m for m in messages if m not in bad_time] == sorted([
        f"{prefix}.tcp.maxConnections: must be >= 0, got -1",
        f"{prefix}.tcp.maxConnectionDuration: duration must be at least 1ms",
        f"{prefix}.tcp.tcpKeepalive.probes: must be >= 0, got -2",
        f"{prefix}.http.http1MaxPendingRequests: must be >= 0, got -1",
        f'{prefix}.http.http2MaxRequests: expected an integer, got "many"',
        f"{prefix}.http.maxRetries: expected an integer, got 1.5",
    ])
