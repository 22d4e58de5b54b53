"""Upstream HTTP/1.1 connections and their per-endpoint pools.

A pool keeps idle keep-alive connections to one endpoint (LIFO, so the warmest is reused), closes
them after the cluster's idle timeout (swept once a second, not a timer per connection) and after
`maxRequestsPerConnection`. A connection serves one request at a time: it forwards the response
events to the exchange bound to it, and tells it when the upstream goes away.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import Callable, Iterable

from pymesh.http import h1
from pymesh.http.message import Header, Trailers, UpstreamRequest
from pymesh.routing.snapshot import Cluster, Endpoint

DEFAULT_CONNECT_TIMEOUT = 10.0  # Istio's default tcp.connectTimeout
DEFAULT_IDLE_TIMEOUT = 3600.0  # Envoy's default upstream idle timeout
INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6"  # the capture rules let lo traffic from it through
_CHUNKED = (b"transfer-encoding", b"chunked")


def inbound_source(address: str) -> tuple[str, int] | None:
    """Local address for the proxy's connection to its own app at `address`.

    An app on the pod's (non-loopback) address is reached from 127.0.0.6, as Istio's
    InboundPassthroughBindIpv4, which the capture rules let through (`-s 127.0.0.6/32 -o lo -j
    RETURN`); from any other source the connection would be captured inbound again, forever.
    None (the kernel's choice) for loopback apps, names and IPv6.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.version != 4 or ip.is_loopback:
        return None
    return INBOUND_PASSTHROUGH_SOURCE, 0


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to an endpoint, bound to at most one exchange at a time."""

    __slots__ = (
        "pool", "transport", "reader", "exchange", "requests", "idle_since", "received", "tunnel", "reused", "clean",
        "chunked",
    )

    def __init__(self, pool: EndpointPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.reader = h1.ResponseReader()
        self.exchange = None
        self.requests = 0
        self.idle_since = 0.0
        self.received = False  # any response byte for the current request
        self.tunnel = None  # the downstream transport once upgraded (WebSocket)
        self.reused = False  # served a request before the current one
        self.clean = False  # the last response ended exactly where its framing said
        self.chunked = False  # the current request's body goes out chunked

    # asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        exchange = self.exchange
        if exchange is None:
            self.transport.close()  # unsolicited bytes on an idle connection: not trustworthy
            return
        self.received = True
        events = self.reader.feed(data)
        last = len(events) - 1
        for index, (kind, value) in enumerate(events):
            if kind == h1.DATA:
                exchange.on_response_data(value)
            elif kind == h1.HEAD:
                exchange.on_response_head(self, value)
            elif kind == h1.END:
                # Anything after the response's end (bytes, another response beginning) means
                # the upstream and the proxy disagree about framing: never reuse it.
                self.clean = index == last and not self.reader.in_head
                exchange.on_response_end(self, value)
            elif kind == h1.UPGRADE:
                exchange.on_response_upgrade(self, value)
            else:  # ERROR
                exchange.on_upstream_error(self, value)
            if self.exchange is not exchange:
                return  # the exchange let go of this connection (retry, reset, done)

    def eof_received(self):
        if self.tunnel is not None:
            self.tunnel.write_eof()
            return True
        return False

    def connection_lost(self, exc) -> None:
        self.pool.forget(self)
        if self.tunnel is not None:
            self.tunnel.close()
        elif self.exchange is not None:
            exchange = self.exchange
            self.exchange = None
            self.pool.active -= 1
            exchange.on_upstream_lost(self)

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.pause_request_body()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.resume_request_body()

    # used by the exchange -----------------------------------------------------------------

    def bind(self, exchange, expect_body: bool) -> None:
        self.exchange = exchange
        self.received = False
        self.reused = self.requests > 0
        self.clean = False
        self.reader.expect_body = expect_body
        self.requests += 1

    def send_request(self, request: UpstreamRequest, body: Iterable[bytes | Trailers] = (), complete: bool = False) -> None:
        """The request head, framed by this connection (never from the client's headers), and
        whatever of the body is already buffered, in one write. (`complete`: the body given is
        all of it; HTTP/1.1 needs no word of that, its framing already says where it ends.)"""
        headers = [(b"host", request.authority.encode("latin-1"))] + request.headers
        if request.upgrade is not None:
            headers += [(b"connection", b"upgrade"), (b"upgrade", request.upgrade)]
        self.chunked = request.has_body and request.length is None
        if self.chunked:
            headers.append(_CHUNKED)
        elif request.length is not None:
            headers.append((b"content-length", b"%d" % request.length))
        out = [h1.serialize_request_head(request.method, request.target, headers)]
        for piece in body:
            if piece.__class__ is Trailers:
                if self.chunked:
                    out.append(h1.encode_last_chunk(piece.headers))
            else:
                out.append(h1.encode_chunk(piece) if self.chunked else piece)
        self.transport.write(b"".join(out) if len(out) > 1 else out[0])

    def send_data(self, data: bytes) -> None:
        self.transport.write(h1.encode_chunk(data) if self.chunked else data)

    def send_end(self, trailers: list[Header]) -> None:
        if self.chunked:
            self.transport.write(h1.encode_last_chunk(trailers))

    def send_raw(self, data: bytes) -> None:
        """Bytes of the protocol an upgrade switched to (after the 101)."""
        self.transport.write(data)

    def pause_reading(self) -> None:
        """The downstream cannot take more of the response now (its buffer is full)."""
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def release(self, reusable: bool) -> None:
        """The exchange is done with this connection: back to the pool, or closed."""
        self.exchange = None
        self.pool.release(self, reusable)

    def abort(self) -> None:
        """Drop the connection mid-request (retry, timeout, downstream gone)."""
        self.exchange = None
        self.pool.active -= 1
        self.transport.abort()

    def detach_as_tunnel(self, downstream_transport) -> asyncio.Transport:
        """After 101 Switching Protocols: no longer HTTP, no longer pooled. Returns the transport
        the downstream now writes the tunnel's bytes to."""
        self.exchange = None
        self.pool.active -= 1
        self.tunnel = downstream_transport
        return self.transport


class EndpointPool:
    """Idle connections to one endpoint of one cluster, and how to make new ones."""

    active = 0  # connections lent to exchanges (an instance attribute once counted)

    def __init__(self, cluster: Cluster, endpoint: Endpoint, loop: asyncio.AbstractEventLoop, stats: dict[str, int]) -> None:
        self.endpoint = endpoint
        self.stats = stats  # the cluster's /stats counters
        self.loop = loop
        self.idle: list[UpstreamConnection] = []
        self.local_addr = inbound_source(endpoint.address) if cluster.name.startswith("inbound|") else None
        self.configure(cluster)

    def configure(self, cluster: Cluster) -> None:
        settings = cluster.connection_pool
        self.connect_timeout = settings.connect_timeout or DEFAULT_CONNECT_TIMEOUT
        self.idle_timeout = settings.idle_timeout or DEFAULT_IDLE_TIMEOUT
        self.max_requests = settings.max_requests_per_connection

    def take_idle(self) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.transport.is_closing():
                self.active += 1
                return conn
        return None

    def connect(self, on_done: Callable[[UpstreamConnection | None, BaseException | None], None]) -> Callable[[], None]:
        """Open a connection; `on_done(conn, None)` or `on_done(None, error)`. Returns a canceller."""
        def opened(conn, error) -> None:
            if conn is not None:
                self.active += 1
            on_done(conn, error)
        return self.dial(lambda: UpstreamConnection(self), opened)

    def dial(self, factory: Callable[[], asyncio.Protocol], on_done: Callable) -> Callable[[], None]:
        """A TCP connection to the endpoint with the cluster's connect timeout, counted in the
        cluster's stats; `on_done(protocol, None)` or `on_done(None, error)`. Returns a canceller."""
        self.stats["upstream_cx_total"] += 1
        task = self.loop.create_task(
            self.loop.create_connection(factory, self.endpoint.address, self.endpoint.port, local_addr=self.local_addr)
        )
        timed_out = []

        def time_out() -> None:
            timed_out.append(True)
            task.cancel()

        timer = self.loop.call_later(self.connect_timeout, time_out)

        def finished(task: asyncio.Task) -> None:
            timer.cancel()
            if task.cancelled():  # the timeout, or the exchange no longer wanting it
                if timed_out:
                    self.stats["upstream_cx_connect_timeout"] += 1
                on_done(None, TimeoutError("connect timeout"))
                return
            error = task.exception()
            if error is not None:
                on_done(None, error)
                return
            transport, conn = task.result()
            if transport.is_closing():  # reset as it opened, before this callback ran
                on_done(None, ConnectionResetError("upstream closed the connection as it opened"))
                return
            on_done(conn, None)

        task.add_done_callback(finished)
        return task.cancel

    def release(self, conn: UpstreamConnection, reusable: bool) -> None:
        """Back to the idle list only when the request and the response both ended cleanly by
        their framing and the upstream keeps the connection; any doubt closes it."""
        self.active -= 1
        if reusable and conn.clean and (not self.max_requests or conn.requests < self.max_requests) and not conn.transport.is_closing():
            conn.idle_since = time.monotonic()
            conn.transport.resume_reading()  # a slow client may have paused it mid-response
            self.idle.append(conn)
        else:
            conn.transport.close()

    def forget(self, conn: UpstreamConnection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)

    def sweep(self, now: float) -> None:
        deadline = now - self.idle_timeout
        keep = []
        for conn in self.idle:
            if conn.idle_since < deadline:
                conn.transport.close()
            else:
                keep.append(conn)
        self.idle = keep

    def close_idle(self) -> None:
        for conn in self.idle:
            conn.transport.close()
        self.idle = []
