"""The admin (/ready, /config_dump, /clusters, /stats, /stats/prometheus, /quitquitquit), stats
and health ports."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from proxy_harness import Client, free_port, http_get, http_mesh, samples, total, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def served(upstreams, proxies):
    """A proxy in front of two endpoints (v1, v2) that has answered 5 requests."""
    v1, v2 = upstreams("v1"), upstreams("v2")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": v1, "v2": v2}))
    with Client(port) as client:
        for _ in range(5):
            assert client.request("GET", "/").status == 200
    proxy.port, proxy.v1, proxy.v2 = port, v1, v2
    return proxy


def test_ready(served):
    status, _, body = served.admin("/ready")
    assert (status, body) == (200, b"LIVE\n")


def test_config_dump_is_json_with_listeners_and_clusters(served):
    status, headers, body = served.admin("/config_dump")
    assert status == 200
    assert headers["content-type"] == "application/json"
    dump = json.loads(body)
    listener_ports = [listener["port"] for listener in dump["listeners"]]
    assert served.port in listener_ports
    names = {cluster["name"] for cluster in dump["clusters"]}
    assert {f"outbound|{served.port}||svc.local", f"outbound|{served.port}|v1|svc.local",
            f"outbound|{served.port}|v2|svc.local"} <= names
    cluster = next(c for c in dump["clusters"] if c["name"] == f"outbound|{served.port}|v1|svc.local")
    assert [(e["address"], e["port"]) for e in cluster["endpoints"]] == [("127.0.0.1", served.v1.port)]


def test_clusters_lists_endpoints_with_counts(served):
    status, _, body = served.admin("/clusters")
    assert status == 200
    lines = set(body.decode().splitlines())
    default = f"outbound|{served.port}||svc.local"
    for server in (served.v1, served.v2):
        assert f"{default}::127.0.0.1:{server.port}::weight::1" in lines
    assert f"outbound|{served.port}|v1|svc.local::127.0.0.1:{served.v1.port}::label::version=v1" in lines
    counts = [int(line.rsplit("::", 1)[1]) for line in lines if line.startswith(default) and "::rq_total::" in line]
    assert sum(counts) == 5


def test_clusters_in_envoys_format_with_thresholds_and_locality(upstreams, proxies):
    up = upstreams("up")
    port = free_port()
    resources = http_mesh(port, {"v1": up}, traffic_policy={
        "connectionPool": {"tcp": {"maxConnections": 7}, "http": {"http1MaxPendingRequests": 3}}})
    resources[0]["spec"]["endpoints"][0]["locality"] = "us-west/zone1/rack2"
    proxy = proxies(resources)
    with Client(port) as client:  # keep-alive: its upstream connection stays open, idle
        for _ in range(3):
            assert client.request("GET", "/").status == 200
        lines = proxy.admin("/clusters")[2].decode().splitlines()
    name = f"outbound|{port}||svc.local"
    host = f"{name}::127.0.0.1:{up.port}"
    assert lines[lines.index(f"{name}::observability_name::{name}"):][:10] == [
        f"{name}::observability_name::{name}",
        f"{name}::default_priority::max_connections::7",
        f"{name}::default_priority::max_pending_requests::3",
        f"{name}::default_priority::max_requests::4294967295",
        f"{name}::default_priority::max_retries::4294967295",
        f"{name}::high_priority::max_connections::1024",
        f"{name}::high_priority::max_pending_requests::1024",
        f"{name}::high_priority::max_requests::1024",
        f"{name}::high_priority::max_retries::3",
        f"{name}::added_via_api::true",
    ]
    assert [line for line in lines if line.startswith(host + "::")] == [f"{host}::{field}" for field in (
        "cx_active::1", "cx_connect_fail::0", "rq_active::0", "rq_error::0", "rq_success::3", "rq_timeout::0",
        "rq_total::3", "hostname::", "health_flags::healthy", "weight::1", "region::us-west", "zone::zone1",
        "sub_zone::rack2", "canary::false", "priority::0", "success_rate::-1", "local_origin_success_rate::-1",
        "label::version=v1")]


def test_stats(served):
    def rq_total():
        _, _, body = served.admin("/stats")
        for line in body.decode().splitlines():
            if line.startswith(f"cluster.outbound|{served.port}||svc.local.upstream_rq_total:"):
                return int(line.rsplit(":", 1)[1]) == 5
        return False
    wait_until(rq_total, what="/stats to count 5 upstream requests")


def test_prometheus_on_admin_and_stats_ports(served):
    for port in (served.admin_port, served.stats_port):
        found = served.wait_metric(lambda s: total(s) == 5, port=port, what=f"5 requests on port {port}")
        assert found
    text = served.prometheus()
    assert "# TYPE istio_requests_total counter" in text
    assert total(samples(text, "istio_requests_total"), response_code="200", destination_service="svc.local") == 5
    status, _, _ = http_get(served.stats_port, "/nothing-here")
    assert status == 404


def test_prometheus_has_envoys_cluster_and_listener_stats(served):
    cluster = f"outbound|{served.port}||svc.local"
    text = served.prometheus()
    assert "# TYPE envoy_cluster_upstream_rq_total counter" in text
    assert total(samples(text, "envoy_cluster_upstream_rq_total"), cluster_name=cluster) == 5
    assert total(samples(text, "envoy_cluster_upstream_rq"), cluster_name=cluster, response_code_class="2xx") == 5
    assert "# TYPE envoy_cluster_upstream_cx_active gauge" in text
    assert total(samples(text, "envoy_cluster_upstream_rq_pending_overflow"), cluster_name=cluster) == 0
    assert total(samples(text, "envoy_listener_downstream_rq_total"), listener_address=f"127.0.0.1_{served.port}") == 5


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus package) not installed")
def test_promtool_parses_the_whole_exposition(served):
    """Prometheus's own parser reads every line; what it lints is only what Envoy's and Istio's
    output has too (no HELP on envoy_ families, Envoy's counter names without _total, Istio's
    milliseconds)."""
    check = subprocess.run(["promtool", "check", "metrics"], input=served.prometheus(), capture_output=True,
                           text=True, timeout=30)
    problems = [line for line in (check.stdout + check.stderr).splitlines()
                if line.strip() and not (line.startswith("envoy_") and line.endswith(('no help text', 'should have "_total" suffix')))
                and not line.startswith("istio_request_duration_milliseconds use base unit")]
    assert problems == [], check.stdout + check.stderr


def test_health_port(served):
    status, _, body = http_get(served.health_port, "/healthz/ready")
    assert (status, body) == (200, b"LIVE\n")


def test_quitquitquit_needs_post_and_exits_zero(served):
    status, _, _ = served.admin("/quitquitquit")
    assert status == 405
    assert served.running()
    status, _, _ = served.admin("/quitquitquit", method="POST")
    assert status == 200
    assert served.wait_exit(10) == 0


def test_unknown_admin_path_is_404(served):
    status, _, body = served.admin("/nope")
    assert status == 404
    assert b"/config_dump" in body


def _listening_addresses(port: int) -> list[str]:
    out = []
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        try:
            lines = open(table).read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # LISTEN
                if family == 4:
                    out.append(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
                else:
                    out.append(address)
    return out


def test_admin_ports_bind_loopback_by_default(served):
    for port in (served.admin_port, served.stats_port, served.health_port):
        assert _listening_addresses(port) == ["127.0.0.1"], port


def test_config_dump_redacts_header_values_a_virtual_service_sets(upstreams, proxies):
    """A bearer token attached by a VirtualService is not in /config_dump, only the header's name;
    ?include_secrets=true shows it (the admin port is on localhost)."""
    v1 = upstreams("v1")
    port = free_port()
    route = [{"route": [{"destination": {"host": "svc.local", "subset": "v1"},
                         "headers": {"request": {"set": {"authorization": "Bearer s3cr3t-t0ken"}}}}],
              "headers": {"request": {"add": {"x-api-key": "k3y-value"}}}}]
    proxy = proxies(http_mesh(port, {"v1": v1}, http=route))
    with Client(port) as client:
        assert client.request("GET", "/").status == 200
    assert v1.requests[-1].header("authorization") == "Bearer s3cr3t-t0ken"  # it is applied
    status, _, body = proxy.admin("/config_dump")
    assert status == 200
    assert b"s3cr3t" not in body and b"k3y-value" not in body
    assert b'"authorization"' in body and b"[redacted]" in body
    status, _, body = proxy.admin("/config_dump?include_secrets=true")
    assert status == 200 and b"Bearer s3cr3t-t0ken" in body and b"k3y-value" in body


def test_include_secrets_is_refused_when_the_admin_port_is_not_on_localhost():
    from types import SimpleNamespace

    from pymesh.proxy.endpoints import AdminEndpoints

    for address, allowed in (("0.0.0.0", False), ("10.1.0.1", False), ("::", False), ("127.0.0.1", True),
                             ("::1", True), ("localhost", True)):
        endpoints = AdminEndpoints(SimpleNamespace(admin_address=address), None, lambda: None, lambda: True, lambda: None)
        status, _, body = endpoints.admin("GET", "/config_dump?include_secrets=true")
        assert (status == 200) is allowed, (address, body)
        assert endpoints.admin("GET", "/config_dump")[0] == 200
