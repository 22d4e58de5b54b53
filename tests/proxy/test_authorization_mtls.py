"""AuthorizationPolicy on identities: principals, namespaces and service accounts read from the
peer's verified certificate, with sidecars talking mTLS (auto mTLS against a STRICT server) and
curl as a real mTLS peer. The bookinfo flow of Istio's authz-http task: details-viewer lets only
bookinfo-productpage's identity GET; the task's YAML is used unchanged."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from mesh_pki import MeshPki, curl_cert
from ports import free_port
from proxy_harness import LOCALHOST, curl, endpoint, inbound_mesh, service_entry, sidecar

pytestmark = pytest.mark.timeout(90)

SAMPLES = Path(__file__).parents[1] / "api" / "data" / "istio_samples" / "authz"
STRICT = {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
          "metadata": {"name": "default", "namespace": "default"}, "spec": {"mtls": {"mode": "STRICT"}}}


def sample(name: str) -> dict:
    return yaml.safe_load((SAMPLES / name).read_text())


def policy(name: str, spec: dict) -> dict:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


@pytest.fixture
def mesh(tmp_path, upstreams, proxies):
    """server(*policies, protocol) -> inbound port of a STRICT sidecar (labels app=details,
    service account bookinfo-details); client(namespace, sa, inbound, protocol) -> the port of a
    client sidecar with that identity, calling the server over auto mTLS."""
    ca = MeshPki(tmp_path / "mesh")

    def server(*policies: dict, protocol: str = "HTTP"):
        app = upstreams.tcp("echo") if protocol == "TCP" else upstreams("details")
        port = free_port()
        proxy = proxies(inbound_mesh(port, app, protocol) + [STRICT, *policies], labels="app=details",
                        extra_args=["--cert-dir", str(ca.issue("default", "bookinfo-details"))])
        return port, app, proxy

    def client(namespace: str, account: str, inbound: int, protocol: str = "HTTP") -> int:
        port = free_port()
        ep = endpoint(inbound, {"security.istio.io/tlsMode": "istio"}, port_name=protocol.lower())
        ep["serviceAccount"] = "bookinfo-details"
        # its configuration is the default namespace's; its identity is the certificate's
        proxies([service_entry(port, [ep], protocol=protocol), sidecar((port, protocol))], labels=f"app={account}",
                extra_args=["--cert-dir", str(ca.issue(namespace, account))])
        return port

    return type("Mesh", (), {"ca": ca, "server": staticmethod(server), "client": staticmethod(client)})


def test_details_viewer_lets_only_productpage_in(mesh, via):
    inbound, app, proxy = mesh.server(sample("authz-http-details-viewer.yaml"))
    productpage = mesh.client("default", "bookinfo-productpage", inbound)
    reviews = mesh.client("default", "bookinfo-reviews", inbound)
    assert curl(productpage, "/details/0", *via).status == 200
    refused = curl(reviews, "/details/0", *via)
    assert (refused.status, refused.body) == (403, b"RBAC: access denied")
    assert curl(productpage, "/details/0", "-X", "POST", *via).status == 403  # GET only
    assert len(app.requests) == 1
    assert proxy.stat("rbac.denied") == 2 and proxy.stat("rbac.allowed") == 1


def test_curl_as_a_real_mtls_peer(mesh):
    """curl presenting a mesh certificate straight to the inbound port: its identity decides."""
    inbound, _, _ = mesh.server(sample("authz-http-details-viewer.yaml"))

    def status(account: str) -> int:
        return curl(inbound, "/details/0", *curl_cert(mesh.ca.issue("default", account)), scheme="https").status

    assert status("bookinfo-productpage") == 200
    assert status("sleep") == 403


@pytest.mark.parametrize("source, allowed", [
    ({"namespaces": ["default"]}, {"default"}),
    ({"notNamespaces": ["default"]}, {"other"}),
    ({"principals": ["cluster.local/ns/other/*"]}, {"other"}),
    ({"serviceAccounts": ["other/sleep"]}, {"other"}),
], ids=["namespaces", "notNamespaces", "principal prefix", "serviceAccounts"])
def test_source_identity_fields(mesh, source, allowed):
    inbound, _, _ = mesh.server(policy("by-source", {"rules": [{"from": [{"source": source}]}]}))
    statuses = {ns: curl(mesh.client(ns, "sleep", inbound), "/").status for ns in ("default", "other")}
    assert set(statuses.values()) <= {200, 403}, statuses  # each call reached the server's policy
    assert {ns for ns, status in statuses.items() if status == 200} == allowed


def test_tcp_by_principal(mesh):
    allow = policy("tcp-from-productpage", {"rules": [{"from": [{"source": {
        "principals": ["cluster.local/ns/default/sa/bookinfo-productpage"]}}]}]})
    inbound, _, proxy = mesh.server(allow, protocol="TCP")

    def echoes(port: int) -> bool:
        with socket.create_connection((LOCALHOST, port), timeout=10) as sock:
            try:
                sock.sendall(b"hello")
                return sock.recv(100) == b"hello"
            except OSError:
                return False

    assert echoes(mesh.client("default", "bookinfo-productpage", inbound, "TCP"))
    assert not echoes(mesh.client("default", "sleep", inbound, "TCP"))
    assert proxy.stats().get("tcp.rbac.denied") == 1
