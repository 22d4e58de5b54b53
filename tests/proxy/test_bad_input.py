"""Malformed and oversized requests on raw sockets: the right status, the connection closed, and
nothing reaches the upstream (checked against a well-formed request sent afterwards, which must
be the only thing the upstream sees)."""

from __future__ import annotations

import pytest

from proxy_harness import Client, Upstream, free_port, http_mesh, serving

pytestmark = pytest.mark.timeout(60)

HEAD = b"GET / HTTP/1.1\r\nHost: svc.local\r\n"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    up = Upstream("up")
    with serving(tmp_path_factory.mktemp("bad-input"), up, lambda port: http_mesh(port, {"v1": up})) as mesh:
        yield mesh


def assert_rejected(port: int, up, payloads: list[bytes], status: int) -> None:
    """Send the payloads (one write each); expect `status`, then the connection closed; then a
    good request on a new connection is the only new thing the upstream receives."""
    with up.cond:
        heads_before, requests_before = len(up.heads), len(up.requests)
    with Client(port) as client:
        for payload in payloads:
            client.send(payload)
        response = client.read()
        assert response.status == status, response
        assert response.header("connection") == "close"
        assert client.closed_by_peer(), "the connection stayed open after a protocol error"
    with Client(port) as client:
        assert client.request("GET", "/control").status == 200
    up.wait(lambda: len(up.requests) > requests_before, what="the control request")
    with up.cond:
        new_requests = up.requests[requests_before:]
        new_heads = up.heads[heads_before:]
    assert [r.target for r in new_requests] == ["/control"]
    if len(payloads) == 1:  # the whole bad request came in one piece: not even its head went out
        assert len(new_heads) == 1, new_heads


BAD_REQUESTS = {
    # id: (payload, status)
    "not-http": (b"HELLO THERE\r\n\r\n", 400),
    "bad-version": (b"GET / HTTP/9.x\r\nHost: svc.local\r\n\r\n", 400),
    "space-in-target": (b"GET /a b HTTP/1.1 x\r\nHost: svc.local\r\n\r\n", 400),
    "oversized-request-line": (b"GET /" + b"a" * (17 * 1024) + b" HTTP/1.1\r\nHost: svc.local\r\n\r\n", 431),
    "oversized-headers": (HEAD + b"".join(b"X-Big-%d: %s\r\n" % (i, b"v" * 1000) for i in range(64)) + b"\r\n", 431),
    "one-huge-header": (HEAD + b"X-Huge: " + b"v" * (61 * 1024) + b"\r\n\r\n", 431),
    "too-many-headers": (HEAD + b"".join(b"X-H%d: 1\r\n" % i for i in range(101)) + b"\r\n", 431),
    "content-length-and-chunked": (
        b"POST / HTTP/1.1\r\nHost: svc.local\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n", 400),
    "conflicting-content-lengths": (
        b"POST / HTTP/1.1\r\nHost: svc.local\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    "invalid-chunk-size": (
        b"POST / HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
    "obsolete-line-folding": (HEAD + b"X-Folded: first\r\n  second\r\n\r\n", 400),
    "space-in-header-name": (HEAD + b"Bad Name: x\r\n\r\n", 400),
    "space-before-colon": (HEAD + b"X-Name : x\r\n\r\n", 400),
    "bad-char-in-header-name": (HEAD + b"X(Name): x\r\n\r\n", 400),
    "negative-content-length": (b"POST / HTTP/1.1\r\nHost: svc.local\r\nContent-Length: -1\r\n\r\n", 400),
}


@pytest.mark.parametrize("payload,status", list(BAD_REQUESTS.values()), ids=list(BAD_REQUESTS))
def test_bad_request_is_rejected(guarded, payload, status):
    assert_rejected(guarded.port, guarded.up, [payload], status)


def test_request_line_without_version_is_rejected(guarded):
    assert_rejected(guarded.port, guarded.up, [b"GET /\r\nHost: svc.local\r\n\r\n"], 400)


def test_missing_host_is_rejected(guarded):
    assert_rejected(guarded.port, guarded.up, [b"GET / HTTP/1.1\r\nX-No-Host: 1\r\n\r\n"], 400)


def test_duplicate_host_is_rejected(guarded):
    assert_rejected(guarded.port, guarded.up, [b"GET / HTTP/1.1\r\nHost: other.example\r\nHost: svc.local\r\n\r\n"], 400)


def test_invalid_chunk_after_the_head_was_forwarded(guarded):
    """The head goes upstream before the body arrives; a bad chunk later must still never
    make a complete request there, and the half-sent upstream request is dropped."""
    up = guarded.up
    with up.cond:
        heads_before, closed_before = len(up.heads), len(up.peer_closed)
    head = b"POST /chunked HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\n\r\n"
    with Client(guarded.port) as client:
        client.send(head + b"5\r\nhello\r\n")
        up.wait(lambda: len(up.heads) > heads_before, what="the forwarded head")
        client.send(b"not-hex\r\n")
        response = client.read()
        assert response.status == 400
        assert client.closed_by_peer()
    up.wait(lambda: len(up.peer_closed) > closed_before, what="the proxy to drop the upstream request")
    assert all(r.target != "/chunked" for r in up.requests)


def test_protocol_errors_are_logged_as_dpe(guarded):
    with Client(guarded.port) as client:
        client.send(b"NOT HTTP\r\n\r\n")
        assert client.read().status == 400
    entry = guarded.proxy.wait_log(lambda e: e["response_flags"] == "DPE")
    assert entry["response_code"] == 400


def test_well_formed_limits_are_not_rejected(guarded):
    """The control cases: just under each limit passes."""
    with Client(guarded.port) as client:
        assert client.request("GET", "/" + "a" * (15 * 1024)).status == 200
        assert client.request("GET", "/", {f"X-H{i}": "1" for i in range(90)}).status == 200
        assert client.request("GET", "/", {f"X-Big-{i}": "v" * 1000 for i in range(50)}).status == 200


def test_lowered_header_limit(upstreams, proxies):
    up = upstreams("up")
    port = free_port()
    proxies(http_mesh(port, {"v1": up}), extra_args=["--max-request-headers-kb", "4"])
    with Client(port) as client:
        assert client.request("GET", "/small", {"X-Pad": "v" * 3000}).status == 200
    assert_rejected(port, up, [HEAD + b"X-Pad: " + b"v" * 5000 + b"\r\n\r\n"], 431)
