"""The downstream side of an HTTP/2 connection (h2c with prior knowledge): many exchanges on one
connection, each stream its own `Downstream` (pymesh.proxy.interfaces).

The codec (pymesh.http.h2) owns framing and flow control; this module maps its events onto
exchanges and their calls back onto the codec:

- a request's DATA is acknowledged (its window reopened) only once the exchange took it and is
  not paused, so a slow upstream slows the client through the HTTP/2 windows;
- a response stream that the client's windows block, or a full socket buffer, pauses the
  exchange's response (`pause_response`) until the codec says the stream can send again;
- what the codec queues is written once per loop iteration, not once per call.

Connection-level deadlines (idle) and per-stream ones (stream idle) are those of HTTP/1.1
(pymesh.proxy.downstream_limits); a drain sends GOAWAY and lets open streams finish.
"""

from __future__ import annotations

import asyncio

from pymesh.http import h2
from pymesh.http.h2_frames import INTERNAL_ERROR, NO_ERROR
from pymesh.http.message import ConnectionInfo, Header, ResponseHead
from pymesh.proxy.exchange import Exchange
from pymesh.proxy.h2_common import CodecWriter, ReceivingStream
from pymesh.proxy.local_reply import LocalReply

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_TEXT_PLAIN = (b"content-type", b"text/plain")


class H2Stream(ReceivingStream):
    """One stream's side of an exchange: the `Downstream` its exchange writes the response to
    (and whose request body it reads: `ReceivingStream`)."""

    __slots__ = ("blocked", "ended")

    def __init__(self, connection: DownstreamH2, stream_id: int) -> None:
        super().__init__(connection, stream_id)
        self.blocked = False  # the client's windows hold our response back
        self.ended = False  # the response head ended the stream (no body: trailers-only)

    @property
    def info(self) -> ConnectionInfo:
        return self.connection.info

    def send_continue(self) -> None:
        """HTTP/2 clients do not wait for 100-continue from a proxy: nothing to send."""

    def flush_response(self) -> None:
        """Frames already go out once per loop turn (flush_soon): nothing held here."""

    def send_response_head(self, status: int, headers: list[Header], content_length: int | None,
                           has_body: bool) -> None:
        head = ResponseHead(status, headers, http_version="2")
        self.ended = not has_body or content_length == 0
        if not self.ended or not has_body:  # an empty body is END_STREAM on the head (trailers-only)
            head.content_length = content_length
        self.connection.codec.send_headers(self.id, head, end_stream=self.ended)
        self.connection.flush_soon()

    def send_data(self, data: bytes) -> None:
        connection = self.connection
        if connection.codec.send_data(self.id, data) < len(data) and not self.blocked:
            self.blocked = True
            self.exchange.pause_response()
        connection.flush_soon()

    def send_end(self, trailers: list[Header]) -> None:
        if not self.ended:  # a trailers-only response already ended the stream with its head
            super().send_end(trailers)

    def send_local_reply(self, reply: LocalReply, expect_body: bool) -> None:
        headers = list(reply.headers)
        if reply.body:
            headers.append(_TEXT_PLAIN)
        with_body = bool(reply.body) and expect_body
        self.send_response_head(reply.status, headers, len(reply.body), with_body)
        if with_body:
            self.connection.codec.send_data(self.id, reply.body, True)
            self.connection.flush_soon()

    def abort(self) -> None:
        """The response cannot complete: the client sees the stream reset, not a short body."""
        self.connection.codec.reset_stream(self.id, INTERNAL_ERROR)
        self.connection.flush_soon()

    def start_tunnel(self, upstream, tail: bytes) -> None:
        raise AssertionError("HTTP/2 requests never upgrade")  # read_request sets no upgrade

    def exchange_done(self, exchange: Exchange) -> None:
        self.connection.stream_done(self)


