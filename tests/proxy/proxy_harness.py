"""Shared pieces of the data-plane tests: real upstream servers, the `pymesh proxy` launcher,
configuration builders and small HTTP clients. Everything talks over real sockets on 127.0.0.1.

Upstream servers run in threads with blocking sockets and their own HTTP/1.1 parser (not
httptools, so the proxy's parser is not checked against itself). They record every request they
receive, every connection they accept and every connection the peer closed, and tests wait on
those records with `Upstream.wait(predicate)` (a condition variable, bounded by a deadline).

The proxy runs as a real subprocess (`pymesh proxy --config FILE ...`) on ports picked per test;
readiness is a bounded poll of GET /ready on its admin port.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterable

import yaml

import waiting  # tests/waiting.py
from ports import free_port, free_ports  # tests/ports.py

HOST = "svc.local"  # the service name most tests route to
LOCALHOST = "127.0.0.1"
READY_TIMEOUT = 20.0
DEFAULT_WAIT = 10.0


# --- small utilities -----------------------------------------------------------------------------


def wait_until(predicate: Callable[[], object], timeout: float = DEFAULT_WAIT, interval: float = 0.02,
               what: str = "condition"):
    """Poll `predicate` until it returns something truthy (returned) or the deadline passes."""
    return waiting.wait_until(predicate, timeout, interval, what)


PATTERN = bytes(range(256)) * 256  # 64 KiB of known bytes for generated bodies


def pattern_chunks(total: int, size: int = len(PATTERN)):
    """`total` bytes of repeating PATTERN, in pieces of at most `size`."""
    left = total
    while left > 0:
        n = min(left, size, len(PATTERN))
        yield PATTERN[:n] if n < len(PATTERN) else PATTERN
        left -= n


def pattern_sha256(total: int) -> str:
    h = hashlib.sha256()
    for chunk in pattern_chunks(total):
        h.update(chunk)
    return h.hexdigest()


# --- byte reading over a blocking socket ------------------------------------------------------------


class Eof(Exception):
    """The peer closed the connection before the expected bytes arrived."""


class SockReader:
    def __init__(self, sock: socket.socket, bufsize: int = 256 * 1024) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.bufsize = bufsize

    def _fill(self) -> bool:
        data = self.sock.recv(self.bufsize)
        if not data:
            return False
        self.buf += data
        return True

    def read_until(self, marker: bytes, limit: int = 1 << 20) -> bytes:
        start = 0
        while True:
            index = self.buf.find(marker, start)
            if index != -1:
                end = index + len(marker)
                out = bytes(self.buf[:end])
                del self.buf[:end]
                return out
            if len(self.buf) > limit:
                raise ValueError("line too long")
            start = max(0, len(self.buf) - len(marker) + 1)
            if not self._fill():
                raise Eof(bytes(self.buf))

    def read_exact(self, n: int, sink: Callable[[bytes], None] | None = None) -> bytes:
        """n bytes; with `sink`, they are passed on as they come and b"" is returned."""
        if sink is None:
            while len(self.buf) < n:
                if not self._fill():
                    raise Eof(bytes(self.buf))
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out
        left = n
        while left:
            if not self.buf and not self._fill():
                raise Eof(b"")
            take = min(left, len(self.buf))
            sink(bytes(self.buf[:take]))
            del self.buf[:take]
            left -= take
        return b""

    def read_to_eof(self, sink: Callable[[bytes], None] | None = None) -> bytes:
        out = bytearray()
        while True:
            if self.buf:
                if sink is not None:
                    sink(bytes(self.buf))
                else:
                    out += self.buf
                self.buf.clear()
            if not self._fill():
                return bytes(out)

    def take_buffered(self) -> bytes:
        out = bytes(self.buf)
        self.buf.clear()
        return out


def parse_header_lines(lines: list[bytes]) -> list[tuple[str, str]]:
    headers = []
    for line in lines:
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise ValueError(f"bad header line {line!r}")
        headers.append((name.strip().lower(), value.strip()))
    return headers


def read_chunked(reader: SockReader, sink: Callable[[bytes], None]) -> list[tuple[str, str]]:
    """A chunked body into `sink`; returns the trailers."""
    while True:
        line = reader.read_until(b"\r\n", limit=4096)
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            break
        reader.read_exact(size, sink)
        if reader.read_exact(2) != b"\r\n":
            raise ValueError("chunk not followed by CRLF")
    trailer_lines = []
    while True:
        line = reader.read_until(b"\r\n", limit=65536)
        if line == b"\r\n":
            break
        trailer_lines.append(line[:-2])
    return parse_header_lines(trailer_lines)


class Headers:
    """Lookup helpers over a list of (lower-case name, value)."""

    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key == name]

    def names(self) -> set[str]:
        return {key for key, _ in self.headers}


class BodyRecorder:
    """Keeps up to `keep` bytes of a body, and its length and sha256 whatever the size."""

    def __init__(self, keep: int = 1 << 20, progress: Callable[[int], None] | None = None) -> None:
        self.keep = keep
        self.progress = progress  # called with the length so far after each piece (a slow reader)
        self.parts: list[bytes] = []
        self.kept = 0
        self.length = 0
        self.hash = hashlib.sha256()

    def __call__(self, data: bytes) -> None:
        self.length += len(data)
        self.hash.update(data)
        if self.kept < self.keep:
            self.parts.append(data)
            self.kept += len(data)
        if self.progress is not None:
            self.progress(self.length)

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)


# --- upstream servers ----------------------------------------------------------------------------------


@dataclass
class Received(Headers):
    """One complete request as an upstream server received it."""

    conn: int  # which accepted connection (1, 2, ...) of this server
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes  # the first MiB of it
    body_len: int
    body_sha256: str
    trailers: list[tuple[str, str]] = field(default_factory=list)
    raw_head: bytes = b""

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


@dataclass
class Reply:
    """What an upstream answers to one request.

    framing: "length" (Content-Length), "chunked", "close" (no length: the body ends with the
    connection), or "none" (no body framing at all: 204/304/HEAD answers).
    action: None (answer), "close" (close without answering), "reset" (RST without answering),
    "partial" (send half of the head, then close), "truncate" (the head and half the body, then
    close), "upgrade" (101 then echo bytes both ways until EOF).
    """

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    framing: str = "length"
    trailers: list[tuple[str, str]] = field(default_factory=list)
    delay: float = 0.0
    action: str | None = None
    stream: int = 0  # generated body of this many bytes instead of `body`
    close: bool = False  # close the connection after answering (saying so with Connection: close)
    close_silently: bool = False  # close right after answering, without saying so
    raw: bytes = b""  # send exactly these bytes instead of a response (then close)


Handler = Callable[["Received"], Reply]


@dataclass
class TlsSession:
    """What a TLS server saw of one connection's handshake."""

    sni: str | None
    alpn: str | None
    peer_der: bytes | None  # the client's certificate (DER), when it sent one
    version: str | None


