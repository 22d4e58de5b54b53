"""The Telemetry API through a real proxy: Istio's access-log and metrics task resources loaded
unchanged (istio.io docs/tasks/observability/logs/access-log, telemetry-api,
metrics/customize-metrics), with Istio's mesh config as the istio ConfigMap, and curl as the
client."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ports import free_port
from proxy_harness import HOST, Proxy, Reply, Upstream, curl, dump_yaml, http_mesh, samples, wait_until

MESH_DEFAULT_LOGGING = {  # access-log task: "Using Telemetry API"
    "apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
    "metadata": {"name": "mesh-default", "namespace": "istio-system"},
    "spec": {"accessLogging": [{"providers": [{"name": "envoy"}]}]},
}
# Istio's default text format line: [START] "METHOD PATH PROTOCOL" CODE FLAGS ...
TEXT_LINE = re.compile(r'^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET (\S+) HTTP/1\.1" (\d{3}) ')


def mesh_config_map(text: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "istio-system"},
            "data": {"mesh": text}}


def by_path(handler_codes: dict[str, int]):
    def handler(req):
        return Reply(handler_codes.get(req.target.split("?")[0], 200), [("content-type", "text/plain")], b"ok\n")
    return handler


@pytest.fixture
def upstream():
    up = Upstream("v1", handler=by_path({"/fail": 503, "/missing": 404}))
    yield up
    up.stop()


def run(tmp_path: Path, port: int, resources: list[dict], labels: str = "app=sleep", name: str = "proxy") -> Proxy:
    return Proxy(tmp_path, resources, labels=labels, name=name).start()


def text_lines(path: Path) -> list[tuple[str, int]]:
    try:
        content = path.read_text()
    except FileNotFoundError:
        return []
    return [(m.group(1), int(m.group(2))) for m in map(TEXT_LINE.match, content.splitlines()) if m]


def test_mesh_default_envoy_provider_logs_istio_text_format_to_stdout(tmp_path, upstream):
    port = free_port()
    proxy = run(tmp_path, port, http_mesh(port, {"v1": upstream}) + [MESH_DEFAULT_LOGGING])
    try:
        assert curl(port, "/hello").status == 200
        lines = wait_until(lambda: text_lines(proxy.stdout_path), what="a text access-log line on stdout")
        assert lines == [("/hello", 200)]
        line = proxy.stdout_path.read_text().splitlines()[0]
        assert f'"{HOST}"' in line and f'"127.0.0.1:{upstream.port}"' in line  # authority, upstream host
        assert '" 200 - via_upstream - "-" 0 3 ' in line  # code, flags, details, termination, failure, bytes
    finally:
        proxy.kill()


def test_filter_logs_only_errors_to_a_file_provider_in_json(tmp_path, upstream, via):
    port = free_port()
    log_path = tmp_path / "errors.log"
    mesh = mesh_config_map(
        "extensionProviders:\n"
        "- name: errors\n"
        "  envoyFileAccessLog:\n"
        f"    path: {log_path}\n"
        "    logFormat:\n"
        "      labels:\n"
        "        code: '%RESPONSE_CODE%'\n"
        "        path: '%REQ(:PATH)%'\n"
        "        agent: '%REQ(USER-AGENT)%'\n"
        "        absent: '%REQ(X-NOT-SENT)%'\n"
        "        protocol: '%PROTOCOL%'\n")
    telemetry = {  # telemetry-api docs: "default-exception-logging"
        "apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
        "metadata": {"name": "default-exception-logging", "namespace": "istio-system"},
        "spec": {"accessLogging": [{"providers": [{"name": "errors"}],
                                    "filter": {"expression": "response.code >= 400"}}]},
    }
    proxy = run(tmp_path, port, http_mesh(port, {"v1": upstream}) + [mesh, telemetry])
    try:
        for path in ("/ok", "/fail", "/missing", "/ok2"):
            curl(port, path, "-A", "tester", *via)
        def entries():
            found = [json.loads(l) for l in log_path.read_text().splitlines()] if log_path.exists() else []
            return found if len(found) >= 2 else None

        got = wait_until(entries, what="two error lines")
        protocol = "HTTP/2" if "--http2-prior-knowledge" in via else "HTTP/1.1"
        assert got == [{"code": 503, "path": "/fail", "agent": "tester", "absent": None, "protocol": protocol},
                       {"code": 404, "path": "/missing", "agent": "tester", "absent": None, "protocol": protocol}]
        assert not text_lines(proxy.stdout_path)  # the envoy provider is not in scope
    finally:
        proxy.kill()


def test_a_filter_whose_int_cannot_read_a_header_does_not_log_and_the_request_is_served(tmp_path, upstream):
    """int() of a header that is no number is an error (no log line), as CEL says; Python's int()
    raised ValueError out of the filter instead."""
    port = free_port()
    telemetry = {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
                 "metadata": {"name": "by-level", "namespace": "istio-system"},
                 "spec": {"accessLogging": [{"providers": [{"name": "envoy"}],
                                             "filter": {"expression": "int(request.headers['x-level']) > 5"}}]}}
    proxy = run(tmp_path, port, http_mesh(port, {"v1": upstream}) + [telemetry])
    try:
        for path, level in (("/words", "abc"), ("/digit", "²"), ("/huge", "9" * 5000), ("/low", "1"), ("/high", "9")):
            assert curl(port, path, "-H", f"x-level: {level}").status == 200, path
        assert wait_until(lambda: text_lines(proxy.stdout_path), what="the /high line") == [("/high", 200)]
        proxy.wait_log(lambda e: e["path"] == "/high")  # every request before it has been logged, or not
        assert text_lines(proxy.stdout_path) == [("/high", 200)]
        assert "Traceback" not in proxy.stderr_path.read_text()
    finally:
        proxy.kill()


def test_workload_telemetry_disables_the_mesh_wide_log(tmp_path, upstream):
    disable_sleep = {  # access-log task: "disable-sleep-logging"
        "apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
        "metadata": {"name": "disable-sleep-logging", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "sleep"}},
                 "accessLogging": [{"providers": [{"name": "envoy"}], "disabled": True}]},
    }
    sleep_port, other_port = free_port(), free_port()
    sleep = run(tmp_path, sleep_port, http_mesh(sleep_port, {"v1": upstream}) + [MESH_DEFAULT_LOGGING, disable_sleep],
                name="sleep")
    other = run(tmp_path, other_port, http_mesh(other_port, {"v1": upstream}) + [MESH_DEFAULT_LOGGING, disable_sleep],
                labels="app=httpbin", name="other")
    try:
        assert curl(sleep_port, "/from-sleep").status == 200
        assert curl(other_port, "/from-other").status == 200
        assert wait_until(lambda: text_lines(other.stdout_path), what="httpbin's line") == [("/from-other", 200)]
        sleep.wait_log(lambda e: e["path"] == "/from-sleep")  # its own --access-log has flushed the request
        assert text_lines(sleep.stdout_path) == []
    finally:
        sleep.kill()
        other.kill()


def test_metric_overrides_disable_remove_and_add_tags(tmp_path, upstream):
    port = free_port()
    telemetry = {  # customize-metrics task, plus a REMOVE and a disabled metric
        "apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
        "metadata": {"name": "namespace-metrics"},
        "spec": {"metrics": [{"providers": [{"name": "prometheus"}], "overrides": [
            {"match": {"metric": "REQUEST_COUNT"}, "tagOverrides": {
                "destination_port": {"value": "string(destination.port)"},
                "request_host": {"value": "request.host"},
                "x_user": {"value": "request.headers['x-user']"},
                "request_protocol": {"operation": "REMOVE"}}},
            {"match": {"metric": "REQUEST_DURATION", "mode": "CLIENT"}, "disabled": True},
        ]}]},
    }
    proxy = run(tmp_path, port, http_mesh(port, {"v1": upstream}) + [telemetry])
    try:
        assert curl(port, "/", "-H", "x-user: alice").status == 200
        assert curl(port, "/").status == 200
        found = proxy.wait_metric(lambda s: len(s) >= 2 and s, what="two request series")
        by_user = {s.labels["x_user"]: s for s in found}
        assert set(by_user) == {"alice", "unknown"}
        alice = by_user["alice"].labels
        assert alice["destination_port"] == str(upstream.port) and alice["request_host"] == HOST
        assert "request_protocol" not in alice and alice["reporter"] == "source"
        text = proxy.prometheus()
        assert not samples(text, "istio_request_duration_milliseconds_count")
        assert samples(text, "istio_request_bytes_count")  # the other metrics stay
    finally:
        proxy.kill()


def test_all_metrics_disabled_by_namespace_telemetry_reports_none(tmp_path, upstream):
    port = free_port()
    telemetry = {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
                 "metadata": {"name": "no-metrics", "namespace": "default"},
                 "spec": {"metrics": [{"providers": [{"name": "prometheus"}], "overrides": [{"disabled": True}]}]}}
    proxy = run(tmp_path, port, http_mesh(port, {"v1": upstream}) + [telemetry])
    try:
        assert curl(port, "/").status == 200
        proxy.wait_log(lambda e: e["path"] == "/")
        assert not samples(proxy.prometheus(), "istio_requests_total")
    finally:
        proxy.kill()


def test_tcp_connections_are_logged_by_the_envoy_provider_but_not_by_an_http_filter(tmp_path):
    import socket

    from proxy_harness import TcpServer, tcp_mesh

    echo = TcpServer("echo")
    port = free_port()
    log_path = tmp_path / "tcp.log"
    mesh = mesh_config_map(f"extensionProviders:\n- name: codes\n  envoyFileAccessLog:\n    path: {log_path}\n")
    errors_only = {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
                   "metadata": {"name": "codes", "namespace": "default"},
                   "spec": {"accessLogging": [{"providers": [{"name": "codes"}],
                                               "filter": {"expression": "response.code >= 400"}}]}}
    mesh_default = {**MESH_DEFAULT_LOGGING, "spec": {"accessLogging": [{"providers": [{"name": "envoy"}]}]}}
    proxy = run(tmp_path, port, tcp_mesh(port, echo) + [mesh, mesh_default])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"ping")
            assert conn.recv(4) == b"ping"
        line = wait_until(lambda: proxy.stdout_path.read_text() if proxy.stdout_path.exists() else None,
                          what="a TCP access-log line")
        assert line.startswith("[") and '"- - -" 0 - ' in line and f'"127.0.0.1:{echo.port}"' in line
        assert " 4 4 " in line  # bytes received and sent
    finally:
        proxy.kill()
    # the filter reads response.code, which a TCP connection has not: Envoy's CEL errors, no line
    proxy = run(tmp_path, port, tcp_mesh(port, echo) + [mesh, errors_only], name="filtered")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"ping")
            assert conn.recv(4) == b"ping"
        proxy.wait_log(lambda e: e["upstream_cluster"] is not None)
        proxy.stop()
        assert not log_path.exists() or log_path.read_text() == ""
    finally:
        proxy.kill()
        echo.stop()


def test_proxy_mesh_config_file_replaces_the_config_map(tmp_path, upstream):
    port = free_port()
    from_file, from_map = tmp_path / "from-file.log", tmp_path / "from-map.log"
    mesh_file = tmp_path / "mesh"
    mesh_file.write_text(f"accessLogFile: {from_file}\naccessLogFormat: \"%REQ(:PATH)% %RESPONSE_CODE%\\n\"\n")
    config_map = mesh_config_map(f"accessLogFile: {from_map}\n")
    proxy = Proxy(tmp_path, http_mesh(port, {"v1": upstream}) + [config_map], labels="app=sleep",
                  extra_args=["--mesh-config", str(mesh_file)]).start()
    try:
        assert curl(port, "/legacy").status == 200
        assert wait_until(lambda: from_file.exists() and from_file.read_text(), what="the legacy log") == "/legacy 200\n"
        assert not from_map.exists()
    finally:
        proxy.kill()


def test_an_invalid_mesh_config_file_stops_the_proxy_with_the_field_named(tmp_path, upstream):
    import subprocess

    port = free_port()
    mesh_file = tmp_path / "mesh"
    mesh_file.write_text("extensionProviders:\n- name: z\n  zipkin: {port: 9411}\n")
    proxy = Proxy(tmp_path, http_mesh(port, {"v1": upstream}), extra_args=["--mesh-config", str(mesh_file)])
    done = subprocess.run(proxy.command(), capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"{mesh_file}:3 extensionProviders[0].zipkin.service: required field is missing" in done.stderr


def test_a_provider_writing_where_the_proxys_own_log_goes_replaces_it(tmp_path, upstream):
    port = free_port()
    proxy = Proxy(tmp_path, [], labels="app=sleep")
    mesh = mesh_config_map(f"extensionProviders:\n- name: same\n  envoyFileAccessLog:\n    path: {proxy.access_log}\n")
    telemetry = {**MESH_DEFAULT_LOGGING, "spec": {"accessLogging": [{"providers": [{"name": "same"}]}]}}
    proxy.write_config(http_mesh(port, {"v1": upstream}) + [mesh, telemetry])
    proxy.start()
    try:
        assert curl(port, "/one").status == 200
        assert wait_until(lambda: text_lines(proxy.access_log), what="Istio's text line") == [("/one", 200)]
        assert proxy.access_log.read_text().startswith("[")  # no JSON line of the proxy's own
    finally:
        proxy.kill()


@pytest.mark.parametrize("mode, logged", [("SERVER", True), ("CLIENT", False), ("CLIENT_AND_SERVER", True)])
def test_match_mode_decides_whether_inbound_requests_are_logged(tmp_path, upstream, mode, logged):
    from proxy_harness import inbound_mesh

    port = free_port()
    telemetry = {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
                 "metadata": {"name": "server-logs", "namespace": "default"},
                 "spec": {"accessLogging": [{"match": {"mode": mode}, "providers": [{"name": "envoy"}]}]}}
    proxy = run(tmp_path, port, inbound_mesh(port, upstream) + [telemetry])
    try:
        assert curl(port, "/inbound").status == 200
        proxy.wait_log(lambda e: e["path"] == "/inbound")
        proxy.stop()
        assert text_lines(proxy.stdout_path) == ([("/inbound", 200)] if logged else [])
    finally:
        proxy.kill()


def test_ingress_gateway_logs_by_workload_selector(tmp_path):
    from test_gateway_bookinfo import SERVICES, bookinfo_config

    apps = {name: Upstream(name) for name in SERVICES}
    listen = free_port()
    gateway_logs = {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
                    "metadata": {"name": "ingress-errors", "namespace": "istio-system"},
                    "spec": {"selector": {"matchLabels": {"istio": "ingressgateway"}},
                             "accessLogging": [{"providers": [{"name": "envoy"}],
                                                "filter": {"expression": "response.code >= 400"}}]}}
    config = bookinfo_config(apps, listen) + "\n---\n" + dump_yaml([gateway_logs])
    gateway = Proxy(tmp_path / "gw", config, name="gateway", subcommand="gateway").start()
    try:
        assert curl(listen, "/productpage", host="bookinfo.example.com").status == 200
        assert curl(listen, "/nothing-here", host="bookinfo.example.com").status == 404
        gateway.stop()
        assert text_lines(gateway.stdout_path) == [("/nothing-here", 404)]
        assert " 404 NR route_not_found " in gateway.stdout_path.read_text()
    finally:
        gateway.kill()
        for app in apps.values():
            app.stop()


def test_istio_custom_tags_sample_labels_both_reporters_with_the_peer_apps(tmp_path, upstream):
    """docs/tasks/observability/metrics/telemetry-api "custom-tags", unchanged: the client's
    REQUEST_COUNT gets destination_x (the upstream's app label), the server's source_x (the
    caller's, from its peer metadata)."""
    from proxy_harness import endpoint, inbound_mesh, service_entry, sidecar

    sample = Path(__file__).parents[1] / "corpus" / "data" / "istio" / "istio.io" / "content" / "en" / "docs" / \
        "tasks" / "observability" / "metrics" / "telemetry-api" / "snips.sh.yaml"
    custom_tags = next(doc for doc in sample.read_text().split("\n---\n") if "name: custom-tags" in doc)
    in_port, out_port = free_port(), free_port()
    server = Proxy(tmp_path, custom_tags + "\n---\n" + dump_yaml(inbound_mesh(in_port, upstream)),
                   labels="app=reviews", name="server").start()
    client_config = [service_entry(out_port, [endpoint(in_port, {"app": "reviews"})]), sidecar((out_port, "HTTP"))]
    client = Proxy(tmp_path, custom_tags + "\n---\n" + dump_yaml(client_config), labels="app=productpage",
                   name="client").start()
    try:
        assert curl(out_port, "/").status == 200
        (out,) = client.wait_metric(lambda s: s, what="the client's request count")
        assert out.labels["reporter"] == "source" and out.labels["destination_x"] == "reviews"
        assert "source_x" not in out.labels
        (into,) = server.wait_metric(lambda s: s, what="the server's request count")
        assert into.labels["reporter"] == "destination" and into.labels["source_x"] == "productpage"
        assert "destination_x" not in into.labels
    finally:
        client.kill()
        server.kill()


def test_a_malformed_request_is_logged_by_the_provider_with_its_status(tmp_path, upstream):
    import socket

    port = free_port()
    proxy = run(tmp_path, port, http_mesh(port, {"v1": upstream}) + [MESH_DEFAULT_LOGGING])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nbad header\r\n\r\n")
            assert conn.recv(64).startswith(b"HTTP/1.1 400")
        line = wait_until(lambda: proxy.stdout_path.read_text() if proxy.stdout_path.exists() else None,
                          what="the 400's line")
        assert '"- - -" 400 DPE http1.codec_error ' in line
    finally:
        proxy.kill()
