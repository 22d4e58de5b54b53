"""Upstream HTTP/1.1 connections and their per-endpoint pools.

A pool keeps idle keep-alive connections to one endpoint (LIFO, so the warmest is reused), closes
them after the cluster's idle timeout (swept once a second, not a timer per connection), after
`maxRequestsPerConnection` and after `maxConnectionDuration`. An exchange that finds none idle
waits in the pool's pending queue for the next connection that opens or is released; the
cluster's circuit breaker (pymesh.policy.circuit_breaker) bounds the connections and the queue.
A connection serves one request at a time: it forwards the response events to the exchange bound
to it, and tells it when the upstream goes away.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import deque
from typing import Callable, Iterable

from pymesh.http import h1
from pymesh.http.message import Header, Trailers, UpstreamRequest
from pymesh.policy.circuit_breaker import CircuitBreaker
from pymesh.proxy.sockets import set_keepalive
from pymesh.proxy.upstream_tls import TlsFailure, TlsTarget
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
        "chunked", "opened_at",
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
        self.opened_at = 0.0  # for maxConnectionDuration

    # asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.opened_at = time.monotonic()
        self.pool.tune(transport)

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
                if index == last:
                    exchange.flush_response()  # no body bytes in this read: the head goes alone
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
            if not self.tunnel.can_write_eof():  # a TLS client (mTLS): no half-close, end it whole
                self.tunnel.close()
                return False
            self.tunnel.write_eof()
            return True
        return False

    def connection_lost(self, exc) -> None:
        self.pool.connection_lost(self)
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
    """Idle connections to one endpoint of one cluster, how to make new ones, and the exchanges
    waiting for one (Envoy's pending requests)."""

    active = 0  # connections lent to exchanges (an instance attribute once counted)

    def __init__(self, cluster: Cluster, endpoint: Endpoint, loop: asyncio.AbstractEventLoop, stats: dict[str, int],
                 tls: TlsTarget | None = None) -> None:
        self.endpoint = endpoint
        self.tls = tls  # dial with TLS (pymesh.proxy.upstream_tls), or plaintext
        self.stats = stats  # the cluster's /stats counters and gauges, shared by its pools
        self.loop = loop
        self.idle: list[UpstreamConnection] = []
        self.waiters: deque[Callable] = deque()  # on_done of the exchanges waiting for a connection
        self.dialing = 0  # connections being opened
        self.open = 0  # connections of this pool, open or opening
        self.local_addr = inbound_source(endpoint.address) if cluster.name.startswith("inbound|") else None
        self.configure(cluster)

    def configure(self, cluster: Cluster) -> None:
        settings = cluster.connection_pool
        self.connect_timeout = settings.connect_timeout or DEFAULT_CONNECT_TIMEOUT
        self.idle_timeout = settings.idle_timeout or DEFAULT_IDLE_TIMEOUT
        self.max_requests = settings.max_requests_per_connection
        self.max_duration = settings.max_connection_duration
        self.keepalive = settings.tcp_keepalive
        self.breaker = CircuitBreaker(self.stats, settings)

    def tune(self, transport) -> None:
        """A new connection's socket options: TCP keepalive, when the cluster asks for it."""
        if self.keepalive is not None:
            set_keepalive(transport, self.keepalive)

    def expired(self, conn, now: float) -> bool:
        """Past maxConnectionDuration: it serves no new request (Envoy drains it)."""
        if self.max_duration is not None and now - conn.opened_at >= self.max_duration:
            self.stats["upstream_cx_max_duration_reached"] += 1
            return True
        return False

    def take_idle(self) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.transport.is_closing():
                continue
            if self.max_duration is not None and self.expired(conn, time.monotonic()):
                conn.transport.close()
                continue
            self.active += 1
            return conn
        return None

    # --- pending requests -------------------------------------------------------------------

    def connect(self, on_done: Callable[[UpstreamConnection | None, BaseException | None], None]) -> Callable[[], None] | None:
        """For an exchange that found no idle connection: wait for the next one that opens or
        is released, `on_done(conn, None)`, or `on_done(None, error)` if a connection it needed
        failed to open. Returns a canceller, or None when the cluster's pending limit is full
        (the exchange answers 503 UO)."""
        if not self.breaker.pending_allowed():
            return None
        stats = self.stats
        stats["upstream_rq_pending_active"] += 1
        stats["upstream_rq_pending_total"] += 1
        self.waiters.append(on_done)
        self.open_for_waiters()

        def cancel() -> None:
            try:
                self.waiters.remove(on_done)
            except ValueError:
                return  # already served
            stats["upstream_rq_pending_active"] -= 1
        return cancel

    def next_waiter(self) -> Callable:
        self.stats["upstream_rq_pending_active"] -= 1
        return self.waiters.popleft()

    def needs_connection(self) -> bool:
        """More waiters than the connections being opened will serve (one each, HTTP/1.1)."""
        return len(self.waiters) > self.dialing

    def open_for_waiters(self) -> None:
        """Open connections for the waiters as far as the cluster's connection limit allows;
        a pool with none always gets one (as Envoy: else its waiters could never be served)."""
        while self.needs_connection() and (self.breaker.connection_allowed() or not self.open):
            self.open += 1
            self.dialing += 1
            self.stats["upstream_cx_active"] += 1
            made: list = []

            def factory(made=made):
                made.append(self.new_connection())
                return made[0]
            # A protocol made is not a connection made: asyncio builds it before the connect
            # completes, so only one whose connection_made ran will see connection_lost.
            self.dial(factory, lambda conn, error, made=made: self._dialled(
                conn, error, bool(made) and made[0].transport is not None))

    def new_connection(self) -> asyncio.Protocol:
        return UpstreamConnection(self)

    def _dialled(self, conn, error, had_socket: bool) -> None:
        self.dialing -= 1
        if conn is None:
            if not had_socket:  # else its connection_lost counts it closed
                self._closed()
            if self.waiters:
                self.next_waiter()(None, error)
            return
        self.ready(conn)

    def ready(self, conn: UpstreamConnection) -> None:
        """A connection free for a request: the longest waiter's, else idle."""
        if self.waiters:
            self.active += 1
            self.next_waiter()(conn, None)
            return
        conn.idle_since = time.monotonic()
        conn.transport.resume_reading()  # a slow client may have paused it mid-response
        self.idle.append(conn)

    def connection_lost(self, conn) -> None:
        if conn in self.idle:
            self.idle.remove(conn)
        self._closed()

    def _closed(self) -> None:
        self.open -= 1
        self.stats["upstream_cx_active"] -= 1
        if self.waiters:
            self.open_for_waiters()

    def dial(self, factory: Callable[[], asyncio.Protocol], on_done: Callable) -> Callable[[], None]:
        """A TCP connection to the endpoint, with TLS when the pool's target says so (the server
        checked before `on_done`), within the cluster's connect timeout, counted in the cluster's
        stats; `on_done(protocol, None)` or `on_done(None, error)`. Returns a canceller."""
        self.stats["upstream_cx_total"] += 1
        tls = self.tls
        try:
            wrap = {} if tls is None else {"ssl": tls.context(), "server_hostname": tls.server_hostname}
        except TlsFailure as failure:  # nothing to dial with: fails like a connection that failed
            handle = self.loop.call_soon(on_done, None, failure)
            return handle.cancel
        task = self.loop.create_task(
            self.loop.create_connection(factory, self.endpoint.address, self.endpoint.port, local_addr=self.local_addr,
                                        **wrap)
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
                on_done(None, error if tls is None else tls.failure(error))
                return
            transport, conn = task.result()
            if transport.is_closing():  # reset, or broke the protocol, before this callback ran
                on_done(None, getattr(conn, "failure", None)
                        or ConnectionResetError("upstream closed the connection as it opened"))
                return
            if tls is not None:
                try:
                    tls.check(transport)
                except TlsFailure as failure:
                    transport.abort()
                    on_done(None, failure)
                    return
            on_done(conn, None)

        task.add_done_callback(finished)
        return task.cancel

    def release(self, conn: UpstreamConnection, reusable: bool) -> None:
        """Back to the pool only when the request and the response both ended cleanly by
        their framing and the upstream keeps the connection; any doubt closes it."""
        self.active -= 1
        if (reusable and conn.clean and (not self.max_requests or conn.requests < self.max_requests)
                and not conn.transport.is_closing()
                and (self.max_duration is None or not self.expired(conn, time.monotonic()))):
            self.ready(conn)
        else:
            conn.transport.close()

    def sweep(self, now: float) -> None:
        deadline = now - self.idle_timeout
        keep = []
        for conn in self.idle:
            if conn.idle_since < deadline or (self.max_duration is not None and self.expired(conn, now)):
                conn.transport.close()
            else:
                keep.append(conn)
        self.idle = keep

    def close_idle(self) -> None:
        for conn in self.idle:
            conn.transport.close()
        self.idle = []
