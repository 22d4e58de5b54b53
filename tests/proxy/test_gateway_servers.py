"""`pymesh gateway` with each kind of Gateway server, real clients as peers: httpsRedirect with
curl, a TCP server, TLS passthrough by SNI to two TLS backends (curl verifying each backend's
certificate through the gateway, which holds no key), AUTO_PASSTHROUGH by cluster-name SNI, and
the gateway's telemetry (reported as the source, as Istio's gateways)."""

from __future__ import annotations

import socket
import subprocess

import pytest

from ports import free_ports
from proxy_harness import LOCALHOST, Proxy, curl, endpoint, gateway_service, samples, service_entry
from throwaway_ca import ThrowawayCA

pytestmark = pytest.mark.timeout(90)

A, B = "a.example.com", "b.example.com"


def gateway_resource(*servers: dict, name: str = "edge", namespace: str = "istio-system") -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"istio": "ingressgateway"}, "servers": list(servers)}}


def bound_vs(name: str, hosts: list[str], **spec) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"hosts": hosts, "gateways": ["istio-system/edge"], **spec}}


@pytest.fixture
def gateway(tmp_path):
    """gateway(resources, listen={server port: listen port}) -> a started `pymesh gateway`."""
    started = []

    def start(resources: list[dict], listen: dict[int, int]) -> Proxy:
        proxy = Proxy(tmp_path / f"gw{len(started)}", resources + [gateway_service(listen)], name="gateway",
                      subcommand="gateway")
        started.append(proxy)
        return proxy.start()

    yield start
    for proxy in started:
        proxy.kill()
        print(proxy.stderr()[-4000:])


def test_https_redirect_and_plain_http_on_another_port(gateway, upstreams):
    app = upstreams("httpbin")
    redirect_port, plain_port = free_ports(2)
    resources = [
        service_entry(8000, [endpoint(app)], host="httpbin.default.svc.cluster.local", name="httpbin"),
        gateway_resource({"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["httpbin.example.com"],
                          "tls": {"httpsRedirect": True}},
                         {"port": {"number": 8080, "name": "http-plain", "protocol": "HTTP"}, "hosts": ["*"]}),
        bound_vs("httpbin", ["httpbin.example.com"], http=[{"route": [{"destination": {"host": "httpbin"}}]}]),
    ]
    gateway(resources, {80: redirect_port, 8080: plain_port})
    moved = curl(redirect_port, "/status/200?x=1", host="httpbin.example.com")
    assert moved.status == 301
    assert moved.header("location") == "https://httpbin.example.com/status/200?x=1"
    assert app.count() == 0
    assert curl(redirect_port, "/", host="other.example.com").status == 404
    served = curl(plain_port, "/headers", host="httpbin.example.com")
    assert served.status == 200 and served.body == b"httpbin GET /headers\n"


def test_tcp_server(gateway, upstreams):
    echo = upstreams.tcp("echo")
    (listen,) = free_ports(1)
    resources = [
        service_entry(5555, [endpoint(echo, port_name="tcp")], host="echo.default.svc.cluster.local", protocol="TCP",
                      name="echo"),
        gateway_resource({"port": {"number": 31400, "name": "tcp", "protocol": "TCP"}, "hosts": ["*"]}),
        bound_vs("echo", ["*"], tcp=[{"match": [{"port": 31400}],
                                      "route": [{"destination": {"host": "echo.default.svc.cluster.local",
                                                                 "port": {"number": 5555}}}]}]),
    ]
    gateway(resources, {31400: listen})
    with socket.create_connection((LOCALHOST, listen), timeout=10) as sock:
        sock.sendall(b"hello through the gateway")
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received == b"hello through the gateway"


@pytest.fixture
def tls_backends(tmp_path, upstreams):
    ca = ThrowawayCA(tmp_path / "pki")
    return ca, {name: upstreams.tls(name.split(".")[0], ca.issue(name.split(".")[0], name)) for name in (A, B)}


def curl_https(port: int, name: str, ca) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", str(ca.ca_path),
                           "--resolve", f"{name}:{port}:{LOCALHOST}", f"https://{name}:{port}/"],
                          capture_output=True, text=True, timeout=20)


def _backends(servers: dict) -> list[dict]:
    return [service_entry(443, [endpoint(server, port_name="tls")], host=f"{name.split('.')[0]}.default.svc.cluster.local",
                          protocol="TLS", name=name.split(".")[0]) for name, server in servers.items()]


