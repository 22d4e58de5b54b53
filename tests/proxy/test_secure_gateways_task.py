"""Istio's "Secure Gateways" task (istio.io docs/tasks/traffic-management/ingress/secure-ingress)
step by step through a real `pymesh gateway`: the task's certificates (its openssl commands), its
Gateway and VirtualService YAML unchanged, the credentials directory standing for its
`kubectl create secret` steps, and its curl commands (`-HHost:... --resolve ... --cacert`). Each
`kubectl apply` is a rewrite of the watched config file; each secret change a change on disk."""

from __future__ import annotations

import re

import pytest

from gateway_tls_bed import curl_https, istio_example_certs, remove_credential, write_credential
from ports import free_ports
from proxy_harness import Proxy, Reply, dump_yaml, endpoint, gateway_service, service_entry, wait_until

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

MUTUAL_GATEWAY = """
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
      mode: MUTUAL
      credentialName: httpbin-credential # must be the same as secret
    hosts:
    - httpbin.example.com
"""


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

