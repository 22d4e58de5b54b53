"""The injected pod's proxy side, through a real `pymesh proxy`: the app probes kube-inject
rewrote are answered on the health port by running the originals against real app servers
(an HTTP server, a TCP listener, a grpcio server with the standard health service), as the
kubelet would see them; the proxy takes its labels from a downward-API labels file.

No kubelet runs here: curl stands in for it, asking the rewritten probe's path and port."""

from __future__ import annotations

import json
import sys
from concurrent import futures
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "proxy"))

from proxy_harness import Proxy, Reply, TcpServer, Upstream, curl, http_get  # noqa: E402

from pymesh.kube import app_probes  # noqa: E402
from pymesh.kube.inject import PROXY_NAME, inject_pod  # noqa: E402
from pymesh.kube.inject_settings import InjectSettings  # noqa: E402

HEALTH = "grpc.health.v1.Health"
SERVING, NOT_SERVING = b"\x08\x01", b"\x08\x02"  # HealthCheckResponse{status}


def app_handler(request) -> Reply:
    if request.target == "/live" and request.header("x-probe") == "kubelet":
        return Reply(200, body=b"alive")
    if request.target == "/sick":
        return Reply(500, body=b"sick")
    return Reply(400, body=b"no probe header")


class HealthService:
    """grpc.health.v1.Health/Check with raw bytes: "" and "web" SERVING, "db" NOT_SERVING."""

    def check(self, request: bytes, context) -> bytes:
        service = request[2:].decode() if request else ""
        if service not in ("", "web", "db"):
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return NOT_SERVING if service == "db" else SERVING


@pytest.fixture
def apps():
    http, tcp = Upstream("app", app_handler), TcpServer("echo", "app-tcp")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        HEALTH, {"Check": grpc.unary_unary_rpc_method_handler(HealthService().check)}),))
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield http, tcp, grpc_port
    server.stop(None)
    http.stop()
    tcp.stop()


def probed_pod(http_port: int, tcp_port: int, grpc_port: int) -> dict:
    web = {"name": "web", "image": "web:1", "ports": [{"name": "http", "containerPort": http_port}],
           "livenessProbe": {"httpGet": {"path": "/live", "port": "http",
                                         "httpHeaders": [{"name": "X-Probe", "value": "kubelet"}]}},
           "readinessProbe": {"tcpSocket": {"port": tcp_port}},
           "startupProbe": {"grpc": {"port": grpc_port, "service": "web"}}}
    sick = {"name": "sick", "image": "sick:1",
            "livenessProbe": {"httpGet": {"path": "/sick", "port": http_port}},
            "readinessProbe": {"grpc": {"port": grpc_port, "service": "db"}, "timeoutSeconds": 2}}
    return {"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [web, sick]}}


@pytest.fixture
def proxy(tmp_path, apps):
    http, tcp, grpc_port = apps
    injected = inject_pod(probed_pod(http.port, tcp.port, grpc_port), None, InjectSettings())
    sidecar = next(c for c in injected["spec"]["initContainers"] if c["name"] == PROXY_NAME)
    probers = next(e["value"] for e in sidecar["env"] if e["name"] == app_probes.PROBERS_ENV)
    labels = tmp_path / "labels"
    labels.write_text('app="web"\nversion="v1"\nsecurity.istio.io/tlsMode="istio"\n')  # the kubelet's format
    running = Proxy(tmp_path, [], env={app_probes.PROBERS_ENV: probers},
                    extra_args=["--address", "127.0.0.1", "--labels-file", str(labels)])
    running.start()
    yield running, injected, apps
    running.kill()


def rewritten_path(injected: dict, container: str, kind: str) -> str:
    probe = next(c for c in injected["spec"]["containers"] if c["name"] == container)[kind]
    assert probe["httpGet"]["port"] == 15021
    return probe["httpGet"]["path"]


def test_rewritten_probes_run_the_apps_originals(proxy):
    running, injected, (http, tcp, grpc_port) = proxy
    for container, kind, status in (("web", "livenessProbe", 200), ("web", "readinessProbe", 200),
                                    ("web", "startupProbe", 200), ("sick", "livenessProbe", 503),
                                    ("sick", "readinessProbe", 503)):
        answer = curl(running.health_port, rewritten_path(injected, container, kind), host=None)
        assert answer.status == status, (container, kind, answer.body)
    live = next(r for r in http.requests if r.target == "/live")
    assert live.header("x-probe") == "kubelet"  # the probe's headers reach the app
    assert b"HTTP 500" in curl(running.health_port, "/app-health/sick/livez", host=None).body
    assert b"NOT_SERVING" in curl(running.health_port, "/app-health/sick/readyz", host=None).body
    assert http_get(running.health_port, "/app-health/nobody/livez")[0] == 404


def test_a_stopped_app_fails_its_probe(proxy):
    running, injected, (http, tcp, grpc_port) = proxy
    path = rewritten_path(injected, "web", "readinessProbe")
    assert http_get(running.health_port, path)[0] == 200
    tcp.stop()
    status, _, body = http_get(running.health_port, path)
    assert status == 503 and f"tcp 127.0.0.1:{tcp.port}".encode() in body


def test_labels_come_from_the_downward_api_file(proxy):
    running = proxy[0]
    status, _, body = running.admin("/mesh_config")
    assert status == 200
    assert json.loads(body)["identity"]["labels"] == {"app": "web", "version": "v1", "security.istio.io/tlsMode": "istio"}


def test_bad_probers_stop_the_proxy_with_a_clear_error(tmp_path):
    bad = Proxy(tmp_path, [], env={app_probes.PROBERS_ENV: '{"/app-health/x/livez": {"httpGet": {"port": "http"}}}'})
    bad.start(wait=False)
    try:
        assert bad.wait_exit() == 2
        assert "PYMESH_KUBE_APP_PROBERS[/app-health/x/livez].httpGet.port" in bad.stderr()
    finally:
        bad.kill()
