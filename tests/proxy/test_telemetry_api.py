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
from proxy_harness import HOST, Proxy, Upstream, Reply, curl, http_mesh, samples, wait_until

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
    finally:
        proxy.kill()


def test_filter_logs_only_errors_to_a_file_provider_in_json(tmp_path, upstream):
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
        "        absent: '%REQ(X-NOT-SENT)%'\n")
    telemetry = {  # telemetry-api docs: "default-exception-logging"
        "apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
        "metadata": {"name": "default-exception-logging", "namespace": "istio-system"},
        "spec": {"accessLogging": [{"providers": [{"name": "errors"}],
                                    "filter": {"expression": "response.code >= 400"}}]},
    }
    proxy = run(tmp_path, port, http_mesh(port, {"v1": upstream}) + [mesh, telemetry])
    try:
        for path in ("/ok", "/fail", "/missing", "/ok2"):
            curl(port, path, "-A", "tester")
        def entries():
            found = [json.loads(l) for l in log_path.read_text().splitlines()] if log_path.exists() else []
            return found if len(found) >= 2 else None

        got = wait_until(entries, what="two error lines")
        assert got == [{"code": 503, "path": "/fail", "agent": "tester", "absent": None},
                       {"code": 404, "path": "/missing", "agent": "tester", "absent": None}]
        assert not text_lines(proxy.stdout_path)  # the envoy provider is not in scope
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
