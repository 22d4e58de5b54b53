"""istio.io's "Ingress Sidecar TLS Termination" task: a Sidecar whose ingress listener terminates
TLS for clients outside the mesh with the workload's own certificate files (`tls` on the ingress
entry: MUTUAL in the task, SIMPLE too), next to a plain HTTP ingress port. Certificates made
with openssl as the task makes them; curl as the client (`--cacert`, `--cert`, `--key`,
`--resolve`); a real `pymesh proxy` in front of a real upstream."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from gateway_tls_bed import curl_https, istio_example_certs
from ports import free_port
from proxy_harness import LOCALHOST, Proxy, Upstream, curl

pytestmark = pytest.mark.timeout(120)
HOST, CLIENT = "httpbin.test.svc.cluster.local", "client.test.svc.cluster.local"


def ingress_sidecar(app_port: int, mutual: int, simple: int, internal: int, certs) -> dict:
    """The task's Sidecar (its 9080 `external` MUTUAL port and 9081 `internal` HTTP port), bound
    to 127.0.0.1 and with one SIMPLE port more."""
    files = {"privateKey": str(certs / f"{HOST}.key"), "serverCertificate": str(certs / f"{HOST}.crt")}

    def entry(port: int, protocol: str, name: str, tls: dict | None = None) -> dict:
        out = {"port": {"number": port, "protocol": protocol, "name": name}, "bind": LOCALHOST,
               "captureMode": "NONE", "defaultEndpoint": f"{LOCALHOST}:{app_port}"}
        return {**out, "tls": tls} if tls else out

    return {"apiVersion": "networking.istio.io/v1alpha3", "kind": "Sidecar",
            "metadata": {"name": "ingress-sidecar", "namespace": "test"},
            "spec": {"workloadSelector": {"labels": {"app": "httpbin", "version": "v1"}}, "ingress": [
                entry(mutual, "HTTPS", "external", {"mode": "MUTUAL", **files, "caCertificates": str(certs / "example.com.crt")}),
                entry(simple, "HTTPS", "external-simple", {"mode": "SIMPLE", **files}),
                entry(internal, "HTTP", "internal"),
            ]}}


@pytest.fixture(scope="module")
def httpbin(tmp_path_factory):
    certs = istio_example_certs(tmp_path_factory.mktemp("certs"), hosts=(HOST,), clients=(CLIENT,))
    app = Upstream("httpbin")
    ports = SimpleNamespace(mutual=free_port(), simple=free_port(), internal=free_port())
    proxy = Proxy(tmp_path_factory.mktemp("proxy"), [ingress_sidecar(app.port, ports.mutual, ports.simple, ports.internal, certs)],
                  labels="app=httpbin,version=v1", extra_args=["--namespace", "test"])
    try:
        proxy.start()
        yield SimpleNamespace(certs=certs, app=app, ports=ports)
    finally:
        proxy.kill()
        app.stop()


def _served(httpbin, call) -> tuple:
    before = len(httpbin.app.requests)
    result = call()
    return result, httpbin.app.requests[before:]


def test_mutual_tls_with_the_client_certificate(httpbin) -> None:
    certs = httpbin.certs
    result, seen = _served(httpbin, lambda: curl_https(
        httpbin.ports.mutual, HOST, "/status/418", "--cacert", str(certs / "example.com.crt"),
        "--cert", str(certs / f"{CLIENT}.crt"), "--key", str(certs / f"{CLIENT}.key")))
    assert result.returncode == 0, result.stderr
    assert result.stdout.rsplit("\n", 1)[-1].split()[0] == "200"
    assert [r.target for r in seen] == ["/status/418"]


def test_mutual_tls_refuses_a_client_without_certificate(httpbin) -> None:
    result, seen = _served(httpbin, lambda: curl_https(
        httpbin.ports.mutual, HOST, "/", "--cacert", str(httpbin.certs / "example.com.crt")))
    assert result.returncode != 0 and seen == []


def test_simple_tls(httpbin) -> None:
    result, seen = _served(httpbin, lambda: curl_https(
        httpbin.ports.simple, HOST, "/headers", "--cacert", str(httpbin.certs / "example.com.crt")))
    assert result.returncode == 0, result.stderr
    assert result.stdout.rsplit("\n", 1)[-1].split()[0] == "200" and len(seen) == 1
    assert seen[0].header("x-forwarded-proto") == "https"


def test_the_plain_port_still_serves_http(httpbin) -> None:
    result, seen = _served(httpbin, lambda: curl(httpbin.ports.internal, "/get", host=HOST))
    assert result.status == 200 and len(seen) == 1
