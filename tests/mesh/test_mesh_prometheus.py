"""The real Prometheus scrapes a running mesh from the config `pymesh dashboard prometheus-config`
writes: the control server (job istiod) and every sidecar found through the control server's
service discovery (job envoy-stats). With HTTP and TCP traffic flowing, Istio's standard
dashboard queries and every panel query of pymesh's Grafana dashboards return data.

The mesh: productpage's sidecar calls reviews.local (HTTP) and echo.local (TCP); the reviews-v1
and echo workloads register themselves, each behind its own sidecar's ingress listener, so both
source and destination proxies report."""

from __future__ import annotations

import json

import pytest

from mesh_harness import (  # noqa: F401  (mesh: the fixture)
    CLIENT, HOST, LOCALHOST, egress_sidecar, failures, free_ports, ingress_sidecar, mesh, selected_service, wait_until,
)
from grafana_panels import unanswered
from prometheus_peer import BINARY, Prometheus, has_data
from proxy_harness import TcpServer, virtual_service

from pymesh.control.dashboard import DASHBOARDS, write_prometheus_config

pytestmark = pytest.mark.skipif(BINARY is None, reason="the prometheus binary is not installed (Debian: prometheus)")
TCP_HOST = "echo.local"
DATA_TIMEOUT = 60.0

# Istio's standard dashboard queries (istio.io docs/tasks/observability/metrics/querying-metrics
# and the mesh, service and control-plane dashboards), pymesh's label values filled in
STANDARD = {
    "request rate": 'sum(rate(istio_requests_total{reporter="source",destination_service="reviews.local"}[1m]))',
    "success rate": 'sum(rate(istio_requests_total{reporter="destination",response_code!~"5.."}[1m])) '
                    '/ sum(rate(istio_requests_total{reporter="destination"}[1m]))',
    **{f"p{q} latency": f"histogram_quantile(0.{q}, sum(rate(istio_request_duration_milliseconds_bucket"
                        f'{{reporter="source"}}[1m])) by (le, destination_service))' for q in ("50", "90", "99")},
    "TCP bytes sent": f'sum(rate(istio_tcp_sent_bytes_total{{destination_service="{TCP_HOST}"}}[1m]))',
    "TCP bytes received": f'sum(rate(istio_tcp_received_bytes_total{{destination_service="{TCP_HOST}"}}[1m]))',
    "control-plane pushes": "sum(rate(pilot_xds_pushes[1m])) by (type)",
    "proxy convergence": "histogram_quantile(0.99, sum(rate(pilot_proxy_convergence_time_bucket[5m])) by (le))",
    "connected proxies": "sum(pilot_xds)",
}


def start_mesh(mesh):
    http_port, tcp_port, http_in, tcp_in = free_ports(4)
    reviews = mesh.app("reviews")
    echo = TcpServer("echo")
    mesh.apps.append(echo)
    client_sidecar = egress_sidecar("productpage", CLIENT, http_port)
    client_sidecar["spec"]["egress"] += egress_sidecar("productpage", CLIENT, tcp_port, "TCP")["spec"]["egress"]
    mesh.write("services.yaml", [selected_service(HOST, http_port, {"app": "reviews"}, "reviews"),
                                 selected_service(TCP_HOST, tcp_port, {"app": "echo"}, "echo", protocol="TCP")])
    mesh.write("sidecars.yaml", [client_sidecar,
                                 ingress_sidecar("reviews", {"app": "reviews"}, http_in, reviews.port),
                                 ingress_sidecar("echo", {"app": "echo"}, tcp_in, echo.port, protocol="TCP")])
    control = mesh.control()
    client = mesh.proxy(control.port, "productpage", {**CLIENT, "version": "v1"})
    mesh.proxy(control.port, "reviews-v1", {"app": "reviews", "version": "v1"}, address=LOCALHOST,
               ports={"http": http_in})
    echo_proxy = mesh.proxy(control.port, "echo", {"app": "echo", "version": "v1"}, address=LOCALHOST,
                            ports={"tcp": tcp_in})
    for ingress in (http_in, tcp_in):
        wait_until(lambda: f"{LOCALHOST}:{ingress}" in client.endpoints(), what=f"endpoint {ingress} at the client")
    return control, http_port, tcp_port, echo_proxy