class DownstreamH2(CodecWriter, asyncio.Protocol):
    def __init__(self, runtime, listener, info: ConnectionInfo | None = None) -> None:
        self.runtime = runtime
        self.loop = runtime.loop
        self.listener = listener
        self.info = info or ConnectionInfo(local_port=listener.port)
        self.transport: asyncio.Transport | None = None
        self.codec = h2.Connection(client=False)
        self.streams: dict[int, H2Stream] = {}
        self.write_paused = False
        self.closing = False
        self.idle_since = runtime.now
        self.head_since: float | None = None  # when the header block being received began

    # asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        if self.runtime.admit(self, transport):
            self.flush()  # our SETTINGS

    def adopt(self, transport, data: bytes) -> None:
        """Take over a connection an HTTP/1.1 protocol accepted and found to start with the
        HTTP/2 preface (h2c with prior knowledge); `data` is what it had read."""
        self.transport = transport
        transport.set_protocol(self)
        self.flush()
        self.data_received(data)

    def adopt_upgrade(self, transport, head, tail: bytes) -> None:
        """Take over after `Upgrade: h2c` (the codec already accepted it): the HTTP/1.1 request
        is stream 1, complete; `tail` is what the client sent after it (its preface)."""
        self.transport = transport
        transport.set_protocol(self)
        head.upgrade = False
        head.http_version = "2"  # answered over HTTP/2, and spoken so upstream where that follows the client
        exchange = self._open(1, head, ends_with_headers=True)
        exchange.on_request_end([])
        exchange.begin()
        self.flush()
        if tail:
            self.data_received(tail)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        events = self.codec.feed(data)
        if self.codec.header_block_open:
            if self.head_since is None:
                self.head_since = self.runtime.loop.time()  # a header block split over reads
        elif self.head_since is not None:
            self.head_since = None
        started = []
        last = len(events) - 1
        for index, (kind, stream_id, value) in enumerate(events):
            if kind == h2.HEAD:
                ends = index < last and events[index + 1][0] == h2.END and events[index + 1][1] == stream_id
                started.append(self._open(stream_id, value, ends))
            elif kind == h2.DATA:
                self._request_data(stream_id, value)
            elif kind == h2.END:
                stream = self.streams.get(stream_id)
                if stream is not None:
                    stream.exchange.on_request_end(value)
            elif kind == h2.WINDOW:
                stream = self.streams.get(stream_id)
                if stream is not None and stream.blocked:
                    stream.blocked = False
                    if not self.write_paused:
                        stream.exchange.resume_response()
            elif kind == h2.RESET or (kind == h2.ERROR and stream_id):
                stream = self.streams.pop(stream_id, None)
                if stream is not None:
                    stream.exchange.on_downstream_lost()
            elif kind == h2.ERROR:  # a connection error: GOAWAY is queued, then close
                self.runtime.observe_protocol_error(self, value.status, "DPE")
                self._close_after_flush()
            # GOAWAY from a client: its open streams still finish; nothing new will come
        if self.closing:
            return  # a connection error: connection_lost ends the streams it opened (DC)
        for exchange in started:
            if not exchange.done:
                exchange.begin()
        self.flush()

    def eof_received(self):
        return False  # an HTTP/2 client that half-closes is gone

    def connection_lost(self, exc) -> None:
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream.exchange.on_downstream_lost()
        self.runtime.connection_closed(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        for stream in self.streams.values():
            stream.exchange.pause_response()

    def resume_writing(self) -> None:
        self.write_paused = False
        for stream in list(self.streams.values()):
            if not stream.blocked:
                stream.exchange.resume_response()

    # streams --------------------------------------------------------------------------------

    def _open(self, stream_id: int, head, ends_with_headers: bool) -> Exchange:
        head.connection = self.info
        head.source_labels = self.runtime.source_labels
        if head.content_length is None and not ends_with_headers:
            head.streamed = True  # a body of unknown length follows (HTTP/1.1 upstreams get it chunked)
        stream = H2Stream(self, stream_id)
        stream.exchange = Exchange(self.runtime, self.runtime.current(self.listener), stream, head)
        self.streams[stream_id] = stream
        return stream.exchange

    def _request_data(self, stream_id: int, data: bytes) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            self.codec.acknowledge_received(0, len(data))  # the stream is gone: free the connection window
            return
        stream.exchange.on_request_data(data)
        stream.passed_on(len(data))

    def stream_done(self, stream: H2Stream) -> None:
        if self.streams.get(stream.id) is stream:
            del self.streams[stream.id]
            if stream.exchange is not None and not stream.exchange.request_done:
                self.codec.reset_stream(stream.id, NO_ERROR)  # answered before the body: stop it
        if not self.streams:
            self.idle_since = self.runtime.now
            if self.runtime.draining:
                self.close_if_idle()
        self.flush_soon()

    def _close_after_flush(self) -> None:
        self.closing = True
        self.flush()
        self.transport.close()

    # connection-level (the runtime's calls) ----------------------------------------------

    def close(self) -> None:
        """The drain deadline passed: close whatever is still open."""
        self.closing = True
        self.transport.close()

    def close_if_idle(self) -> None:
        """Draining: GOAWAY now; the connection closes once its open streams are done."""
        self.codec.goaway(NO_ERROR)
        if not self.streams:
            self._close_after_flush()
        else:
            self.flush()

    def check_deadlines(self, now: float) -> None:
        for stream in list(self.streams.values()):
            stream.exchange.arm_due_timers(now)
        if self.closing:
            return
        limits = self.runtime.downstream
        if self.head_since is not None and 0 < limits.request_headers_timeout <= now - self.head_since:
            # Envoy's request_headers_timeout. The block is half-decoded: HPACK's state is that of
            # a block in the middle, so the connection cannot go on; GOAWAY and close.
            self.runtime.listener_stats(self.listener)["downstream_rq_header_timeout"] += 1
            self.codec.goaway(NO_ERROR)
            self._close_after_flush()
            return
        if self.streams:
            for stream in list(self.streams.values()):
                if 0 < limits.stream_idle_timeout <= now - stream.exchange.active_at:
                    stream.exchange.on_stream_idle()
        elif 0 < limits.idle_timeout <= now - self.idle_since:
            self.runtime.listener_stats(self.listener)["downstream_cx_idle_timeout"] += 1
            self.codec.goaway(NO_ERROR)
            self._close_after_flush()
