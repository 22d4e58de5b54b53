"""Hostile HTTP/2 clients against a real `pymesh proxy` h2c listener in front of an HTTP/1.1
upstream: floods (rapid reset, CVE-2023-44487; CONTINUATION) and invalid frame sequences end
with the RFC 9113 error read from the wire, never reach the upstream, leave the proxy's memory
bounded, and never stop it serving other clients.

The attacker is a raw socket writing hand-built frames (HPACK blocks from `hpack`); what the
proxy answers is parsed with `hyperframe`. Well-behaved clients are those of
test_http2_downstream (the `h2` library) and curl."""

from __future__ import annotations

import socket
import threading
import time

import h2.events
import hpack
import hyperframe.frame as hf
import pytest

from proxy_harness import HOST, curl, free_port
from test_http2_downstream import H2Client, mesh, request_headers

from pymesh.http import h2_frames as fr

pytestmark = pytest.mark.timeout(120)

GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", HOST.encode()), (b":path", b"/public/attack")]
POST = [(b":method", b"POST"), *GET[1:]]
RSS_GROWTH_KIB = 32 * 1024  # generous: a leak per stream of these floods would be far larger


class RawClient:
    """One HTTP/2 connection on a raw socket: frames out as bytes, frames in as hyperframe objects."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.encoder = hpack.Encoder()
        self.frames: list = []
        self._buf = b""
        self.closed = False
        self.send(fr.PREFACE + fr.settings_frame([]))

    def headers(self, sid: int, fields, flags: int = fr.END_HEADERS | fr.END_STREAM) -> bytes:
        return fr.frame(fr.HEADERS, flags, sid, self.encoder.encode(fields))

    def send(self, data: bytes) -> bool:
        """False once the proxy has closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def read_until(self, done) -> list:
        """Frames received until done(frames) or the proxy closes (bounded by the socket timeout)."""
        while not done(self.frames) and not self.closed:
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                data = b""
            if not data:
                self.closed = True
                break
            self._buf += data
            while len(self._buf) >= 9:
                frame, length = hf.Frame.parse_frame_header(memoryview(self._buf[:9]))
                if len(self._buf) < 9 + length:
                    break
                frame.parse_body(memoryview(self._buf[9:9 + length]))
                self.frames.append(frame)
                self._buf = self._buf[9 + length:]
        return self.frames

    def goaway_code(self) -> int | None:
        """The error code of the proxy's GOAWAY, read until it comes or the connection ends."""
        frames = self.read_until(lambda seen: any(isinstance(f, hf.GoAwayFrame) for f in seen))
        return next((f.error_code for f in frames if isinstance(f, hf.GoAwayFrame)), None)

    def reset_code(self, sid: int) -> int | None:
        def reset(frames):
            return next((f.error_code for f in frames if isinstance(f, hf.RstStreamFrame) and f.stream_id == sid), None)
        return reset(self.read_until(lambda seen: reset(seen) is not None))

    def response_status(self, sid: int) -> bytes | None:
        """:status of the response on `sid` (the response's HEADERS decoded)."""
        frames = self.read_until(lambda seen: any(isinstance(f, hf.HeadersFrame) and f.stream_id == sid for f in seen))
        decoder = hpack.Decoder()
        for frame in frames:
            if isinstance(frame, hf.HeadersFrame):
                fields = dict(decoder.decode(frame.data, raw=True))
                if frame.stream_id == sid:
                    return fields[b":status"]
        return None

    def close(self) -> None:
        self.sock.close()


def flood(port: int, wire: bytes) -> int | None:
    """Send `wire` from one thread while reading the answer in this one; the GOAWAY code."""
    client = RawClient(port)
    sender = threading.Thread(target=client.send, args=(wire,), daemon=True)
    try:
        sender.start()
        code = client.goaway_code()
        client.read_until(lambda seen: False)  # the proxy closes the connection after its GOAWAY
        assert client.closed
        return code
    finally:
        client.close()
        sender.join(15)


