"""Istio's "Secure Gateways" task (istio.io docs/tasks/traffic-management/ingress/secure-ingress)
step by step through a real `pymesh gateway`: the task's certificates (its openssl commands), its
Gateway and VirtualService YAML unchanged, the credentials directory standing for its
`kubectl create secret` steps, and its curl commands (`-HHost:... --resolve ... --cacert`). Each
`kubectl apply` is a rewrite of the watched config file; each secret change a change on disk.
Then terminated, passthrough and TLS-then-TCP servers together, as gwcore compiles them."""

from __future__ import annotations

import re

import pytest

from gateway_tls_bed import curl_https, istio_example_certs, remove_credential, s_client, tls_echo, write_credential
from ports import free_ports
from proxy_harness import Proxy, Reply, dump_yaml, endpoint, gateway_service, service_entry, wait_until
from throwaway_ca import ThrowawayCA

pytestmark = pytest.mark.timeout(180)

HTTPBIN, HELLO = "httpbin.example.com", "helloworld.example.com"

SINGLE_HOST_GATEWAY = """
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: mygateway
spec:
  selector:
    istio: ingressgateway # use istio default ingress gateway
  servers:
  - port:
      number: 443
      name: https
      protocol: HTTPS
    tls:
      mode: SIMPLE
      credentialName: httpbin-credential # must be the same as secret
    hosts:
    - httpbin.example.com
"""

HTTPBIN_VS = """
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - "httpbin.example.com"
  gateways:
  - mygateway
  http:
  - match:
    - uri:
        prefix: /status
    - uri:
        prefix: /delay
    route:
    - destination:
        port:
          number: 8000
        host: httpbin
"""

MULTIPLE_HOSTS_GATEWAY = """
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: mygateway
spec:
  selector:
    istio: ingressgateway # use istio default ingress gateway
  servers:
  - port:
      number: 443
      name: https-httpbin
      protocol: HTTPS
    tls:
      mode: SIMPLE
      credentialName: httpbin-credential
    hosts:
    - httpbin.example.com
  - port:
      number: 443
      name: https-helloworld
      protocol: HTTPS
    tls:
      mode: SIMPLE
      credentialName: helloworld-credential
    hosts:
    - helloworld.example.com
"""

HELLOWORLD_VS = """
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: helloworld
spec:
  hosts:
  - helloworld.example.com
  gateways:
  - mygateway
  http:
  - match:
    - uri:
        exact: /hello
    route:
    - destination:
        host: helloworld
        port:
          number: 5000
"""

# the task's MUTUAL Gateway: its single-host one with the mode changed, nothing else
MUTUAL_GATEWAY = SINGLE_HOST_GATEWAY.replace("mode: SIMPLE", "mode: MUTUAL")


def httpbin(request) -> Reply:
    """httpbin's /status/<code>, enough of it for the task."""
    found = re.match(r"/status/(\d{3})", request.path)
    return Reply(int(found.group(1)) if found else 200, body=b"-=[ teapot ]=-\n" if found else b"ok\n")


def _services(httpbin_app, helloworld_app, port: int) -> str:
    """The task's httpbin and helloworld services, and the ingress gateway's own (443 -> `port`)."""
    return dump_yaml([
        service_entry(8000, [endpoint(httpbin_app)], host="httpbin.default.svc.cluster.local", name="httpbin"),
        service_entry(5000, [endpoint(helloworld_app)], host="helloworld.default.svc.cluster.local", name="helloworld"),
        gateway_service({443: port}),
    ])


