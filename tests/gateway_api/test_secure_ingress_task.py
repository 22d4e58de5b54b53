"""Istio's "Secure Gateways" task (istio.io docs/tasks/traffic-management/ingress/secure-ingress),
its Gateway API steps (snips.sh snip_configure_*_4..7, the mutual one's _3) with their YAML
unchanged, through `pymesh gateway` labelled gateway.networking.k8s.io/gateway-name=mygateway in
istio-system; the credentials directory stands for the task's `kubectl create secret` steps and
curl is the task's (`-HHost --resolve --cacert`, then `--cert/--key`)."""

from __future__ import annotations

import re

import pytest

from conformance_kit import gateway_service
from gateway_tls_bed import curl_https, istio_example_certs, remove_credential, write_credential
from ports import free_port
from proxy_harness import Proxy, Reply, Upstream, dump_yaml, endpoint, service_entry, wait_until

pytestmark = pytest.mark.timeout(180)
HTTPBIN, HELLO = "httpbin.example.com", "helloworld.example.com"

SINGLE_HOST_GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1beta1
kind: Gateway
metadata:
  name: mygateway
  namespace: istio-system
spec:
  gatewayClassName: istio
  listeners:
  - name: https
    hostname: "httpbin.example.com"
    port: 443
    protocol: HTTPS
    tls:
      mode: Terminate
      certificateRefs:
      - name: httpbin-credential
    allowedRoutes:
      namespaces:
        from: Selector
        selector:
          matchLabels:
            kubernetes.io/metadata.name: default
"""

HTTPBIN_ROUTE = """
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata:
  name: httpbin
spec:
  parentRefs:
  - name: mygateway
    namespace: istio-system
  hostnames: ["httpbin.example.com"]
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /status
    - path:
        type: PathPrefix
        value: /delay
    backendRefs:
    - name: httpbin
      port: 8000
"""

MULTIPLE_HOSTS_GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1beta1
kind: Gateway
metadata:
  name: mygateway
  namespace: istio-system
spec:
  gatewayClassName: istio
  listeners:
  - name: https-httpbin
    hostname: "httpbin.example.com"
    port: 443
    protocol: HTTPS
    tls:
      mode: Terminate
      certificateRefs:
      - name: httpbin-credential
    allowedRoutes:
      namespaces:
        from: Selector
        selector:
          matchLabels:
            kubernetes.io/metadata.name: default
  - name: https-helloworld
    hostname: "helloworld.example.com"
    port: 443
    protocol: HTTPS
    tls:
      mode: Terminate
      certificateRefs:
      - name: helloworld-credential
    allowedRoutes:
      namespaces:
        from: Selector
        selector:
          matchLabels:
            kubernetes.io/metadata.name: default
"""

HELLOWORLD_ROUTE = """
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata:
  name: helloworld
spec:
  parentRefs:
  - name: mygateway
    namespace: istio-system
  hostnames: ["helloworld.example.com"]
  rules:
  - matches:
    - path:
        type: Exact
        value: /hello
    backendRefs:
    - name: helloworld
      port: 5000
"""

# the task's mutual Gateway: its single-host one with Istio's tls-terminate-mode option added, nothing else
MUTUAL_GATEWAY = SINGLE_HOST_GATEWAY.replace(
    "      - name: httpbin-credential\n",
    "      - name: httpbin-credential\n      options:\n        gateway.istio.io/tls-terminate-mode: MUTUAL\n")


def httpbin(request) -> Reply:
    found = re.match(r"/status/(\d{3})", request.path)
    return Reply(int(found.group(1)) if found else 200, body=b"-=[ teapot ]=-\n" if found else b"ok\n")


def test_the_secure_gateways_task_with_the_gateway_api(tmp_path):
    certs1 = istio_example_certs(tmp_path / "example_certs1", hosts=(HTTPBIN, HELLO))
    certs2 = istio_example_certs(tmp_path / "example_certs2", hosts=(HTTPBIN,), clients=())
    creds = tmp_path / "credentials"
    httpbin_app, helloworld_app = Upstream("httpbin", httpbin), Upstream("helloworld")
    port = free_port()
    services = dump_yaml([
        service_entry(8000, [endpoint(httpbin_app)], host="httpbin.default.svc.cluster.local", name="httpbin"),
        service_entry(5000, [endpoint(helloworld_app)], host="helloworld.default.svc.cluster.local", name="helloworld"),
        gateway_service("mygateway", "istio-system", {443: port}),  # the Service Istio deploys: mygateway-istio
    ])

    def apply(*documents: str) -> None:
        gateway.write_config(services + "".join("---\n" + d.strip() + "\n" for d in documents))

    def curl(host, path, *args):
        return curl_https(port, host, path, f"-HHost:{host}", *args)

    cacert1 = ("--cacert", str(certs1 / "example.com.crt"))
    gateway = Proxy(tmp_path / "gw", "", name="gateway", subcommand="gateway",
                    labels="gateway.networking.k8s.io/gateway-name=mygateway",
                    extra_args=["--namespace", "istio-system", "--credentials-dir", str(creds)])
    try:
        write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
        apply(SINGLE_HOST_GATEWAY, HTTPBIN_ROUTE)
        gateway.start()
        teapot = curl(HTTPBIN, "/status/418", *cacert1)
        assert teapot.stdout.endswith("418 2") and "teapot" in teapot.stdout, (teapot.stdout, teapot.stderr)
        assert curl(HTTPBIN, "/headers", *cacert1).stdout.endswith("404 2")  # no rule for it

        # the secret replaced by example_certs2's: served without a restart
        remove_credential(creds, "httpbin-credential")
        write_credential(creds, "httpbin-credential", certs2 / f"{HTTPBIN}.crt", certs2 / f"{HTTPBIN}.key")
        wait_until(lambda: curl(HTTPBIN, "/status/418", "--cacert", str(certs2 / "example.com.crt"))
                   .stdout.endswith("418 2"), timeout=15)
        assert curl(HTTPBIN, "/status/418", *cacert1).returncode == 35  # the old CA no longer verifies

        # multiple hosts: a listener (and a credential) each, picked by SNI
        remove_credential(creds, "httpbin-credential")
        write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
        write_credential(creds, "helloworld-credential", certs1 / f"{HELLO}.crt", certs1 / f"{HELLO}.key")
        apply(MULTIPLE_HOSTS_GATEWAY, HTTPBIN_ROUTE, HELLOWORLD_ROUTE)
        wait_until(lambda: curl(HELLO, "/hello", *cacert1).stdout.endswith("200 2"), timeout=15)
        assert curl(HTTPBIN, "/status/418", *cacert1).stdout.endswith("418 2")

        # mutual TLS: Istio's tls-terminate-mode option, the CA in the credential
        remove_credential(creds, "httpbin-credential")
        write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key",
                         certs1 / "example.com.crt")
        apply(MUTUAL_GATEWAY, HTTPBIN_ROUTE)
        wait_until(lambda: curl(HTTPBIN, "/status/418", *cacert1).returncode != 0, timeout=15)
        with_cert = curl(HTTPBIN, "/status/418", *cacert1, "--cert", str(certs1 / "client.example.com.crt"),
                         "--key", str(certs1 / "client.example.com.key"))
        assert with_cert.stdout.endswith("418 2") and "teapot" in with_cert.stdout, with_cert.stderr
    finally:
        gateway.kill()
        for app in (httpbin_app, helloworld_app):
            app.stop()
        print(gateway.stderr()[-4000:])