def test_real_prometheus_runs_every_dashboard_query_against_a_mesh_with_traffic(mesh):
    control, http_port, tcp_port, echo_proxy = start_mesh(mesh)
    config = write_prometheus_config(mesh.root / "prometheus.yml", f"{LOCALHOST}:{control.admin_port}",
                                     scrape_interval="1s")
    prometheus = Prometheus(mesh.root, config)
    try:
        prometheus.start()
        http = mesh.traffic(http_port, HOST, pause=0.02, max_seconds=120)
        tcp = mesh.tcp_traffic(tcp_port, max_seconds=120)

        targets = wait_until(lambda: up(prometheus, 4), DATA_TIMEOUT, 0.2, "4 targets up (control + 3 proxies)")
        reviews = next(t for t in targets if t["labels"].get("pod") == "reviews-v1.default")
        assert reviews["labels"] | {"job": "envoy-stats", "namespace": "default", "app": "reviews",
                                    "version": "v1"} == reviews["labels"]
        assert reviews["scrapeUrl"].endswith("/stats/prometheus")
        assert any(t["labels"]["job"] == "istiod" for t in targets)

        # a configuration change while Prometheus watches: pushes and a convergence to observe
        mesh.write("route.yaml", [virtual_service([{"route": [{"destination": {"host": HOST}}], "timeout": "10s"}],
                                                  host=HOST)])
        control.wait_status(lambda s: all(p["state"] == "SYNCED" and p["pushed_version"] == s["version"]
                                          for p in s["proxies"]), "every proxy synced on the new version")

        answered(lambda: [name for name, promql in STANDARD.items() if not has_data(prometheus.query(promql))],
                 "Istio's standard queries")
        [success] = prometheus.query(STANDARD["success rate"])
        assert float(success["value"][1]) == 1.0  # every request answered 200
        [pushes] = prometheus.query('sum(pilot_xds_pushes{type="lds"})')
        assert float(pushes["value"][1]) >= 3 * 2  # each proxy: its first snapshot and the route change
        dashboards = {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}
        assert set(dashboards) == {"mesh", "service", "workload", "control-plane"}
        answered(lambda: [f"{name}: {lost}" for name, dashboard in dashboards.items()
                          for lost in unanswered(dashboard, prometheus.query, has_data)], "every dashboard panel")
        assert http.snapshot() and not failures(http.snapshot()) and tcp.echoed > 0 and not tcp.failed

        # a proxy that goes away leaves the live discovery (and so Prometheus' targets)
        echo_proxy.kill()
        wait_until(lambda: up(prometheus, 3), DATA_TIMEOUT, 0.5, "the echo proxy's target gone")
    finally:
        prometheus.kill()
        print(f"--- prometheus log ---\n{prometheus.log()[-4000:]}")


def up(prometheus: Prometheus, n: int) -> list[dict] | None:
    """The active targets when there are exactly `n` and all are up."""
    targets = prometheus.active_targets()
    return targets if len(targets) == n and all(t["health"] == "up" for t in targets) else None


def answered(missing, what: str) -> None:
    """Wait (bounded) until `missing()` is empty: the queries without data yet, since the first
    scrapes after the traffic started may still be coming; fail naming those left."""
    left: list[str] = []

    def done() -> bool:
        left[:] = missing()
        return not left
    try:
        wait_until(done, DATA_TIMEOUT, 1.0, what)
    except AssertionError:
        raise AssertionError(f"{what}: no data from\n" + "\n".join(left)) from None