def record_sni(context: ssl.SSLContext) -> ssl.SSLContext:
    """Make `context` remember each connection's SNI (read back by `tls_accept`)."""
    def callback(ssl_socket, server_name, _context):
        ssl_socket.requested_sni = server_name
    context.sni_callback = callback
    return context


def tls_accept(context: ssl.SSLContext, sock: socket.socket) -> tuple[ssl.SSLSocket, TlsSession]:
    """The server side of a TLS handshake on an accepted socket (ssl.SSLError when it fails)."""
    tls_sock = context.wrap_socket(sock, server_side=True)
    return tls_sock, TlsSession(getattr(tls_sock, "requested_sni", None), tls_sock.selected_alpn_protocol(),
                                tls_sock.getpeercert(True), tls_sock.version())


class Server:
    """A threaded TCP server on 127.0.0.1: one thread accepts, one thread per connection runs
    `serve(sock, conn_id)`. Records accepted and peer-closed connections. With `tls` (a server
    SSLContext, see record_sni) each connection is a TLS server first: `sessions` records each
    handshake by connection id, `tls_failures` the handshakes that failed. `host`: another
    loopback address (127.0.0.2...), for endpoints that differ by address, not port."""

    def __init__(self, name: str = "server", port: int = 0, tls: ssl.SSLContext | None = None,
                 host: str = LOCALHOST) -> None:
        self.name = name
        self.host = host
        self.tls = tls
        self.sessions: dict[int, TlsSession] = {}
        self.tls_failures: list[str] = []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(512)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.cond = threading.Condition()
        self.accepted = 0
        self.peer_closed: list[int] = []  # connections whose peer closed first (EOF/reset seen)
        self.errors: list[str] = []
        self._socks: dict[int, socket.socket] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._accept_loop, name=f"{name}-accept", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.cond:
                self.accepted += 1
                conn_id = self.accepted
                self._socks[conn_id] = sock
                self.cond.notify_all()
            threading.Thread(target=self._run, args=(sock, conn_id), name=f"{self.name}-{conn_id}", daemon=True).start()

    def _run(self, sock: socket.socket, conn_id: int) -> None:
        try:
            if self.tls is not None:
                try:
                    sock, session = tls_accept(self.tls, sock)
                except (ssl.SSLError, OSError) as error:
                    with self.cond:
                        self.tls_failures.append(str(error))
                        self.cond.notify_all()
                    return
                with self.cond:
                    self.sessions[conn_id] = session
                    self._socks[conn_id] = sock
            self.serve(sock, conn_id)
        except (Eof, ConnectionError):
            self._note_peer_closed(conn_id)
        except OSError:
            if not self._stopping:
                self._note_peer_closed(conn_id)
        except Exception as error:  # noqa: BLE001 - recorded for the test to see
            with self.cond:
                self.errors.append(f"{type(error).__name__}: {error}")
                self.cond.notify_all()
        finally:
            with self.cond:
                self._socks.pop(conn_id, None)
            try:
                sock.close()
            except OSError:
                pass

    def _note_peer_closed(self, conn_id: int) -> None:
        with self.cond:
            self.peer_closed.append(conn_id)
            self.cond.notify_all()

    def serve(self, sock: socket.socket, conn_id: int) -> None:
        raise NotImplementedError

    def wait(self, predicate: Callable[[], object], timeout: float = DEFAULT_WAIT, what: str = "upstream event"):
        """Block until `predicate()` (evaluated under the lock) is truthy; bounded."""
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise AssertionError(f"{self.name}: timed out after {timeout}s waiting for {what}")
            return predicate()

    def open_connections(self) -> int:
        with self.cond:
            return len(self._socks)

    def stop(self) -> None:
        self._stopping = True
        try:
            self.listener.close()
        except OSError:
            pass
        with self.cond:
            socks = list(self._socks.values())
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=2)


