"""Connections captured by iptables: recover where they were going, sniff what they speak, and
hand them to the HTTP or TCP handler for that destination.

Outbound (15001, Istio's virtualOutbound): the original destination's port selects the compiled
outbound listener for that port; a port with no service goes straight through to where it was
going (Istio's ALLOW_ANY PassthroughCluster, or the Sidecar's egressProxy when it names one) or
is refused under REGISTRY_ONLY (BlackHoleCluster).
Inbound (15006, virtualInbound): the app on the original port, over 127.0.0.1 unless an inbound
address is configured; a Sidecar ingress entry for that port decides protocol and endpoint.

A connection's first bytes choose HTTP/1.x or plain TCP. On a port with SNI routes (TLS and HTTPS
ports, TCP ports with VirtualService tls routes) the ClientHello picks the route
(pymesh.proxy.tls_passthrough); elsewhere outbound TLS is passed through as TCP. A client that
sends nothing within `SNIFF_TIMEOUT` is treated as TCP, so server-first protocols work. Inbound,
the port's PeerAuthentication mode comes first (pymesh.proxy.inbound_tls): under STRICT or
PERMISSIVE an mTLS gate terminates TLS, and the decrypted stream is sniffed the same way unless
ALPN already said HTTP/2 or HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct

from pymesh.proxy.http1 import DownstreamH1
from pymesh.proxy.inbound_tls import DISABLE, MtlsGate, TlsFacts, codec_for, secured_handler
from pymesh.proxy.tcp import TcpProxy
from pymesh.proxy.tls_passthrough import OPAQUE_PORT_TIMEOUT, SniRouter, hand_over
from pymesh.routing.snapshot import Listener

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h; IP6T_SO_ORIGINAL_DST has the same value
SNIFF_TIMEOUT = OPAQUE_PORT_TIMEOUT  # Istio's historical protocolDetectionTimeout, as for TLS on TCP ports
SNIFF_BYTES = 16
# Request-line starts that mean HTTP; "PRI " is HTTP/2's connection preface (h2c with prior
# knowledge), which the HTTP/1.1 handler hands over to the HTTP/2 one.
HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"DELETE ", b"HEAD ", b"OPTIONS ", b"PATCH ", b"TRACE ", b"CONNECT ",
                b"PRI ")
OUTBOUND, INBOUND = "virtualOutbound", "virtualInbound"


def original_destination(sock: socket.socket, tproxy: bool = False) -> tuple[str, int]:
    """Where a captured connection was going: SO_ORIGINAL_DST after REDIRECT, the socket's own
    address under TPROXY. An IPv4 connection on a dual-stack socket (an IPv4-mapped address) is
    asked with the IPv4 option, and answered as plain IPv4."""
    local = sock.getsockname()
    if tproxy:
        return _unmap(local[0]), local[1]
    ipv6 = sock.family == socket.AF_INET6 and not ipaddress.IPv6Address(local[0].split("%")[0]).ipv4_mapped
    if ipv6:
        raw = sock.getsockopt(socket.SOL_IPV6, SO_ORIGINAL_DST, 28)
        port = struct.unpack_from("!H", raw, 2)[0]
        return str(ipaddress.IPv6Address(raw[8:24])), port
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port = struct.unpack_from("!H", raw, 2)[0]
    return socket.inet_ntoa(raw[4:8]), port


def _unmap(address: str) -> str:
    if ":" in address:
        mapped = ipaddress.IPv6Address(address.split("%")[0]).ipv4_mapped
        if mapped is not None:
            return str(mapped)
    return address


def looks_like_http1(data: bytes) -> bool | None:
    """True/False once the first bytes decide; None while they could still be a method."""
    for method in HTTP_METHODS:
        if data.startswith(method):
            return True
        if method.startswith(data):
            return None
    return False


class CaptureSettings:
    """How this proxy's capture listeners behave (from the command line)."""

    def __init__(self, outbound_port: int = 15001, inbound_port: int = 15006, tproxy: bool = False,
                 inbound_address: str = "127.0.0.1") -> None:
        self.outbound_port = outbound_port
        self.inbound_port = inbound_port
        self.tproxy = tproxy
        self.inbound_address = inbound_address

    def listeners(self) -> tuple[Listener, ...]:
        return (
            Listener(OUTBOUND, "outbound", "0.0.0.0", self.outbound_port, "CAPTURE"),
            Listener(INBOUND, "inbound", "0.0.0.0", self.inbound_port, "CAPTURE"),
        )


