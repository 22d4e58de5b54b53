"""Connection lifecycle beyond one exchange: GOAWAY as a proxy needs it, which `h2` does not model
(its connection is over at the first GOAWAY): a draining server lets in-flight streams finish,
and a client learns which of its streams were never processed (REFUSED_STREAM: safe to retry
elsewhere); and the start of a connection by `Upgrade: h2c`."""

from __future__ import annotations

import h2.config
import h2.connection
import pytest

from h2_peers import CodecPeer, RefPeer, pump, request, response
from pymesh.http import h2 as codec
from pymesh.http.h2_frames import NO_ERROR, REFUSED_STREAM, goaway
from pymesh.http.message import UpstreamRequest


def test_draining_server_finishes_in_flight_streams():
    client, server = CodecPeer(client=True), CodecPeer(client=False)
    pump(client, server)
    sid = client.new_stream()
    client.send_head(sid, request(b"POST", b"/slow"))
    pump(client, server)
    server.goaway(NO_ERROR)
    pump(client, server)
    assert client.log.connection == [("goaway", sid, NO_ERROR)]
    assert not client.conn.can_open_stream
    client.send_data(sid, b"body", end_stream=True)
    pump(client, server)
    server.send_head(sid, response())
    server.send_data(sid, b"answer", end_stream=True)
    pump(client, server)
    assert client.log.streams[sid] == [("head", response()), ("data", b"answer"), ("end", [])]
    assert server.log.body(sid) == b"body"
    assert server.conn.open_streams == 0 and client.conn.open_streams == 0


def test_client_hears_which_streams_the_server_never_processed():
    client, server = CodecPeer(client=True), CodecPeer(client=False)
    pump(client, server)
    first, second = client.new_stream(), client.new_stream()
    for sid in (first, second):
        client.send_head(sid, request(), end_stream=True)
    client.out()  # the server never reads them: it goes away having processed only the first
    client.feed(goaway(first, NO_ERROR))
    assert (codec.RESET, second, REFUSED_STREAM) in client.events
    assert (codec.GOAWAY, first, NO_ERROR) in client.events
    assert client.conn.open_streams == 1


def test_upgrade_from_http1_with_h2_as_the_client():
    """`Upgrade: h2c`: h2's client sends HTTP2-Settings with its HTTP/1.1 request; after the 101
    the request is stream 1 and the answer goes out over HTTP/2."""
    client = RefPeer(client=True)
    client.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    settings_header = client.conn.initiate_upgrade_connection()
    server = CodecPeer(client=False)
    server.conn.accept_upgrade(settings_header)  # the HTTP/1.1 request was read by pymesh.http.h1
    pump(client, server)
    server.send_head(1, response())
    server.send_data(1, b"over h2", end_stream=True)
    pump(client, server)
    assert client.log.streams[1] == [("head", response()), ("data", b"over h2"), ("end", [])]
    assert client.terminated is None and not server.conn.closed
    follow_up = client.new_stream()
    client.send_head(follow_up, request(), end_stream=True)
    pump(client, server)
    assert follow_up == 3 and server.log.streams[3][-1] == ("end", [])


def test_upgrade_with_malformed_settings_is_refused():
    conn = codec.Connection(client=False)
    with pytest.raises(codec.H2Error):
        conn.accept_upgrade(b"AAT_____")  # INITIAL_WINDOW_SIZE 2^32-1
    with pytest.raises(codec.H2Error):
        conn.accept_upgrade(b"AAT__")  # not whole settings


def test_client_sends_the_upstream_request_of_the_proxy_stream():
    """pymesh.http.message.UpstreamRequest, framing-free, goes out as pseudo-headers and fields."""
    client, server = CodecPeer(client=True), RefPeer(client=False)
    pump(client, server)
    sid = client.new_stream()
    upstream = UpstreamRequest("POST", "/p?q=1", "up.example:8080", [(b"accept", b"*/*"), (b"te", b"trailers")],
                               length=3, has_body=True)
    client.conn.send_headers(sid, upstream)
    client.conn.send_data(sid, b"abc", end_stream=True)
    pump(client, server)
    assert server.log.streams[sid] == [
        ("head", [(b":authority", b"up.example:8080"), (b":method", b"POST"), (b":path", b"/p?q=1"),
                  (b":scheme", b"http"), (b"accept", b"*/*"), (b"content-length", b"3"), (b"te", b"trailers")]),
        ("data", b"abc"), ("end", [])]


def _frames(data: bytes) -> list[tuple[int, int, int]]:
    """(type, flags, length) of each frame in `data`."""
    frames, at = [], 0
    while at < len(data):
        length = int.from_bytes(data[at:at + 3], "big")
        frames.append((data[at + 3], data[at + 4], length))
        at += 9 + length
    return frames


@pytest.mark.parametrize("taken_between, other_stream_between, merged", [
    (False, False, True),   # the body's DATA frame is still the last queued: END_STREAM goes on it
    (True, False, False),   # already taken for the wire: an empty DATA frame ends the stream
    (False, True, False),   # another stream's frame came after it: an empty DATA frame ends it
])
def test_end_of_a_body_rides_on_its_last_data_frame_when_it_can(taken_between, other_stream_between, merged):
    client, server = CodecPeer(client=True), CodecPeer(client=False)
    pump(client, server)
    first, second = client.new_stream(), client.new_stream()
    for sid in (first, second):
        client.send_head(sid, request(), end_stream=True)
    pump(client, server)
    server.send_head(first, response())
    server.conn.send_data(first, b"answer")
    wire = server.out() if taken_between else b""
    if other_stream_between:
        server.send_head(second, response(), end_stream=True)
    server.conn.end_stream(first)
    wire += server.out()
    data_frames = [frame for frame in _frames(wire) if frame[0] == 0]
    assert data_frames == ([(0, 1, 6)] if merged else [(0, 0, 6), (0, 1, 0)])
    client.feed(wire)
    assert client.log.streams[first] == [("head", response()), ("data", b"answer"), ("end", [])]
    assert server.conn.open_streams == (1 if not other_stream_between else 0)
