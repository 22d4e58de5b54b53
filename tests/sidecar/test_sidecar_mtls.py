"""Inbound mTLS in the pod test bed, proven on the wire: a meshed pod whose sidecar (iptables
capture, --cert-dir from `pymesh ca issue`) enforces PeerAuthentication, and a client pod with
real TLS clients speaking to the server pod's address, as another sidecar would:

    client  198.18.0.1  no sidecar: openssl s_client, curl with (or without) a mesh certificate
    server  198.18.0.2  sidecar; apps on 8080 (STRICT, the namespace's mode), 8081 (PERMISSIVE
                        by the workload's portLevelMtls) and 8082 (DISABLE)

The sidecar-to-sidecar case (the client side's auto mTLS) is added where the client side lands.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import mesh_pki
from mesh_pki import MeshPki, leaf_sha256, uri
from netns import TestBed, unavailable_reason
from sidecar_helpers import NAMESPACE, requires_tools, sidecar_pod, start_app, write_config

pytestmark = requires_tools

STRICT_PORT, PERMISSIVE_PORT, DISABLED_PORT = 8080, 8081, 8082

POLICIES = f"""\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: {NAMESPACE}}}
spec:
  mtls: {{mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: reviews, namespace: {NAMESPACE}}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  portLevelMtls:
    {PERMISSIVE_PORT}: {{mode: PERMISSIVE}}
    {DISABLED_PORT}: {{mode: DISABLE}}
"""


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("mtls")
    pki = MeshPki(workdir / "pki")
    server_certs = pki.issue(NAMESPACE, "reviews")
    with TestBed() as bed:
        bed.add_pod("client")
        server = bed.add_pod("server")
        config = write_config(workdir, POLICIES)
        sidecar = sidecar_pod(server, config, "reviews-v1", {"app": "reviews", "version": "v1"},
                              extra=("--cert-dir", str(server_certs), "--service-account", "reviews"))
        for port in (STRICT_PORT, PERMISSIVE_PORT, DISABLED_PORT):
            start_app(server, "http", f"app-{port}", port)
        bed.pki, bed.client_certs = pki, pki.issue("bar", "productpage")
        bed.other_certs = MeshPki(workdir / "other").issue("bar", "productpage")
        bed.sidecar = sidecar
        yield bed


def curl(bed, port: int, *options: str, certs=None, scheme: str = "https") -> subprocess.CompletedProcess:
    args = ["curl", "-sS", "--max-time", "5", "-w", "\n%{http_version}", *options]
    if certs is not None:
        args += ["--cert", str(certs / "cert-chain.pem"), "--key", str(certs / "key.pem")]
    if scheme == "https":
        args += ["-k"]  # a mesh certificate has a SPIFFE URI, no DNS name; openssl checks it below
    return bed["client"].run(*args, f"{scheme}://{bed['server'].ip}:{port}/", check=False, timeout=15)


def reply(done: subprocess.CompletedProcess) -> tuple[dict, str]:
    assert done.returncode == 0, done.stderr
    body, _, version = done.stdout.rpartition("\n")
    return json.loads(body), version


def test_openssl_sees_the_spiffe_san_and_is_refused_without_a_certificate(bed, tmp_path):
    done = bed["client"].run("openssl", "s_client", "-connect", f"{bed['server'].ip}:{STRICT_PORT}", "-showcerts",
                             "-CAfile", str(bed.pki.root / "root-cert.pem"), "-alpn", "istio-http/1.1", "-ign_eof",
                             input="GET / HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n", check=False)
    out = done.stdout
    pem = out[out.index("-----BEGIN CERTIFICATE-----"):out.index("-----END CERTIFICATE-----") + 25]
    sans = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"], input=pem, capture_output=True,
                          text=True, check=True).stdout
    assert f"URI:{uri(NAMESPACE, 'reviews')}" in sans
    assert "Verify return code: 0 (ok)" in out
    assert "HTTP/1.1" not in out  # no client certificate: no answer


SIDECAR_CLIENT = """\
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from mesh_pki import client_context, sidecar_h2_get
certs, roots, host, port = Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], int(sys.argv[5])
status, headers, body, alpn = sidecar_h2_get(host, port, client_context(certs, roots), "reviews.demo:8080",
                                             sni="outbound_.8080_._.reviews.demo.svc.cluster.local")
print(json.dumps({"status": status, "alpn": alpn, "body": json.loads(body)}))
"""


def test_mtls_reaches_the_app_as_plaintext_with_xfcc(bed):
    """As a client sidecar sends it (istio-h2, HTTP/2 inside) and as curl does (http/1.1): the
    HTTP/1.1 app gets plaintext HTTP/1.1 with the verified client's XFCC either way."""
    xfcc = (f'By={uri(NAMESPACE, "reviews")};Hash={leaf_sha256(bed.client_certs)};Subject="";'
            f'URI={uri("bar", "productpage")}')
    done = bed["client"].run(sys.executable, "-c", SIDECAR_CLIENT, Path(mesh_pki.__file__).parent, bed.client_certs,
                             bed.pki.root, bed["server"].ip, STRICT_PORT, timeout=20)
    sidecar = json.loads(done.stdout)
    assert (sidecar["status"], sidecar["alpn"], sidecar["body"]["server"]) == (200, "istio-h2", f"app-{STRICT_PORT}")
    assert sidecar["body"]["headers"]["x-forwarded-client-cert"] == xfcc
    body, version = reply(curl(bed, STRICT_PORT, "--http1.1", certs=bed.client_certs))
    assert (body["server"], version) == (f"app-{STRICT_PORT}", "1.1")
    assert body["headers"]["x-forwarded-client-cert"] == xfcc
    bed.sidecar.wait_for_metric("istio_requests_total", at_least=2, reporter="destination",
                                connection_security_policy="mutual_tls",
                                source_principal=uri("bar", "productpage"),
                                destination_principal=uri(NAMESPACE, "reviews"))


@pytest.mark.parametrize("client", ["plaintext", "no certificate", "another CA"])
def test_strict_refuses(bed, client):
    if client == "plaintext":
        done = curl(bed, STRICT_PORT, scheme="http")
    else:
        done = curl(bed, STRICT_PORT, certs=bed.other_certs if client == "another CA" else None)
    assert done.returncode != 0, done.stdout


def test_permissive_port_takes_both(bed):
    plain, _ = reply(curl(bed, PERMISSIVE_PORT, scheme="http"))
    secure, _ = reply(curl(bed, PERMISSIVE_PORT, "--http1.1", certs=bed.client_certs))
    assert plain["server"] == secure["server"] == f"app-{PERMISSIVE_PORT}"
    assert "x-forwarded-client-cert" not in plain["headers"] and "x-forwarded-client-cert" in secure["headers"]


def test_disabled_port_is_plaintext_only(bed):
    plain, _ = reply(curl(bed, DISABLED_PORT, scheme="http"))
    assert plain["server"] == f"app-{DISABLED_PORT}"
    assert curl(bed, DISABLED_PORT, certs=bed.client_certs).returncode != 0  # TLS reaches the app as TCP
