"""Sidecar outboundTrafficPolicy.egressProxy through a real `pymesh proxy`: on an egress listener
a request whose host no route serves goes to the egress proxy's cluster (the request unchanged,
Host included, so the egress proxy can route it), a known host still goes to its service, and
without egressProxy the same request is 404 NR, as before. (Captured TCP and TLS to unknown
destinations: tests/sidecar/test_sidecar_egress_proxy.py.)"""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from proxy_harness import HOST, Proxy, Upstream, curl, endpoint, free_port, service_entry

pytestmark = pytest.mark.timeout(60)

EGRESS = "egress-proxy.istio-system.svc.cluster.local"


def config(port: int, service: Upstream, egress: Upstream, policy: dict | None) -> list[dict]:
    sidecar = {
        "egress": [{"port": {"number": port, "protocol": "HTTP", "name": "http"}, "bind": "127.0.0.1",
                    "captureMode": "NONE", "hosts": ["*/*"]}],
    }
    if policy is not None:
        sidecar["outboundTrafficPolicy"] = policy
    egress_entry = service_entry(port, [endpoint(egress, {"app": "egress"})], host=EGRESS, name="egress-proxy")
    egress_entry["metadata"]["namespace"] = "istio-system"
    return [
        service_entry(port, [endpoint(service)]),
        egress_entry,
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": "egress-proxy", "namespace": "istio-system"},
         "spec": {"host": EGRESS, "subsets": [{"name": "outside", "labels": {"app": "egress"}}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar", "metadata": {"name": "default", "namespace": "default"},
         "spec": sidecar},
    ]


@pytest.fixture
def servers():
    service, egress = Upstream("service"), Upstream("egress")
    yield service, egress
    service.stop()
    egress.stop()


@contextmanager
def run(tmp_path, servers, policy, port: int | None = None):
    """A started proxy that was sent one request for a known host and one for an unknown one:
    (known, unknown, proxy); the proxy is stopped on exit."""
    service, egress = servers
    port = port or free_port()
    proxy = Proxy(tmp_path, config(port, service, egress, policy))
    try:
        proxy.start()
        known = curl(port, "/known", host=HOST)
        unknown = curl(port, "/politics?x=1", host="edition.cnn.com")
        yield known, unknown, proxy
    finally:
        proxy.kill()


def test_unknown_host_goes_to_the_egress_proxy(tmp_path, servers):
    service, egress = servers
    port = free_port()
    policy = {"mode": "ALLOW_ANY", "egressProxy": {"host": EGRESS, "subset": "outside", "port": {"number": port}}}
    with run(tmp_path, servers, policy, port) as (known, unknown, proxy):
        assert known.status == 200 and unknown.status == 200, (known, unknown, proxy.stderr())
        (to_service,) = service.wait_requests(1)
        (to_egress,) = egress.wait_requests(1)
        assert to_service.path == "/known"
        assert to_egress.target == "/politics?x=1" and to_egress.header("host") == "edition.cnn.com"
        line = proxy.wait_log(lambda e: "politics" in str(e))
        assert f"outbound|{port}|outside|{EGRESS}" in str(line), line


@pytest.mark.parametrize("policy, status", [
    (None, 404),  # no Sidecar policy: not captured, nothing to pass through to: NR
    ({"mode": "ALLOW_ANY"}, 404),
    ({"mode": "REGISTRY_ONLY"}, 404),
])
def test_without_egress_proxy_an_unknown_host_is_not_routed(tmp_path, servers, policy, status):
    with run(tmp_path, servers, policy) as (known, unknown, proxy):
        assert known.status == 200, proxy.stderr()
        assert unknown.status == status, (unknown, proxy.stderr())
    assert servers[1].count() == 0


def test_egress_proxy_cluster_missing_is_503(tmp_path, servers):
    """Istio: the egress proxy must be a service the sidecar sees; here it has no such port."""
    policy = {"mode": "ALLOW_ANY", "egressProxy": {"host": EGRESS, "port": {"number": 1}}}
    with run(tmp_path, servers, policy) as (known, unknown, proxy):
        assert known.status == 200 and unknown.status == 503, (unknown, proxy.stderr())
        assert "outboundTrafficPolicy.egressProxy: cluster outbound|1||" in proxy.stderr()
    assert servers[1].count() == 0
