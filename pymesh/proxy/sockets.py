"""Socket-level acts the asyncio transport API does not offer."""

from __future__ import annotations

import socket
import struct

_LINGER_ZERO = struct.pack("ii", 1, 0)


def reset(transport) -> None:
    """Close with a TCP RST: SO_LINGER 0 makes the kernel discard unsent data and reset, so the
    peer sees an error instead of an orderly end (a response cut short must not look complete)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        except OSError:
            pass  # already gone: abort() below is all that is left to do
    transport.abort()


def learn_from_transport(info, transport) -> None:
    """Fill a `ConnectionInfo` with the peer's and the local address from an accepted transport. (The TLS
    facts come from the handshake of the TLS listener that accepted it.)"""
    peer = transport.get_extra_info("peername")
    if peer:
        info.source_ip, info.source_port = peer[0], peer[1]
    local = transport.get_extra_info("sockname")
    if local:
        info.local_ip = local[0]


def set_keepalive(transport, keepalive) -> None:
    """Istio's tcpKeepalive on a connection's socket: SO_KEEPALIVE, and the probe count, idle
    time and interval it sets (the kernel's defaults for the ones it leaves unset)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in ((socket.TCP_KEEPCNT, keepalive.probes), (socket.TCP_KEEPIDLE, keepalive.time),
                          (socket.TCP_KEEPINTVL, keepalive.interval)):
        if value:
            sock.setsockopt(socket.IPPROTO_TCP, option, max(1, int(value)))
