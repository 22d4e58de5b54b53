"""The control protocol's transport on the server: HTTP/2 (the h2 library, sans-IO) on asyncio.

Each accepted stream on `POST /pymesh.control.v1/Stream` is answered `:status 200` at once and
stays open both ways; received DATA is acknowledged at once (the proxy's messages are small) and
fed to a FrameDecoder. Sent messages go out within the HTTP/2 flow-control windows in chunks and
continue on WINDOW_UPDATE, and nothing is written while the socket's buffer is over its
high-water mark, so a large snapshot to a slow proxy never stalls the event loop or other proxies.

What a client can make the server hold is bounded (`bounds.ConnectionLimits`): connections in
total and per source address; streams, header list and the first (hello) and later message sizes
per connection; partial messages per connection; the bytes a connection sends before its first
message; the time until that first message and for any started one. A connection over a limit
gets a GOAWAY with the reason as its debug data. While a peer does not read what we send, we do
not read what it sends either (PINGs and SETTINGS would otherwise queue their answers without end).

With TLS (the default; `--insecure` keeps plain TCP), the connection's verified client
certificate, if any, is read once after the handshake: the push stream is refused (401) without
one, and the unary paths (`requests`: signing, the trust bundle) get it to decide themselves.
A unary handler may answer with an awaitable (signing with a TokenReview asks the API server):
the answer is sent when it completes, unless the connection went away meanwhile; such answers
in flight are bounded by the connection's concurrent streams.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
from collections import deque
from dataclasses import dataclass
from typing import Awaitable, Callable, Mapping

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

from pymesh.api.wire import CONTENT_TYPE, MAX_SIGN_BODY, PATH, FrameDecoder, WireError
from pymesh.control import bounds
from pymesh.control.bounds import ConnectionLimits, Gate
from pymesh.control.escape import visible
from pymesh.security.identity import SpiffeId, peer_spiffe_id

log = logging.getLogger("pymesh.control.h2")
ERROR_HEADER = "pymesh-error"  # trailer naming why the server ended a stream

Opener = Callable[["Stream"], object]  # returns the stream's handler (received(msg), closed())


@dataclass(frozen=True)
class Request:
    """A unary request (one body in, one answer out) on a path other than the push stream."""

    method: str
    headers: Mapping[str, str]
    body: bytes
    peer_der: bytes | None  # the client certificate the handshake verified (DER), if any
    peer: str  # address, for logs


# path -> (method, handler returning (status, content type, body), or an awaitable of it)
Answer = tuple[int, str, bytes]
Requests = Mapping[str, tuple[str, Callable[[Request], Answer | Awaitable[Answer]]]]


class Stream:
    """One control stream: its decoder, its send queue, and the handler above it (a Peer)."""

    def __init__(self, connection: ControlConnection, stream_id: int, limits: ConnectionLimits):
        self.connection = connection
        self.id = stream_id
        self.decoder = FrameDecoder(limits.max_message_bytes, max_first=limits.max_hello_bytes)
        self.partial_since: float | None = None  # when the message now arriving started
        self.queue: deque[bytes] = deque()
        self.offset = 0  # bytes of queue[0] already sent
        self.open = True
        self.handler = None

    @property
    def identity(self) -> SpiffeId | None:
        """The proxy's identity from its verified client certificate (None on --insecure)."""
        return self.connection.identity

    def send(self, data: bytes, supersedes: bool) -> bool:
        if not self.open:
            return False
        if supersedes:
            head = self.queue.popleft() if self.queue and self.offset else None
            self.queue.clear()
            if head is not None:
                self.queue.append(head)
        self.queue.append(data)
        self.connection.pump()
        return True

    def close(self, error: str | None = None) -> None:
        self.connection.end_stream(self, error)