class Sniffer(asyncio.Protocol):
    """The first protocol of a captured connection; replaces itself once it knows what follows."""

    def __init__(self, runtime, capture: CaptureSettings, direction: str, gated: bool = False,
                 tls: TlsFacts | None = None, silent: bool = False) -> None:
        self.runtime = runtime
        self.capture = capture
        self.direction = direction
        self.gated = gated  # inbound: the port's mTLS gate already let this connection through
        self.tls = tls  # inbound over mTLS: what the handshake established (the handler gets it)
        self.silent = silent  # the gate's sniff window passed without a byte: no second wait
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.destination: tuple[str, int] | None = None
        self.timer = None
        self.listener: Listener | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        try:
            self.destination = original_destination(transport.get_extra_info("socket"), self.capture.tproxy)
        except OSError:
            transport.close()  # not a redirected connection (someone dialled 15001 directly)
            return
        if self._is_loop():
            transport.close()
            return
        if self.direction == "outbound":
            self._route_outbound()
        else:
            self._route_inbound()

    def _is_loop(self) -> bool:
        """A connection whose original destination is a capture port would loop forever."""
        return self.destination[1] in (self.capture.outbound_port, self.capture.inbound_port) and (
            self.destination[0] in ("127.0.0.1", "::1", "0.0.0.0")
        )

    # deciding ---------------------------------------------------------------------------------

    def _route_outbound(self) -> None:
        snapshot = self.runtime.snapshot
        listener = snapshot.captured_outbound.get(self.destination[1])
        if listener is None:
            if snapshot.outbound_traffic_policy == "REGISTRY_ONLY":
                self.transport.close()  # Istio's BlackHoleCluster
                return
            return self._become(self._passthrough())
        self.listener = listener
        if listener.sni_routes is not None:
            return self._become(SniRouter(self.runtime, listener, self._unmatched_tls, destination=self.destination[0]))
        if listener.route_table is None:
            if listener.tcp_route is None:
                return self._become(self._passthrough())
            return self._become(TcpProxy(self.runtime, listener, original_destination=self.destination))
        self._sniff()

    def _passthrough(self) -> TcpProxy:
        """Istio's PassthroughCluster: on to where the connection was going; to the Sidecar's
        egressProxy instead when it has one."""
        egress_proxy = self.runtime.snapshot.egress_proxy
        if egress_proxy is not None:
            return TcpProxy(self.runtime, egress_proxy.listener, original_destination=self.destination)
        return TcpProxy(self.runtime, self.runtime.passthrough_listener, target=self.destination)

    def _unmatched_tls(self) -> TcpProxy | None:
        """A connection no SNI route takes: the port's tcp route, else Istio's fallthrough chain
        (PassthroughCluster, or BlackHoleCluster under REGISTRY_ONLY)."""
        if self.listener.tcp_route is not None:
            return TcpProxy(self.runtime, self.listener)
        if self.runtime.snapshot.outbound_traffic_policy == "REGISTRY_ONLY":
            return None
        return self._passthrough()

    def _route_inbound(self) -> None:
        port = self.destination[1]
        self.listener = self.runtime.inbound_listener(port, self.capture.inbound_address)
        if not self.gated:
            mode = self.runtime.snapshot.peer_authn.mode_for(port)  # the app's (target) port
            if mode != DISABLE:
                return self._become(MtlsGate(self.runtime, self.listener, mode,
                                             lambda silent: self._next(gated=True, silent=silent),
                                             lambda facts: self._next(gated=True, tls=facts)))
        if self.listener.route_table is None:
            return self._become(TcpProxy(self.runtime, self.listener, target=self._inbound_target(),
                                         original_destination=self.destination))
        if self.tls is not None and codec_for(self.tls.alpn) is not None:  # ALPN said which HTTP
            return self._become(secured_handler(self.runtime, self.listener, self.tls, self.destination))
        if self.silent:
            return self._decide(False)  # server-first: the client already had its sniff window
        self._sniff()

    def _next(self, **state) -> Sniffer:
        """This connection's next sniffer, past the mTLS gate."""
        return Sniffer(self.runtime, self.capture, self.direction, **state)

    def _inbound_target(self) -> tuple[str, int]:
        cluster = self.runtime.cluster_states[self.listener.default_cluster].cluster
        endpoint = cluster.endpoints[0]
        return endpoint.address, endpoint.port

    def _sniff(self) -> None:
        self.timer = self.runtime.loop.call_later(SNIFF_TIMEOUT, self._decide, False)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        verdict = looks_like_http1(self.buffer[:SNIFF_BYTES])
        if verdict is not None or len(self.buffer) >= SNIFF_BYTES:
            self._decide(bool(verdict))

    def _decide(self, http: bool) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if http:
            protocol = DownstreamH1(self.runtime, self.listener, original_destination=self.destination)
        elif self.direction == "inbound":
            protocol = TcpProxy(self.runtime, self.listener, target=self._inbound_target(),
                                original_destination=self.destination)
        elif self.listener.tcp_route is not None:  # a sniffed port (protocol unset) that is not HTTP
            protocol = TcpProxy(self.runtime, self.listener, original_destination=self.destination)
        else:
            protocol = self._passthrough()
        self._become(protocol)

    def _become(self, protocol: asyncio.Protocol) -> None:
        if self.tls is not None and hasattr(protocol, "info") and not protocol.info.tls:
            self.tls.fill(protocol.info)
        buffer, self.buffer = self.buffer, b""
        hand_over(self.transport, protocol, buffer)

    def eof_received(self):
        if self.timer is not None:  # the client said nothing and closed: nothing to proxy
            self.timer.cancel()
        return False

    def connection_lost(self, exc) -> None:
        if self.timer is not None:
            self.timer.cancel()
