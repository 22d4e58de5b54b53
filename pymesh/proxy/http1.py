"""The downstream side of an HTTP/1.1 connection: parse requests, hand each to an `Exchange`,
write the responses back in order.

Pipelined requests queue behind the one being answered (reading pauses while they wait, so the
queue stays short). Responses are framed for this connection: Content-Length passes through,
otherwise chunked for HTTP/1.1 clients and close-delimited for HTTP/1.0 ones. After
`101 Switching Protocols` the connection becomes a byte tunnel to the upstream.
"""

from __future__ import annotations

import asyncio
from collections import deque

from pymesh.http import h1
from pymesh.http.errors import ProtocolError
from pymesh.http.message import ConnectionInfo, Header
from pymesh.policy import flags
from pymesh.proxy.exchange import Exchange
from pymesh.proxy.http2 import DownstreamH2
from pymesh.proxy.local_reply import LocalReply
from pymesh.proxy.sockets import reset

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_SWITCHING_TO_H2C = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
H2_PREFACE_START = b"PRI * HTTP/2.0"  # enough of RFC 9113's preface to tell (the rest is checked there)
_CLOSE = (b"connection", b"close")
_KEEP_ALIVE = (b"connection", b"keep-alive")
_CHUNKED = (b"transfer-encoding", b"chunked")
_TEXT_PLAIN = (b"content-type", b"text/plain")


