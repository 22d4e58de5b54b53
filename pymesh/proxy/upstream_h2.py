"""Upstream HTTP/2: few connections to an endpoint, many streams on each (the pool contract of
pymesh.proxy.upstream, multiplexed).

An exchange binds to an `H2UpstreamStream`, which implements `UpstreamConnection` for one
stream; `H2Upstream` is the TCP connection and its codec (pymesh.http.h2, client side). The
pool hands out a stream on a connection with room (the peer's SETTINGS_MAX_CONCURRENT_STREAMS,
or the DestinationRule's maxConcurrentStreams if lower) and dials another connection when none
has; exchanges that ask while a connection is being dialled wait for that one.

Flow control is end to end: response DATA is acknowledged only once the exchange passed it on and
is not paused; a request stream the peer's windows block pauses the client until the codec says
the stream may send again. A stream the upstream refused (REFUSED_STREAM, or above a GOAWAY's
last stream) is reported as refused, which the retry policy treats as never processed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Iterable

from pymesh.http import h2
from pymesh.http.h2_frames import CANCEL, NO_ERROR, REFUSED_STREAM
from pymesh.http.message import Trailers, UpstreamRequest
from pymesh.policy.outcome import Outcome
from pymesh.proxy.h2_common import CodecWriter, ReceivingStream
from pymesh.proxy.upstream import EndpointPool


class H2UpstreamStream(ReceivingStream):
    """One request's stream: what an exchange binds to (pymesh.proxy.interfaces), and whose
    response it reads (`ReceivingStream`)."""

    __slots__ = ("reused", "received", "done")

    def __init__(self, connection: H2Upstream, stream_id: int, reused: bool) -> None:
        super().__init__(connection, stream_id)
        self.reused = reused  # its connection carried streams before this one
        self.received = False  # any response frame arrived on it
        self.done = False

    def bind(self, exchange, expect_body: bool) -> None:
        self.exchange = exchange

    def send_request(self, request: UpstreamRequest, body: Iterable[bytes | Trailers] = (), complete: bool = False) -> None:
        codec = self.connection.codec
        pieces = list(body)
        ends_now = not request.has_body or (complete and not pieces)
        te = self.exchange.head.header(b"te")
        if te is not None and b"trailers" in te.lower():  # gRPC needs it to reach the server
            request.headers.append((b"te", b"trailers"))
        codec.send_headers(self.id, request, end_stream=ends_now)
        for index, piece in enumerate(pieces):
            if piece.__class__ is Trailers:
                self.send_end(piece.headers)
            else:
                last = complete and index == len(pieces) - 1
                if codec.send_data(self.id, piece, last) < len(piece):
                    self.exchange.pause_request_body()
        self.connection.flush_soon()

    def send_data(self, data: bytes) -> None:
        if self.connection.codec.send_data(self.id, data) < len(data):
            self.exchange.pause_request_body()  # until the codec's WINDOW event for this stream
        self.connection.flush_soon()

    def send_raw(self, data: bytes) -> None:
        raise AssertionError("HTTP/2 streams are never upgraded")  # upgrades go over HTTP/1.1

    def release(self, reusable: bool) -> None:
        """The exchange is done with the stream; one not ended both ways is reset (the request
        body still streaming, say), so the upstream stops."""
        if not self.done:
            self.connection.codec.reset_stream(self.id, NO_ERROR if reusable else CANCEL)
        self.connection.stream_finished(self)

    def abort(self) -> None:
        self.connection.codec.reset_stream(self.id, CANCEL)
        self.connection.stream_finished(self)

    def detach_as_tunnel(self, downstream_transport):
        raise AssertionError("HTTP/2 streams are never upgraded")


class H2Upstream(CodecWriter, asyncio.Protocol):
    """One HTTP/2 connection to an endpoint."""

    def __init__(self, pool: H2Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.codec = h2.Connection(client=True)
        self.streams: dict[int, H2UpstreamStream] = {}
        self.opened = 0  # streams ever opened (a stream after the first is "reused")
        self.idle_since = time.monotonic()
        self.opened_at = self.idle_since  # for maxConnectionDuration
        self.write_paused = False
        self.draining = False  # GOAWAY sent: closes when its last stream ends
        self.failure = None  # the protocol error that closed it (one before any stream: the pool's)

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.opened_at = time.monotonic()
        self.pool.tune(transport)
        self.flush()  # the preface and our SETTINGS

    # streams ----------------------------------------------------------------------------------

    def has_room(self) -> bool:
        limit = self.pool.max_concurrent_streams
        return (not self.transport.is_closing() and self.codec.can_open_stream
                and (not limit or len(self.streams) < limit))

    def open_stream(self) -> H2UpstreamStream:
        stream = H2UpstreamStream(self, self.codec.new_stream_id(), self.opened > 0)
        self.opened += 1
        self.streams[stream.id] = stream
        return stream

    def stream_finished(self, stream: H2UpstreamStream) -> None:
        if self.streams.pop(stream.id, None) is not None:
            stream.exchange = None
            if not self.streams:
                self.idle_since = time.monotonic()
                if self.draining:
                    self.flush()
                    self.transport.close()
                    return
        self.flush_soon()
        if self.pool.waiters and not self.draining:
            self.pool.ready(self)

    # asyncio callbacks ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        events = self.codec.feed(data)
        last = len(events) - 1
        for index, (kind, stream_id, value) in enumerate(events):
            stream = self.streams.get(stream_id)
            if stream is None or stream.exchange is None:
                if kind == h2.DATA:
                    self.codec.acknowledge_received(stream_id, len(value))
                elif kind == h2.ERROR and not stream_id:
                    return self._protocol_error(value)
                continue
            stream.received = True
            exchange = stream.exchange
            if kind == h2.DATA:
                exchange.on_response_data(value)
                stream.passed_on(len(value))
            elif kind == h2.HEAD:
                if value.content_length is None:
                    ended = index < last and events[index + 1][0] == h2.END and events[index + 1][1] == stream_id
                    if ended:
                        value.content_length = 0  # HEADERS ended the stream: gRPC's trailers-only form
                    else:
                        value.streamed = True  # its body ends with the stream, not with the connection
                exchange.on_response_head(stream, value)
                if index == last or events[index + 1][1] != stream_id:
                    exchange.flush_response()
            elif kind == h2.END:
                stream.done = True
                exchange.on_response_end(stream, value)
            elif kind == h2.WINDOW:
                exchange.resume_request_body()
            elif kind == h2.RESET:
                stream.done = True
                self.streams.pop(stream_id, None)
                if value == REFUSED_STREAM:
                    exchange.on_upstream_refused(stream)
                else:
                    exchange.on_upstream_lost(stream, Outcome.STREAM_RESET)
            elif kind == h2.ERROR:  # the upstream broke the protocol on this stream
                stream.done = True
                self.streams.pop(stream_id, None)
                exchange.on_upstream_error(stream, value)
        self.flush()

    def _protocol_error(self, error) -> None:
        """The upstream broke HTTP/2 on the connection: every stream in flight ends as an
        upstream protocol error (502 UPE), the codec's GOAWAY goes out, the connection closes."""
        self.failure = error
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            if stream.exchange is not None:
                stream.done = True
                stream.exchange.on_upstream_error(stream, error)
        self.flush()
        self.transport.close()

    def connection_lost(self, exc) -> None:
        self.pool.connection_lost(self)
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            if stream.exchange is not None:
                stream.done = True
                stream.exchange.on_upstream_lost(stream)

    def pause_writing(self) -> None:
        self.write_paused = True
        for stream in self.streams.values():
            if stream.exchange is not None:
                stream.exchange.pause_request_body()

    def resume_writing(self) -> None:
        self.write_paused = False
        for stream in list(self.streams.values()):
            if stream.exchange is not None:
                stream.exchange.resume_request_body()

    def close(self) -> None:
        self.codec.goaway(NO_ERROR)
        self.flush()
        self.transport.close()

    def drain(self) -> None:
        self.draining = True
        self.codec.goaway(NO_ERROR)
        self.flush()


