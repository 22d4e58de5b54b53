"""TLS the sidecar passes through, routed by SNI: real TLS servers behind one port, curl,
openssl s_client and Python clients that verify the server through the proxy (which holds no
key or certificate), VirtualService tls routes with weights, and the no-match fallbacks."""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections import Counter
from concurrent import futures

import grpc
import pytest

from grpc_echo import SERVICE, EchoService
from proxy_harness import (LOCALHOST, SockReader, TcpServer, endpoint, free_port, samples, service_entry, sidecar, total,
                           virtual_service, wait_until)
from throwaway_ca import ThrowawayCA
from tls_peers import https_get

pytestmark = pytest.mark.timeout(90)

A, B, W = "a.example.com", "b.example.com", "w.example.com"


@pytest.fixture
def tls_pair(tmp_path, upstreams):
    """Two TLS servers with their own certificates (both also valid for w.example.com, the
    name weighted routes use) and the CA that signed them."""
    ca = ThrowawayCA(tmp_path / "pki")
    servers = {name: upstreams.tls(name.split(".")[0], ca.issue(name.split(".")[0], name, W)) for name in (A, B)}
    return ca, servers


def https_services(port: int, servers: dict, protocol: str = "HTTPS") -> list[dict]:
    return [service_entry(port, [endpoint(server, port_name=protocol.lower())], host=host, protocol=protocol,
                          name=host.split(".")[0])
            for host, server in servers.items()]


def curl_https(port: int, name: str, ca, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", str(ca.ca_path),
                           "--resolve", f"{name}:{port}:{LOCALHOST}", *args, f"https://{name}:{port}/"],
                          capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize("protocol", ["HTTPS", "TLS"])
def test_curl_reaches_each_server_by_its_name_and_verifies_it(tls_pair, proxies, protocol):
    ca, servers = tls_pair
    port = free_port()
    proxies(https_services(port, servers, protocol) + [sidecar((port, protocol))])
    for name, server in servers.items():
        done = curl_https(port, name, ca)
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"{server.name} sni={name}\n"


def test_openssl_s_client_picks_each_server_with_servername(tls_pair, proxies):
    ca, servers = tls_pair
    port = free_port()
    proxies(https_services(port, servers) + [sidecar((port, "HTTPS"))])
    for name in servers:
        done = subprocess.run(["openssl", "s_client", "-connect", f"{LOCALHOST}:{port}", "-servername", name,
                               "-verify_hostname", name, "-verify_return_error", "-CAfile", str(ca.ca_path),
                               "-quiet"],  # -quiet: reads until the server closes
                              input=f"GET / HTTP/1.1\r\nhost: {name}\r\n\r\n", capture_output=True, text=True,
                              timeout=20)
        assert done.returncode == 0, done.stderr
        assert f"sni={name}" in done.stdout and "verify error" not in done.stderr


