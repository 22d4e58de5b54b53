"""`pymesh gateway` with each kind of Gateway server, real clients as peers: httpsRedirect with
curl, a TCP server, TLS passthrough by SNI to two TLS backends (curl verifying each backend's
certificate through the gateway, which holds no key), AUTO_PASSTHROUGH by cluster-name SNI, and
the gateway's telemetry (reported as the source, as Istio's gateways)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from ports import free_ports
from proxy_harness import LOCALHOST, Proxy, curl, dump_yaml, endpoint, gateway_service, samples, service_entry
from throwaway_ca import ThrowawayCA

pytestmark = pytest.mark.timeout(90)

A, B = "a.example.com", "b.example.com"
SAMPLES = Path(__file__).parents[1] / "api" / "data" / "istio_samples"


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

    def start(resources: list, listen: dict[int, int]) -> Proxy:
        """resources: dicts, or YAML text (Istio's samples as they are)."""
        texts = [r if isinstance(r, str) else dump_yaml([r]) for r in resources + [gateway_service(listen)]]
        proxy = Proxy(tmp_path / f"gw{len(started)}", "\n---\n".join(texts), name="gateway", subcommand="gateway")
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
    for host, location in (("httpbin.example.com:80", "https://httpbin.example.com/"),  # http's port: dropped
                           ("httpbin.example.com:8080", "https://httpbin.example.com:8080/")):  # as Envoy
        assert curl(redirect_port, "/", host=host).header("location") == location
    assert app.count() == 0
    assert curl(redirect_port, "/", host="other.example.com").status == 404
    served = curl(plain_port, "/headers", host="httpbin.example.com")
    assert served.status == 200 and served.body == b"httpbin GET /headers\n"


def tcp_exchange(port: int, data: bytes) -> bytes:
    """Send `data`, half-close, read everything until the gateway closes."""
    with socket.create_connection((LOCALHOST, port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_istios_tcp_echo_sample_through_the_ingress_gateway(gateway, upstreams):
    """samples/tcp-echo/tcp-echo-all-v1.yaml unchanged (the TCP traffic shifting task): port
    31400 of the gateway to subset v1 of tcp-echo:9000, v2 untouched."""
    v1, v2 = upstreams.tcp("echo", name="v1"), upstreams.tcp("echo", name="v2")
    (listen,) = free_ports(1)
    sample = (SAMPLES / "tcp-echo" / "tcp-echo-all-v1.yaml").read_text()
    entry = service_entry(9000, [endpoint(v1, {"version": "v1"}, port_name="tcp"),
                                 endpoint(v2, {"version": "v2"}, port_name="tcp")],
                          host="tcp-echo.default.svc.cluster.local", protocol="TCP", name="tcp-echo")
    gateway([sample, entry], {31400: listen})
    for i in range(4):
        assert tcp_exchange(listen, b"hello %d" % i) == b"hello %d" % i
    assert v1.received == b"hello 0hello 1hello 2hello 3" and v2.received == b""


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
    assert tcp_exchange(listen, b"hello through the gateway") == b"hello through the gateway"


@pytest.fixture
def tls_backends(tmp_path, upstreams):
    ca = ThrowawayCA(tmp_path / "pki")
    return ca, {name: upstreams.tls(name.split(".")[0], ca.issue(name.split(".")[0], name)) for name in (A, B)}


def curl_https(port: int, name: str, ca) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", str(ca.ca_path),
                           "--resolve", f"{name}:{port}:{LOCALHOST}", f"https://{name}:{port}/"],
                          capture_output=True, text=True, timeout=20)


def s_client(port: int, server_name: str, ca, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "s_client", "-connect", f"{LOCALHOST}:{port}", "-servername", server_name,
                           "-CAfile", str(ca.ca_path), "-brief", *args], input=b"", capture_output=True, timeout=20)


def tls_gateway(servers: dict, number: int, hosts: list[str], mode: str) -> list[dict]:
    """The backends' ServiceEntries and a Gateway with one TLS server in `mode`."""
    server = {"port": {"number": number, "name": "tls", "protocol": "TLS"}, "hosts": hosts, "tls": {"mode": mode}}
    return _backends(servers) + [gateway_resource(server)]


def _backends(servers: dict) -> list[dict]:
    return [service_entry(443, [endpoint(server, port_name="tls")], host=f"{name.split('.')[0]}.default.svc.cluster.local",
                          protocol="TLS", name=name.split(".")[0]) for name, server in servers.items()]