class H2Pool(EndpointPool):
    """HTTP/2 connections to one endpoint of one cluster (see the module docstring). Waiters are
    served streams on the first connection with room; a new connection opens only when none
    has room and none is opening."""

    def __init__(self, cluster, endpoint, loop, stats, tls=None) -> None:
        self.connections: list[H2Upstream] = []
        super().__init__(cluster, endpoint, loop, stats, tls)

    def configure(self, cluster) -> None:
        super().configure(cluster)
        self.max_concurrent_streams = cluster.connection_pool.max_concurrent_streams

    def take_idle(self) -> H2UpstreamStream | None:
        now = time.monotonic()
        for connection in self.connections:
            if connection.has_room() and not self._draining(connection, now):
                return connection.open_stream()
        return None

    def _draining(self, connection: H2Upstream, now: float) -> bool:
        """Past maxConnectionDuration: GOAWAY, its streams finish, new ones go elsewhere."""
        if self.max_duration is None or not self.expired(connection, now):
            return False
        self.connections.remove(connection)
        if connection.streams:
            connection.drain()
        else:
            connection.close()
        return True

    def needs_connection(self) -> bool:
        return bool(self.waiters) and not self.dialing

    def new_connection(self) -> H2Upstream:
        return H2Upstream(self)

    def _dialled(self, connection, error, had_socket: bool) -> None:
        self.dialing -= 1
        if connection is None:
            if not had_socket:
                self._closed()
            while self.waiters:  # they all waited on this one connection
                self.next_waiter()(None, error)
            return
        self.connections.append(connection)
        self.ready(connection)

    def ready(self, connection: H2Upstream) -> None:
        """Room on `connection`: streams for the waiters while it lasts, then another
        connection for the rest (the peer's SETTINGS cap the streams per connection)."""
        while self.waiters and connection.has_room():
            self.next_waiter()(connection.open_stream(), None)
        if self.waiters:
            self.open_for_waiters()

    @property
    def active(self) -> int:
        """Streams in flight (HTTP/1.1 pools count connections lent out)."""
        return sum(len(c.streams) for c in self.connections)

    def release(self, conn, reusable: bool) -> None:
        conn.release(reusable)

    def connection_lost(self, connection: H2Upstream) -> None:
        if connection in self.connections:
            self.connections.remove(connection)
        self._closed()

    def sweep(self, now: float) -> None:
        deadline = now - self.idle_timeout
        for connection in list(self.connections):
            if not connection.streams and (connection.idle_since < deadline or self._draining(connection, now)):
                if connection in self.connections:
                    self.connections.remove(connection)
                    connection.close()

    def close_idle(self) -> None:
        for connection in list(self.connections):
            if not connection.streams:
                self.connections.remove(connection)
                connection.close()