class DownstreamH1(asyncio.Protocol):
    def __init__(self, runtime, listener, original_destination: tuple[str, int] | None = None) -> None:
        self.runtime = runtime
        self.listener = listener
        self.info = ConnectionInfo(local_port=listener.port, original_destination=original_destination)
        self.transport: asyncio.Transport | None = None
        self.reader = h1.RequestReader(runtime.limits)
        self.queue: deque[Exchange] = deque()  # [0] is being answered; the rest wait (pipelining)
        self.reading: Exchange | None = None  # the request whose body is being read
        self.upgrading: Exchange | None = None  # an Upgrade request waiting for the upstream's 101
        self.tunnel: asyncio.Transport | None = None
        self.read_pauses = 0
        self.pipeline_paused = False
        self.write_paused = False
        self.chunked_out = False
        self.held_head: bytes | None = None  # a response head waiting to go out with its first body bytes
        self.keep_alive = True
        self.closing = False
        self.read_closed = False  # a protocol error: answer what was read, then close
        self.head_since: float | None = None  # when the request head being received began
        self.sniff: bytes | None = b""  # first bytes, until they rule out the HTTP/2 preface
        self.idle_since = 0.0  # when the connection last had nothing in flight (coarse clock)
        self.scheme = "http"  # "https" behind a gateway's TLS termination (x-forwarded-proto, redirects)

    # asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        if self.runtime.admit(self, transport):
            self.idle_since = self.runtime.now

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        if self.upgrading is not None:
            self.upgrading.on_upgrade_data(data)
            return
        if self.closing or self.read_closed:
            return
        if self.sniff is not None:
            data = self.sniff + data
            if len(data) < len(H2_PREFACE_START) and H2_PREFACE_START.startswith(data):
                self.sniff = data
                return
            self.sniff = None
            if data.startswith(H2_PREFACE_START):
                return self._switch_to_h2(data)
        reader = self.reader
        events = reader.feed(data)
        if reader.in_head:
            if self.head_since is None:
                self.head_since = self.runtime.loop.time()  # a head split over reads: rare
        elif self.head_since is not None:
            self.head_since = None
        queue = self.queue
        for kind, value in events:
            if kind == h1.DATA:
                self.reading.on_request_data(value)
            elif kind == h1.HEAD:
                value.scheme = self.scheme
                value.connection = self.info
                value.source_labels = self.runtime.source_labels
                exchange = Exchange(self.runtime, self.runtime.current(self.listener), self, value)
                self.reading = exchange
                queue.append(exchange)
            elif kind == h1.END:
                reading = self.reading
                self.reading = None
                reading.on_request_end(value)
            elif kind == h1.UPGRADE:  # the rest of the bytes belong to the protocol being switched to
                if len(queue) == 1 and _asks_for_h2c(queue[0].head):
                    return self._upgrade_to_h2(queue.pop(), value)
                self.upgrading = queue[-1]
                if value:
                    self.upgrading.on_upgrade_data(value)
            else:  # ERROR: the requests that ended before it are still answered
                self._bad_request(value)
                break
        if queue:
            head = queue[0]
            if head.route is None and not head.done:
                head.begin()
            if len(queue) > 1 and not self.pipeline_paused and not self.closing:
                self.pipeline_paused = True
                self.pause_reading()

    def eof_received(self):
        if self.tunnel is not None:
            self.tunnel.write_eof()
            return True
        if not self.queue:
            return False  # idle keep-alive connection closed by the client
        if self.reading is not None:
            return False  # the client gave up in the middle of a request: nothing to answer
        self.keep_alive = False  # answer what was asked, then close
        return not self.info.tls  # TLS (asyncio's, uvloop's) closes on close_notify whatever we say

    def connection_lost(self, exc) -> None:
        if self.tunnel is not None:
            self.tunnel.close()
        for exchange in list(self.queue):
            exchange.on_downstream_lost()
        self.queue.clear()
        self.runtime.connection_closed(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.queue:
            self.queue[0].pause_response()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.queue:
            self.queue[0].resume_response()

    # flow control, used by the exchange ------------------------------------------------------

    def pause_reading(self) -> None:
        self.read_pauses += 1
        if self.read_pauses == 1:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_pauses:
            self.read_pauses -= 1
            if not self.read_pauses and not self.transport.is_closing():
                self.transport.resume_reading()

    # responses, written by the exchange at the head of the queue -----------------------------

    def _keep(self, exchange: Exchange) -> bool:
        return (
            self.keep_alive
            and exchange.head.keep_alive
            and exchange.request_done
            and not self.runtime.draining
            and not self.closing
            and not (self.read_closed and len(self.queue) == 1)
        )

    def send_continue(self) -> None:
        self.transport.write(_CONTINUE)

    def send_response_head(self, status: int, headers: list[Header], content_length, has_body: bool) -> None:
        """Write a response head with this connection's own framing: Content-Length when the
        length is known, else chunked (HTTP/1.1 clients) or close-delimited (HTTP/1.0)."""
        exchange = self.queue[0]
        if status == 101:
            keep = True
        elif exchange is self.upgrading:
            keep = False  # the upstream refused the upgrade: the request parser cannot go on
        else:
            keep = self._keep(exchange)
        self.chunked_out = False
        if content_length is not None:
            if has_body or status >= 200 and status != 204:  # HEAD and 304 announce a length
                headers.append((b"content-length", b"%d" % content_length))
        elif has_body:
            if exchange.head.http_version == "1.1":
                self.chunked_out = True
                headers.append(_CHUNKED)
            else:
                keep = False  # HTTP/1.0 client: the body ends when the connection does
        if not keep:
            headers.append(_CLOSE)
        elif exchange.head.http_version == "1.0":
            headers.append(_KEEP_ALIVE)
        self.keep_alive = keep
        if self.write_paused:
            exchange.pause_response()
        head = h1.serialize_response_head(status, headers)
        if has_body:
            self.held_head = head  # one write with the body that follows (see flush_response)
        else:
            self.transport.write(head)

    def flush_response(self) -> None:
        """The upstream's read ended after a response head and before any of its body: the
        head goes out now, as Envoy writes what a read produced at the end of that read."""
        if self.held_head is not None:
            self.transport.write(self.held_head)
            self.held_head = None

    def send_data(self, data: bytes) -> None:
        self.send_data_raw(h1.encode_chunk(data) if self.chunked_out else data)

    def send_end(self, trailers: list[Header]) -> None:
        if self.chunked_out:
            self.send_data_raw(h1.encode_last_chunk(trailers))
        else:
            self.flush_response()

    def send_data_raw(self, data: bytes) -> None:
        """Bytes already in this connection's framing (the last chunk), after a held head."""
        if self.held_head is not None:
            data = self.held_head + data
            self.held_head = None
        self.transport.write(data)

    def send_local_reply(self, reply: LocalReply, expect_body: bool) -> None:
        headers = list(reply.headers)
        if reply.body:
            headers.append(_TEXT_PLAIN)
        if reply.close:
            self.keep_alive = False
        body = reply.body if expect_body else b""
        self.send_response_head(reply.status, headers, len(reply.body), bool(body))
        if body:
            self.send_data_raw(body)

    def abort(self) -> None:
        """The response cannot be completed (upstream reset mid-body): the client must see it,
        as a TCP reset (a plain close would send FIN, which reads as a clean end)."""
        self.closing = True
        self.held_head = None
        reset(self.transport)

    def start_tunnel(self, upstream_conn, tail: bytes) -> None:
        self.tunnel = upstream_conn.detach_as_tunnel(self.transport)
        self.upgrading = None
        if tail:
            self.transport.write(tail)

    def exchange_done(self, exchange: Exchange) -> None:
        queue = self.queue
        if not queue or queue[0] is not exchange:
            return  # the connection is going away; connection_lost cleared the queue
        queue.popleft()
        if self.tunnel is not None:
            return
        if exchange is self.upgrading:
            self.upgrading = None
            self.keep_alive = False  # the upstream refused the upgrade; the parser cannot go on
        if exchange is self.reading:
            self.reading = None
            self.keep_alive = False  # answered before the body was read: cannot find the next request
        if not self.keep_alive or self.closing or (self.read_closed and not queue):
            self.closing = True
            self.transport.close()
            return
        if self.pipeline_paused and len(queue) <= 1:
            self.pipeline_paused = False
            self.resume_reading()
        if queue:
            queue[0].begin()
        if not queue:
            self.idle_since = self.runtime.now
            if self.runtime.draining:
                self.close_if_idle()

    # connection-level -----------------------------------------------------------------------

    def close(self) -> None:
        """The drain deadline passed: close whatever is still open."""
        self.closing = True
        self.transport.close()

    def close_if_idle(self) -> None:
        """Draining: idle keep-alive connections close now, busy ones after their response."""
        if not self.queue and self.reading is None:
            self.closing = True
            self.transport.close()

    def _switch_to_h2(self, data: bytes) -> None:
        """h2c with prior knowledge: the connection is HTTP/2 from its first byte."""
        downstream = DownstreamH2(self.runtime, self.listener, self.info)
        self.runtime.replace_connection(self, downstream)
        downstream.adopt(self.transport, data)

    def _upgrade_to_h2(self, exchange: Exchange, tail: bytes) -> None:
        """`Upgrade: h2c` (RFC 7540 3.2) on a request read whole: the proxy itself answers 101,
        the request becomes the HTTP/2 connection's stream 1, and the client's preface follows
        in `tail` and after. A malformed HTTP2-Settings is answered 400 over HTTP/1.1."""
        downstream = DownstreamH2(self.runtime, self.listener, self.info)
        try:
            downstream.codec.accept_upgrade(exchange.head.header(b"http2-settings"))
        except ProtocolError as error:
            self.queue.append(exchange)
            exchange.reply(LocalReply(400, flags.DPE, error.reason.encode(), close=True))
            return
        self.transport.write(_SWITCHING_TO_H2C)
        self.runtime.replace_connection(self, downstream)
        downstream.adopt_upgrade(self.transport, exchange.head, tail)

    def check_deadlines(self, now: float) -> None:
        """Called once a tick (see pymesh.proxy.downstream_limits)."""
        for exchange in self.queue:
            exchange.arm_due_timers(now)
        if self.closing or self.tunnel is not None:
            return
        limits = self.runtime.downstream
        if self.head_since is not None:
            if 0 < limits.request_headers_timeout <= now - self.head_since:
                self.runtime.listener_stats(self.listener)["downstream_rq_header_timeout"] += 1
                self._bad_request(ProtocolError(408, "request header timeout"), flags.NONE)
        elif self.queue:
            exchange = self.queue[0]
            if 0 < limits.stream_idle_timeout <= now - exchange.active_at:
                exchange.on_stream_idle()
        elif self.reading is None and 0 < limits.idle_timeout <= now - self.idle_since:
            self.runtime.listener_stats(self.listener)["downstream_cx_idle_timeout"] += 1
            self.closing = True
            self.transport.close()

    def _bad_request(self, error: ProtocolError, flag: str = flags.DPE) -> None:
        """Malformed or oversized input: nothing more is read from this connection.

        The request the error cut is answered with the error (or, if its response already
        started, the connection is reset) and loses its upstream attempt, so the upstream never
        sees a complete request built from bad bytes. Requests that ended before the error are
        still answered, the last of them with `Connection: close`.
        """
        self.read_closed = True
        reading = self.reading
        self.reading = None
        if reading is not None:
            if reading is not self.queue[0]:
                self.queue.remove(reading)  # pipelined behind others: never started
            elif reading.committed:
                self.abort()
                return
            else:
                reading.reply(LocalReply(error.status, flag, error.reason.encode(), close=True))
                return
        if not self.queue:
            self.closing = True
            self.runtime.observe_protocol_error(self, error.status, flag)
            body = error.reason.encode()
            headers = [_TEXT_PLAIN, (b"content-length", b"%d" % len(body)), _CLOSE]
            self.transport.write(h1.serialize_response_head(error.status, headers) + body)
            self.transport.close()


def _asks_for_h2c(head) -> bool:
    """An `Upgrade: h2c` request the proxy takes itself (RFC 7540 3.2: with HTTP2-Settings)."""
    upgrade = head.header(b"upgrade")
    return (upgrade is not None and upgrade.strip().lower() == b"h2c"
            and head.header(b"http2-settings") is not None)