def test_tls_passthrough_by_sni_to_two_backends(gateway, tls_backends):
    ca, servers = tls_backends
    (listen,) = free_ports(1)
    resources = tls_gateway(servers, 443, ["*.example.com"], "PASSTHROUGH") + [bound_vs(name.split(".")[0], [name], tls=[{"match": [{"port": 443, "sniHosts": [name]}], "route": [
        {"destination": {"host": f"{name.split('.')[0]}.default.svc.cluster.local", "port": {"number": 443}}}]}])
         for name in servers]
    gateway(resources, {443: listen})
    for name, server in servers.items():
        done = curl_https(listen, name, ca)
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"{server.name} sni={name}\n"
    done = s_client(listen, B, ca, "-verify_return_error")
    assert done.returncode == 0, done.stderr
    assert b"Verification: OK" in done.stderr
    unknown = curl_https(listen, "c.example.com", ca)
    assert unknown.returncode != 0  # no route for that name: the connection is closed


def test_auto_passthrough_reaches_the_cluster_the_sni_names(gateway, tls_backends):
    ca, servers = tls_backends
    (listen,) = free_ports(1)
    gateway(tls_gateway(servers, 15443, ["*.local"], "AUTO_PASSTHROUGH"), {15443: listen})
    done = s_client(listen, "outbound_.443_._.b.default.svc.cluster.local", ca)
    assert done.returncode == 0, done.stderr
    assert b"CN=b" in done.stderr or b"CN = b" in done.stderr, done.stderr


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


