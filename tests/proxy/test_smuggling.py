"""Request smuggling and response splitting, on real sockets: the four requests issue 8 reported
(each made the upstream parse a second request pymesh never routed), and their response-side
mirror images. The upstream here is the harness's lenient server, which parses whatever follows
a request as the next one, as a real server would: so any byte the proxy lets through unframed
shows up as an extra request it records.

The mesh routes only `/public` (anything else is 404 NR), so a smuggled `/admin/secret` request
reaching the upstream is the proof of a bypass.
"""

from __future__ import annotations

import socket

import pytest

from proxy_harness import (HOST, Client, Eof, Reply, Server, SockReader, Upstream, free_port, http_mesh, serving,
                           to_subset)

pytestmark = pytest.mark.timeout(60)

SMUGGLED = b"GET /admin/secret HTTP/1.1\r\nHost: svc.local\r\nX-Pymesh-Peer: forged\r\n\r\n"


def public_only_mesh(port: int, up: Upstream) -> list[dict]:
    return http_mesh(port, {"v1": up}, http=[{"match": [{"uri": {"prefix": "/public"}}], "route": [to_subset("v1")]}])


def upgrade_reply(req) -> Reply:
    if req.header("upgrade") and req.path == "/public/ws-accept":
        return Reply(action="upgrade")
    return Reply(200, body=b"%s %s\n" % (req.method.encode(), req.target.encode()))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    up = Upstream("up", upgrade_reply)
    with serving(tmp_path_factory.mktemp("smuggling"), up, lambda port: public_only_mesh(port, up)) as mesh:
        yield mesh


def upstream_targets_after(up: Upstream, before: int) -> list[str]:
    with up.cond:
        return [r.target for r in up.requests[before:]]


def send_then_control(mesh, payload: bytes) -> tuple[bytes, list[str]]:
    """Send `payload` on one connection and read until the proxy closes it (bounded); then a
    control request on a fresh connection, which must be the last thing the upstream sees."""
    with mesh.up.cond:
        before = len(mesh.up.requests)
    with Client(mesh.port, timeout=5) as client:
        client.send(payload)
        try:
            answer = client.read_raw_to_eof()
        except (socket.timeout, ConnectionResetError) as error:
            answer = repr(error).encode()
    with Client(mesh.port) as client:
        assert client.request("GET", "/public/control").status == 200
    mesh.up.wait(lambda: "/public/control" in upstream_targets_after(mesh.up, before), what="the control request")
    return answer, upstream_targets_after(mesh.up, before)


