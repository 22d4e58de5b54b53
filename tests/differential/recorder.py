"""The recording upstream: what an application behind the proxy would parse out of the bytes.

It keeps every byte each connection delivered and parses them with h11, an HTTP/1.1 parser that
shares no code with either proxy (and is lenient where real servers are: bare LF, obs-fold,
`chunked ` with trailing whitespace). Each request it parses is answered with 200 and an
`x-parsed` header naming it, or, for an upgrade whose target asks for it, with 101, after which the
connection is a tunnel that echoes. Bytes left over after the last complete request (a parse error,
or an unfinished request at EOF) are what a proxy must never leave on an upstream connection.

It is a proxy_harness.Server: one thread per connection, records under the server's condition.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field

import h11

from corpus import UPGRADE_ACCEPT, role_of
from proxy_harness import Server

MAX_EVENT = 1 << 20  # h11's bound on an incomplete head; the corpus stays far below
MAX_READS = 1 << 16  # reads per connection, far more than any mutation needs
DRAIN_TIMEOUT = 5.0  # a proxy keeping a connection the upstream has finished with is cut off


@dataclass
class Parsed:
    """One request the upstream parsed completely (and answered)."""

    where: str  # upstream#connection
    port: int
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    start: int  # offsets of the request in the connection's bytes
    end: int
    switched: bool = False  # answered 101: the rest of the connection is tunnel data
    head: bytes = b""  # the request's head exactly as it arrived


@dataclass
class Connection:
    """Everything one connection from the proxy delivered, and what h11 made of it."""

    upstream: str
    conn: int
    port: int  # the upstream's listening port (what a proxy logs as upstream_host)
    raw: bytearray = field(default_factory=bytearray)
    requests: list[Parsed] = field(default_factory=list)
    error: str = ""  # h11's complaint, when it could not parse the bytes
    truncated: Parsed | None = None  # a request whose head h11 parsed and whose body the close cut short
    closed: bool = False  # the proxy closed it (or the upstream did after an error)
    labels: list[tuple[int, str]] = field(default_factory=list)  # (offset, mutation in flight then)

    @property
    def parsed_end(self) -> int:
        return self.requests[-1].end if self.requests else 0

    @property
    def tunnel(self) -> bytes:
        last = self.requests[-1] if self.requests else None
        return bytes(self.raw[last.end:]) if last is not None and last.switched else b""

    @property
    def leftover(self) -> bytes:
        """Bytes after the last complete request that are not tunnel data."""
        return b"" if self.tunnel else bytes(self.raw[self.parsed_end:])

    def label_at(self, offset: int) -> str:
        """The mutation the lane was sending when the byte at `offset` arrived."""
        current = ""
        for start, name in self.labels:
            if start > offset:
                break
            current = name
        return current


class RecordingUpstream(Server):
    """One upstream port. `current` names the mutation its lane is sending, for labelling bytes."""

    def __init__(self, name: str) -> None:
        self.connections: list[Connection] = []
        self.current = ""
        super().__init__(name)

    def serve(self, sock: socket.socket, conn_id: int) -> None:
        record = Connection(self.name, conn_id, self.port)
        with self.cond:
            self.connections.append(record)
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_EVENT)
        try:
            if not self._parse(sock, record, parser):
                self._drain(sock, record)
        except h11.RemoteProtocolError as error:
            with self.cond:
                record.error = str(error) or type(error).__name__
            sock.sendall(b"HTTP/1.1 400 Bad Request\r\nx-parsed-error: h11\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            self._drain(sock, record)
        finally:
            with self.cond:
                record.closed = True
                self.cond.notify_all()

    def _receive(self, sock: socket.socket, record: Connection) -> bytes:
        data = sock.recv(65536)
        with self.cond:
            record.labels.append((len(record.raw), self.current))
            record.raw += data
        return data

    def _parse(self, sock: socket.socket, record: Connection, parser: h11.Connection) -> bool:
        """Parse and answer until the connection ends; False when the upstream ends it first."""
        request: Parsed | None = None
        body = bytearray()
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                data = self._receive(sock, record)
                if not data and request is not None and parser.their_state is h11.SEND_BODY:
                    request.body = bytes(body)
                    with self.cond:
                        record.truncated = request
                parser.receive_data(data)
            elif isinstance(event, h11.Request):
                request = Parsed(f"{record.upstream}#{record.conn}", record.port, event.method, event.target, list(event.headers), b"",
                                 record.parsed_end, 0)
                body.clear()
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                request.body = bytes(body)
                request.end = len(record.raw) - len(parser.trailing_data[0])
                raw = bytes(record.raw[request.start:request.end])
                request.head = raw[:raw.find(b"\r\n\r\n") + 4] if b"\r\n\r\n" in raw else raw
                request.switched = self._answer(sock, parser, request)
                with self.cond:
                    record.requests.append(request)
                    self.cond.notify_all()
                request, done = None, request
                if done.switched:
                    return self._tunnel(sock, record, parser.trailing_data[0])
                if parser.our_state is h11.MUST_CLOSE:
                    return False
                parser.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return True
            else:  # PAUSED: h11 waits for an answer it already has; nothing more is parsed
                return False

    def _answer(self, sock: socket.socket, parser: h11.Connection, request: Parsed) -> bool:
        """Send the answer; True when it was a 101 (the connection is now a tunnel)."""
        upgrade = next((v for k, v in request.headers if k == b"upgrade"), None)
        if upgrade is not None and UPGRADE_ACCEPT.encode() in request.target and parser.their_state is h11.MIGHT_SWITCH_PROTOCOL:
            sock.sendall(parser.send(h11.InformationalResponse(
                status_code=101, headers=[("upgrade", upgrade), ("connection", "upgrade")])))
            return True
        body = json.dumps({"method": request.method.decode("latin-1"), "target": request.target.decode("latin-1"),
                           "body_len": len(request.body), "conn": request.where}).encode()
        named = role_of(request.target)
        parsed = "/".join(named) if named else "unknown"
        sock.sendall(parser.send(h11.Response(status_code=200, headers=[
            ("content-type", "application/json"), ("content-length", str(len(body))), ("x-parsed", parsed)]))
            + parser.send(h11.Data(data=body)) + parser.send(h11.EndOfMessage()))
        return False

    def _tunnel(self, sock: socket.socket, record: Connection, already: bytes) -> bool:
        """Echo tunnel data until the proxy closes."""
        if already:
            sock.sendall(already)
        for _ in range(MAX_READS):
            data = self._receive(sock, record)
            if not data:
                break
            sock.sendall(data)
        return True

    def _drain(self, sock: socket.socket, record: Connection) -> None:
        """The upstream is done with this connection: keep recording what still arrives, so that
        bytes a proxy sends after a close-delimited exchange or a parse error are seen too."""
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(DRAIN_TIMEOUT)
        for _ in range(MAX_READS):
            try:
                if not self._receive(sock, record):
                    return
            except (socket.timeout, OSError):
                return

    def snapshot(self) -> list[Connection]:
        with self.cond:
            return list(self.connections)

    def all_closed(self) -> bool:
        with self.cond:
            return all(c.closed for c in self.connections)