class ControlConnection(asyncio.Protocol):
    """One proxy connection (usually one stream)."""

    def __init__(self, opener: Opener, connections: set[ControlConnection], gate: Gate,
                 requests: Requests | None = None, require_identity: bool = False):
        self._opener = opener
        self._connections = connections
        self._gate = gate
        self._limits = gate.limits
        self._requests = requests or {}
        self._require_identity = require_identity
        self._streams: dict[int, Stream] = {}
        self._unary: dict[int, tuple[str, dict, bytearray]] = {}  # stream id -> (path, headers, body so far)
        self.peer_der: bytes | None = None
        self.identity: SpiffeId | None = None
        self._paused = False
        self.transport: asyncio.Transport | None = None
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        _bound_h2(self.h2, self._limits)
        self.source: str | None = None  # the client's address, once admitted by the gate
        self._received = 0  # bytes, counted while not greeted
        self._opened = 0  # streams accepted so far
        self._opened_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._answering: set[asyncio.Task] = set()  # awaitable unary answers in flight

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self._connections.add(self)
        tls = transport.get_extra_info("ssl_object")
        if tls is not None:
            self.peer_der = tls.getpeercert(binary_form=True)
            self.identity = peer_spiffe_id(self.peer_der)
        _keepalive(transport.get_extra_info("socket"))
        self.h2.initiate_connection()
        source = self._peername().rpartition(":")[0]
        refused = self._gate.admit(source)
        if refused is not None:
            return self.abort(refused, "")
        self.source = source
        self._opened_at = asyncio.get_running_loop().time()
        self._write()
        self._arm()

    def data_received(self, data: bytes) -> None:
        if not self.greeted:
            self._received += len(data)
            if self._received > self._limits.max_bytes_before_hello:
                return self.abort(f"sent more than {self._limits.max_bytes_before_hello} bytes without a hello",
                                  "over_bytes_before_hello")
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # the text, not the exception: a kept log record would keep its frames (and data) alive
            self._warn("protocol_error", f"HTTP/2 protocol error from {self._peername()}: {visible(str(exc))}")
            self._write()
            self.transport.close()
            return
        for event in events:
            if self.transport.is_closing():
                return  # closed for a limit by an earlier event
            handle = self._HANDLERS.get(type(event))
            if handle is not None:
                handle(self, event)
        self.pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        if self.source is not None:
            self._gate.release(self.source)
            self.source = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for stream in list(self._streams.values()):
            self._forget(stream)
        for task in list(self._answering):
            task.cancel()

    def pause_writing(self) -> None:
        self._paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        self.transport.resume_reading()
        self.pump()

    # --- sending --------------------------------------------------------------------------

    def pump(self) -> None:
        """Send queued bytes as far as the windows and the socket buffer allow."""
        for stream in list(self._streams.values()):
            while stream.queue and not self._paused and stream.open:
                window = self.h2.local_flow_control_window(stream.id)
                if window <= 0:
                    break
                head = stream.queue[0]
                size = min(window, self.h2.max_outbound_frame_size, len(head) - stream.offset)
                self.h2.send_data(stream.id, head[stream.offset : stream.offset + size])
                stream.offset += size
                if stream.offset == len(head):
                    stream.queue.popleft()
                    stream.offset = 0
        self._write()

    def end_stream(self, stream: Stream, error: str | None = None) -> None:
        """End our side (with an error trailer for a protocol violation) and forget the stream."""
        if not stream.open:
            return
        try:
            if error is None:
                self.h2.end_stream(stream.id)
            else:
                self.h2.send_headers(stream.id, [(ERROR_HEADER, error.replace("\n", " ")[:1000])], end_stream=True)
        except h2.exceptions.H2Error:
            pass  # already reset or closed by the peer
        self._forget(stream)
        self._arm()  # with no greeted stream left, the hello deadline applies again
        self._write()

    def close(self) -> None:
        """Graceful close for a server shutdown: end every stream, GOAWAY, close the socket."""
        for stream in list(self._streams.values()):
            self.end_stream(stream)
        try:
            self.h2.close_connection()
        except h2.exceptions.H2Error:
            pass
        self._write()
        if self.transport is not None:
            self.transport.close()

    def abort(self, reason: str, kind: str) -> None:
        """Close the connection for a limit: GOAWAY (ENHANCE_YOUR_CALM) with `reason` as its debug
        data, logged; `kind` labels the count (the gate counts its own refusals)."""
        self._warn(kind or reason.partition(" (")[0], f"closing the connection from {self._peername()}: {reason}")
        if kind:
            self._gate.count(kind)
        for stream in list(self._streams.values()):
            self._forget(stream)
        try:
            self.h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM, reason.encode()[:1000])
        except h2.exceptions.H2Error:
            pass
        self._write()
        self.transport.close()

    def _warn(self, kind: str, message: str) -> None:
        """Log a warning, at most one per kind a second (a flood must not flood the log)."""
        skipped = self._gate.throttle.allow(kind, asyncio.get_running_loop().time())
        if skipped is not None:
            log.warning("%s%s", message, f" ({skipped} more like it not logged)" if skipped else "")

    @property
    def greeted(self) -> bool:
        """Whether a stream that is still open has had its first message (a hello: the handler
        ends a stream whose first message is anything else, or a refused hello)."""
        return any(stream.decoder.decoded for stream in self._streams.values())

    @property
    def buffered(self) -> int:
        """Bytes of partial messages held for this connection's streams (and request bodies)."""
        return (sum(stream.decoder.pending for stream in self._streams.values())
                + sum(len(body) for _, _, body in self._unary.values()))

    def _write(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _forget(self, stream: Stream) -> None:
        stream.open = False
        stream.queue.clear()
        if self._streams.pop(stream.id, None) is not None and stream.handler is not None:
            stream.handler.closed()

    # --- events ---------------------------------------------------------------------------

    def _request(self, event: h2.events.RequestReceived) -> None:
        self._opened += 1
        if self._opened > self._limits.max_stream_opens:
            return self.abort(f"opened more than {self._limits.max_stream_opens} streams", "too_many_streams")
        headers = dict(event.headers)
        sid = event.stream_id
        status = None
        unary = self._requests.get(headers.get(":path"))
        if unary is not None:
            if headers.get(":method") == unary[0]:
                self._unary[sid] = (headers[":path"], headers, bytearray())  # answered when the request ends
            else:
                self._send_answer(sid, (405, "text/plain", f"{unary[0]} only\n".encode()))
            return
        if headers.get(":path") != PATH:
            status = "404"
        elif headers.get(":method") != "POST":
            status = "405"
        elif headers.get("content-type", "").split(";")[0].strip() != CONTENT_TYPE:
            status = "415"
        elif self._require_identity and self.identity is None:
            status = "401"
            self._warn("unauthenticated", f"refused a push stream from {self._peername()}: no mesh client certificate")
        try:
            if status is not None:
                return self.h2.send_headers(sid, [(":status", status)], end_stream=True)
            self.h2.send_headers(sid, [(":status", "200"), ("content-type", CONTENT_TYPE)])
        except h2.exceptions.ProtocolError:
            return  # the client reset it in the same read (h2 has forgotten it already)
        stream = self._streams[sid] = Stream(self, sid, self._limits)
        stream.handler = self._opener(stream)

    def _data(self, event: h2.events.DataReceived) -> None:
        self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        unary = self._unary.get(event.stream_id)
        if unary is not None:
            unary[2].extend(event.data)
            if len(unary[2]) > MAX_SIGN_BODY:
                del self._unary[event.stream_id]
                self._send_answer(event.stream_id, (413, "text/plain", b"request body too large\n"))
            elif self.buffered > self._limits.max_buffered_bytes:
                self.abort(f"more than {self._limits.max_buffered_bytes} bytes of partial messages", "over_buffer")
            return
        stream = self._streams.get(event.stream_id)
        if stream is None:
            return
        try:
            messages = stream.decoder.feed(event.data)
        except WireError as exc:
            error = visible(str(exc))
            self._warn("stream_error", f"protocol error on a stream from {self._peername()}: {error}")
            self.end_stream(stream, error)
            return
        if not self._bounded(stream, bool(messages)):
            return
        for msg in messages:
            if not stream.open:
                break
            stream.handler.received(msg)

    def _answer(self, sid: int, headers: dict, body: bytes) -> None:
        method, handler = self._requests[headers[":path"]]
        request = Request(headers[":method"], headers, body, self.peer_der, self._peername())
        try:
            answer = handler(request)
        except Exception:
            log.exception("%s %s failed", method, headers[":path"])
            answer = (500, "text/plain", b"internal error\n")
        if not inspect.isawaitable(answer):
            return self._send_answer(sid, answer)
        task = asyncio.ensure_future(answer)
        self._answering.add(task)
        task.add_done_callback(lambda done: self._answered(sid, headers[":path"], done))

    def _answered(self, sid: int, path: str, task: asyncio.Task) -> None:
        """An awaitable answer completed: sent, if its connection is still there."""
        self._answering.discard(task)
        if task.cancelled() or self.transport is None or self.transport.is_closing():
            return
        if task.exception() is not None:
            log.error("%s failed", path, exc_info=task.exception())
            answer = (500, "text/plain", b"internal error\n")
        else:
            answer = task.result()
        self._send_answer(sid, answer)
        self._write()

    def _send_answer(self, sid: int, answer: tuple[int, str, bytes]) -> None:
        status, content_type, body = answer
        try:
            self.h2.send_headers(sid, [(":status", str(status)), ("content-type", content_type),
                                       ("content-length", str(len(body)))], end_stream=not body)
            size = self.h2.max_outbound_frame_size
            for start in range(0, len(body), size):  # small (a chain, a bundle): within the initial window
                self.h2.send_data(sid, body[start:start + size], end_stream=start + size >= len(body))
        except h2.exceptions.H2Error as exc:  # reset by the client meanwhile, say
            self._warn("answer_error", f"cannot answer stream {sid} of {self._peername()}: {visible(str(exc))}")

    def _stream_ended(self, event: h2.events.StreamEnded) -> None:
        unary = self._unary.pop(event.stream_id, None)
        if unary is not None:
            self._answer(event.stream_id, unary[1], bytes(unary[2]))
            return
        stream = self._streams.get(event.stream_id)
        if stream is not None:
            self.end_stream(stream)

    def _stream_reset(self, event: h2.events.StreamReset) -> None:
        self._unary.pop(event.stream_id, None)
        stream = self._streams.get(event.stream_id)
        if stream is not None:
            self._forget(stream)
            self._arm()

    def _terminated(self, event: h2.events.ConnectionTerminated) -> None:
        for stream in list(self._streams.values()):
            self._forget(stream)
        self._write()
        self.transport.close()

    # --- limits -------------------------------------------------------------------------

    def _bounded(self, stream: Stream, completed: bool) -> bool:
        """After DATA: note a first message and when a partial one started; False (and the
        connection closed) when the partial messages are over the connection's cap."""
        if not stream.decoder.pending:
            stream.partial_since = None
        elif completed or stream.partial_since is None:
            stream.partial_since = asyncio.get_running_loop().time()
            self._arm()
        if self.buffered > self._limits.max_buffered_bytes:
            self.abort(f"more than {self._limits.max_buffered_bytes} bytes of partial messages", "over_buffer")
            return False
        return True

    def _deadline(self) -> tuple[float, str, str] | None:
        """The earliest of: the first message is due; a started message is due."""
        due = []
        if not self.greeted:
            due.append((self._opened_at + self._limits.hello_timeout,
                        f"no hello within {self._limits.hello_timeout:g} s", "hello_timeout"))
        for stream in self._streams.values():
            if stream.partial_since is not None:
                due.append((stream.partial_since + self._limits.message_timeout,
                            f"a message did not arrive whole within {self._limits.message_timeout:g} s",
                            "message_timeout"))
        return min(due, default=None)

    def _arm(self) -> None:
        if self._timer is None and self.source is not None and not self.transport.is_closing():
            self._check_deadline()

    def _check_deadline(self) -> None:
        """Close the connection if a deadline passed, else wake up at the next one (if any)."""
        self._timer = None
        due = self._deadline()
        if due is None or self.transport.is_closing():
            return
        loop = asyncio.get_running_loop()
        if due[0] <= loop.time():
            return self.abort(due[1], due[2])
        self._timer = loop.call_at(due[0], self._check_deadline)

    def _peername(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if peer else "?"

    _HANDLERS = {
        h2.events.RequestReceived: _request,
        h2.events.DataReceived: _data,
        h2.events.StreamEnded: _stream_ended,
        h2.events.StreamReset: _stream_reset,
        h2.events.ConnectionTerminated: _terminated,
    }


def _bound_h2(connection: h2.connection.H2Connection, limits: ConnectionLimits) -> None:
    """Our SETTINGS, in force from the start (not only once the client ACKs them): few streams,
    a small header list, a modest window."""
    connection.local_settings = h2.settings.Settings(client=False, initial_values={
        h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_streams,
        h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_bytes,
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: limits.initial_window,
    })
    connection.decoder.max_header_list_size = limits.max_header_list_bytes


def _keepalive(sock: socket.socket | None) -> None:
    """Find a peer that vanished without a FIN in about 25-30 s (idle: keepalive probes; with
    unacknowledged data queued: the user timeout), so it leaves the registry."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3), ("TCP_USER_TIMEOUT", 30000)):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    except OSError:
        pass


async def serve(opener: Opener, host: str, port: int, ssl=None, gate: Gate | None = None,
                requests: Requests | None = None) -> tuple[asyncio.base_events.Server, set[ControlConnection]]:
    """Listen for proxies; returns the server and the live connections (to close them). The
    gate holds the limits and counts connections (a default one if not given). With TLS, the
    handshake must also end within the hello timeout (the hello's clock starts after it), and
    push streams need a verified client certificate."""
    connections: set[ControlConnection] = set()
    gate = gate or Gate(bounds.DEFAULT)
    loop = asyncio.get_running_loop()
    handshake = gate.limits.hello_timeout if ssl is not None else None
    server = await loop.create_server(
        lambda: ControlConnection(opener, connections, gate, requests, require_identity=ssl is not None),
        host, port, ssl=ssl, ssl_handshake_timeout=handshake)
    return server, connections