def test_the_secure_gateways_task(tmp_path, upstreams):
    certs1 = istio_example_certs(tmp_path / "example_certs1", hosts=(HTTPBIN, HELLO))
    certs2 = istio_example_certs(tmp_path / "example_certs2", hosts=(HTTPBIN,), clients=())
    creds = tmp_path / "credentials"
    httpbin_app, helloworld_app = upstreams("httpbin", httpbin), upstreams("helloworld")
    (port,) = free_ports(1)
    services = _services(httpbin_app, helloworld_app, port)

    def apply(*documents: str) -> None:
        proxy.write_config(services + "".join("---\n" + d.strip() + "\n" for d in documents))

    def curl(host, path, *args):
        return curl_https(port, host, path, f"-HHost:{host}", *args)

    # Configure a TLS ingress gateway for a single host
    write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
    proxy = Proxy(tmp_path / "gw", "", name="gateway", subcommand="gateway",
                  extra_args=["--credentials-dir", str(creds)])
    apply(SINGLE_HOST_GATEWAY, HTTPBIN_VS)
    try:
        proxy.start()
        teapot = curl(HTTPBIN, "/status/418", "--cacert", str(certs1 / "example.com.crt"))
        assert teapot.stdout.endswith("418 2") and "teapot" in teapot.stdout, (teapot.stdout, teapot.stderr)
        http11 = curl(HTTPBIN, "/status/418", "--http1.1", "--cacert", str(certs1 / "example.com.crt"))
        assert http11.stdout.endswith("418 1.1"), http11.stderr
        assert [r.header("x-forwarded-proto") for r in httpbin_app.wait_requests(2)] == ["https", "https"]

        # the secret replaced by example_certs2's: served without a restart
        remove_credential(creds, "httpbin-credential")
        write_credential(creds, "httpbin-credential", certs2 / f"{HTTPBIN}.crt", certs2 / f"{HTTPBIN}.key")
        wait_until(lambda: curl(HTTPBIN, "/status/418", "--cacert", str(certs2 / "example.com.crt"))
                   .stdout.endswith("418 2"), timeout=15)
        old = curl(HTTPBIN, "/status/418", "--cacert", str(certs1 / "example.com.crt"))
        assert old.returncode == 35, old.stderr  # the task's "block type is not 01": the old CA no longer verifies

        # Configure a TLS ingress gateway for multiple hosts
        remove_credential(creds, "httpbin-credential")
        write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
        write_credential(creds, "helloworld-credential", certs1 / f"{HELLO}.crt", certs1 / f"{HELLO}.key")
        apply(MULTIPLE_HOSTS_GATEWAY, HTTPBIN_VS, HELLOWORLD_VS)
        wait_until(lambda: curl(HELLO, "/hello", "--cacert", str(certs1 / "example.com.crt"))
                   .stdout.endswith("200 2"), timeout=15)
        teapot = curl(HTTPBIN, "/status/418", "--cacert", str(certs1 / "example.com.crt"))
        assert teapot.stdout.endswith("418 2"), teapot.stderr
        assert helloworld_app.count() >= 1

        # Configure a mutual TLS ingress gateway
        remove_credential(creds, "httpbin-credential")
        write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key",
                         certs1 / "example.com.crt")
        apply(MUTUAL_GATEWAY, HTTPBIN_VS)
        cacert = ("--cacert", str(certs1 / "example.com.crt"))
        wait_until(lambda: curl(HTTPBIN, "/status/418", *cacert).returncode != 0, timeout=15)
        with_cert = curl(HTTPBIN, "/status/418", *cacert, "--cert", str(certs1 / "client.example.com.crt"),
                         "--key", str(certs1 / "client.example.com.key"))
        assert with_cert.stdout.endswith("418 2") and "teapot" in with_cert.stdout, with_cert.stderr
    finally:
        proxy.kill()
        print(proxy.stderr()[-4000:])



def test_terminated_and_passthrough_servers_share_port_443(tmp_path, upstreams):
    """Beyond the task, through `pymesh gateway` too: a SIMPLE server and a PASSTHROUGH one on
    443 (the backend's own certificate reaches the client through the gateway, which holds no
    key for it), a TLS server terminated then proxied as TCP, and names no server serves."""
    certs1 = istio_example_certs(tmp_path / "example_certs1", hosts=(HTTPBIN, "tcp.example.com"), clients=())
    ca = ThrowawayCA(tmp_path / "backend-ca")
    nginx = upstreams.tls("nginx", ca.issue("nginx", "nginx.example.com"))
    echo = upstreams.tcp("echo")
    creds = tmp_path / "credentials"
    write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
    write_credential(creds, "tcp-credential", certs1 / "tcp.example.com.crt", certs1 / "tcp.example.com.key")
    port, tcp_port = free_ports(2)
    gateway_yaml = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: mygateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    tls: {mode: SIMPLE, credentialName: httpbin-credential}
    hosts: [httpbin.example.com]
  - port: {number: 443, name: tls-passthrough, protocol: TLS}
    tls: {mode: PASSTHROUGH}
    hosts: [nginx.example.com]
  - port: {number: 31443, name: tls-terminated, protocol: TLS}
    tls: {mode: SIMPLE, credentialName: tcp-credential}
    hosts: [tcp.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: nginx}