def h2_get(port: int, path: str) -> int:
    """One request from a well-behaved h2 client on its own connection: the status."""
    client = H2Client(port)
    try:
        client.conn.send_headers(1, request_headers(path), end_stream=True)
        client.flush()
        events = client.events_until(lambda seen: any(isinstance(e, h2.events.StreamEnded) for e in seen))
        return next(int(dict(e.headers)[b":status"]) for e in events if isinstance(e, h2.events.ResponseReceived))
    finally:
        client.close()


class Bystander:
    """Another client requesting in a loop while an attack runs (bounded in count and time)."""

    def __init__(self, port: int, limit: int = 300) -> None:
        self.port = port
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._limit = limit
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 60
        while not self._stop.is_set() and len(self.statuses) < self._limit and time.monotonic() < deadline:
            try:
                self.statuses.append(h2_get(self.port, f"/public/bystander{len(self.statuses)}"))
            except OSError:
                self.statuses.append(0)

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(30)
        return self.statuses


@pytest.fixture
def target(upstreams, proxies):
    """(port, upstream, proxy): an h2c-capable listener routing /public to one HTTP/1.1 upstream."""
    up = upstreams("up")
    port = free_port()
    proxy = proxies(mesh(port, up))
    assert h2_get(port, "/public/warmup") == 200
    return port, up, proxy


def attack_requests(up) -> int:
    return sum(1 for r in up.requests if r.path == "/public/attack")


def rapid_reset(pairs: int) -> bytes:
    """HEADERS + RST_STREAM, `pairs` times, on a fresh connection's HPACK context."""
    encoder = hpack.Encoder()
    return b"".join(fr.frame(fr.HEADERS, fr.END_HEADERS | fr.END_STREAM, sid, encoder.encode(GET))
                    + fr.rst_stream(sid, fr.CANCEL) for sid in range(1, 2 * pairs, 2))


def test_rapid_reset_flood_is_cut_off_with_enhance_your_calm(target):
    port, up, proxy = target
    rss_before = proxy.rss_kib()
    bystander = Bystander(port)
    connections, pairs = 10, 3000
    try:
        for _ in range(connections):
            assert flood(port, rapid_reset(pairs)) == fr.ENHANCE_YOUR_CALM
    finally:
        statuses = bystander.stop()
    assert statuses and set(statuses) == {200}, statuses  # served during the attack
    assert h2_get(port, "/public/after") == 200  # and after it
    assert curl(port, "/public/after-curl", "--http2-prior-knowledge").status == 200
    sent = connections * pairs
    assert attack_requests(up) < sent // 10, f"{attack_requests(up)} of {sent} reset requests reached the upstream"
    assert proxy.rss_kib() - rss_before < RSS_GROWTH_KIB
    assert proxy.running()


def test_continuation_flood_is_cut_off_with_enhance_your_calm(target):
    port, up, proxy = target
    rss_before = proxy.rss_kib()
    bystander = Bystander(port)
    try:
        for _ in range(10):
            encoder = hpack.Encoder()
            start = fr.frame(fr.HEADERS, 0, 1, encoder.encode(POST))  # no END_HEADERS: the block goes on
            piece = fr.frame(fr.CONTINUATION, 0, 1, encoder.encode([(b"x-filler", b"f" * 64)]))
            assert flood(port, start + piece * 20_000) == fr.ENHANCE_YOUR_CALM
        # one block of few, large frames: bounded in bytes too
        big = fr.frame(fr.CONTINUATION, 0, 1, b"\x40\x01a\x7f\x80\x7f" + b"a" * 16000)
        assert flood(port, fr.frame(fr.HEADERS, 0, 1, b"\x82") + big * 200) == fr.ENHANCE_YOUR_CALM
    finally:
        statuses = bystander.stop()
    assert statuses and set(statuses) == {200}, statuses
    assert h2_get(port, "/public/after") == 200
    assert attack_requests(up) == 0
    assert proxy.rss_kib() - rss_before < RSS_GROWTH_KIB


def test_data_on_stream_0_is_a_connection_protocol_error(target):
    port, up, _ = target
    client = RawClient(port)
    try:
        client.send(fr.frame(fr.DATA, 0, 0, b"x"))
        assert client.goaway_code() == fr.PROTOCOL_ERROR
    finally:
        client.close()
    assert h2_get(port, "/public/after") == 200


