"""HTTP/1.1 through the proxy: connection reuse, framing, interim responses, pipelining,
upgrades and the headers a proxy must drop or add."""

from __future__ import annotations

import re
import socket
import uuid

import pytest

from proxy_harness import (
    Client, Reply, curl, free_port, http_mesh, inbound_mesh, request_bytes, sequence,
)

pytestmark = pytest.mark.timeout(60)

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture
def one(upstreams, proxies):
    """start(handler=None, traffic_policy=None) -> (port, upstream) with a proxy in front."""
    def start(handler=None, traffic_policy=None, **proxy_options):
        server = upstreams("up", handler)
        port = free_port()
        proxies(http_mesh(port, {"v1": server}, traffic_policy=traffic_policy), **proxy_options)
        return port, server
    return start


# --- connections -------------------------------------------------------------------------------------


def test_keep_alive_reuses_connections_on_both_sides(one):
    port, up = one()
    with Client(port) as client:
        for i in range(20):
            assert client.request("GET", f"/r{i}").status == 200
    for _ in range(3):  # new downstream connections still reuse the pooled upstream one
        with Client(port) as client:
            assert client.request("GET", "/again").status == 200
    requests = up.wait_requests(23)
    assert {r.conn for r in requests} == {1}
    assert up.accepted == 1


def test_max_requests_per_connection_closes_after_n(one):
    port, up = one(traffic_policy={"connectionPool": {"http": {"maxRequestsPerConnection": 3}}})
    with Client(port) as client:
        for i in range(9):
            assert client.request("GET", f"/r{i}").status == 200
    requests = up.wait_requests(9)
    per_connection = {}
    for r in requests:
        per_connection.setdefault(r.conn, []).append(r.target)
    assert sorted(per_connection) == [1, 2, 3]
    assert all(len(paths) == 3 for paths in per_connection.values()), per_connection
    up.wait(lambda: {1, 2} <= set(up.peer_closed), what="the proxy to close the used-up connections")


def test_idle_timeout_closes_idle_upstream_connections(one):
    port, up = one(traffic_policy={"connectionPool": {"http": {"idleTimeout": "0.5s"}}})
    with Client(port) as client:
        assert client.request("GET", "/").status == 200
        up.wait(lambda: 1 in up.peer_closed, timeout=10, what="the idle upstream connection to be closed")
        assert client.request("GET", "/after").status == 200  # a new connection is made
    assert up.accepted == 2


# --- bodies and framing --------------------------------------------------------------------------------


def test_content_length_request_body(one):
    port, up = one()
    body = bytes(range(256)) * 40
    with Client(port) as client:
        response = client.request("POST", "/upload", {"content-type": "application/octet-stream"}, body)
    assert response.status == 200
    received = up.wait_requests(1)[0]
    assert received.body == body
    assert received.header("content-length") == str(len(body))
    assert received.header("transfer-encoding") is None


