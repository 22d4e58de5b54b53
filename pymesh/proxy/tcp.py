"""L4 proxying: bytes both ways between a downstream connection and one upstream endpoint.

Half-close is passed through (a client's FIN becomes our FIN to the upstream, and the other way
round), each side's write buffer pauses the other side's reading, and a connection idle for the
cluster's `tcp.idleTimeout` (Istio's default: 1 hour) is closed. The cluster's connection limit
(tcp.maxConnections) holds here too: over it, the downstream connection is closed (flag UO).
When the cluster originates TLS to the endpoint (DestinationRule tls, auto mTLS), the upstream
connection is TLS with no HTTP ALPN and the bytes go inside it; a failed handshake or server
identity check closes the downstream connection (flag UF).
"""

from __future__ import annotations

import asyncio

from pymesh.http.message import ConnectionInfo
from pymesh.policy import flags
from pymesh.proxy.authz import authorize_connection
from pymesh.proxy.sockets import learn_from_transport, set_keepalive
from pymesh.proxy.upstream import inbound_source
from pymesh.proxy.upstream_tls import TlsFailure, origin_for
from pymesh.routing.pick import pick_weighted
from pymesh.routing.snapshot import TcpRoute

DEFAULT_TCP_IDLE_TIMEOUT = 3600.0
DEFAULT_CONNECT_TIMEOUT = 10.0


class _Upstream(asyncio.Protocol):
    def __init__(self, proxy: TcpProxy) -> None:
        self.proxy = proxy

    def data_received(self, data: bytes) -> None:
        self.proxy.from_upstream(data)

    def eof_received(self):
        downstream = self.proxy.downstream
        if not downstream.can_write_eof():  # TLS downstream (mTLS): no half-close, end it whole
            downstream.close()  # after what was already written
            return False
        downstream.write_eof()
        self.proxy.half_closed()
        return True

    def connection_lost(self, exc) -> None:
        self.proxy.upstream_lost()

    def pause_writing(self) -> None:
        self.proxy.downstream.pause_reading()

    def resume_writing(self) -> None:
        self.proxy.downstream.resume_reading()


