"""HTTP/2 to upstreams: ports whose protocol is HTTP2 or GRPC, `h2UpgradePolicy: UPGRADE`,
`useClientProtocol`. The upstream is an HTTP/2 server on the `h2` library (tests/proxy/
h2_upstream.py, independent of pymesh's codec); clients are curl over HTTP/1.1 and h2c, h2load,
and raw sockets where trailers must be read."""

from __future__ import annotations

import subprocess

import pytest

from h2_upstream import H2Upstream
from proxy_harness import HOST, Client, Upstream, curl, destination_rule, endpoint, free_port, service_entry, sidecar

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def h2_upstream():
    server = H2Upstream()
    yield server
    server.stop()


def mesh(port: int, upstream_port: int, protocol: str, http_settings: dict | None = None) -> list[dict]:
    resources = [service_entry(port, [endpoint(upstream_port, port_name=protocol.lower())], protocol=protocol),
                 sidecar((port, protocol))]
    if http_settings:
        resources.append(destination_rule(traffic_policy={"connectionPool": {"http": http_settings}}))
    return resources


@pytest.mark.parametrize("protocol", ["HTTP2", "GRPC"])
def test_http1_client_to_an_http2_port_goes_upstream_as_http2(h2_upstream, proxies, protocol):
    port = free_port()
    proxies(mesh(port, h2_upstream.port, protocol))
    for i in range(5):
        result = curl(port, f"/r{i}")
        assert result.status == 200, result.stderr
        assert result.body == f"GET /r{i}".encode()
    received = h2_upstream.wait_requests(5)
    assert received[0].headers[":authority"] == HOST
    assert received[0].headers[":scheme"] == "http"
    assert h2_upstream.connections == 1  # sequential requests share one HTTP/2 connection
    assert [r.stream for r in received] == [1, 3, 5, 7, 9]


def test_many_concurrent_h2c_clients_multiplex_over_few_upstream_connections(h2_upstream, proxies):
    port = free_port()
    proxies(mesh(port, h2_upstream.port, "HTTP2"))
    done = subprocess.run(["h2load", "-n", "400", "-c", "4", "-m", "10", "-H", f":authority: {HOST}",
                           f"http://127.0.0.1:{port}/load"], capture_output=True, text=True, timeout=60)
    assert "400 succeeded, 0 failed, 0 errored" in done.stdout, done.stdout + done.stderr
    assert len(h2_upstream.wait_requests(400)) == 400
    assert h2_upstream.connections <= 4


def test_post_body_streams_to_the_http2_upstream(h2_upstream, proxies):
    port = free_port()
    proxies(mesh(port, h2_upstream.port, "HTTP2"))
    body = bytes(range(256)) * 2048  # 512 KiB: more than the initial HTTP/2 windows
    with Client(port) as client:
        response = client.request("POST", "/upload", body=body)
        assert response.status == 200
        assert response.body == body
    with Client(port) as client:  # chunked from the client: a streamed HTTP/2 body upstream
        client.send(b"POST /chunked HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        assert client.read().body == b"hello world"


def test_trailers_reach_an_http1_client_that_accepts_them(h2_upstream, proxies):
    port = free_port()
    proxies(mesh(port, h2_upstream.port, "HTTP2"))
    with Client(port) as client:
        response = client.request("GET", "/with-trailers", {"TE": "trailers"})
        assert response.status == 200
        assert response.framing == "chunked"
        assert ("x-trailer", "done") in response.trailers
    received = h2_upstream.wait_requests(1)[0]
    assert received.headers.get("te") == "trailers"


def test_h2_upgrade_policy_upgrade_on_an_http_port(h2_upstream, proxies):
    port = free_port()
    proxies(mesh(port, h2_upstream.port, "HTTP", {"h2UpgradePolicy": "UPGRADE"}))
    assert curl(port, "/upgraded").status == 200
    assert h2_upstream.wait_requests(1)[0].path == "/upgraded"


def test_use_client_protocol_follows_each_request(upstreams, proxies, h2_upstream):
    """Only an HTTP/2 request goes upstream over HTTP/2; an HTTP/1.1 one stays HTTP/1.1. Two
    endpoints of one service, one per protocol, and a subset each, so each request's protocol
    shows by where it lands."""
    h1_upstream = upstreams("h1")
    port = free_port()
    resources = [
        service_entry(port, [endpoint(h1_upstream, {"proto": "h1"}), endpoint(h2_upstream.port, {"proto": "h2"})]),
        destination_rule(subsets={"h1": {"proto": "h1"}, "h2": {"proto": "h2"}},
                         traffic_policy={"connectionPool": {"http": {"useClientProtocol": True}}}),
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "vs", "namespace": "default"},
         "spec": {"hosts": [HOST], "http": [
             {"match": [{"uri": {"prefix": "/h2"}}], "route": [{"destination": {"host": HOST, "subset": "h2"}}]},
             {"route": [{"destination": {"host": HOST, "subset": "h1"}}]}]}},
        sidecar((port, "HTTP")),
    ]
    proxies(resources)
    assert curl(port, "/h2/over-h2", "--http2-prior-knowledge").status == 200
    assert h2_upstream.wait_requests(1)[0].path == "/h2/over-h2"
    assert curl(port, "/h1/over-h1").status == 200
    assert h1_upstream.wait_requests(1)[0].version == "HTTP/1.1"


def test_an_upstream_stream_reset_is_503_ur_and_the_connection_serves_on(h2_upstream, proxies):
    """RST_STREAM is the stream's end, not the connection's: Envoy's UR (remote reset), and the
    next request goes over the same HTTP/2 connection."""
    port = free_port()
    proxy = proxies(mesh(port, h2_upstream.port, "HTTP2"))
    result = curl(port, "/reset/me")
    assert result.status == 503
    assert b"remote reset" in result.body
    assert proxy.wait_log(lambda e: e["path"] == "/reset/me")["response_flags"] == "UR"
    assert curl(port, "/after").status == 200
    assert h2_upstream.connections == 1


def test_a_goaway_that_leaves_the_stream_unprocessed_is_retried_on_a_new_connection(h2_upstream, proxies):
    """Streams past a GOAWAY's last stream id were never processed (RFC 9113 6.8): refused, so
    retried (the default refused-stream condition), here even for a POST, on a fresh connection."""
    port = free_port()
    proxies(mesh(port, h2_upstream.port, "HTTP2"))
    assert curl(port, "/warm").status == 200  # stream 1: the GOAWAY below names it as the last
    result = curl(port, "/goaway/order", "--data-binary", "item=1")
    assert result.status == 200, result
    assert result.body == b"item=1"  # the body was replayed on the new connection
    assert h2_upstream.connections == 2
    assert [r.path for r in h2_upstream.requests].count("/goaway/order") == 2


def test_an_upstream_that_does_not_speak_http2_is_502_upe(raw_upstream_h2_garbage, proxies):
    port = free_port()
    proxy = proxies(mesh(port, raw_upstream_h2_garbage, "HTTP2"))
    result = curl(port, "/garbled")
    assert result.status == 502
    assert proxy.wait_log(lambda e: e["path"] == "/garbled")["response_flags"] == "UPE"


@pytest.fixture
def raw_upstream_h2_garbage():
    """A server that answers an HTTP/2 connection with HTTP/1.1 bytes (a misconfigured port)."""
    import socket
    import threading
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            conn.recv(65536)  # until the proxy closes
    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
