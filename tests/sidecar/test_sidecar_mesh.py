"""The sidecar model end to end: apps that know nothing of the mesh, captured by iptables, routed
by the mesh configuration.

Three pods, each with the init step (REDIRECT, defaults) and `pymesh proxy --capture` as uid 1337;
apps run as uid 1000:

    client  198.18.0.1  curl and a server-first TCP client
    b       198.18.0.2  reviews v1 on :8080, a server-first TCP server on :9000 and :9100
    c       198.18.0.3  reviews v2 on :8080

Every proxy reads the same configuration (sidecar_helpers.mesh_yaml): `reviews` has b's address
as its virtual address and endpoints b (v1) and c (v2), and its VirtualService sends everything to
v2; `banner` is a TCP service on b's address, port 9000. Port 9100 is declared nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from netns import Pod, TestBed, unavailable_reason
from sidecar_helpers import (BANNER, HTTP_PORT, NAMESPACE, REVIEWS, ROUTE_HEADER, TCP_PORT, UNDECLARED_PORT, Sidecar,
                             call_banner, get_json, mesh_yaml, metric_sum, requires_tools, sidecar_pod, start_app,
                             write_config)

pytestmark = requires_tools


@dataclass
class Mesh:
    pods: dict[str, Pod]
    sidecars: dict[str, Sidecar]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with TestBed() as bed:
        client, b, c = bed.add_pod("client"), bed.add_pod("b"), bed.add_pod("c")
        config = write_config(tmp_path_factory.mktemp("mesh"), mesh_yaml(server_ip=b.ip, v1_ip=b.ip, v2_ip=c.ip))
        sidecars = {
            "client": sidecar_pod(client, config, "client", {"app": "client"}),
            "b": sidecar_pod(b, config, "reviews-v1", {"app": "reviews", "version": "v1"}),
            "c": sidecar_pod(c, config, "reviews-v2", {"app": "reviews", "version": "v2"}),
        }
        start_app(b, "http", "v1", HTTP_PORT)
        start_app(c, "http", "v2", HTTP_PORT)
        start_app(b, "banner", "b", "0.0.0.0", TCP_PORT, UNDECLARED_PORT)
        yield Mesh(bed.pods, sidecars)


def test_plain_http_call_is_captured_routed_to_v2_and_counted_by_both_proxies(mesh):
    client, b = mesh.pods["client"], mesh.pods["b"]

    # The app calls b's address; its proxy (outbound capture) applies the VirtualService, which
    # sends it to c, whose proxy (inbound capture, 15006) hands it to c's app.
    reply = get_json(client, f"http://{b.ip}:{HTTP_PORT}/")

    assert reply["server"] == "v2"
    header, value = ROUTE_HEADER
    assert reply["headers"].get(header) == value, reply  # added by the client's proxy's route
    assert reply["headers"]["host"] == f"{b.ip}:{HTTP_PORT}"  # the app's request, as it sent it
    mesh.sidecars["client"].wait_for_metric(
        "istio_requests_total", reporter="source", source_workload="client",
        destination_service=REVIEWS, destination_service_namespace=NAMESPACE, destination_version="v2",
        response_code="200")
    mesh.sidecars["c"].wait_for_metric(
        "istio_requests_total", reporter="destination", destination_workload="reviews-v2",
        destination_version="v2", response_code="200")


@pytest.mark.parametrize("port, source_labels", [
    (TCP_PORT, {"destination_service": BANNER}),  # a TCP service: the client's proxy routes it
    (UNDECLARED_PORT, {"destination_service": "unknown"}),  # no service: passed through (ALLOW_ANY)
], ids=["declared-tcp", "undeclared-passthrough"])
def test_server_first_tcp_works_through_both_proxies(mesh, port, source_labels):
    """The client says nothing until it has the server's banner, so b's inbound capture sees no
    bytes to sniff: after its 100 ms window it must treat the connection as TCP."""
    client, b = mesh.pods["client"], mesh.pods["b"]
    server_side = mesh.sidecars["b"]
    before = _tcp_opened(server_side.prometheus())

    reply = call_banner(client, b.ip, port, f"ping {port}")

    assert reply == {"banner": "HELLO from b\n", "echo": f"ECHO ping {port}\n"}
    mesh.sidecars["client"].wait_for_metric(
        "istio_tcp_connections_opened_total", reporter="source", source_workload="client",
        request_protocol="tcp", **source_labels)
    server_side.wait_for_metric(
        "istio_tcp_connections_opened_total", at_least=before + 1, reporter="destination",
        destination_workload="reviews-v1", request_protocol="tcp")


def _tcp_opened(prometheus_text: str) -> float:
    return metric_sum(prometheus_text, "istio_tcp_connections_opened_total", reporter="destination")
