"""Two sidecars: the client's auto mTLS (and ISTIO_MUTUAL) against the server's STRICT inbound."""

from __future__ import annotations

import pytest

from ports import free_port
from proxy_harness import curl, destination_rule, endpoint, inbound_mesh, service_entry, sidecar
from mesh_pki import MeshPki

STRICT = {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
          "metadata": {"name": "default", "namespace": "default"}, "spec": {"mtls": {"mode": "STRICT"}}}


@pytest.mark.parametrize("tls", [None, {"mode": "ISTIO_MUTUAL"}], ids=["auto", "istio-mutual"])
@pytest.mark.parametrize("client_proto", ["--http1.1", "--http2-prior-knowledge"])
def test_two_hops(tmp_path, upstreams, proxies, tls, client_proto):
    ca = MeshPki(tmp_path / "mesh")
    app = upstreams("app")
    inbound_port = free_port()
    server = proxies(inbound_mesh(inbound_port, app) + [STRICT],
                     extra_args=["--cert-dir", str(ca.issue("default", "server"))])
    port = free_port()
    ep = endpoint(inbound_port, {"security.istio.io/tlsMode": "istio"})
    ep["serviceAccount"] = "server"
    resources = [service_entry(port, [ep])]
    if tls:
        resources.append(destination_rule(traffic_policy={"tls": tls}))
    client = proxies(resources + [sidecar((port, "HTTP"))],
                     extra_args=["--cert-dir", str(ca.issue("default", "client"))])
    for i in range(3):
        result = curl(port, f"/r{i}", client_proto)
        assert result.status == 200, (result, client.stderr(), server.stderr())
    assert [r.target for r in app.requests] == ["/r0", "/r1", "/r2"]
    assert any(k == "x-forwarded-client-cert" and "spiffe://cluster.local/ns/default/sa/client" in v
               for k, v in app.requests[0].headers)


def test_two_hops_tcp(tmp_path, upstreams, proxies):
    import socket
    ca = MeshPki(tmp_path / "mesh")
    app = upstreams.tcp("echo")
    inbound_port = free_port()
    proxies(inbound_mesh(inbound_port, app, protocol="TCP") + [STRICT],
            extra_args=["--cert-dir", str(ca.issue("default", "server"))])
    port = free_port()
    ep = endpoint(inbound_port, {"security.istio.io/tlsMode": "istio"}, port_name="tcp")
    proxies([service_entry(port, [ep], protocol="TCP"), sidecar((port, "TCP"))],
            extra_args=["--cert-dir", str(ca.issue("default", "client"))])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"hello over mTLS")
        assert sock.recv(100) == b"hello over mTLS"