def test_http2_alpn_passes_through_untouched(tls_pair, proxies):
    """The proxy does not take part in ALPN: the server (http/1.1 only) chooses."""
    ca, servers = tls_pair
    port = free_port()
    proxies(https_services(port, servers) + [sidecar((port, "HTTPS"))])
    done = curl_https(port, A, ca, "--http2", "-w", "%{http_version}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("1.1")


def test_unknown_name_no_name_and_plaintext_are_closed_on_a_dedicated_https_listener(tls_pair, proxies):
    ca, servers = tls_pair
    port = free_port()
    proxy = proxies(https_services(port, servers) + [sidecar((port, "HTTPS"))])
    assert curl_https(port, "c.example.com", ca).returncode != 0
    with pytest.raises((ssl.SSLError, OSError)):
        https_get(port, None, ca.ca_path)
    with socket.create_connection((LOCALHOST, port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: a.example.com\r\n\r\n")
        assert SockReader(sock).read_to_eof() == b""
    assert sum(s.accepted for s in servers.values()) == 0  # closed by the proxy: no filter chain matches
    wait_until(lambda: proxy.stat("no_filter_chain_match") == 3, what="3 connections without a filter chain")
    stats = proxy.stats()
    assert (stats["tls_inspector.tls_found"], stats["tls_inspector.tls_not_found"]) == (2, 1)
    assert (stats["tls_inspector.sni_found"], stats["tls_inspector.sni_not_found"]) == (1, 1)
    assert proxy.running()


def tls_vs(host: str, tls: list[dict], tcp: list[dict] | None = None) -> dict:
    resource = virtual_service(tcp=tcp, host=host, name="sni")
    resource["spec"]["tls"] = tls
    return resource


def test_tls_route_weights_split_connections(tls_pair, proxies):
    ca, servers = tls_pair
    port = free_port()
    route = {"match": [{"port": port, "sniHosts": [W]}],
             "route": [{"destination": {"host": A}, "weight": 50}, {"destination": {"host": B}, "weight": 50}]}
    proxies(https_services(port, servers) + [tls_vs("*.example.com", [route]), sidecar((port, "HTTPS"))])
    seen = Counter(https_get(port, W, ca.ca_path).split()[0] for _ in range(40))
    assert set(seen) == {"a", "b"}, seen  # all 40 to one side at 50/50: p = 2^-39


def test_tls_route_by_wildcard_sni_host_and_exact_before_wildcard(tls_pair, proxies):
    ca, servers = tls_pair
    port = free_port()
    routes = [
        {"match": [{"sniHosts": ["*.example.com"]}], "route": [{"destination": {"host": A}}]},
        {"match": [{"sniHosts": [W]}], "route": [{"destination": {"host": B}}]},
    ]
    proxies(https_services(port, servers) + [tls_vs("*.example.com", routes), sidecar((port, "HTTPS"))])
    assert https_get(port, W, ca.ca_path).startswith("b ")  # exact, though the wildcard route is first
    assert https_get(port, A, ca.ca_path).startswith("a ")
    # the wildcard covers b too, so the VS sends it to server a, whose certificate the client refuses
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(port, B, ca.ca_path)
    servers[A].wait(lambda: B in servers[A].sni, what="b.example.com's hello at server a")


def test_tcp_port_with_tls_routes_falls_back_to_its_tcp_route(tls_pair, proxies, upstreams):
    """An opaque port: a ClientHello whose SNI a tls route names goes there; other TLS, and
    plaintext (after the short detection timeout), take the port's tcp route."""
    ca, servers = tls_pair
    echo = upstreams.tcp("server-first")  # a banner, then echo
    port = free_port()
    resources = [
        service_entry(port, [endpoint(servers[A], port_name="tcp")], host=A, protocol="TCP", name="a"),
        service_entry(port, [endpoint(servers[B], port_name="tcp")], host=B, protocol="TCP", name="b"),
        service_entry(port, [endpoint(echo, port_name="tcp")], host="echo.example.com", protocol="TCP", name="echo"),
        tls_vs("*.example.com", [{"match": [{"port": port, "sniHosts": [A]}], "route": [{"destination": {"host": A}}]}],
               tcp=[{"route": [{"destination": {"host": "echo.example.com"}}]}]),
        sidecar((port, "TCP")),
    ]
    proxies(resources)
    assert https_get(port, A, ca.ca_path) == f"a sni={A}\n"
    with socket.create_connection((LOCALHOST, port), timeout=10) as sock:
        sock.sendall(b"plain bytes\n")
        reader = SockReader(sock)
        assert reader.read_exact(len(TcpServer.BANNER) + 12) == TcpServer.BANNER + b"plain bytes\n"
    with socket.create_connection((LOCALHOST, port), timeout=10) as sock:  # a client that waits for the server
        assert SockReader(sock).read_exact(len(TcpServer.BANNER)) == TcpServer.BANNER


def test_oversize_client_hello_is_closed_and_the_proxy_stays_up(tls_pair, proxies):
    ca, servers = tls_pair
    port = free_port()
    proxy = proxies(https_services(port, servers) + [sidecar((port, "HTTPS"))])
    hello_header = b"\x16\x03\x01\x40\x00" + b"\x01\x00\x50\x00"  # a ClientHello claiming 20 KiB
    with socket.create_connection((LOCALHOST, port), timeout=10) as sock:
        sock.sendall(hello_header + b"\x00" * 100)
        assert SockReader(sock).read_to_eof() == b""
    assert sum(s.accepted for s in servers.values()) == 0
    wait_until(lambda: proxy.stat("client_hello_too_large") == 1, what="tls_inspector.client_hello_too_large")
    assert https_get(port, A, ca.ca_path).startswith("a ")
    assert proxy.running()


def test_metrics_and_access_log_for_passed_through_tls(tls_pair, proxies):
    ca, servers = tls_pair
    port = free_port()
    proxy = proxies(https_services(port, servers) + [sidecar((port, "HTTPS"))])
    assert https_get(port, B, ca.ca_path).startswith("b ")
    entry = proxy.wait_log(lambda e: e.get("requested_server_name") == B)
    assert entry["upstream_cluster"] == f"outbound|{port}||{B}"
    assert entry["upstream_host"] == f"{LOCALHOST}:{servers[B].port}"
    assert entry["bytes_received"] > 0 and entry["bytes_sent"] > 0

    def opened():
        return total(samples(proxy.prometheus(), "istio_tcp_connections_opened_total"), destination_service=B)

    wait_until(lambda: opened() >= 1, what="istio_tcp_connections_opened_total for b")
    wait_until(lambda: proxy.stat("downstream_cx_active") == 0, what="the connection closed")
    assert proxy.stat("downstream_cx_total") == 1  # counted once, though inspected first


def test_dns_service_entry_as_in_istios_egress_task(tmp_path, upstreams, proxies):
    """Istio's "Accessing External Services" ServiceEntry (protocol HTTPS, resolution DNS, no
    endpoints): the proxy resolves the host itself and passes the TLS through; curl verifies
    the server. "localhost" stands for the external name (no resolver change needed)."""
    ca = ThrowawayCA(tmp_path / "pki")
    server = upstreams.tls("external", ca.issue("external", "localhost"))
    port = free_port()
    entry = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
             "metadata": {"name": "external", "namespace": "default"},
             "spec": {"hosts": ["localhost"], "location": "MESH_EXTERNAL", "resolution": "DNS",
                      "ports": [{"number": port, "name": "https", "protocol": "HTTPS", "targetPort": server.port}]}}
    proxies([entry, sidecar((port, "HTTPS"))])
    done = curl_https(port, "localhost", ca)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "external sni=localhost\n"


def test_connections_saying_hello_count_against_the_listener_limit(tls_pair, proxies):
    """A client that opens connections and never finishes its hello holds a counted slot each,
    so --max-connections bounds them; a slot is given back when the connection goes."""
    ca, servers = tls_pair
    port = free_port()
    proxy = proxies(https_services(port, servers) + [sidecar((port, "HTTPS"))], extra_args=["--max-connections", "2"])
    held = [socket.create_connection((LOCALHOST, port), timeout=10) for _ in range(2)]
    try:
        for sock in held:
            sock.sendall(b"\x16\x03\x01")  # the start of a record, then silence
        wait_until(lambda: proxy.stat("downstream_cx_active") == 2, what="two connections held")
        with socket.create_connection((LOCALHOST, port), timeout=10) as third:
            assert SockReader(third).read_to_eof() == b""  # refused: over the limit
        wait_until(lambda: proxy.stat("downstream_cx_overflow") == 1, what="the overflow counted")
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: proxy.stat("downstream_cx_active") == 0, what="slots given back")
    assert https_get(port, A, ca.ca_path).startswith("a ")


def test_grpc_over_tls_passes_through_with_its_alpn(tmp_path, proxies):
    """A real gRPC client and server (grpcio, HTTP/2 negotiated by ALPN inside the TLS the proxy
    does not open), the client verifying the server for the name it sent as SNI."""
    ca = ThrowawayCA(tmp_path / "pki")
    cert = ca.issue("grpc", "grpc.example.com")
    service = EchoService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((service.handler(),))
    credentials = grpc.ssl_server_credentials([(cert.key.read_bytes(), cert.cert.read_bytes())])
    upstream_port = server.add_secure_port(f"{LOCALHOST}:0", credentials)
    server.start()
    try:
        port = free_port()
        entry = service_entry(port, [{"address": LOCALHOST, "ports": {"tls": upstream_port}}], host="grpc.example.com",
                              protocol="TLS", name="grpc")
        proxies([entry, sidecar((port, "TLS"))])
        channel_credentials = grpc.ssl_channel_credentials(root_certificates=ca.ca_path.read_bytes())
        options = [("grpc.ssl_target_name_override", "grpc.example.com")]
        with grpc.secure_channel(f"{LOCALHOST}:{port}", channel_credentials, options=options) as channel:
            assert channel.unary_unary(f"/{SERVICE}/Unary")(b"hi", timeout=10) == b"echo:hi"
            bidi = channel.stream_stream(f"/{SERVICE}/Bidi")(iter([b"x", b"y"]), timeout=10)
            assert list(bidi) == [b"X", b"Y"]
    finally:
        server.stop(grace=None)
        service.released.set()


def test_a_reload_moves_new_connections_and_keeps_open_ones(tls_pair, proxies):
    """SNI routes are part of the snapshot: after a reload new connections take the new route,
    while a TLS session opened before it carries on to its server."""
    ca, servers = tls_pair
    port = free_port()

    def config(target: str) -> list[dict]:
        route = {"match": [{"sniHosts": [W]}], "route": [{"destination": {"host": target}}]}
        return https_services(port, servers) + [tls_vs("*.example.com", [route]), sidecar((port, "HTTPS"))]

    proxy = proxies(config(A))
    context = ssl.create_default_context(cafile=str(ca.ca_path))
    with socket.create_connection((LOCALHOST, port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=W) as held:  # open, its request not sent yet
        proxy.write_config(config(B))
        wait_until(lambda: https_get(port, W, ca.ca_path).startswith("b "), what="the new route for new connections")
        held.sendall(f"GET / HTTP/1.1\r\nhost: {W}\r\n\r\n".encode())
        reader = SockReader(held)
        assert reader.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 200")
        assert reader.read_exact(len(f"a sni={W}\n")) == f"a sni={W}\n".encode()  # still server a