def test_connection_naming_content_length_cannot_unframe_the_body(mesh):
    """Report 1: `Connection: content-length` used to drop the length and forward the body as
    the next request. The token is ignored: the body stays the body."""
    body = SMUGGLED
    payload = (b"POST /public/form HTTP/1.1\r\nHost: svc.local\r\nConnection: content-length\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body)) + body
    with mesh.up.cond:
        before = len(mesh.up.requests)
    with Client(mesh.port) as client:
        client.send(payload)
        assert client.read().status == 200
    mesh.up.wait(lambda: len(mesh.up.requests) > before, what="the POST")
    with mesh.up.cond:
        received = mesh.up.requests[before:]
    assert [r.target for r in received] == ["/public/form"]
    assert received[0].body == body


@pytest.mark.parametrize("framing", [b"transfer-encoding", b"upgrade", b"te, x-request-id", b"x-pymesh-peer"])
def test_connection_cannot_remove_what_the_proxy_frames_or_adds(mesh, framing):
    with mesh.up.cond:
        before = len(mesh.up.requests)
    with Client(mesh.port) as client:
        client.send(b"POST /public/c HTTP/1.1\r\nHost: svc.local\r\nConnection: %s\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" % framing)
        assert client.read().status == 200
    mesh.up.wait(lambda: len(mesh.up.requests) > before, what="the POST")
    with mesh.up.cond:
        received = mesh.up.requests[before:]
    assert [r.target for r in received] == ["/public/c"]
    assert received[0].body == b"hello"
    assert received[0].header("host") == HOST
    assert received[0].header("x-request-id")


@pytest.mark.parametrize("routing", [b"host", b"x-forwarded-for", b"keep-alive, X-Forwarded-Proto"])
def test_connection_naming_what_routes_the_request_is_refused(mesh, routing):
    """As Envoy: a request that asks for Host or X-Forwarded-* to be dropped is 400 (the old code
    sent it upstream without Host)."""
    answer, targets = send_then_control(
        mesh, b"GET /public/c HTTP/1.1\r\nHost: svc.local\r\nConnection: %s\r\n\r\n" % routing)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert targets == ["/public/control"]


def test_connection_still_removes_other_nominated_headers(mesh):
    with mesh.up.cond:
        before = len(mesh.up.requests)
    with Client(mesh.port) as client:
        assert client.request("GET", "/public/n", {"Connection": "x-hop", "X-Hop": "1", "X-Keep": "2"}).status == 200
    mesh.up.wait(lambda: len(mesh.up.requests) > before, what="the request")
    with mesh.up.cond:
        received = mesh.up.requests[before]
    assert received.header("x-hop") is None
    assert received.header("x-keep") == "2"


def test_refused_upgrade_never_forwards_the_bytes_after_the_head(mesh):
    """Report 2: the bytes after an Upgrade request's head went upstream before any 101 and
    were parsed there as a new request."""
    payload = (b"GET /public/ws HTTP/1.1\r\nHost: svc.local\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
               + SMUGGLED)
    answer, targets = send_then_control(mesh, payload)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert b"connection: close" in answer.lower()
    assert targets == ["/public/ws", "/public/control"]


def test_refused_upgrade_with_an_unterminated_tail_cannot_swallow_the_next_client(mesh):
    """Report 4: a tail that is an unterminated request prefix sat on a pooled upstream
    connection, and the next client's request became the rest of it."""
    payload = (b"GET /public/ws HTTP/1.1\r\nHost: svc.local\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
               b"GET /capture HTTP/1.1\r\nX-Swallow: ")
    answer, targets = send_then_control(mesh, payload)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert targets == ["/public/ws", "/public/control"]
    with mesh.up.cond:
        control = [r for r in mesh.up.requests if r.target == "/public/control"][-1]
    assert control.header("x-swallow") is None


def test_accepted_upgrade_delivers_the_early_bytes_after_the_101(mesh):
    """The other side of the rule: once the upstream switched, the client's early bytes are the
    new protocol's and do arrive (the upstream echoes them)."""
    with Client(mesh.port) as client:
        client.send(b"GET /public/ws-accept HTTP/1.1\r\nHost: svc.local\r\nConnection: Upgrade\r\n"
                    b"Upgrade: websocket\r\n\r\nearly-bytes")
        head = client.reader.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        assert client.reader.read_exact(len(b"early-bytes")) == b"early-bytes"


@pytest.mark.parametrize("spelling", [b"chunked ", b"chunked\t", b" chunked", b"Chunked", b"CHUNKED"])
def test_chunked_with_whitespace_or_case_is_one_chunked_request(mesh, spelling):
    """Report 3: `chunked ` (trailing space) was not chunked for the proxy but was for the
    upstream. Both now read it as chunked, or the proxy refuses it."""
    payload = (b"POST /public/te HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: %s\r\n\r\n" % spelling
               + b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED))
    answer, targets = send_then_control(mesh, payload + b"GET /public/after HTTP/1.1\r\nHost: svc.local\r\nConnection: close\r\n\r\n")
    assert "/admin/secret" not in targets
    if answer.startswith(b"HTTP/1.1 200"):
        assert targets[0] == "/public/te"
        with mesh.up.cond:
            te = [r for r in mesh.up.requests if r.target == "/public/te"][-1]
        assert te.body == SMUGGLED
    else:
        assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 501")), answer
        assert targets == ["/public/control"]


@pytest.mark.parametrize("coding", [b"xchunked", b"chunked, identity", b"identity", b"gzip, chunked", b",chunked"])
def test_transfer_codings_other_than_chunked_are_refused(mesh, coding):
    """501 where the coding is well-formed but not implemented, 400 where llhttp already finds
    the value malformed; never forwarded either way."""
    payload = (b"POST /public/te HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: %s\r\n\r\n" % coding
               + b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED))
    answer, targets = send_then_control(mesh, payload)
    assert answer[:12] in (b"HTTP/1.1 400", b"HTTP/1.1 501"), answer
    assert targets == ["/public/control"]


