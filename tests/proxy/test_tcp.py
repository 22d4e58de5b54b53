"""L4 proxying: a Sidecar egress port with protocol TCP in front of a ServiceEntry TCP port."""

from __future__ import annotations

import contextlib
import socket

import pytest

from proxy_harness import (LOCALHOST, SockReader, TcpServer, endpoint, free_port, service_entry, sidecar, tcp_mesh,
                           wait_until)

pytestmark = pytest.mark.timeout(60)


def connect(port: int) -> socket.socket:
    return socket.create_connection((LOCALHOST, port), timeout=10)


def test_bytes_both_ways(upstreams, proxies):
    server = upstreams.tcp("echo")
    port = free_port()
    proxies(tcp_mesh(port, server))
    payload = bytes(range(256)) * 4096  # 1 MiB
    with connect(port) as sock:
        reader = SockReader(sock)
        for piece in (b"ping\r\n", payload):
            sock.sendall(piece)
            assert reader.read_exact(len(piece)) == piece
    assert bytes(server.received) == b"ping\r\n" + payload


def test_half_close_still_receives_the_reply(upstreams, proxies):
    server = upstreams.tcp("reply-on-eof")
    port = free_port()
    proxies(tcp_mesh(port, server))
    with connect(port) as sock:
        sock.sendall(b"x" * 1000)
        sock.shutdown(socket.SHUT_WR)
        assert SockReader(sock).read_to_eof() == b"got 1000 bytes"


@contextlib.contextmanager
def banner_connection(upstreams, proxies):
    """A client connection through the proxy to a server-first server, its banner already read:
    (server, socket, reader)."""
    server = upstreams.tcp("server-first")
    port = free_port()
    proxies(tcp_mesh(port, server))
    with connect(port) as sock:
        reader = SockReader(sock)
        assert reader.read_exact(len(TcpServer.BANNER)) == TcpServer.BANNER
        yield server, sock, reader


def test_server_speaks_first(upstreams, proxies):
    with banner_connection(upstreams, proxies) as (_, sock, reader):
        sock.sendall(b"HELO me\r\n")
        assert reader.read_exact(9) == b"HELO me\r\n"


def test_idle_timeout_closes_the_connection(upstreams, proxies):
    server = upstreams.tcp("echo")
    port = free_port()
    proxies(tcp_mesh(port, server, {"connectionPool": {"tcp": {"idleTimeout": "0.5s"}}}))
    with connect(port) as sock:
        sock.sendall(b"hi")
        reader = SockReader(sock)
        assert reader.read_exact(2) == b"hi"
        sock.settimeout(10)  # bounded: the proxy must close it long before this
        assert reader.read_to_eof() == b""
    server.wait(lambda: server.peer_closed, what="the proxy to close the idle upstream connection")


def test_tcp_access_log_and_metrics(upstreams, proxies):
    server = upstreams.tcp("reply-on-eof")
    port = free_port()
    proxy = proxies(tcp_mesh(port, server))
    with connect(port) as sock:
        sock.sendall(b"y" * 123)
        sock.shutdown(socket.SHUT_WR)
        assert SockReader(sock).read_to_eof() == b"got 123 bytes"
    entry = proxy.wait_log(lambda e: e.get("bytes_received") == 123)
    assert entry["bytes_sent"] == len(b"got 123 bytes")
    assert entry["upstream_host"] == f"{LOCALHOST}:{server.port}"
    proxy.wait_metric(lambda s: sum(x.value for x in s) == 1, "istio_tcp_connections_closed_total")
    proxy.wait_metric(lambda s: sum(x.value for x in s) == 123, "istio_tcp_received_bytes_total")


def test_connect_failure_closes_the_client_connection_uf(proxies):
    port, dead = free_port(), free_port()
    proxy = proxies([service_entry(port, [endpoint(dead, port_name="tcp")], protocol="TCP"), sidecar((port, "TCP"))])
    with connect(port) as sock:
        sock.sendall(b"anyone there?")
        assert SockReader(sock).read_to_eof() == b""
    entry = proxy.wait_log(lambda e: e.get("upstream_host") == f"{LOCALHOST}:{dead}")
    assert entry["response_flags"] == "UF"


def test_upstream_close_closes_the_client_connection(upstreams, proxies):
    with banner_connection(upstreams, proxies) as (server, sock, reader):
        server.stop()  # shuts the accepted connection down
        sock.settimeout(10)
        try:
            assert reader.read_to_eof() == b""
        except ConnectionResetError:
            pass


def test_max_connections_closes_the_connection_over_the_limit_uo(upstreams, proxies):
    """tcp.maxConnections 1: while one connection is proxied, a second is closed at once (UO);
    once the first ends, a new one is proxied again."""
    server = upstreams.tcp("echo")
    port = free_port()
    proxy = proxies(tcp_mesh(port, server, traffic_policy={"connectionPool": {"tcp": {"maxConnections": 1}}}))
    with connect(port) as first:
        first.sendall(b"one")
        assert SockReader(first).read_exact(3) == b"one"  # proxied: the slot is taken
        with connect(port) as second, contextlib.suppress(ConnectionResetError):  # closed or reset: refused
            assert SockReader(second).read_to_eof() == b""
        assert proxy.wait_log(lambda e: e.get("response_flags") == "UO")["bytes_received"] == 0
        assert proxy.stat("upstream_cx_overflow") == 1
    wait_until(lambda: proxy.stat("upstream_cx_active") == 0, what="the first connection to be closed at the proxy")
    with connect(port) as third:
        third.sendall(b"three")
        assert SockReader(third).read_exact(5) == b"three"