class TcpProxy(asyncio.Protocol):
    """Downstream side. Reading waits until the upstream connection is up."""

    def __init__(self, runtime, listener, target: tuple[str, int] | None = None, route: TcpRoute | None = None,
                 original_destination: tuple[str, int] | None = None) -> None:
        self.runtime = runtime
        self.listener = listener
        self.target = target  # a fixed address (passthrough); else `route` or the listener's tcp route
        self.route = route if route is not None else listener.tcp_route  # a TLS connection's: chosen by SNI
        self.downstream: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.cluster_state = None
        self.endpoint = None
        self.pending: list[bytes] = []
        self.sent = 0  # bytes to the upstream
        self.received = 0  # bytes from the upstream
        self.flags = flags.NONE
        self.start = runtime.loop.time()
        self.last_activity = self.start
        self.idle_timeout = DEFAULT_TCP_IDLE_TIMEOUT
        self.idle_timer = None
        self.half_closes = 0
        self.closed = False
        self.info = ConnectionInfo(local_port=listener.port, original_destination=original_destination)
        self.recorder = None
        self.counted = None  # the ClusterState whose open connections count this one
        self.tls = None  # the TlsTarget the upstream connection is made with, if any

    def connection_made(self, transport) -> None:
        self.downstream = transport
        learn_from_transport(self.info, transport)
        address = self._choose_upstream()
        if not self.runtime.tcp_opened(self):
            self.closed = True
            transport.abort()  # over the listener's connection limit
            return
        guarded = self.listener.direction == "inbound" or self.runtime.gateway
        authorizer = self.runtime.snapshot.authz if guarded else None
        if authorizer is not None and not authorize_connection(authorizer, self.runtime, self.info):
            self.endpoint = self.target = None  # never connected: the access log names no upstream
            transport.close()  # Envoy's network RBAC filter: the connection is closed, nothing sent
            return
        if address is None:
            self.flags = flags.UH
            transport.close()
            return
        state = self.cluster_state
        if state is not None:
            if not state.breaker.connection_allowed():
                self.flags = flags.UO
                transport.close()
                return
            self.counted = state
            state.stats["upstream_cx_total"] += 1  # Envoy's tcp_proxy counts its upstream connections too
            state.stats["upstream_cx_active"] += 1
        transport.pause_reading()
        connect_timeout = DEFAULT_CONNECT_TIMEOUT
        if state is not None:
            pool = state.cluster.connection_pool
            connect_timeout = pool.connect_timeout or DEFAULT_CONNECT_TIMEOUT
            # tcp.idleTimeout "0s" disables the idle timeout (Istio's DestinationRule reference)
            self.idle_timeout = DEFAULT_TCP_IDLE_TIMEOUT if pool.tcp_idle_timeout is None else pool.tcp_idle_timeout
        try:
            wrap = self._tls_wrap(state)
        except TlsFailure:
            return self._connect_failed()
        loop = self.runtime.loop
        local_addr = inbound_source(address[0]) if self.listener.direction == "inbound" else None
        task = loop.create_task(
            loop.create_connection(lambda: _Upstream(self), address[0], address[1], local_addr=local_addr, **wrap)
        )
        timer = loop.call_later(connect_timeout, task.cancel)
        task.add_done_callback(lambda task: self._connected(task, timer))

    def _choose_upstream(self) -> tuple[str, int] | None:
        if self.target is not None:
            return self.target
        route = self.route
        if route is None or not route.clusters:
            return None
        weighted = route.clusters[0] if len(route.clusters) == 1 else pick_weighted(route.clusters, route.total_weight, self.runtime.random())
        state = self.runtime.cluster_states.get(weighted.cluster)
        if state is None:
            return None
        endpoint = state.balancer.pick(state.connection_key(self.info))
        if endpoint is None:
            return None
        self.cluster_state, self.endpoint = state, endpoint
        return endpoint.address, endpoint.port

    def _tls_wrap(self, state) -> dict:
        """create_connection's TLS arguments for the chosen endpoint ({} for plaintext)."""
        if state is None or not state.originates_tls:
            return {}
        origin = origin_for(state.tls, state.auto_tls, self.endpoint)
        if origin is None:
            return {}
        self.tls = origin.target("", False, False)
        return {"ssl": self.tls.context(), "server_hostname": self.tls.server_hostname}

    def _connected(self, task: asyncio.Task, timer) -> None:
        timer.cancel()
        if self.closed:
            if not task.cancelled() and task.exception() is None:
                task.result()[0].close()
            return
        if task.cancelled() or task.exception() is not None:
            if self.tls is not None and not task.cancelled():
                self.tls.failure(task.exception())  # counted in the cluster's ssl.* stats
            return self._connect_failed()
        if self.tls is not None:
            try:
                self.tls.check(task.result()[0])
            except TlsFailure:
                task.result()[0].abort()
                return self._connect_failed()
        self.upstream = task.result()[0]
        if self.counted is not None and self.counted.cluster.connection_pool.tcp_keepalive is not None:
            set_keepalive(self.upstream, self.counted.cluster.connection_pool.tcp_keepalive)
        if self.pending:
            self.upstream.write(b"".join(self.pending))
            self.pending = []
        self.downstream.resume_reading()
        if self.idle_timeout:
            self.idle_timer = self.runtime.loop.call_later(self.idle_timeout, self._check_idle)

    def _connect_failed(self) -> None:
        self.flags = flags.UF
        self._uncount()
        self.downstream.close()

    # downstream callbacks -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.sent += len(data)
        self.last_activity = self.runtime.loop.time()
        if self.upstream is None:
            self.pending.append(data)
        else:
            self.upstream.write(data)

    def eof_received(self):
        if self.upstream is not None:
            self.upstream.write_eof()
            self.half_closed()
        return not self.info.tls  # TLS (asyncio's, uvloop's) closes on close_notify: no half-close

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.upstream is not None:
            self.upstream.close()
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.runtime.tcp_closed(self)

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()

    # upstream events ----------------------------------------------------------------------------

    def from_upstream(self, data: bytes) -> None:
        self.received += len(data)
        self.last_activity = self.runtime.loop.time()
        self.downstream.write(data)

    def half_closed(self) -> None:
        """After both directions saw FIN the connection is done."""
        self.half_closes += 1
        if self.half_closes >= 2:
            self.downstream.close()

    def upstream_lost(self) -> None:
        self._uncount()
        if not self.closed:
            self.downstream.close()

    def _uncount(self) -> None:
        if self.counted is not None:
            self.counted.stats["upstream_cx_active"] -= 1
            self.counted = None

    def close(self) -> None:
        """The drain deadline passed: close whatever is still open."""
        self.downstream.close()

    def close_if_idle(self) -> None:
        """Draining: TCP connections are not interrupted; they end on their own or at the deadline."""

    def check_deadlines(self, now: float) -> None:
        """TCP keeps its own idle timer (the cluster's tcp.idleTimeout)."""

    def _check_idle(self) -> None:
        if self.closed:
            return
        idle_for = self.runtime.loop.time() - self.last_activity
        if idle_for >= self.idle_timeout:
            self.downstream.close()
        else:
            self.idle_timer = self.runtime.loop.call_later(self.idle_timeout - idle_for, self._check_idle)
