"""An HTTP/2 (h2c, prior knowledge) upstream server for tests, on the `h2` library: independent
of pymesh's own codec, so the proxy's HTTP/2 client is checked against another implementation.

One thread per connection, blocking sockets. Each complete request is recorded (connection,
stream, method, path, authority, headers, body (its first MiB, with its length and sha256),
trailers) and answered with 200, the body "<method> <path>" (or the request body echoed, for
POST), and a trailer `x-trailer: done` when the client sent `te: trailers`; a path under /reset
gets RST_STREAM INTERNAL_ERROR instead, the first request under /goaway a GOAWAY that leaves it
unprocessed, and /pattern/N a generated body of N pattern bytes (proxy_harness.PATTERN).
`body_progress`, when set, is called with each request body's length so far before the data is
acknowledged: a test blocks there to be a slow reader.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events

import waiting
from proxy_harness import PATTERN, BodyRecorder, TlsSession, tls_accept


@dataclass
class H2Request:
    conn: int
    stream: int
    headers: dict[str, str]
    recorder: BodyRecorder = field(default_factory=BodyRecorder)
    trailers: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return self.headers[":path"]

    @property
    def body(self) -> bytes:
        return self.recorder.body


class _Outgoing:
    """A response body being sent as the windows allow: a buffer, or generated pattern bytes."""

    def __init__(self, data: bytes, size: int, trailers: bool) -> None:
        self.data, self.left, self.offset, self.trailers = data, size, 0, trailers

    def take(self, n: int) -> bytes:
        if self.data:
            piece = self.data[self.offset:self.offset + n]
        else:
            start = self.offset % len(PATTERN)
            piece = PATTERN[start:start + n]
        self.offset += len(piece)
        self.left -= len(piece)
        return piece


class H2Upstream:
    """With `tls` (a server SSLContext offering h2 by ALPN), HTTP/2 over TLS; `sessions` records
    each connection's handshake."""

    def __init__(self, tls=None) -> None:
        self.tls = tls
        self.sessions: dict[int, TlsSession] = {}
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.requests: list[H2Request] = []
        self.connections = 0
        self.went_away = False
        self.cond = threading.Condition()
        self.stopped = False
        self.body_progress = None  # Callable[[int], None]: see the module docstring
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.cond:
                self.connections += 1
                index = self.connections
            threading.Thread(target=self._serve, args=(conn, index), daemon=True).start()

    def _serve(self, sock: socket.socket, index: int) -> None:
        if self.tls is not None:
            try:
                sock, session = tls_accept(self.tls, sock)
            except OSError:
                return
            with self.cond:
                self.sessions[index] = session
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, validate_inbound_headers=True))
        conn.initiate_connection()
        try:
            sock.sendall(conn.data_to_send())
        except OSError:  # the client went away at once (it refused our TLS identity, say)
            sock.close()
            return
        open_streams: dict[int, H2Request] = {}
        self._pending: dict[int, _Outgoing] = {}  # response bodies held by flow control
        with sock:
            while not self.stopped:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        headers = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                                   for k, v in event.headers}
                        open_streams[event.stream_id] = H2Request(index, event.stream_id, headers)
                    elif isinstance(event, h2.events.DataReceived):
                        recorder = open_streams[event.stream_id].recorder
                        recorder(event.data)
                        if self.body_progress is not None:
                            self.body_progress(recorder.length)
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.TrailersReceived):
                        open_streams[event.stream_id].trailers = {k.decode(): v.decode() for k, v in event.headers}
                    elif isinstance(event, h2.events.StreamEnded):
                        self._answer(conn, open_streams.pop(event.stream_id))
                    elif isinstance(event, h2.events.StreamReset):
                        open_streams.pop(event.stream_id, None)
                        self._pending.pop(event.stream_id, None)
                    elif isinstance(event, h2.events.WindowUpdated):
                        for stream_id in list(self._pending):
                            self._send_some(conn, stream_id)
                sock.sendall(conn.data_to_send())

    def _answer(self, conn, request: H2Request) -> None:
        with self.cond:
            self.requests.append(request)
            self.cond.notify_all()
        if request.path.startswith("/reset"):
            conn.reset_stream(request.stream, error_code=2)  # INTERNAL_ERROR, before any response
            return
        if request.path.startswith("/goaway") and not self.went_away:
            self.went_away = True  # once: GOAWAY leaving this stream unprocessed (last id below it)
            conn.close_connection(error_code=0, last_stream_id=request.stream - 2)
            return
        trailers = request.headers.get("te") == "trailers"
        if request.path.startswith("/pattern/"):
            outgoing = _Outgoing(b"", int(request.path.rpartition("/")[2]), trailers)
        else:
            body = request.body if request.headers[":method"] == "POST" else (
                f"{request.headers[':method']} {request.path}".encode())
            outgoing = _Outgoing(body, len(body), trailers)
        conn.send_headers(request.stream, [(":status", "200"), ("content-type", "text/plain")])
        self._pending[request.stream] = outgoing
        self._send_some(conn, request.stream)

    def _send_some(self, conn, stream_id: int) -> None:
        """As much of a response body as the proxy's windows allow; the end once all is out."""
        outgoing = self._pending[stream_id]
        while outgoing.left:
            size = min(outgoing.left, conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            if size <= 0:
                return
            conn.send_data(stream_id, outgoing.take(size))
        del self._pending[stream_id]
        if outgoing.trailers:
            conn.send_headers(stream_id, [("x-trailer", "done")], end_stream=True)
        else:
            conn.end_stream(stream_id)

    def wait_requests(self, n: int, timeout: float = 10.0) -> list[H2Request]:
        def enough():
            with self.cond:
                return list(self.requests) if len(self.requests) >= n else None
        return waiting.wait_until(enough, timeout, 0.02, f"{n} requests at the HTTP/2 upstream")

    def stop(self) -> None:
        self.stopped = True
        self.sock.close()