def default_reply(name: str) -> Handler:
    def handler(req: Received) -> Reply:
        return Reply(200, [("content-type", "text/plain"), ("x-upstream", name)],
                     f"{name} {req.method} {req.target}\n".encode())
    return handler


class Upstream(Server):
    """An HTTP/1.1 server answering each request with `handler(request)` (by default 200 and
    "<name> <method> <target>\\n", header x-upstream: <name>), recording every request."""

    def __init__(self, name: str = "upstream", handler: Handler | None = None, port: int = 0,
                 tls: ssl.SSLContext | None = None, host: str = LOCALHOST) -> None:
        self.handler = handler or default_reply(name)
        self.requests: list[Received] = []
        self.heads: list[bytes] = []  # every request head received, complete request or not
        self.body_progress: Callable[[int], None] | None = None  # see BodyRecorder.progress
        super().__init__(name, port, tls, host)

    def serve(self, sock: socket.socket, conn_id: int) -> None:
        reader = SockReader(sock)
        while True:
            try:
                raw_head = reader.read_until(b"\r\n\r\n", limit=1 << 20)
            except Eof as eof:
                if eof.args[0]:
                    with self.cond:
                        self.heads.append(eof.args[0])
                self._note_peer_closed(conn_id)
                return
            with self.cond:
                self.heads.append(raw_head)
                self.cond.notify_all()
            lines = raw_head[:-4].split(b"\r\n")
            method, target, version = lines[0].decode("latin-1").split(" ", 2)
            headers = parse_header_lines(lines[1:])
            body = BodyRecorder(progress=self.body_progress)
            trailers: list[tuple[str, str]] = []
            te = ",".join(v for k, v in headers if k == "transfer-encoding").lower()
            length = next((v for k, v in headers if k == "content-length"), None)
            if te.endswith("chunked"):
                trailers = read_chunked(reader, body)
            elif length is not None:
                reader.read_exact(int(length), body)
            request = Received(conn_id, method, target, version, headers, body.body, body.length,
                               body.hash.hexdigest(), trailers, raw_head)
            with self.cond:
                self.requests.append(request)
                self.cond.notify_all()
            reply = self.handler(request)
            if not self._answer(sock, reader, request, reply):
                return

    def _answer(self, sock: socket.socket, reader: SockReader, request: Received, reply: Reply) -> bool:
        """Write the reply; False when the connection is finished."""
        if reply.delay:
            time.sleep(reply.delay)
        if reply.action == "close":
            sock.close()
            return False
        if reply.action == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()
            return False
        if reply.raw:
            sock.sendall(reply.raw)
            sock.close()
            return False
        if reply.action == "upgrade":
            head = _response_head(101, [("connection", "Upgrade"), ("upgrade", request.header("upgrade") or "websocket")] + reply.headers)
            sock.sendall(head)
            leftover = reader.take_buffered()
            if leftover:
                sock.sendall(leftover)
            while True:
                data = sock.recv(65536)
                if not data:
                    sock.shutdown(socket.SHUT_WR)
                    return False
                sock.sendall(data)
        headers = list(reply.headers)
        total = reply.stream if reply.stream else len(reply.body)
        if reply.framing == "length":
            headers.append(("content-length", str(total)))
        elif reply.framing == "chunked":
            headers.append(("transfer-encoding", "chunked"))
            if reply.trailers:
                headers.append(("trailer", ", ".join(n for n, _ in reply.trailers)))
        if reply.close or reply.framing == "close":
            headers.append(("connection", "close"))
        head = _response_head(reply.status, headers)
        if reply.action == "partial":
            sock.sendall(head[: len(head) // 2])
            sock.close()
            return False
        body_pieces: Iterable[bytes] = pattern_chunks(reply.stream, 256 * 1024) if reply.stream else ([reply.body] if reply.body else [])
        if request.method == "HEAD" or reply.framing == "none":
            body_pieces = []
        if reply.action == "truncate":
            body = reply.body or PATTERN
            sock.sendall(head + body[: len(body) // 2])
            sock.close()
            return False
        if reply.framing == "chunked":
            out = [head]
            for piece in body_pieces:
                out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
            out.append(b"0\r\n" + b"".join(f"{n}: {v}\r\n".encode() for n, v in reply.trailers) + b"\r\n")
            sock.sendall(b"".join(out))
        else:
            sock.sendall(head)
            for piece in body_pieces:
                sock.sendall(piece)
        if reply.close_silently:
            sock.close()
            return False
        if reply.close or reply.framing == "close":
            sock.shutdown(socket.SHUT_WR)
            # wait (bounded) for the proxy to close its side, then stop
            sock.settimeout(5)
            try:
                while sock.recv(65536):
                    pass
            except OSError:
                pass
            return False
        return True

    # views for tests
    def wait_requests(self, n: int, timeout: float = DEFAULT_WAIT) -> list[Received]:
        self.wait(lambda: len(self.requests) >= n, timeout, f"{n} requests (have {len(self.requests)})")
        with self.cond:
            return list(self.requests)

    def count(self) -> int:
        with self.cond:
            return len(self.requests)


def _response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {'OK' if status < 300 else 'X'}\r\n"]
    lines += [f"{n}: {v}\r\n" for n, v in headers]
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def sequence(*replies: Reply, then: Reply | None = None) -> Handler:
    """A handler answering the n-th request with replies[n] (and `then`, or the last, after)."""
    lock = threading.Lock()
    state = {"n": 0}

    def handler(req: Received) -> Reply:
        with lock:
            n = state["n"]
            state["n"] += 1
        if n < len(replies):
            return replies[n]
        return then if then is not None else replies[-1]
    return handler


class TcpServer(Server):
    """A raw TCP server: `mode` "echo" (echo until EOF, then close), "reply-on-eof" (read until
    the client's FIN, then send b"got <n> bytes" and close), "server-first" (send a banner at
    once, then echo), "banner-close" (send the banner and close first), "hold" (read and discard
    until EOF), "stall" (accept, then never read a byte until stopped: the peer's writes back up)."""

    BANNER = b"220 hello from the server\r\n"

    def __init__(self, mode: str = "echo", name: str = "tcp", tls: ssl.SSLContext | None = None) -> None:
        self.mode = mode
        self.received = bytearray()
        self.unstall = threading.Event()
        super().__init__(name, tls=tls)

    def stop(self) -> None:
        self.unstall.set()
        super().stop()

    def serve(self, sock: socket.socket, conn_id: int) -> None:
        if self.mode == "stall":
            self.unstall.wait(60)
            return
        if self.mode in ("server-first", "banner-close"):
            sock.sendall(self.BANNER)
        if self.mode == "banner-close":
            sock.shutdown(socket.SHUT_WR)
            return
        total = 0
        while True:
            data = sock.recv(65536)
            if not data:
                break
            total += len(data)
            with self.cond:
                self.received += data
                self.cond.notify_all()
            if self.mode in ("echo", "server-first"):
                sock.sendall(data)
        self._note_peer_closed(conn_id)
        if self.mode == "reply-on-eof":
            sock.sendall(b"got %d bytes" % total)
        sock.shutdown(socket.SHUT_WR)


# --- configuration builders ------------------------------------------------------------------------------


def endpoint(server: Server | int, labels: dict | None = None, port_name: str = "http", address: str = LOCALHOST,
             weight: int | None = None) -> dict:
    port = server if isinstance(server, int) else server.port
    out: dict = {"address": address, "ports": {port_name: port}}
    if labels:
        out["labels"] = dict(labels)
    if weight is not None:
        out["weight"] = weight
    return out


def service_entry(port: int | list[tuple[int, str]], endpoints: list[dict], host: str = HOST, protocol: str = "HTTP",
                  name: str = "svc", location: str = "MESH_INTERNAL") -> dict:
    """ports: a single port (named after the protocol) or [(number, name)]. In the mesh by
    default: the harness's services stand for Kubernetes Services (auto mTLS applies to them)."""
    ports = [(port, protocol.lower())] if isinstance(port, int) else port
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "hosts": [host],
            "ports": [{"number": n, "name": pname, "protocol": protocol} for n, pname in ports],
            "location": location,
            "resolution": "STATIC",
            "endpoints": endpoints,
        },
    }


def destination_rule(host: str = HOST, subsets: list[str] | dict | None = None, traffic_policy: dict | None = None,
                     name: str = "svc") -> dict:
    """subsets: names (each selects label version=<name>) or {name: labels}."""
    spec: dict = {"host": host}
    if traffic_policy:
        spec["trafficPolicy"] = traffic_policy
    if subsets:
        items = subsets.items() if isinstance(subsets, dict) else ((s, {"version": s}) for s in subsets)
        spec["subsets"] = [{"name": s, "labels": dict(labels)} for s, labels in items]
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def virtual_service(http: list[dict] | None = None, tcp: list[dict] | None = None, host: str = HOST,
                    name: str = "svc") -> dict:
    spec: dict = {"hosts": [host]}
    if http is not None:
        spec["http"] = http
    if tcp is not None:
        spec["tcp"] = tcp
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def sidecar(*listeners: tuple[int, str]) -> dict:
    """Egress listeners on 127.0.0.1 without capture: (port, protocol) each."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": "default"},
        "spec": {
            "egress": [
                {"port": {"number": port, "protocol": protocol, "name": f"{protocol.lower()}-{port}"},
                 "bind": LOCALHOST, "captureMode": "NONE", "hosts": ["*/*"]}
                for port, protocol in listeners
            ]
        },
    }


def to_subset(subset: str, host: str = HOST, weight: int | None = None, **extra) -> dict:
    out: dict = {"destination": {"host": host, "subset": subset}}
    if weight is not None:
        out["weight"] = weight
    out.update(extra)
    return out


def http_mesh(port: int, versions: dict[str, Server], http: list[dict] | None = None,
              traffic_policy: dict | None = None, host: str = HOST) -> list[dict]:
    """The usual test mesh: one HTTP service on `port` whose endpoints are the given upstream
    servers labelled version=<key>, one subset per version, an optional VirtualService, and a
    Sidecar egress listener on 127.0.0.1:`port`."""
    resources = [
        service_entry(port, [endpoint(server, {"version": v}) for v, server in versions.items()], host),
        destination_rule(host, list(versions), traffic_policy),
    ]
    if http is not None:
        resources.append(virtual_service(http, host=host))
    resources.append(sidecar((port, "HTTP")))
    return resources


def inbound_mesh(port: int, app: Server, protocol: str = "HTTP") -> list[dict]:
    """A Sidecar ingress listener on 127.0.0.1:`port` (no capture) in front of the local app."""
    return [{
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": "default"},
        "spec": {"ingress": [{
            "port": {"number": port, "protocol": protocol, "name": f"{protocol.lower()}-in"},
            "bind": LOCALHOST, "captureMode": "NONE", "defaultEndpoint": f"{LOCALHOST}:{app.port}",
        }]},
    }]


def request_authentication(*rules: dict, name: str = "jwt", namespace: str = "default",
                           selector: dict | None = None) -> dict:
    """A RequestAuthentication with these jwtRules (selector: matchLabels)."""
    spec: dict = {"jwtRules": list(rules)}
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    return {"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def tcp_mesh(port: int, server: Server, traffic_policy: dict | None = None) -> list[dict]:
    """One TCP service on `port` served by `server`, behind a TCP egress listener on `port`."""
    resources = [service_entry(port, [endpoint(server, port_name="tcp")], protocol="TCP")]
    if traffic_policy:
        resources.append(destination_rule(traffic_policy=traffic_policy))
    return resources + [sidecar((port, "TCP"))]


def gateway_service(ports: dict[int, int], namespace: str = "istio-system",
                    labels: dict | None = None) -> dict:
    """The gateway's own service (Kubernetes' istio-ingressgateway Service): server port ->
    the port the gateway listens on (targetPort), for the workload with `labels`."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "istio-ingressgateway", "namespace": namespace},
        "spec": {
            "hosts": [f"istio-ingressgateway.{namespace}.svc.cluster.local"],
            "ports": [{"number": n, "targetPort": t, "name": f"port-{n}", "protocol": "TCP"} for n, t in ports.items()],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "workloadSelector": {"labels": labels or {"istio": "ingressgateway"}},
        },
    }


