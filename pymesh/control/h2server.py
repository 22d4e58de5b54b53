"""The control protocol's transport on the server: HTTP/2 (the h2 library, sans-IO) on asyncio.

Each accepted stream on `POST /pymesh.control.v1/Stream` is answered `:status 200` at once and
stays open both ways; received DATA is acknowledged at once (the proxy's messages are small) and
fed to a FrameDecoder. Sent messages go out within the HTTP/2 flow-control windows in chunks and
continue on WINDOW_UPDATE, and nothing is written while the socket's buffer is over its
high-water mark, so a large snapshot to a slow proxy never stalls the event loop or other proxies.

With TLS (the default; `--insecure` keeps plain TCP), the connection's verified client
certificate, if any, is read once after the handshake: the push stream is refused (401) without
one, and the unary paths (`requests`: signing, the trust bundle) get it to decide themselves.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from dataclasses import dataclass
from typing import Callable, Mapping

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from pymesh.api.wire import CONTENT_TYPE, MAX_SIGN_BODY, PATH, FrameDecoder, WireError
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


# path -> (method, handler returning (status, content type, body))
Requests = Mapping[str, tuple[str, Callable[[Request], tuple[int, str, bytes]]]]


class Stream:
    """One control stream: its decoder, its send queue, and the handler above it (a Peer)."""

    def __init__(self, connection: ControlConnection, stream_id: int):
        self.connection = connection
        self.id = stream_id
        self.decoder = FrameDecoder()
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

    def __init__(self, opener: Opener, connections: set[ControlConnection], requests: Requests | None = None,
                 require_identity: bool = False):
        self._opener = opener
        self._connections = connections
        self._requests = requests or {}
        self._require_identity = require_identity
        self._streams: dict[int, Stream] = {}
        self._unary: dict[int, tuple[str, dict, bytearray]] = {}  # stream id -> (path, headers, body so far)
        self.peer_der: bytes | None = None
        self.identity: SpiffeId | None = None
        self._paused = False
        self.transport: asyncio.Transport | None = None
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))

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
        self._write()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.warning("HTTP/2 protocol error from %s: %s", self._peername(), exc)
            self._write()
            self.transport.close()
            return
        for event in events:
            handle = self._HANDLERS.get(type(event))
            if handle is not None:
                handle(self, event)
        self.pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        for stream in list(self._streams.values()):
            self._forget(stream)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
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
        headers = dict(event.headers)
        sid = event.stream_id
        status = None
        unary = self._requests.get(headers.get(":path"))
        if unary is not None:
            if headers.get(":method") != unary[0]:
                self.h2.send_headers(sid, [(":status", "405")], end_stream=True)
            else:  # answered when the request ends
                self._unary[sid] = (headers[":path"], headers, bytearray())
            return
        if headers.get(":path") != PATH:
            status = "404"
        elif headers.get(":method") != "POST":
            status = "405"
        elif headers.get("content-type", "").split(";")[0].strip() != CONTENT_TYPE:
            status = "415"
        elif self._require_identity and self.identity is None:
            status = "401"
            log.warning("refused a push stream from %s: no mesh client certificate", self._peername())
        if status is not None:
            self.h2.send_headers(sid, [(":status", status)], end_stream=True)
            return
        stream = self._streams[sid] = Stream(self, sid)
        self.h2.send_headers(sid, [(":status", "200"), ("content-type", CONTENT_TYPE)])
        stream.handler = self._opener(stream)

    def _data(self, event: h2.events.DataReceived) -> None:
        self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        unary = self._unary.get(event.stream_id)
        if unary is not None:
            unary[2].extend(event.data)
            if len(unary[2]) > MAX_SIGN_BODY:
                del self._unary[event.stream_id]
                self._send_answer(event.stream_id, (413, "text/plain", b"request body too large\n"))
            return
        stream = self._streams.get(event.stream_id)
        if stream is None:
            return
        try:
            messages = stream.decoder.feed(event.data)
        except WireError as exc:
            log.warning("protocol error on a stream from %s: %s", self._peername(), exc)
            self.end_stream(stream, str(exc))
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
        self._send_answer(sid, answer)

    def _send_answer(self, sid: int, answer: tuple[int, str, bytes]) -> None:
        status, content_type, body = answer
        try:
            self.h2.send_headers(sid, [(":status", str(status)), ("content-type", content_type),
                                       ("content-length", str(len(body)))], end_stream=not body)
            size = self.h2.max_outbound_frame_size
            for start in range(0, len(body), size):  # small (a chain, a bundle): within the initial window
                self.h2.send_data(sid, body[start:start + size], end_stream=start + size >= len(body))
        except h2.exceptions.H2Error as exc:
            log.warning("cannot answer stream %d of %s: %s", sid, self._peername(), exc)

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

    def _terminated(self, event: h2.events.ConnectionTerminated) -> None:
        for stream in list(self._streams.values()):
            self._forget(stream)
        self._write()
        self.transport.close()

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


async def serve(opener: Opener, host: str, port: int, ssl=None, requests: Requests | None = None,
                ) -> tuple[asyncio.base_events.Server, set[ControlConnection]]:
    """Listen for proxies; returns the server and the live connections (to close them). With
    `ssl`, push streams need a verified client certificate."""
    connections: set[ControlConnection] = set()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: ControlConnection(opener, connections, requests, require_identity=ssl is not None),
        host, port, ssl=ssl)
    return server, connections
