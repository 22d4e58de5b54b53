"""TLS from the sending sidecar (DestinationRule tls SIMPLE / MUTUAL / ISTIO_MUTUAL, auto mTLS)
against real TLS servers: the harness's servers wrapped in TLS (they record each handshake's SNI,
ALPN and client certificate), an HTTP/2 server over TLS, and `openssl s_server`.

The app side is plain HTTP (curl); everything the proxy sends upstream is TLS."""

from __future__ import annotations

import random
import socket
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from h2_upstream import H2Upstream
from ports import free_port
from proxy_harness import (HOST, LOCALHOST, Upstream, curl, destination_rule, dump_yaml, endpoint, service_entry,
                           sidecar, wait_until)
from throwaway_ca import ThrowawayCA
from mesh_pki import MeshPki
from tls_material import mesh_server_context, server_context

from pymesh.security.identity import peer_spiffe_id

SIDECAR_LABEL = {"security.istio.io/tlsMode": "istio"}


@pytest.fixture
def ca(tmp_path):
    return ThrowawayCA(tmp_path / "pki")


@pytest.fixture
def servers():
    started = []

    def start(kind, *args, **kwargs):
        server = kind(*args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def mesh(port: int, up, tls: dict | None, *, protocol: str = "HTTP", labels: dict | None = None,
         service_account: str = "", pool: dict | None = None) -> list[dict]:
    ep = endpoint(up, labels, port_name=protocol.lower())
    if service_account:
        ep["serviceAccount"] = service_account
    policy = {}
    if tls is not None:
        policy["tls"] = tls
    if pool is not None:
        policy["connectionPool"] = pool
    resources = [service_entry(port, [ep], protocol=protocol)]
    if policy:
        resources.append(destination_rule(traffic_policy=policy))
    return resources + [sidecar((port, protocol))]


def cluster_stat(proxy, port: int, name: str) -> int:
    return proxy.stats().get(f"cluster.outbound|{port}||{HOST}.{name}", 0)


# --- SIMPLE -------------------------------------------------------------------------------------------


def test_simple_verified_with_auto_sni(ca, servers, proxies):
    # the server could speak h2 too: the proxy offers only what it speaks upstream (HTTP/1.1 here)
    up = servers(Upstream, "tls", tls=server_context(ca.issue("svc", HOST), alpn=("h2", "http/1.1")))
    port = free_port()
    proxy = proxies(mesh(port, up, {"mode": "SIMPLE", "caCertificates": str(ca.ca_path)}))
    result = curl(port, "/hello")
    assert result.status == 200, (result, proxy.stderr())
    assert result.body == b"tls GET /hello\n"
    session = up.sessions[1]
    assert (session.sni, session.alpn, session.peer_der) == (HOST, "http/1.1", None)  # SIMPLE: no client cert
    assert cluster_stat(proxy, port, "ssl.handshake") >= 1
    # connections are pooled: a second request reuses the TLS connection
    assert curl(port, "/again").status == 200
    assert up.accepted == 1


@pytest.mark.parametrize("case", ["wrong name", "untrusted CA", "system roots"])
def test_simple_refuses_a_server_it_cannot_verify(case, ca, tmp_path, servers, proxies):
    tls = {"mode": "SIMPLE", "caCertificates": str(ca.ca_path)}
    if case == "wrong name":
        cert = ca.issue("other", "other.example")
        stat = "ssl.fail_verify_san"
    else:
        cert = ThrowawayCA(tmp_path / "rogue").issue("svc", HOST)
        stat = "ssl.fail_verify_error"
        if case == "system roots":  # no caCertificates: the OS roots, which do not know the test CA
            tls = {"mode": "SIMPLE"}
    up = servers(Upstream, "tls", tls=server_context(cert))
    port = free_port()
    proxy = proxies(mesh(port, up, tls))
    result = curl(port, "/")
    assert result.status == 503
    assert b"reset reason: connection failure, transport failure reason: TLS_error: CERTIFICATE_VERIFY_FAILED" \
        in result.body, result.body
    assert up.requests == []
    assert cluster_stat(proxy, port, stat) >= 1 and cluster_stat(proxy, port, "ssl.connection_error") >= 1
    assert cluster_stat(proxy, port, "upstream_cx_connect_fail") >= 1
    entry = proxy.wait_log(lambda e: e.get("path") == "/" or e.get("response_code") == 503)
    assert "UF" in str(entry.get("response_flags")), entry


def test_insecure_skip_verify_only_when_set_and_loudly(tmp_path, servers, proxies):
    rogue = ThrowawayCA(tmp_path / "rogue")
    up = servers(Upstream, "tls", tls=server_context(rogue.issue("x", "nobody.example")))
    port = free_port()
    proxy = proxies(mesh(port, up, {"mode": "SIMPLE", "insecureSkipVerify": True}))
    assert curl(port, "/").status == 200
    assert "insecureSkipVerify is set: the upstream's certificate is NOT verified" in proxy.stderr()
    status, _, body = proxy.admin("/config_dump")
    assert b'"insecure_skip_verify": true' in body


def test_subject_alt_names_and_explicit_sni(ca, servers, proxies):
    up = servers(Upstream, "tls", tls=server_context(ca.issue("api", "*.api.example")))
    port = free_port()
    tls = {"mode": "SIMPLE", "caCertificates": str(ca.ca_path), "sni": "eu.api.example",
           "subjectAltNames": ["eu.api.example"]}
    proxy = proxies(mesh(port, up, tls))
    assert curl(port, "/").status == 200
    assert up.sessions[1].sni == "eu.api.example"
    # the same server, but a name its certificate does not carry: refused after the handshake
    proxy.write_config(mesh(port, up, dict(tls, subjectAltNames=["api.other.example"])))
    wait_until(lambda: b"api.other.example" in proxy.admin("/config_dump")[2], what="the new configuration")
    result = curl(port, "/")
    assert result.status == 503 and b"matches none of subjectAltNames" in result.body
    assert cluster_stat(proxy, port, "ssl.fail_verify_san") >= 1


@pytest.mark.parametrize("revoked", [False, True])
def test_ca_crl(revoked, ca, servers, proxies):
    cert = ca.issue("svc", HOST)
    crl = ca.crl("ca", revoked=(cert.cert,) if revoked else ())
    up = servers(Upstream, "tls", tls=server_context(cert))
    port = free_port()
    proxy = proxies(mesh(port, up, {"mode": "SIMPLE", "caCertificates": str(ca.ca_path), "caCrl": str(crl)}))
    result = curl(port, "/")
    if revoked:
        assert result.status == 503 and b"certificate revoked" in result.body, result.body
        assert cluster_stat(proxy, port, "ssl.fail_verify_error") >= 1
    else:
        assert result.status == 200


# --- MUTUAL ----------------------------------------------------------------------------------------------


def test_mutual_presents_the_client_certificate(ca, tmp_path, servers, proxies):
    up = servers(Upstream, "mtls", tls=server_context(ca.issue("svc", HOST), client_ca=ca.ca_path))
    client = ca.issue("client", common_name="sleep-client")
    port = free_port()
    tls = {"mode": "MUTUAL", "clientCertificate": str(client.cert), "privateKey": str(client.key),
           "caCertificates": str(ca.ca_path)}
    proxy = proxies(mesh(port, up, tls))
    result = curl(port, "/")
    assert result.status == 200, (result, proxy.stderr())
    peer = x509.load_der_x509_certificate(up.sessions[1].peer_der)
    assert peer.subject.rfc4514_string() == "CN=sleep-client"


def test_mutual_from_credential_name(ca, tmp_path, servers, proxies):
    up = servers(Upstream, "mtls", tls=server_context(ca.issue("svc", HOST), client_ca=ca.ca_path))
    credentials = tmp_path / "credentials"
    secret = credentials / "client-credential"
    secret.mkdir(parents=True)
    client = ca.issue("client", common_name="from-secret")
    (secret / "tls.crt").write_bytes(client.cert.read_bytes())
    (secret / "tls.key").write_bytes(client.key.read_bytes())
    (secret / "ca.crt").write_bytes(ca.ca_path.read_bytes())
    port = free_port()
    resources = mesh(port, up, {"mode": "MUTUAL", "credentialName": "client-credential"})
    proxy = proxies(resources, extra_args=["--credentials-dir", str(credentials)])
    assert curl(port, "/").status == 200, proxy.stderr()
    assert x509.load_der_x509_certificate(up.sessions[1].peer_der).subject.rfc4514_string() == "CN=from-secret"
    # an unknown credential fails closed: no plaintext fallback
    proxy.write_config(mesh(port, up, {"mode": "MUTUAL", "credentialName": "missing"}))
    wait_until(lambda: b'"missing"' in proxy.admin("/config_dump")[2], what="the new configuration")
    result = curl(port, "/")
    assert result.status == 503 and b"no folder" in result.body
    assert up.count() == 1


# --- HTTP/2 over TLS, ALPN ------------------------------------------------------------------------


def test_h2_over_tls_with_alpn(ca, servers, proxies):
    up = servers(H2Upstream, tls=server_context(ca.issue("svc", HOST), alpn=("h2",)))
    port = free_port()
    resources = mesh(port, up, {"mode": "SIMPLE", "caCertificates": str(ca.ca_path)},
                     pool={"http": {"h2UpgradePolicy": "UPGRADE"}})
    proxy = proxies(resources)
    result = curl(port, "/h2", "--http1.1")
    assert result.status == 200, (result, proxy.stderr())
    assert up.sessions[1].alpn == "h2"
    assert up.requests[0].headers[":path"] == "/h2"


def test_openssl_s_server_as_the_upstream(ca, servers, proxies, tmp_path):
    cert = ca.issue("svc", HOST)
    server_port = free_port()
    server = subprocess.Popen(["openssl", "s_server", "-accept", str(server_port), "-cert", str(cert.cert), "-key", str(cert.key),
                               "-www", "-quiet"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_until(lambda: _listening(server_port), what="openssl s_server listening")
        port = free_port()
        proxy = proxies(mesh(port, server_port, {"mode": "SIMPLE", "caCertificates": str(ca.ca_path)}))
        result = curl(port, "/")
        assert result.status == 200, (result, proxy.stderr())
        assert b"New, TLSv1.3, Cipher is" in result.body  # s_server -www reports the session it negotiated
    finally:
        server.kill()
        server.wait(timeout=10)


def _listening(port: int) -> bool:
    try:
        socket.create_connection((LOCALHOST, port), timeout=0.5).close()
        return True
    except OSError:
        return False


# --- ISTIO_MUTUAL ------------------------------------------------------------------------------------


@pytest.fixture
def mesh_ca(tmp_path):
    return MeshPki(tmp_path / "mesh")


def test_istio_mutual_h2_inside_with_the_spiffe_identity_checked(mesh_ca, servers, proxies):
    server_dir = mesh_ca.issue("default", "backend")
    up = servers(H2Upstream, tls=mesh_server_context(server_dir))
    port = free_port()
    resources = mesh(port, up, {"mode": "ISTIO_MUTUAL"}, service_account="backend")
    proxy = proxies(resources, extra_args=["--cert-dir", str(mesh_ca.issue("default", "sleep"))])
    result = curl(port, "/mesh", "--http1.1")  # the app speaks HTTP/1.1 ...
    assert result.status == 200, (result, proxy.stderr())
    session = up.sessions[1]
    assert session.alpn == "istio-h2"  # ... the sidecars HTTP/2 inside mTLS
    assert session.sni == f"outbound_.{port}_._.{HOST}"
    assert peer_spiffe_id(session.peer_der).uri == "spiffe://cluster.local/ns/default/sa/sleep"
    assert up.requests[0].headers[":path"] == "/mesh"
    assert cluster_stat(proxy, port, "ssl.handshake") >= 1


def test_istio_mutual_new_connections_present_the_rotated_certificate(mesh_ca, servers, proxies):
    """TCP: each client connection is a new upstream connection, which shows what it presents."""
    from proxy_harness import TcpServer
    up = servers(TcpServer, "echo", tls=mesh_server_context(mesh_ca.issue("default", "db")))
    port = free_port()
    cert_dir = mesh_ca.issue("default", "sleep")
    proxy = proxies(mesh(port, up, {"mode": "ISTIO_MUTUAL"}, protocol="TCP"), extra_args=["--cert-dir", str(cert_dir)])
    held = socket.create_connection((LOCALHOST, port), timeout=5)  # opened before the rotation
    held.sendall(b"before")
    assert held.recv(100) == b"before"
    first = x509.load_der_x509_certificate(up.sessions[1].peer_der).serial_number
    mesh_ca.issue("default", "sleep")  # the same --cert-dir, a new certificate
    rotated = x509.load_pem_x509_certificate((cert_dir / "cert-chain.pem").read_bytes()).serial_number

    def presented() -> bool:
        with socket.create_connection((LOCALHOST, port), timeout=5) as sock:
            sock.sendall(b"ping")
            assert sock.recv(100) == b"ping", proxy.stderr()
        return x509.load_der_x509_certificate(up.sessions[max(up.sessions)].peer_der).serial_number == rotated
    wait_until(presented, what="a new connection with the rotated certificate")
    assert rotated != first
    held.sendall(b"after")  # the connection made with the old certificate carries on
    assert held.recv(100) == b"after"
    held.close()


def test_istio_mutual_refuses_a_server_with_another_identity(mesh_ca, servers, proxies):
    up = servers(H2Upstream, tls=mesh_server_context(mesh_ca.issue("default", "intruder")))
    port = free_port()
    resources = mesh(port, up, {"mode": "ISTIO_MUTUAL"}, service_account="backend")
    proxy = proxies(resources, extra_args=["--cert-dir", str(mesh_ca.issue("default", "sleep"))])
    result = curl(port, "/")
    assert result.status == 503
    assert b"spiffe://cluster.local/ns/default/sa/intruder runs none of the destination's service accounts" in result.body
    assert up.requests == []
    assert cluster_stat(proxy, port, "ssl.fail_verify_san") >= 1


@pytest.mark.parametrize("server_sa,ok", [("vm-backend", True), ("intruder", False)])
def test_istio_mutual_accepts_the_service_entrys_subject_alt_names(server_sa, ok, mesh_ca, servers, proxies):
    up = servers(H2Upstream, tls=mesh_server_context(mesh_ca.issue("default", server_sa)))
    port = free_port()
    resources = mesh(port, up, {"mode": "ISTIO_MUTUAL"}, service_account="backend")
    resources[0]["spec"]["subjectAltNames"] = ["spiffe://cluster.local/ns/default/sa/vm-backend"]
    proxies(resources, extra_args=["--cert-dir", str(mesh_ca.issue("default", "sleep"))])
    assert curl(port, "/").status == (200 if ok else 503)


def test_istio_mutual_refuses_a_server_of_another_mesh(mesh_ca, tmp_path, servers, proxies):
    other = MeshPki(tmp_path / "other-mesh")
    up = servers(H2Upstream, tls=mesh_server_context(other.issue("default", "backend")))
    port = free_port()
    proxy = proxies(mesh(port, up, {"mode": "ISTIO_MUTUAL"}),
                    extra_args=["--cert-dir", str(mesh_ca.issue("default", "sleep"))])
    result = curl(port, "/")
    assert result.status == 503 and b"CERTIFICATE_VERIFY_FAILED" in result.body
    assert cluster_stat(proxy, port, "ssl.fail_verify_error") >= 1


def test_istio_mutual_without_a_certificate_fails_closed(servers, proxies, mesh_ca):
    up = servers(H2Upstream, tls=mesh_server_context(mesh_ca.issue("default", "backend")))
    port = free_port()
    proxies(mesh(port, up, {"mode": "ISTIO_MUTUAL"}))  # no --cert-dir
    result = curl(port, "/")
    assert result.status == 503 and b"no valid mesh certificate" in result.body
    assert up.connections == 0


def test_istio_mutual_tcp_offers_the_tcp_alpn(mesh_ca, servers, proxies):
    from proxy_harness import TcpServer
    up = servers(TcpServer, "echo", tls=mesh_server_context(mesh_ca.issue("default", "db")))
    port = free_port()
    resources = mesh(port, up, {"mode": "ISTIO_MUTUAL"}, protocol="TCP", service_account="db")
    proxy = proxies(resources, extra_args=["--cert-dir", str(mesh_ca.issue("default", "sleep"))])
    with socket.create_connection((LOCALHOST, port), timeout=5) as sock:
        sock.sendall(b"ping through mTLS")
        assert sock.recv(100) == b"ping through mTLS"
    assert up.sessions[1].alpn == "istio-peer-exchange"
    assert peer_spiffe_id(up.sessions[1].peer_der).service_account == "sleep"
    assert cluster_stat(proxy, port, "ssl.handshake") >= 1


# --- auto mTLS --------------------------------------------------------------------------------------


def test_auto_mtls_per_endpoint_label(mesh_ca, servers, proxies):
    sidecar_up = servers(H2Upstream, tls=mesh_server_context(mesh_ca.issue("default", "reviews")))
    plain_up = servers(Upstream, "plain")
    port = free_port()
    meshed = endpoint(sidecar_up, {"version": "v1", **SIDECAR_LABEL})
    meshed["serviceAccount"] = "reviews"
    resources = [service_entry(port, [meshed, endpoint(plain_up, {"version": "v2"})]),
                 destination_rule(subsets=["v1", "v2"]),  # no tls anywhere: auto mTLS decides
                 {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                  "metadata": {"name": "svc", "namespace": "default"},
                  "spec": {"hosts": [HOST], "http": [
                      {"match": [{"uri": {"prefix": "/v1"}}], "route": [{"destination": {"host": HOST, "subset": "v1"}}]},
                      {"route": [{"destination": {"host": HOST, "subset": "v2"}}]}]}},
                 sidecar((port, "HTTP"))]
    proxy = proxies(resources, extra_args=["--cert-dir", str(mesh_ca.issue("default", "sleep"))])
    assert curl(port, "/v1").status == 200
    assert curl(port, "/v2").status == 200
    assert sidecar_up.sessions[1].alpn == "istio-h2"  # the sidecar endpoint: mTLS
    assert plain_up.requests[0].target == "/v2"  # the other: plaintext HTTP/1.1
    assert proxy.stats().get(f"cluster.outbound|{port}|v1|{HOST}.ssl.handshake", 0) >= 1


def test_auto_mtls_without_a_certificate_is_plaintext_and_says_so(servers, proxies):
    up = servers(Upstream, "plain")
    port = free_port()
    proxy = proxies(mesh(port, up, None, labels=SIDECAR_LABEL))
    assert curl(port, "/").status == 200
    assert up.sessions == {} and up.requests[0].target == "/"
    wait_until(lambda: "plaintext to its sidecar endpoints instead of auto mTLS" in proxy.stderr(), what="the log line")
    assert curl(port, "/").status == 200
    assert proxy.stderr().count("instead of auto mTLS") == 1  # once, not per request


def test_tls_disable_turns_auto_mtls_off(servers, proxies, mesh_ca):
    up = servers(Upstream, "plain")
    port = free_port()
    proxies(mesh(port, up, {"mode": "DISABLE"}, labels=SIDECAR_LABEL),
            extra_args=["--cert-dir", str(mesh_ca.issue("default", "sleep"))])
    assert curl(port, "/").status == 200
    assert up.sessions == {}


# --- Istio's "mutual TLS origination for egress traffic" (at the sidecar) -----------------------------

NGINX = "my-nginx.mesh-external.svc.cluster.local"
SAMPLES = Path(__file__).parents[1] / "api" / "data" / "istio_samples" / "istio.io"


@pytest.mark.parametrize("labels,expected", [("app=sleep", 200), ("app=other", 503)])
def test_istios_mutual_tls_origination_task(labels, expected, ca, tmp_path, servers, proxies):
    """The task's DestinationRule as published (tests/api/data/istio_samples); the secret
    `client-credential` is a folder of --credentials-dir; the app calls
    http://my-nginx.mesh-external.svc.cluster.local:443. A proxy the workloadSelector does not
    select gets no TLS, and the server (which wants TLS) drops the plaintext request: 503."""
    up = servers(Upstream, "nginx", tls=server_context(ca.issue("nginx", NGINX), client_ca=ca.ca_path))
    secret = tmp_path / "credentials" / "client-credential"
    secret.mkdir(parents=True)
    client = ca.issue("client", common_name="client.example.com")
    for name, source in (("tls.crt", client.cert), ("tls.key", client.key), ("ca.crt", ca.ca_path)):
        (secret / name).write_bytes(source.read_bytes())
    bind = f"127.{random.randrange(1, 255)}.{random.randrange(1, 255)}.{random.randrange(2, 255)}"  # port 443 is shared
    entry = service_entry(443, [{"address": LOCALHOST, "ports": {"http": up.port}}], host=NGINX)
    egress = sidecar((443, "HTTP"))
    egress["spec"]["egress"][0]["bind"] = bind
    rule = (SAMPLES / "egress-mtls-origination-sidecar.yaml").read_text()
    proxy = proxies(dump_yaml([entry, egress]) + "---\n" + rule, labels=labels,
                    extra_args=["--credentials-dir", str(secret.parent)])
    done = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                           "-H", f"Host: {NGINX}:443", f"http://{bind}:443/"], capture_output=True, text=True, timeout=20)
    assert done.stdout == str(expected), (done, proxy.stderr())
    if expected == 200:
        session = up.sessions[1]
        assert session.sni == NGINX
        assert x509.load_der_x509_certificate(session.peer_der).subject.rfc4514_string() == "CN=client.example.com"


def rewritten(port: int, up, tls: dict, authority: str) -> list[dict]:
    resources = mesh(port, up, tls)
    route = {"rewrite": {"authority": authority}, "route": [{"destination": {"host": HOST}}]}
    return resources[:-1] + [{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                              "metadata": {"name": "svc", "namespace": "default"},
                              "spec": {"hosts": [HOST], "http": [route]}}, resources[-1]]


def test_auto_sni_is_the_rewritten_host(ca, servers, proxies):
    """As Envoy's auto SNI: the host the request goes upstream with, after the route's rewrite."""
    up = servers(Upstream, "tls", tls=server_context(ca.issue("api", "api.example")))
    port = free_port()
    proxy = proxies(rewritten(port, up, {"mode": "SIMPLE", "caCertificates": str(ca.ca_path)}, "api.example"))
    assert curl(port, "/").status == 200, proxy.stderr()
    assert up.sessions[1].sni == "api.example"
    assert up.requests[0].header("host") == "api.example"


@pytest.mark.parametrize("host", ["a..b", "x" * 300])
def test_a_host_that_cannot_be_an_sni_is_a_connect_failure(host, ca, servers, proxies):
    """Auto SNI takes the request's host: one that is no valid server name fails that request
    (503 UF) and nothing else."""
    up = servers(Upstream, "tls", tls=server_context(ca.issue("svc", HOST)))
    port = free_port()
    proxy = proxies(rewritten(port, up, {"mode": "SIMPLE", "caCertificates": str(ca.ca_path)}, host))
    result = curl(port, "/")
    assert result.status == 503, (result, proxy.stderr())
    assert up.requests == [] and proxy.running()
