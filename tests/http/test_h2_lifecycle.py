"""GOAWAY as a proxy needs it, which `h2` does not model (its connection is over at the first
GOAWAY): a draining server lets in-flight streams finish, and a client learns which of its
streams were never processed (REFUSED_STREAM: safe to retry elsewhere)."""

from __future__ import annotations

from h2_peers import CodecPeer, pump, request, response
from pymesh.http import h2 as codec
from pymesh.http.h2_frames import NO_ERROR, REFUSED_STREAM, goaway


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