def dump_yaml(resources: list[dict] | str) -> str:
    if isinstance(resources, str):
        return resources
    return "---\n".join(yaml.safe_dump(r, sort_keys=False) for r in resources)


# --- the proxy process -------------------------------------------------------------------------------------


def pymesh_command() -> list[str]:
    script = Path(sys.executable).parent / "pymesh"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "pymesh"]


def children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (a supervisor's workers)."""
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(entry))
    return out


class Proxy:
    """`pymesh proxy` (or `pymesh gateway`: `subcommand`) as a subprocess with its own config
    file, ports and access log."""

    def __init__(self, workdir: Path, resources: list[dict] | str, *, labels: str = "", concurrency: int = 1,
                 drain_timeout: float | None = None, extra_args: Iterable[str] = (), name: str = "proxy",
                 subcommand: str = "proxy", env: dict[str, str] | None = None) -> None:
        self.subcommand = subcommand
        self.env = env or {}  # extra environment variables of the proxy process
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / f"{name}.yaml"
        self.access_log = self.workdir / f"{name}-access.log"
        self.stderr_path = self.workdir / f"{name}.stderr"
        self.stdout_path = self.workdir / f"{name}.stdout"
        self.admin_port, self.stats_port, self.health_port = free_ports(3)
        self.labels = labels
        self.concurrency = concurrency
        self.drain_timeout = drain_timeout
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.write_config(resources)

    def write_config(self, resources: list[dict] | str) -> None:
        """Replace the config file atomically (the proxy never reads half a file)."""
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(dump_yaml(resources))
        os.replace(tmp, self.config_path)

    def command(self) -> list[str]:
        cmd = pymesh_command() + [
            self.subcommand, "--config", str(self.config_path),
            "--admin-port", str(self.admin_port), "--stats-port", str(self.stats_port),
            "--health-port", str(self.health_port), "--access-log", str(self.access_log),
        ]
        if self.labels:
            cmd += ["--labels", self.labels]
        if self.subcommand == "gateway":
            cmd += ["--listen-address", LOCALHOST]  # tests listen on loopback only
        if self.concurrency != 1:
            cmd += ["--concurrency", str(self.concurrency)]
        if self.drain_timeout is not None:
            cmd += ["--drain-timeout", str(self.drain_timeout)]
        return cmd + self.extra_args

    def start(self, wait: bool = True) -> Proxy:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                raise AssertionError(f"proxy exited with {self.proc.returncode} before ready:\n{self.stderr()}")
            try:
                status, _, _ = http_get(self.admin_port, "/ready", timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise AssertionError(f"proxy not ready after {timeout}s:\n{self.stderr()}")
            time.sleep(0.05)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"proxy still running {timeout}s later:\n{self.stderr()}") from None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for the exit status."""
        if self.running():
            self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        """Finalizer: whatever state it is in, it is gone afterwards (its workers too)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        else:
            try:  # workers of a supervisor that died must not outlive the test
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def rss_kib(self) -> int:
        """VmRSS of the proxy process, in KiB."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    # admin
    def admin(self, path: str, method: str = "GET", port: int | None = None) -> tuple[int, dict, bytes]:
        return http_get(port or self.admin_port, path, method=method)

    def stats(self) -> dict[str, int]:
        """The admin /stats page as {"scope.name": value}."""
        status, _, body = self.admin("/stats")
        assert status == 200, body
        pairs = (line.rpartition(": ") for line in body.decode().splitlines() if line)
        return {name: int(value) for name, _, value in pairs}

    def clusters(self) -> dict[str, str]:
        """The admin /clusters page as {"cluster::address:port::stat": value}."""
        status, _, body = self.admin("/clusters")
        assert status == 200, body
        return dict(line.rpartition("::")[::2] for line in body.decode().splitlines() if line)

    def stat(self, name: str) -> int:
        """Sum of one /stats counter over every scope that has it."""
        return sum(value for key, value in self.stats().items() if key.endswith("." + name))

    def prometheus(self, port: int | None = None) -> str:
        status, _, body = http_get(port or self.stats_port, "/stats/prometheus")
        assert status == 200, body
        return body.decode()

    # access log
    def log_entries(self) -> list[dict]:
        try:
            text = self.access_log.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def wait_log(self, predicate: Callable[[dict], bool], timeout: float = DEFAULT_WAIT, what: str = "access log line") -> dict:
        """The first access-log entry matching `predicate`, once the proxy has flushed it."""
        def find():
            return next((e for e in self.log_entries() if predicate(e)), None)
        return wait_until(find, timeout, 0.05, what)

    def wait_metric(self, predicate: Callable[[list["Sample"]], object], name: str = "istio_requests_total",
                    timeout: float = DEFAULT_WAIT, port: int | None = None, what: str = "metric"):
        return wait_until(lambda: predicate(samples(self.prometheus(port), name)), timeout, 0.1, what)


@contextmanager
def serving(workdir: Path, up: Upstream, resources_for: Callable[[int], list[dict]]):
    """A started proxy on a fresh port in front of `up`, for module-scoped fixtures: yields
    (proxy, port, up) as attributes; the proxy and `up` are stopped on exit, even on failure."""
    port = free_port()
    proxy = Proxy(workdir, resources_for(port))
    try:
        proxy.start()
        yield SimpleNamespace(proxy=proxy, port=port, up=up)
    finally:
        proxy.kill()
        up.stop()


# --- clients ------------------------------------------------------------------------------------------------


def http_get(port: int, path: str, method: str = "GET", timeout: float = 5.0) -> tuple[int, dict, bytes]:
    """One request on a fresh connection to 127.0.0.1:port, for the admin endpoints."""
    with socket.create_connection((LOCALHOST, port), timeout=timeout) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        response = read_response(SockReader(sock), method)
    return response.status, dict(response.headers), response.body


@dataclass
class Response(Headers):
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    interim: list[int] = field(default_factory=list)  # 1xx statuses seen before this one
    version: str = "HTTP/1.1"
    framing: str = ""  # "length" | "chunked" | "close" | "none"

    @property
    def text(self) -> str:
        return self.body.decode("latin-1")


def read_response(reader: SockReader, method: str = "GET", sink: Callable[[bytes], None] | None = None) -> Response:
    interim = []
    while True:
        raw = reader.read_until(b"\r\n\r\n", limit=1 << 20)
        lines = raw[:-4].split(b"\r\n")
        version, status_text, *_ = lines[0].decode("latin-1").split(" ", 2)
        status = int(status_text)
        headers = parse_header_lines(lines[1:])
        if 100 <= status < 200 and status != 101:
            interim.append(status)
            continue
        break
    response = Response(status, headers, interim=interim, version=version)
    parts: list[bytes] = []
    collect = sink or parts.append
    te = (response.header("transfer-encoding") or "").lower()
    length = response.header("content-length")
    if method == "HEAD" or status in (101, 204, 304):
        response.framing = "none"
    elif te.endswith("chunked"):
        response.framing = "chunked"
        response.trailers = read_chunked(reader, collect)
    elif length is not None:
        response.framing = "length"
        reader.read_exact(int(length), collect)
    else:
        response.framing = "close"
        reader.read_to_eof(collect)
    response.body = b"".join(parts)
    return response


class Client:
    """A raw HTTP/1.1 client on one connection: send bytes, read responses."""

    def __init__(self, port: int, timeout: float = 10.0, source: str | None = None) -> None:
        self.sock = socket.create_connection((LOCALHOST, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = SockReader(self.sock)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str = "GET", path: str = "/", headers: dict | list | None = None, body: bytes = b"",
                host: str = HOST, sink=None) -> Response:
        self.send(request_bytes(method, path, headers, body, host))
        return self.read(method, sink)

    def read(self, method: str = "GET", sink=None) -> Response:
        return read_response(self.reader, method, sink)

    def read_raw_to_eof(self) -> bytes:
        return self.reader.read_to_eof()

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True when the proxy closes the connection (EOF or reset) within `timeout`, with no
        further bytes."""
        self.sock.settimeout(timeout)
        try:
            data = self.reader.take_buffered() or self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        return data == b""

    def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        """Close with a TCP reset (SO_LINGER 0), as a crashing client would."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def request_bytes(method: str = "GET", path: str = "/", headers: dict | list | None = None, body: bytes = b"",
                  host: str | None = HOST) -> bytes:
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {n.lower() for n, _ in items}
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not None and "host" not in names:
        lines.append(f"Host: {host}")
    lines += [f"{n}: {v}" for n, v in items]
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class CurlResult(Headers):
    status: int
    headers: list[tuple[str, str]]  # of the final response
    body: bytes
    statuses: list[int]  # every status line curl saw, interim ones included
    returncode: int
    stderr: str


# curl's options for each client protocol tests run their cases over (h2c: HTTP/2 without TLS).
CURL_PROTOCOLS = {"http1.1": ("--http1.1",), "h2c": ("--http2-prior-knowledge",)}


def curl(port: int, path: str = "/", *args: str, host: str | None = HOST, timeout: float = 20.0,
         workdir: Path | None = None, scheme: str = "http") -> CurlResult:
    """curl http://127.0.0.1:port/path (or `scheme`://) with Host: `host`; extra curl arguments
    in `args`."""
    import tempfile

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        head_file, body_file = Path(tmp) / "head", Path(tmp) / "body"
        cmd = ["curl", "-sS", "--max-time", str(timeout), "-D", str(head_file), "-o", str(body_file)]
        if host is not None:
            cmd += ["-H", f"Host: {host}"]
        cmd += list(args) + [f"{scheme}://{LOCALHOST}:{port}{path}"]
        done = subprocess.run(cmd, capture_output=True, timeout=timeout + 5)
        heads = head_file.read_bytes().decode("latin-1") if head_file.exists() else ""
        body = body_file.read_bytes() if body_file.exists() else b""
    blocks = [b for b in re.split(r"\r\n\r\n", heads) if b.strip()]
    statuses, headers = [], []
    for block in blocks:
        lines = block.split("\r\n")
        statuses.append(int(lines[0].split(" ")[1]))
        headers = parse_header_lines([l.encode("latin-1") for l in lines[1:] if l])
    return CurlResult(statuses[-1] if statuses else 0, headers, body, statuses, done.returncode, done.stderr.decode())


# --- Prometheus text -----------------------------------------------------------------------------------------


@dataclass
class Sample:
    name: str
    labels: dict[str, str]
    value: float


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str) -> list[Sample]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match and match.group(1) == name:
            labels = dict(_LABEL.findall(match.group(2) or ""))
            out.append(Sample(name, labels, float(match.group(3))))
    return out


def total(samples_: list[Sample], **labels: str) -> float:
    return sum(s.value for s in samples_ if all(s.labels.get(k) == v for k, v in labels.items()))


# --- load ---------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    client: int
    request_id: str
    status: int = 0  # 0: no response
    upstream: str | None = None  # x-upstream of the response
    error: str = ""


class Load:
    """`clients` threads, each sending keep-alive GETs on its own connection (x-request-id
    c<client>-<n>), at most `max_requests` each, until `stop()`. A client whose connection fails
    or is closed stops (or reconnects, with `reconnect`). Every outcome is recorded in order."""

    def __init__(self, port: int, clients: int = 4, max_requests: int = 5000, path: str = "/",
                 reconnect: bool = False, timeout: float = 15.0) -> None:
        self.port = port
        self.path = path
        self.max_requests = max_requests
        self.reconnect = reconnect
        self.timeout = timeout
        self.cond = threading.Condition()
        self.outcomes: list[list[Outcome]] = [[] for _ in range(clients)]
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def start(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def _record(self, outcome: Outcome) -> None:
        with self.cond:
            self.outcomes[outcome.client].append(outcome)
            self.cond.notify_all()

    def _run(self, index: int) -> None:
        client = None
        for n in range(self.max_requests):
            if self._stop.is_set():
                break
            request_id = f"c{index}-{n}"
            try:
                if client is None:
                    client = Client(self.port, timeout=self.timeout)
                response = client.request("GET", self.path, {"x-request-id": request_id})
            except (OSError, Eof, ValueError) as error:
                self._record(Outcome(index, request_id, error=f"{type(error).__name__}: {error}"))
                if client is not None:
                    client.close()
                    client = None
                if self.reconnect:
                    continue
                break
            self._record(Outcome(index, request_id, response.status, response.header("x-upstream")))
            if response.header("connection") == "close":
                client.close()
                client = None
                if not self.reconnect:
                    break
        if client is not None:
            client.close()
        with self.cond:
            self.cond.notify_all()

    def wait(self, predicate: Callable[[list[list[Outcome]]], object], timeout: float = DEFAULT_WAIT,
             what: str = "load condition"):
        with self.cond:
            if not self.cond.wait_for(lambda: predicate(self.outcomes), timeout):
                raise AssertionError(f"load: timed out after {timeout}s waiting for {what}")

    def stop(self, timeout: float = 20.0) -> None:
        self._stop.set()
        for thread in self.threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a load client did not finish"

    def all(self) -> list[Outcome]:
        with self.cond:
            return [o for per_client in self.outcomes for o in per_client]
