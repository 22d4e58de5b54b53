"""Sidecar to sidecar over mutual TLS, in the pod test bed: the client app speaks plaintext to
its own sidecar, which (auto mTLS: the endpoint is labelled security.istio.io/tlsMode=istio, as
Istio's injector labels it) wraps it in mTLS to the server pod's sidecar, which enforces STRICT
and hands plaintext to its app. Proven on the wire: the server app sees the client workload's
SPIFFE identity in XFCC, the server sidecar counts the request as mutual_tls with both
principals, and a plaintext caller without a sidecar is refused.

    client  198.18.0.1  sidecar (its own certificate) + curl as the app
    server  198.18.0.2  sidecar (STRICT) + reviews on 8080

Needs the client side (pymesh.proxy.upstream_tls); skipped until it is there.
"""

from __future__ import annotations

import pytest

pytest.importorskip("pymesh.proxy.upstream_tls", reason="the client side of mesh mTLS is not in this tree yet")

from mesh_pki import MeshPki, uri  # noqa: E402
from netns import TestBed, unavailable_reason  # noqa: E402
from sidecar_helpers import (HTTP_PORT, NAMESPACE, REVIEWS, app_curl, get_json, requires_tools,  # noqa: E402
                             sidecar_pod, start_app, write_config)

pytestmark = requires_tools


def mesh(server_ip: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: {NAMESPACE}}}
spec:
  hosts: [{REVIEWS}]
  addresses: [{server_ip}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: {HTTP_PORT}, name: http, protocol: HTTP}}
  endpoints:
  - {{address: {server_ip}, labels: {{app: reviews, security.istio.io/tlsMode: istio}}}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: {NAMESPACE}}}
spec:
  mtls: {{mode: STRICT}}
"""


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("mesh-mtls")
    pki = MeshPki(workdir / "pki")
    with TestBed() as bed:
        client, server = bed.add_pod("client"), bed.add_pod("server")
        config = write_config(workdir, mesh(server.ip))
        bed.client_sidecar = sidecar_pod(
            client, config, "productpage", {"app": "productpage"},
            extra=("--cert-dir", str(pki.issue(NAMESPACE, "productpage")), "--service-account", "productpage"))
        bed.server_sidecar = sidecar_pod(
            server, config, "reviews-v1", {"app": "reviews"},
            extra=("--cert-dir", str(pki.issue(NAMESPACE, "reviews")), "--service-account", "reviews"))
        start_app(server, "http", "reviews", HTTP_PORT)
        yield bed


def test_the_apps_speak_plaintext_and_the_sidecars_mtls(bed):
    reply = get_json(bed["client"], f"http://{bed['server'].ip}:{HTTP_PORT}/")

    assert reply["server"] == "reviews"
    xfcc = reply["headers"]["x-forwarded-client-cert"]
    assert xfcc.startswith(f"By={uri(NAMESPACE, 'reviews')};Hash=") and xfcc.endswith(f"URI={uri(NAMESPACE, 'productpage')}")
    bed.server_sidecar.wait_for_metric(
        "istio_requests_total", reporter="destination", connection_security_policy="mutual_tls",
        source_principal=uri(NAMESPACE, "productpage"), destination_principal=uri(NAMESPACE, "reviews"),
        source_workload="productpage", response_code="200")


def test_a_caller_without_a_sidecar_is_refused(bed):
    """Plaintext from uid 1337 (which the client pod's capture exempts, so it leaves without mTLS,
    as from a pod without a sidecar) is refused by the STRICT port; the app, through its
    sidecar, still gets through."""
    done = bed["client"].run("curl", "-sS", "--max-time", "5", f"http://{bed['server'].ip}:{HTTP_PORT}/",
                             uid=1337, check=False)
    assert done.returncode != 0, done.stdout
    assert app_curl(bed["client"], f"http://{bed['server'].ip}:{HTTP_PORT}/").returncode == 0
