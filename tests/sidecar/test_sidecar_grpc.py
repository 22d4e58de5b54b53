"""gRPC through two sidecars in the sidecar model: a grpcio client app in one pod calls a grpcio
server app in another by its address; both pods' traffic is captured by iptables, so the call
goes client -> outbound sidecar (h2c sniffed from the first bytes) -> HTTP/2 to the server pod
(its GRPC port) -> inbound sidecar -> the app, over HTTP/2 end to end.

    client  198.18.0.1  tests/grpc_echo.py call
    server  198.18.0.2  tests/grpc_echo.py serve 50051 (its Flaky method fails twice)

The mesh declares the service with the server's address and a retry policy on `unavailable`, so
the flaky call succeeds on its third attempt; the deadline call expires at the client's 0.5 s.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from netns import TestBed, unavailable_reason
from sidecar_helpers import APP_UID, NAMESPACE, requires_tools, sidecar_pod, start_app, write_config

pytestmark = requires_tools

GRPC_PORT = 50051
ECHO = f"echo.{NAMESPACE}.svc.cluster.local"
GRPC_ECHO = Path(__file__).resolve().parent.parent / "grpc_echo.py"


def grpc_mesh_yaml(server_ip: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo, namespace: {NAMESPACE}}}
spec:
  hosts: [{ECHO}]
  addresses: [{server_ip}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: {GRPC_PORT}, name: grpc, protocol: GRPC}}
  endpoints:
  - {{address: {server_ip}, labels: {{app: echo}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo, namespace: {NAMESPACE}}}
spec:
  hosts: [{ECHO}]
  http:
  - route:
    - destination: {{host: {ECHO}}}
    retries: {{attempts: 3, retryOn: unavailable}}
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with TestBed() as bed:
        client, server = bed.add_pod("client"), bed.add_pod("server")
        config = write_config(tmp_path_factory.mktemp("grpc"), grpc_mesh_yaml(server.ip))
        sidecars = {"client": sidecar_pod(client, config, "client", {"app": "client"}),
                    "server": sidecar_pod(server, config, "echo", {"app": "echo"})}
        app = server.spawn(sys.executable, "-u", GRPC_ECHO, "serve", GRPC_PORT, 2, uid=APP_UID)
        app.wait_for_line("ready", timeout=20)
        done = client.run(sys.executable, GRPC_ECHO, "call", f"{server.ip}:{GRPC_PORT}", uid=APP_UID, timeout=60)
        yield json.loads(done.stdout.strip().splitlines()[-1]), sidecars


def test_every_call_kind_crosses_both_sidecars(results):
    calls, _ = results
    assert calls["unary"] == "echo:hi"
    assert calls["server_stream"] == ["part-0", "part-1", "part-2"]
    assert calls["client_stream"] == "a+b"
    assert calls["bidi"] == ["X", "Y"]


def test_status_codes_and_deadlines_reach_the_client(results):
    calls, _ = results
    assert calls["missing"] == "error:NOT_FOUND"
    assert calls["deadline"] == "error:DEADLINE_EXCEEDED"


def test_unavailable_twice_is_retried_by_the_client_sidecar(results):
    calls, _ = results
    assert calls["flaky"] == "ok"
    assert json.loads(calls["calls"])["Flaky"] == 3


def test_both_sidecars_report_the_calls_as_grpc(results):
    _, sidecars = results
    for name, reporter in (("client", "source"), ("server", "destination")):
        count = sidecars[name].wait_for_metric("istio_requests_total", request_protocol="grpc", reporter=reporter)
        assert count >= 7, name
