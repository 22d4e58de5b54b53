"""DestinationRule's HTTP/2 fields (Istio's connectionPool.http: h2UpgradePolicy,
useClientProtocol, maxConcurrentStreams) and the gRPC retryOn conditions: accepted as Istio
writes them, defaults as Istio's, and bad values named by field path."""

from __future__ import annotations

from pymesh.api.load import load_text

DR = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: grpc, namespace: default}
spec:
  host: grpc-service
  trafficPolicy:
    connectionPool:
      http: %s
"""


def pool(http: str):
    result = load_text(DR % http, "dr.yaml")
    return result, (result.config.destination_rules[0].traffic_policy.connection_pool if result.ok else None)


def test_http2_fields_as_istio_writes_them():
    # (UPGRADE with useClientProtocol is refused, as Istio's validateConnectionPool does)
    result, settings = pool("{h2UpgradePolicy: DO_NOT_UPGRADE, useClientProtocol: true, maxConcurrentStreams: 100}")
    assert result.ok, result.errors
    assert (settings.h2_upgrade_policy, settings.use_client_protocol, settings.max_concurrent_streams) == (
        "DO_NOT_UPGRADE", True, 100)


def test_defaults_are_istios():
    result, settings = pool("{idleTimeout: 1s}")
    assert result.ok
    assert (settings.h2_upgrade_policy, settings.use_client_protocol, settings.max_concurrent_streams) == ("DEFAULT", False, 0)


def test_bad_values_are_named():
    result, _ = pool('{h2UpgradePolicy: upgrade, useClientProtocol: "yes", maxConcurrentStreams: -1}')
    messages = [str(e) for e in result.errors]
    assert messages == [
        "dr.yaml:8 spec.trafficPolicy.connectionPool.http.h2UpgradePolicy: h2UpgradePolicy 'upgrade' is not valid "
        "(expected DEFAULT, DO_NOT_UPGRADE or UPGRADE)",
        'dr.yaml:8 spec.trafficPolicy.connectionPool.http.useClientProtocol: expected a boolean, got "yes"',
        "dr.yaml:8 spec.trafficPolicy.connectionPool.http.maxConcurrentStreams: must be >= 0, got -1",
    ]


def test_grpc_retry_conditions_of_istios_docs_are_accepted():
    vs = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: grpc, namespace: default}
spec:
  hosts: [grpc-service]
  http:
  - route: [{destination: {host: grpc-service}}]
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "cancelled,deadline-exceeded,internal,resource-exhausted,unavailable"}
"""
    result = load_text(vs, "vs.yaml")
    assert result.ok, result.errors