def test_the_gateway_enforces_its_own_authorization_policy(gateway, upstreams):
    """Istio's ingress authorization: a policy in the gateway's namespace selecting its labels."""
    app = upstreams("productpage")
    (listen,) = free_ports(1)
    policy = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
              "metadata": {"name": "deny-admin", "namespace": "istio-system"},
              "spec": {"selector": {"matchLabels": {"istio": "ingressgateway"}}, "action": "DENY",
                       "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]}}
    resources = [
        service_entry(9080, [endpoint(app)], host="productpage.default.svc.cluster.local", name="productpage"),
        gateway_resource({"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}),
        bound_vs("bookinfo", ["*"], http=[{"route": [{"destination": {"host": "productpage"}}]}]),
        policy,
    ]
    gateway(resources, {80: listen})
    assert curl(listen, "/admin/x").status == 403
    assert curl(listen, "/productpage").status == 200
    assert [r.path for r in app.wait_requests(1)] == ["/productpage"]


def test_a_tcp_server_is_guarded_by_the_gateways_policy(gateway, upstreams):
    """The policy's port is the one the gateway listens on (the targetPort, as on Istio's pods)."""
    echo = upstreams.tcp("echo")
    (listen,) = free_ports(1)
    policy = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
              "metadata": {"name": "deny-tcp", "namespace": "istio-system"},
              "spec": {"selector": {"matchLabels": {"istio": "ingressgateway"}}, "action": "DENY",
                       "rules": [{"to": [{"operation": {"ports": [str(listen)]}}]}]}}
    resources = [
        service_entry(5555, [endpoint(echo, port_name="tcp")], host="echo.default.svc.cluster.local", protocol="TCP",
                      name="echo"),
        gateway_resource({"port": {"number": 31400, "name": "tcp", "protocol": "TCP"}, "hosts": ["*"]}),
        bound_vs("echo", ["*"], tcp=[{"route": [{"destination": {"host": "echo.default.svc.cluster.local",
                                                                 "port": {"number": 5555}}}]}]),
        policy,
    ]
    gateway(resources, {31400: listen})
    with socket.create_connection((LOCALHOST, listen), timeout=10) as sock:
        try:
            sock.sendall(b"let me in")
            answer = sock.recv(100)
        except ConnectionResetError:  # closed with our bytes unread
            answer = b""
    assert answer == b""  # closed by the policy, nothing relayed
    assert echo.received == b""


# istio.io's "Ingress Gateways" task, its `kubectl apply` bodies in order, as the corpus keeps them
INGRESS_TASK = (Path(__file__).parents[1] / "corpus" / "data" / "istio" / "istio.io" / "content" / "en" / "docs" /
                "tasks" / "traffic-management" / "ingress" / "ingress-control" / "index.md.yaml")


def ingress_task(*indexes: int) -> list[str]:
    """Those documents of the task's (0, 1: the Gateway and VirtualService for
    httpbin.example.com; 4, 5: the browser variant's, hosts "*")."""
    documents = INGRESS_TASK.read_text().split("\n---\n")
    return [documents[i] for i in indexes]


def test_istios_ingress_gateways_task(gateway, upstreams):
    """Its curl commands: -I -HHost:httpbin.example.com /status/200 is 200 from istio-envoy,
    /headers is 404; the browser variant (hosts "*") serves /headers with no Host to match."""
    app = upstreams("httpbin")
    (listen,) = free_ports(1)
    httpbin = service_entry(8000, [endpoint(app)], host="httpbin.default.svc.cluster.local", name="httpbin")
    gateway(ingress_task(0, 1) + [httpbin], {80: listen})
    ok = curl(listen, "/status/200", "-I", host="httpbin.example.com")
    assert (ok.status, ok.header("server")) == (200, "istio-envoy")
    assert curl(listen, "/headers", "-I", host="httpbin.example.com").status == 404
    assert curl(listen, "/status/200", "-I", host="other.example.com").status == 404


def test_istios_ingress_gateways_task_in_a_browser(gateway, upstreams):
    app = upstreams("httpbin")
    (listen,) = free_ports(1)
    httpbin = service_entry(8000, [endpoint(app)], host="httpbin.default.svc.cluster.local", name="httpbin")
    gateway(ingress_task(4, 5) + [httpbin], {80: listen})
    assert curl(listen, "/headers", host=None).status == 200  # curl's own Host: 127.0.0.1:<port>
    assert curl(listen, "/status/200", host=None).status == 404


def test_editing_the_gateway_opens_its_new_port_and_binds_a_new_virtual_service(gateway, upstreams):
    """Static mode reloads: a server added to the Gateway opens its port, a VirtualService bound
    to it starts answering; the first port keeps serving throughout."""
    from proxy_harness import wait_until

    app = upstreams("httpbin")
    first, second = free_ports(2)
    httpbin = service_entry(8000, [endpoint(app)], host="httpbin.default.svc.cluster.local", name="httpbin")
    plain = {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
    route = [{"route": [{"destination": {"host": "httpbin"}}]}]
    proxy = gateway([httpbin, gateway_resource(plain), bound_vs("a", ["a.example.com"], http=route)], {80: first})
    assert curl(first, "/", host="a.example.com").status == 200
    added = {"port": {"number": 8080, "name": "http-alt", "protocol": "HTTP"}, "hosts": ["b.example.com"]}
    proxy.write_config(dump_yaml([httpbin, gateway_resource(plain, added), bound_vs("a", ["a.example.com"], http=route),
                                  bound_vs("b", ["b.example.com"], http=route), gateway_service({80: first, 8080: second})]))
    wait_until(lambda: curl(second, "/", host="b.example.com", timeout=2).status == 200, 10, 0.1,
               "the new server's port to answer for b.example.com")
    assert curl(first, "/", host="a.example.com").status == 200
    assert curl(second, "/", host="a.example.com").status == 404  # that server exposes b.example.com only


def test_a_gateway_root_virtual_service_with_delegates(gateway, upstreams):
    """istio/api's delegation example at a gateway: the root, bound to the gateway, delegates
    /productpage and /reviews to hostless VirtualServices in their own namespaces (which name no
    gateway: the root's binding applies); each delegate's routes only within its root route."""
    productpage, v1, reviews = upstreams("productpage"), upstreams("productpage-v1"), upstreams("reviews")
    (port,) = free_ports(1)

    def delegate(name: str, namespace: str, http: list) -> dict:
        return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": name, "namespace": namespace}, "spec": {"http": http}}

    resources = [
        service_entry(8000, [endpoint(productpage)], host="productpage.nsa.svc.cluster.local", name="pp"),
        service_entry(8000, [endpoint(v1)], host="productpage-v1.nsa.svc.cluster.local", name="pp-v1"),
        service_entry(8000, [endpoint(reviews)], host="reviews.nsb.svc.cluster.local", name="reviews"),
        gateway_resource({"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["bookinfo.com"]}),
        bound_vs("bookinfo", ["bookinfo.com"], http=[
            {"match": [{"uri": {"prefix": "/productpage"}}], "delegate": {"name": "productpage", "namespace": "nsa"}},
            {"match": [{"uri": {"prefix": "/reviews"}}], "delegate": {"name": "reviews", "namespace": "nsb"}}]),
        delegate("productpage", "nsa", [
            {"match": [{"uri": {"prefix": "/productpage/v1/"}}],
             "route": [{"destination": {"host": "productpage-v1.nsa.svc.cluster.local"}}]},
            {"route": [{"destination": {"host": "productpage.nsa.svc.cluster.local"}}]}]),
        delegate("reviews", "nsb", [{"route": [{"destination": {"host": "reviews.nsb.svc.cluster.local"}}]}]),
    ]
    gateway(resources, {80: port})
    for path, app in (("/productpage/v1/x", v1), ("/productpage", productpage), ("/reviews/7", reviews)):
        before = app.count()
        assert curl(port, path, host="bookinfo.com").status == 200, path
        assert app.count() == before + 1, path
    assert curl(port, "/details", host="bookinfo.com").status == 404  # no root route there
