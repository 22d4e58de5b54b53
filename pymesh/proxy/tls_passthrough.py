"""TLS the sidecar does not terminate: read the ClientHello without consuming it, pick the
listener's tls route by SNI and destination (pymesh.routing.sni), and hand the connection, every
byte the client sent included, to a TcpProxy for that route. The TLS session is the client's and
the server's: the proxy never needs the server's certificate.

As Envoy's tls_inspector: a hello over the size bound closes the connection; bytes that are not
TLS, or a hello that does not parse, go on without an SNI (to the listener's fallback). A client
that says nothing is waited for `HELLO_TIMEOUT` on a TLS/HTTPS port (Envoy's listener filter
timeout) but only `OPAQUE_PORT_TIMEOUT` on a TCP port (the capture sniffer's timeout too), so
server-first protocols still work.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from pymesh.http import tls_hello
from pymesh.proxy.tcp import TcpProxy
from pymesh.routing.snapshot import Listener, TcpRoute

HELLO_TIMEOUT = 15.0  # seconds: Envoy's default listener_filters_timeout
OPAQUE_PORT_TIMEOUT = 0.1  # seconds: Istio's historical protocolDetectionTimeout
TLS_PORT_PROTOCOLS = frozenset({"TLS", "HTTPS"})

Fallback = Callable[[], "asyncio.Protocol | None"]  # what takes an unmatched connection (None: close it)


def hand_over(transport: asyncio.Transport, protocol: asyncio.Protocol, data: bytes) -> None:
    """Give `transport` to `protocol` as if it had been accepted there, with the bytes already read."""
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if data:
        protocol.data_received(data)


def server_name_of(hello: tls_hello.ClientHello | None) -> str | None:
    """The SNI to match (lower case), None without one or without a ClientHello."""
    return hello.server_name.lower() if hello is not None and hello.server_name else None


class SniRouter(asyncio.Protocol):
    """The first protocol of a connection on a listener with SNI routes; replaces itself."""

    def __init__(self, runtime, listener: Listener, fallback: Fallback, destination: str | None = None) -> None:
        self.runtime = runtime
        self.listener = listener
        self.fallback = fallback
        self.destination = destination  # the original destination's address (captured), for destinationSubnets
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        if not self.runtime.connection_opened(self):
            transport.abort()  # over the listener's connection limit, counted while inspecting too
            return
        self.timer = self.runtime.loop.call_later(self._hello_timeout(), self._timed_out)

    def _hello_timeout(self) -> float:
        return HELLO_TIMEOUT if self.listener.protocol in TLS_PORT_PROTOCOLS else OPAQUE_PORT_TIMEOUT

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        verdict = tls_hello.inspect(self.buffer)
        if verdict is tls_hello.NEED_MORE:
            return
        if isinstance(verdict, tls_hello.Malformed) and verdict.oversize:
            self._stop_timer()
            self.runtime.telemetry.tls_inspected(None, too_large=True)
            self.transport.abort()  # Envoy: client_hello_too_large closes the connection
            return
        self._route(verdict if isinstance(verdict, tls_hello.ClientHello) else None)

    def _timed_out(self) -> None:
        """No whole ClientHello in time: on without an SNI (a server-first protocol, or not TLS)."""
        self.timer = None
        self._route(None)

    def _route(self, hello: tls_hello.ClientHello | None) -> None:
        self._stop_timer()
        self.runtime.telemetry.tls_inspected(hello, too_large=False)
        self._pass_on(hello)

    def _pass_on(self, hello: tls_hello.ClientHello | None) -> None:
        """The connection to the route its SNI picks, else to the fallback, else closed."""
        sni_routes = self.listener.sni_routes
        route = sni_routes.match(server_name_of(hello), self.destination) if sni_routes is not None else None
        protocol = self._proxy(route) if route is not None else self.fallback()
        if protocol is None:
            self.runtime.telemetry.no_filter_chain_match(self.listener)
            self._refuse(hello)
            return
        info = getattr(protocol, "info", None)
        if info is not None and hello is not None:
            info.sni = hello.server_name
        buffer, self.buffer = self.buffer, b""
        if getattr(protocol, "listener", None) is self.listener:
            self.runtime.replace_connection(self, protocol)  # same slot, same counts
        else:
            self.runtime.connection_closed(self)  # e.g. the passthrough: counted on its own listener
        hand_over(self.transport, protocol, buffer)

    def _refuse(self, hello: tls_hello.ClientHello | None) -> None:
        self.transport.close()

    def _proxy(self, route: TcpRoute) -> asyncio.Protocol:
        return TcpProxy(self.runtime, self.listener, route=route)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def eof_received(self):
        self._stop_timer()  # a client that closes before its hello is complete: nothing to route
        return False

    def connection_lost(self, exc) -> None:
        self._stop_timer()
        self.runtime.connection_closed(self)

    # what the runtime asks of every connection it counts (draining, the deadline sweep)

    def close(self) -> None:
        self._stop_timer()
        self.transport.close()

    def close_if_idle(self) -> None:
        """Draining: a connection still saying hello has nothing in flight."""
        self.close()

    def check_deadlines(self, now: float) -> None:
        """The hello has its own timer."""