@pytest.mark.parametrize("payload", [
    b"POST /public/x HTTP/1.0\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /public/x HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /public/x HTTP/1.1\r\nHost: svc.local\r\nContent-Length: 5, 6\r\n\r\nhello!",
    b"POST /public/x HTTP/1.1\r\nHost: svc.local\r\nContent-Length: +5\r\n\r\nhello",
    b"POST /public/x HTTP/1.1\r\nHost: svc.local\r\nContent-Length: 1_0\r\n\r\nhelloworld",
    b"POST /public/x HTTP/1.1\r\nHost: svc.local\r\nContent-Length: 99999999999999999999\r\n\r\nhello",
    b"POST /public/x HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
    b"POST /public/x HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
    b"GET /public/x HTTP/1.1\r\nHost: svc.local\r\nX: a\rb\r\n\r\n",
    b"GET /public/x HTTP/1.1\r\nHost: svc.local\r\nX: a\x00b\r\n\r\n",
    b"GET /public/x HTTP/1.1\r\nHost: svc.local\r\nX: a\x0bb\r\n\r\n",
    b"GET /public/x HTTP/1.1\r\nHost: svc.local\r\nX: a\x7fb\r\n\r\n",
    b"GET /public/x HTTP/2.0\r\nHost: svc.local\r\n\r\n",
    b"GET https://svc.local/public/x HTTP/1.1\r\nHost: svc.local\r\n\r\n",
    b"GET http://user@svc.local/public/x HTTP/1.1\r\nHost: svc.local\r\n\r\n",
    b"CONNECT svc.local:80 HTTP/1.1\r\nHost: svc.local\r\n\r\n" + SMUGGLED,
    b"OPTIONS * HTTP/1.1\r\nHost: svc.local\r\n\r\n",
    b"GET /public/x HTTP/1.1\r\nHost: svc.local\x80\r\n\r\n",
    b"POST /public/x HTTP/1.1\r\nHost: svc.local\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
    b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
], ids=["te-http10", "te-twice", "cl-list-unequal", "cl-plus", "cl-underscore", "cl-overflow", "chunk-0x",
        "chunk-bare-lf", "bare-cr", "nul", "vertical-tab", "del", "http2-version", "https-over-plaintext",
        "userinfo", "connect", "asterisk", "obs-text-in-host", "upgrade-with-body"])
def test_ambiguous_framing_is_refused_and_nothing_reaches_the_upstream(mesh, payload):
    answer, targets = send_then_control(mesh, payload)
    assert answer[:12] in (b"HTTP/1.1 400", b"HTTP/1.1 405", b"HTTP/1.1 501", b"HTTP/1.1 505"), answer
    assert targets == ["/public/control"]


def test_absolute_form_is_forwarded_in_origin_form_with_its_authority_as_host(upstreams, proxies):
    """The URL's authority decides (RFC 9112 3.2.2), for routing and for the upstream alike."""
    up = upstreams("up")
    port = free_port()
    proxies(public_only_mesh(port, up))
    with Client(port) as client:
        client.send(b"GET http://svc.local/public/abs?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n")
        assert client.read().status == 200
        client.send(b"GET http://other.example/public/abs HTTP/1.1\r\nHost: svc.local\r\n\r\n")
        assert client.read().status == 404  # routed by the URL's host, which no route knows
    received = up.wait_requests(1)
    assert received[0].target == "/public/abs?q=1"
    assert received[0].header("host") == HOST
    assert up.count() == 1


def test_whitespace_around_header_values_is_not_part_of_them(mesh):
    """RFC 9110 5.5: `Host: svc.local ` is svc.local (llhttp keeps trailing whitespace)."""
    with Client(mesh.port) as client:
        client.send(b"GET /public/ws-trim HTTP/1.1\r\nHost: svc.local \t\r\n\r\n")
        assert client.read().status == 200


def test_request_after_connection_close_in_the_same_packet_is_answered(mesh):
    """The valid request is answered; what follows `Connection: close` is ignored, never parsed."""
    answer, targets = send_then_control(
        mesh, b"GET /public/last HTTP/1.1\r\nHost: svc.local\r\nConnection: close\r\n\r\n" + SMUGGLED)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert targets == ["/public/last", "/public/control"]


def test_pipelined_requests_before_a_malformed_one_are_answered(mesh):
    answer, targets = send_then_control(
        mesh, b"GET /public/one HTTP/1.1\r\nHost: svc.local\r\n\r\nGET /public/two HTTP/1.1\r\nHost: svc.local\r\n\r\n"
              b"GET /public/bad HTTP/1.1\r\nHost: svc.local\r\nContent-Length: -1\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200") == 2, answer
    assert targets == ["/public/one", "/public/two", "/public/control"]