spec:
  hosts: [nginx.example.com]
  gateways: [mygateway]
  tls:
  - match: [{port: 443, sniHosts: [nginx.example.com]}]
    route: [{destination: {host: nginx.default.svc.cluster.local, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [tcp.example.com]
  gateways: [mygateway]
  tcp:
  - match: [{port: 31443}]
    route: [{destination: {host: echo.default.svc.cluster.local, port: {number: 5555}}}]
"""
    resources = dump_yaml([
        service_entry(8000, [endpoint(upstreams("httpbin", httpbin))], host="httpbin.default.svc.cluster.local",
                      name="httpbin"),
        service_entry(443, [endpoint(nginx, port_name="tls")], host="nginx.default.svc.cluster.local", protocol="TLS",
                      name="nginx"),
        service_entry(5555, [endpoint(echo, port_name="tcp")], host="echo.default.svc.cluster.local", protocol="TCP",
                      name="echo"),
        gateway_service({443: port, 31443: tcp_port}),
    ]) + "---\n" + gateway_yaml + "---\n" + HTTPBIN_VS
    proxy = Proxy(tmp_path / "gw", resources, name="gateway", subcommand="gateway",
                  extra_args=["--credentials-dir", str(creds)])
    try:
        proxy.start()
        teapot = curl_https(port, HTTPBIN, "/status/418", "--cacert", str(certs1 / "example.com.crt"))
        assert teapot.stdout.endswith("418 2"), teapot.stderr
        passed = curl_https(port, "nginx.example.com", "/", "--cacert", str(ca.ca_path))
        assert passed.stdout.startswith("nginx sni=nginx.example.com"), passed.stderr
        unknown = s_client(port, servername="other.example.com")
        assert unknown.returncode != 0 and b"unrecognized name" in unknown.stdout, unknown.stdout
        assert tls_echo(tcp_port, "tcp.example.com", certs1 / "example.com.crt") == b"ping"
    finally:
        proxy.kill()
        print(proxy.stderr()[-4000:])


def test_grpc_over_an_https_server(tmp_path):
    """grpcio over TLS (ALPN h2) to a SIMPLE HTTPS server, every call kind, routed to a gRPC backend."""
    import grpc

    from grpc_echo import SERVICE, start_server

    ca = ThrowawayCA(tmp_path / "ca")
    cert = ca.issue("grpc", "grpc.example.com")
    creds = tmp_path / "credentials"
    write_credential(creds, "grpc-credential", cert.cert, cert.key)
    server, echo, echo_port = start_server("127.0.0.1:0")
    (listen,) = free_ports(1)
    gateway_yaml = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: grpc-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    tls: {mode: SIMPLE, credentialName: grpc-credential}
    hosts: [grpc.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [grpc.example.com]
  gateways: [grpc-gateway]
  http:
  - route: [{destination: {host: echo.default.svc.cluster.local}}]
"""
    resources = dump_yaml([
        service_entry(7070, [endpoint(echo_port, port_name="grpc")], host="echo.default.svc.cluster.local",
                      protocol="GRPC", name="echo"),
        gateway_service({443: listen}),
    ]) + "---\n" + gateway_yaml
    proxy = Proxy(tmp_path / "gw", resources, name="gateway", subcommand="gateway",
                  extra_args=["--credentials-dir", str(creds)])
    try:
        proxy.start()
        credentials = grpc.ssl_channel_credentials(root_certificates=ca.ca_path.read_bytes())
        options = [("grpc.ssl_target_name_override", "grpc.example.com")]
        with grpc.secure_channel(f"127.0.0.1:{listen}", credentials, options=options) as channel:
            assert channel.unary_unary(f"/{SERVICE}/Unary")(b"hi", timeout=10) == b"echo:hi"
            assert list(channel.unary_stream(f"/{SERVICE}/ServerStream")(b"3", timeout=10))
            assert channel.stream_unary(f"/{SERVICE}/ClientStream")(iter([b"a", b"b"]), timeout=10) == b"a+b"
            assert list(channel.stream_stream(f"/{SERVICE}/Bidi")(iter([b"x", b"y"]), timeout=10)) == [b"X", b"Y"]
    finally:
        proxy.kill()
        echo.released.set()
        server.stop(grace=None)
        print(proxy.stderr()[-4000:])