def test_tls_passthrough_by_sni_to_two_backends(gateway, tls_backends):
    ca, servers = tls_backends
    (listen,) = free_ports(1)
    resources = _backends(servers) + [
        gateway_resource({"port": {"number": 443, "name": "tls", "protocol": "TLS"}, "hosts": ["*.example.com"],
                          "tls": {"mode": "PASSTHROUGH"}}),
    ] + [bound_vs(name.split(".")[0], [name], tls=[{"match": [{"port": 443, "sniHosts": [name]}], "route": [
        {"destination": {"host": f"{name.split('.')[0]}.default.svc.cluster.local", "port": {"number": 443}}}]}])
         for name in servers]
    gateway(resources, {443: listen})
    for name, server in servers.items():
        done = curl_https(listen, name, ca)
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"{server.name} sni={name}\n"
    s_client = subprocess.run(["openssl", "s_client", "-connect", f"{LOCALHOST}:{listen}", "-servername", B,
                               "-CAfile", str(ca.ca_path), "-verify_return_error", "-brief"],
                              input=b"", capture_output=True, timeout=20)
    assert s_client.returncode == 0, s_client.stderr
    assert b"Verification: OK" in s_client.stderr
    unknown = curl_https(listen, "c.example.com", ca)
    assert unknown.returncode != 0  # no route for that name: the connection is closed


def test_auto_passthrough_reaches_the_cluster_the_sni_names(gateway, tls_backends):
    ca, servers = tls_backends
    (listen,) = free_ports(1)
    resources = _backends(servers) + [
        gateway_resource({"port": {"number": 15443, "name": "tls", "protocol": "TLS"}, "hosts": ["*.local"],
                          "tls": {"mode": "AUTO_PASSTHROUGH"}}),
    ]
    gateway(resources, {15443: listen})
    sni = "outbound_.443_._.b.default.svc.cluster.local"
    s_client = subprocess.run(["openssl", "s_client", "-connect", f"{LOCALHOST}:{listen}", "-servername", sni,
                               "-CAfile", str(ca.ca_path), "-brief"], input=b"", capture_output=True, timeout=20)
    assert s_client.returncode == 0, s_client.stderr
    assert b"CN=b" in s_client.stderr or b"CN = b" in s_client.stderr, s_client.stderr


def test_telemetry_reports_as_the_source(gateway, upstreams):
    app = upstreams("productpage")
    (listen,) = free_ports(1)
    resources = [
        service_entry(9080, [endpoint(app)], host="productpage.default.svc.cluster.local", name="productpage"),
        gateway_resource({"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}),
        bound_vs("bookinfo", ["*"], http=[{"route": [{"destination": {"host": "productpage"}}]}]),
    ]
    proxy = gateway(resources, {80: listen})
    assert curl(listen, "/productpage").status == 200
    (sample,) = samples(proxy.prometheus(), "istio_requests_total")
    assert sample.labels["reporter"] == "source"
    assert sample.labels["source_workload"] == "istio-ingressgateway"
    assert sample.labels["source_workload_namespace"] == "istio-system"
    assert sample.labels["destination_service"] == "productpage.default.svc.cluster.local"
    entry = proxy.wait_log(lambda e: e.get("path") == "/productpage")
    assert entry["upstream_cluster"] == "outbound|9080||productpage.default.svc.cluster.local"


def test_grpc_server(gateway):
    """A GRPC server port: grpcio's h2c calls of every kind through the gateway."""
    import grpc

    from grpc_echo import SERVICE, start_server

    server, echo, echo_port = start_server("127.0.0.1:0")
    (listen,) = free_ports(1)
    try:
        resources = [
            service_entry(7070, [endpoint(echo_port, port_name="grpc")], host="echo.default.svc.cluster.local",
                          protocol="GRPC", name="echo"),
            gateway_resource({"port": {"number": 7070, "name": "grpc", "protocol": "GRPC"}, "hosts": ["grpc.example.com"]}),
            bound_vs("echo", ["grpc.example.com"], http=[{"match": [{"uri": {"prefix": f"/{SERVICE}/"}}],
                                                          "route": [{"destination": {"host": "echo"}}]}]),
        ]
        gateway(resources, {7070: listen})
        with grpc.insecure_channel(f"{LOCALHOST}:{listen}", options=[("grpc.default_authority", "grpc.example.com")]) as channel:
            assert channel.unary_unary(f"/{SERVICE}/Unary")(b"hi", timeout=10) == b"echo:hi"
            assert list(channel.stream_stream(f"/{SERVICE}/Bidi")(iter([b"x", b"y"]), timeout=10)) == [b"X", b"Y"]
            with pytest.raises(grpc.RpcError) as caught:
                channel.unary_unary("/other.Service/Call")(b"", timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED  # no route: Envoy's 404 as gRPC
    finally:
        echo.released.set()
        server.stop(grace=None)