# --- the response side -----------------------------------------------------------------------


class RawUpstream(Server):
    """Answers each request head with exactly the bytes given for its path, and keeps the
    connection open (unlike `Reply(raw=...)`), so a proxy that trusts it would reuse it."""

    def __init__(self, raw_by_path: dict[str, bytes]) -> None:
        self.raw_by_path = raw_by_path
        super().__init__("raw")

    def serve(self, sock: socket.socket, conn_id: int) -> None:
        reader = SockReader(sock)
        while True:
            try:
                head = reader.read_until(b"\r\n\r\n")
            except Eof:
                return
            path = head.split(b" ", 2)[1].decode()
            sock.sendall(self.raw_by_path.get(path, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfine\n"))


@pytest.fixture
def raw_upstream():
    started = []

    def start(raw_by_path: dict[str, bytes]) -> RawUpstream:
        started.append(RawUpstream(raw_by_path))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize("raw,what", [
    (b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello", "framed"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\nhello", "502"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n", "framed"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "502"),
    (b"HTTP/1.1 200 OK\r\nX-Split: a\rb\r\nContent-Length: 5\r\n\r\nhello", "502"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", "502"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", "502"),
], ids=["connection-content-length", "xchunked", "chunked-trailing-space", "cl-and-te", "bare-cr", "cl-plus",
        "bad-chunk-size"])
def test_upstream_response_framing_is_decided_by_the_proxy(raw_upstream, proxies, raw, what):
    up = raw_upstream({"/public/r": raw})
    port = free_port()
    proxies(public_only_mesh(port, up))
    with Client(port) as client:
        client.send(b"GET /public/r HTTP/1.1\r\nHost: svc.local\r\n\r\n")
        response = client.read()
        if what == "framed":
            assert response.status == 200
            assert response.body == b"hello"
            assert response.header("content-length") == "5" or response.framing == "chunked"
            # the connection is still usable: the response was framed for the client
            assert client.request("GET", "/public/next").status == 200
        else:
            assert response.status == 502, response


def test_a_second_response_for_one_request_never_reaches_another_client(raw_upstream, proxies):
    """Response-queue poisoning: an extra response head after the real one (its body still to
    come) must die with its connection, not be the start of the next client's response."""
    extra = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n"
    up = raw_upstream({"/public/double": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + extra})
    port = free_port()
    proxies(public_only_mesh(port, up))
    with Client(port) as client:
        assert client.request("GET", "/public/double").body == b"hello"
    for _ in range(5):
        with Client(port) as client:
            assert client.request("GET", "/public/other").body == b"fine\n"


def test_truncated_upstream_body_is_a_reset_not_a_clean_end(upstreams, proxies):
    up = upstreams("up", lambda req: Reply(200, body=b"x" * 1000, action="truncate"))
    port = free_port()
    proxies(public_only_mesh(port, up))
    with Client(port) as client:
        client.send(b"GET /public/t HTTP/1.1\r\nHost: svc.local\r\n\r\n")
        head = client.reader.read_until(b"\r\n\r\n")
        assert b"content-length: 1000" in head.lower()
        with pytest.raises(ConnectionResetError):  # a reset, not an orderly FIN that reads as "done"
            client.reader.read_exact(1000)


def test_route_header_operations_cannot_touch_framing(upstreams, proxies):
    """A VirtualService that sets Content-Length or Transfer-Encoding (or removes them) could make
    the proxy and its peer disagree about where a message ends: those operations are dropped,
    with a warning, and both directions stay framed by the codecs."""
    up = upstreams("up")
    port = free_port()
    framing_ops = {"set": {"Content-Length": "0", "Transfer-Encoding": "chunked"}, "remove": ["connection"]}
    proxy = proxies(http_mesh(port, {"v1": up}, http=[{
        "route": [to_subset("v1")], "headers": {"request": framing_ops, "response": framing_ops}}]))
    with Client(port) as client:
        response = client.request("POST", "/public/body", body=b"hello")
        assert response.status == 200
        assert response.body.startswith(b"up POST /public/body")
        assert client.request("GET", "/public/again").status == 200
    assert up.wait_requests(1)[0].body == b"hello"
    _, _, dump = proxy.admin("/config_dump")
    assert b"header operation on 'content-length' ignored" in dump
    assert "header operation on 'transfer-encoding' ignored" in proxy.stderr()
