"""End-to-end backpressure through pymesh's HTTP/2 codec, with `h2` as the peer: the receive windows
reopen only as the application acknowledges, and a blocked sender buffers and hears (WINDOW, id, None)."""

from __future__ import annotations

import pytest

from h2_peers import CodecPeer, RefPeer, pump, request, response
from pymesh.http import h2 as codec
from pymesh.http.message import ResponseHead

LIMITS = codec.Limits(initial_stream_window=65535, initial_connection_window=100_000)


def test_receiver_that_does_not_acknowledge_stops_the_sender():
    client, server = RefPeer(client=True), CodecPeer(client=False, auto_ack=False, limits=LIMITS)
    pump(client, server)
    sid = client.new_stream()
    client.send_head(sid, request(b"POST", b"/up"))
    client.send_data(sid, b"b" * 1_000_000, end_stream=True)
    pump(client, server)
    assert len(server.log.body(sid)) == 65535  # the stream window, not one byte more
    assert client.pending[sid][0]  # the rest waits at the sender
    acknowledged = 0
    for _ in range(100):  # acknowledge in slices, as a proxy passing data on would
        if len(server.log.body(sid)) >= 1_000_000:
            break
        server.ack(sid, 40_000)
        acknowledged += 40_000
        pump(client, server)
        assert len(server.log.body(sid)) <= acknowledged + 65535  # never more than was given back
    assert server.log.body(sid) == b"b" * 1_000_000
    assert server.log.streams[sid][-1] == ("end", [])


def answering_a_slow_reader():
    """A GET the codec answers to an h2 client that acknowledges nothing by itself."""
    client, server = RefPeer(client=True, auto_ack=False), CodecPeer(client=False)
    pump(client, server)
    sid = client.new_stream()
    client.send_head(sid, request(), end_stream=True)
    pump(client, server)
    server.conn.send_headers(sid, ResponseHead(200, response()[1:]))
    return client, server, sid


def test_sender_blocked_by_the_peer_buffers_and_hears_window():
    client, server, sid = answering_a_slow_reader()
    sent = server.conn.send_data(sid, b"d" * 200_000, end_stream=True)
    assert sent == 65535  # h2's default windows
    assert server.conn.buffered(sid) == 200_000 - 65535
    pump(client, server)
    assert not [e for e in server.events if e[0] == codec.WINDOW]
    client.ack(sid, 65535)
    pump(client, server)
    assert (codec.WINDOW, sid, None) not in server.events  # 65535 more sent, still 69k buffered
    for _ in range(5):
        client.ack(sid, 65535)
        pump(client, server)
    assert (codec.WINDOW, sid, None) in server.events
    assert client.log.body(sid) == b"d" * 200_000
    assert client.log.streams[sid][-1] == ("end", [])


def test_acknowledging_after_the_stream_ended_still_reopens_the_connection():
    """A reset stream's bytes are acknowledged when the application drops them: no window leaks."""
    client, server = RefPeer(client=True), CodecPeer(client=False, auto_ack=False, limits=LIMITS)
    pump(client, server)
    for round_ in range(5):  # 5 x 60 KB through a 100 KB connection window
        sid = client.new_stream()
        client.send_head(sid, request(b"POST", b"/r%d" % round_))
        client.send_data(sid, b"x" * 60_000)
        pump(client, server)
        assert len(server.log.body(sid)) == 60_000
        client.reset(sid, 8)
        pump(client, server)
        server.ack(sid, 60_000)  # the application dropped what it held
        pump(client, server)


def test_a_caller_that_ignores_blocking_is_stopped():
    client, server, sid = answering_a_slow_reader()
    assert server.conn.send_data(sid, b"x" * 100_000) == 65535
    with pytest.raises(BufferError):
        for _ in range(100):  # bounded: the limit is 2 MiB
            server.conn.send_data(sid, b"y" * 65536)
    assert server.conn.buffered(sid) <= codec.Limits().max_send_buffer