BAD_PSEUDO_HEADERS = {
    "unknown pseudo-header": GET + [(b":foo", b"bar")],
    "pseudo-header after a regular one": GET[:3] + [(b"accept", b"*/*"), GET[3]],
    "repeated :path": GET + [(b":path", b"/public/again")],
    "missing :method": GET[1:],
    "response pseudo-header in a request": GET + [(b":status", b"200")],
    "upper-case name": GET + [(b"X-Upper", b"1")],
    "connection-specific header": GET + [(b"connection", b"keep-alive")],
}


@pytest.mark.parametrize("case", BAD_PSEUDO_HEADERS, ids=str)
def test_malformed_request_headers_are_a_stream_protocol_error(target, case):
    port, up, _ = target
    client = RawClient(port)
    try:
        client.send(client.headers(1, BAD_PSEUDO_HEADERS[case]))
        assert client.reset_code(1) == fr.PROTOCOL_ERROR  # a stream error (RFC 9113 8.1.1) ...
        client.send(client.headers(3, [*GET[:3], (b":path", b"/public/next")]))
        assert client.response_status(3) == b"200"  # ... the connection goes on
    finally:
        client.close()
    assert attack_requests(up) == 0


def test_a_reused_stream_id_is_a_connection_protocol_error(target):
    port, up, _ = target
    client = RawClient(port)
    first = [*GET[:3], (b":path", b"/public/first")]
    try:
        client.send(client.headers(1, first))
        assert client.response_status(1) == b"200"
        client.send(client.headers(1, GET))  # stream 1 is closed: its id may not open a stream again
        assert client.goaway_code() == fr.PROTOCOL_ERROR
    finally:
        client.close()
    assert [r.path for r in up.requests].count("/public/first") == 1
    assert attack_requests(up) == 0


def test_streams_beyond_max_concurrent_are_refused_while_the_proxy_serves(target):
    port, up, _ = target
    client = RawClient(port)
    settings = client.read_until(lambda seen: any(isinstance(f, hf.SettingsFrame) and not f.flags for f in seen))
    limit = next(f.settings[hf.SettingsFrame.MAX_CONCURRENT_STREAMS] for f in settings if isinstance(f, hf.SettingsFrame))
    try:
        opened = [2 * i + 1 for i in range(limit)]
        client.send(b"".join(client.headers(sid, POST, fr.END_HEADERS) for sid in opened))  # bodies never come
        extra = 2 * limit + 1
        client.send(client.headers(extra, GET))
        assert client.reset_code(extra) == fr.REFUSED_STREAM
        assert h2_get(port, "/public/meanwhile") == 200  # another connection is served meanwhile
        client.send(fr.frame(fr.DATA, fr.END_STREAM, opened[0], b""))  # one stream ends: a slot frees
        assert client.response_status(opened[0]) == b"200"
        client.send(client.headers(extra + 2, [*GET[:3], (b":path", b"/public/later")]))
        assert client.response_status(extra + 2) == b"200"
    finally:
        client.close()
    assert not any(head.startswith(b"GET /public/attack ") for head in up.heads)  # the refused one


def test_a_header_block_never_finished_is_cut_off_at_the_request_headers_timeout(upstreams, proxies):
    """Slowloris over HTTP/2: HEADERS without END_HEADERS and no CONTINUATION. The connection is
    closed (GOAWAY) once --request-headers-timeout passes, counted as Envoy counts it."""
    up = upstreams("up")
    port = free_port()
    proxy = proxies(mesh(port, up), extra_args=["--request-headers-timeout", "1"])
    client = RawClient(port)
    assert client.send(fr.frame(fr.HEADERS, 0, 1, client.encoder.encode(GET)))  # no END_HEADERS
    assert client.goaway_code() == fr.NO_ERROR
    client.read_until(lambda frames: False)  # then the connection ends
    assert client.closed
    assert proxy.stat("downstream_rq_header_timeout") == 1
    assert attack_requests(up) == 0