def test_chunked_request_body_with_trailers(one):
    port, up = one()
    with Client(port) as client:
        client.send(b"POST /chunks HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\n"
                    b"Trailer: x-checksum\r\n\r\n"
                    b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nx-checksum: abc123\r\n\r\n")
        response = client.read()
        assert response.status == 200
        assert client.request("GET", "/next").status == 200  # the connection is still in sync
    received = up.wait_requests(2)[0]
    assert received.body == b"hello world"
    assert received.header("transfer-encoding") == "chunked"
    assert received.trailers == [("x-checksum", "abc123")]


def test_chunked_response_with_trailers(one):
    port, up = one(lambda req: Reply(200, [], b"x" * 10000, framing="chunked", trailers=[("x-digest", "d1")]))
    with Client(port) as client:
        response = client.request("GET", "/")
        assert response.framing == "chunked"
        assert response.body == b"x" * 10000
        assert response.trailers == [("x-digest", "d1")]
        assert client.request("GET", "/again").status == 200


def test_close_delimited_response_is_rechunked_and_connection_stays_usable(one):
    port, up = one(lambda req: Reply(200, [], f"until close {req.target}".encode(), framing="close"))
    with Client(port) as client:
        first = client.request("GET", "/one")
        assert first.framing == "chunked"
        assert first.body == b"until close /one"
        second = client.request("GET", "/two")
        assert second.body == b"until close /two"
    assert up.accepted == 2  # the upstream closed each connection to end the body


def test_head_response_has_no_body_and_keeps_content_length(one):
    def handler(req):
        if req.method == "HEAD":
            return Reply(200, [("content-length", "1234")], framing="none")
        return Reply(200, [], b"get body")
    port, _ = one(handler)
    with Client(port) as client:
        head = client.request("HEAD", "/")
        assert head.status == 200
        assert head.header("content-length") == "1234"
        after = client.request("GET", "/")  # would read body bytes if HEAD had leaked any
        assert after.body == b"get body"


@pytest.mark.parametrize("status", [204, 304])
def test_bodyless_statuses(one, status):
    port, _ = one(sequence(Reply(status, [("etag", '"1"')], framing="none"), then=Reply(200, [], b"ok")))
    with Client(port) as client:
        response = client.request("GET", "/")
        assert response.status == status
        assert response.header("transfer-encoding") is None
        assert response.body == b""
        assert client.request("GET", "/").body == b"ok"


def test_expect_100_continue_with_curl(one, tmp_path):
    port, up = one()
    payload = tmp_path / "payload"
    payload.write_bytes(b"p" * (2 << 20))
    result = curl(port, "/upload", "--data-binary", f"@{payload}")  # curl asks by itself for big bodies
    assert result.returncode == 0, result.stderr
    assert result.statuses == [100, 200]
    received = up.wait_requests(1)[0]
    assert received.body_len == 2 << 20
    assert received.header("expect") is None  # the proxy answered it itself


def test_expect_100_continue_raw(one):
    port, up = one()
    with Client(port) as client:
        client.send(b"POST /up HTTP/1.1\r\nHost: svc.local\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = client.reader.read_until(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 ")
        client.send(b"hello")
        response = client.read()
    assert response.status == 200
    assert up.wait_requests(1)[0].body == b"hello"


def test_pipelined_requests_answered_in_order(one):
    def handler(req):
        return Reply(200, [], req.target.encode(), delay=0.2 if req.target == "/p1" else 0)
    port, up = one(handler)
    with Client(port) as client:
        client.send(b"".join(request_bytes("GET", f"/p{i}") for i in (1, 2, 3)))
        bodies = [client.read().body for _ in range(3)]
    assert bodies == [b"/p1", b"/p2", b"/p3"]
    assert [r.target for r in up.wait_requests(3)] == ["/p1", "/p2", "/p3"]


def test_http10_client_gets_a_close_delimited_response(one):
    port, _ = one(lambda req: Reply(200, [], b"streamed", framing="close"))
    with Client(port) as client:
        client.send(b"GET / HTTP/1.0\r\nHost: svc.local\r\n\r\n")
        response = client.read()
        assert response.body == b"streamed"
        assert response.framing == "close"
        assert client.closed_by_peer()


def test_upgrade_tunnels_bytes_both_ways(one):
    port, up = one(lambda req: Reply(action="upgrade"))
    with Client(port) as client:
        client.send(b"GET /ws HTTP/1.1\r\nHost: svc.local\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        response = client.read()
        assert response.status == 101
        assert response.header("upgrade") == "websocket"
        for message in (b"hello", b"\x00\xff binary \r\n\r\n", b"x" * 100000):
            client.send(message)
            assert client.reader.read_exact(len(message)) == message
        client.sock.shutdown(socket.SHUT_WR)
        assert client.reader.read_to_eof() == b""  # the upstream's FIN comes back
    received = up.wait_requests(1)[0]
    assert received.header("upgrade") == "websocket"
    assert "upgrade" in received.header("connection").lower()


# --- headers ---------------------------------------------------------------------------------------------


def test_hop_by_hop_headers_are_not_forwarded(one):
    def handler(req):
        return Reply(200, [("connection", "x-up-hop"), ("keep-alive", "timeout=9"), ("x-up-hop", "1"),
                           ("upgrade", "foo"), ("proxy-connection", "keep-alive"), ("x-end", "kept")], b"ok")
    port, up = one(handler)
    with Client(port) as client:
        response = client.request("GET", "/", [
            ("Connection", "keep-alive, x-custom-hop"), ("Keep-Alive", "timeout=5"), ("TE", "trailers"),
            ("X-Custom-Hop", "secret"), ("Upgrade", "h2c"), ("Proxy-Connection", "keep-alive"),
            ("X-End-To-End", "kept"),
        ])
        assert response.status == 200
        assert client.request("GET", "/still-open").status == 200
    received = up.wait_requests(1)[0]
    assert received.header("x-end-to-end") == "kept"
    for name in ("connection", "keep-alive", "te", "x-custom-hop", "upgrade", "proxy-connection", "transfer-encoding"):
        assert received.header(name) is None, (name, received.headers)
    assert response.header("x-end") == "kept"
    for name in ("keep-alive", "x-up-hop", "upgrade", "proxy-connection"):
        assert response.header(name) is None, (name, response.headers)


def test_transfer_encoding_is_reframed_not_forwarded(one):
    """The client's chunked framing is the proxy's to decode; the upstream gets a framing the
    proxy chose (chunked again here), never two Transfer-Encoding headers or the client's."""
    port, up = one()
    with Client(port) as client:
        client.send(b"POST / HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        assert client.read().status == 200
    received = up.wait_requests(1)[0]
    assert received.header_all("transfer-encoding") == ["chunked"]
    assert received.body == b"abc"


def test_x_forwarded_for_and_proto_on_the_inbound_side(upstreams, proxies):
    """As Envoy on an Istio sidecar (no use_remote_address): x-forwarded-for passes unchanged,
    never gets the peer appended; x-forwarded-proto is set when absent."""
    app = upstreams("app")
    port = free_port()
    proxies(inbound_mesh(port, app))
    with Client(port) as client:
        client.request("GET", "/plain")
        client.request("GET", "/chained", {"X-Forwarded-For": "10.1.2.3"})
        client.request("GET", "/proto", {"X-Forwarded-Proto": "https"})
    with Client(port, source="127.0.0.7") as client:
        client.request("GET", "/other-source")
    plain, chained, proto, other = app.wait_requests(4)
    assert plain.header("x-forwarded-for") is None
    assert chained.header_all("x-forwarded-for") == ["10.1.2.3"]
    assert other.header("x-forwarded-for") is None
    assert plain.header("x-forwarded-proto") == "http"
    assert proto.header_all("x-forwarded-proto") == ["https"]


def test_outbound_side_leaves_x_forwarded_for_to_the_server_sidecar(one):
    """The client's sidecar does not add the local app's address either (no use_remote_address)."""
    port, up = one()
    with Client(port) as client:
        client.request("GET", "/plain")
        client.request("GET", "/chained", {"X-Forwarded-For": "10.1.2.3"})
    plain, chained = up.wait_requests(2)
    assert plain.header("x-forwarded-for") is None
    assert chained.header_all("x-forwarded-for") == ["10.1.2.3"]


def test_x_request_id_added_when_missing_and_kept_when_present(one):
    port, up = one()
    given = f"client-{uuid.uuid4().hex}"
    with Client(port) as client:
        client.request("GET", "/without")
        client.request("GET", "/with", {"X-Request-Id": given})
    without, with_id = up.wait_requests(2)
    assert UUID4.match(without.header("x-request-id")), without.header("x-request-id")
    assert with_id.header_all("x-request-id") == [given]


# --- more connection management ---------------------------------------------------------------------------


def test_upstream_connection_close_is_not_reused(one):
    port, up = one(lambda req: Reply(200, [], b"bye", close=True))
    with Client(port) as client:
        for _ in range(3):
            response = client.request("GET", "/")
            assert response.body == b"bye"
            assert response.header("connection") is None  # the upstream's close is not the client's
    assert up.accepted == 3


def test_upstream_closing_idle_connections_silently_is_invisible_to_clients(one):
    """A pooled connection the upstream closed without saying so: the next request must not fail
    (the proxy notices the close, or retries once on a fresh connection)."""
    port, up = one(lambda req: Reply(200, [], b"ok", close_silently=True))
    with Client(port) as client:
        for i in range(30):
            assert client.request("GET", f"/r{i}").status == 200
    assert up.count() == 30


def test_client_connection_close_is_honoured(one):
    port, _ = one()
    with Client(port) as client:
        response = client.request("GET", "/", {"Connection": "close"})
        assert response.status == 200
        assert response.header("connection") == "close"
        assert client.closed_by_peer()


def test_http10_keep_alive(one):
    port, _ = one()
    with Client(port) as client:
        for _ in range(2):
            client.send(b"GET / HTTP/1.0\r\nHost: svc.local\r\nConnection: keep-alive\r\n\r\n")
            response = client.read()
            assert response.status == 200
            assert response.header("connection") == "keep-alive"


def test_head_response_with_chunked_header_has_no_body(one):
    def handler(req):
        if req.method == "HEAD":
            return Reply(200, [("transfer-encoding", "chunked")], framing="none")
        return Reply(200, [], b"get body")
    port, _ = one(handler)
    with Client(port) as client:
        assert client.request("HEAD", "/").status == 200
        assert client.request("GET", "/").body == b"get body"


def test_304_with_content_length_has_no_body(one):
    port, _ = one(sequence(Reply(304, [("content-length", "100")], framing="none"), then=Reply(200, [], b"ok")))
    with Client(port) as client:
        response = client.request("GET", "/")
        assert response.status == 304
        assert response.body == b""
        assert client.request("GET", "/").body == b"ok"


def test_pipelined_requests_with_bodies(one):
    port, up = one(lambda req: Reply(200, [], req.body or req.target.encode()))
    with Client(port) as client:
        client.send(request_bytes("POST", "/a", body=b"first body")
                    + b"POST /b HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nsecond\r\n0\r\n\r\n"
                    + request_bytes("GET", "/c"))
        bodies = [client.read().body for _ in range(3)]
    assert bodies == [b"first body", b"second", b"/c"]
