"""TLS termination on a gateway port (pymesh.proxy.gateway_tls) with real clients: curl and
openssl s_client against a proxy worker whose listener carries hand-made TlsServerChains, with
certificates made as Istio's "Secure Gateways" task makes them and credentials laid out as the
mounted Kubernetes secrets of that task. SIMPLE, MUTUAL, OPTIONAL_MUTUAL, several servers picked
by SNI, a PASSTHROUGH server on the same port, versions and ciphers, rotation and broken files on
disk, missing credentials, and hostile first bytes."""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import replace

import pytest

from gateway_tls_bed import (InProcessGateway, chain, compiled, curl_https, istio_example_certs, remove_credential,
                             s_client, tls_echo, tls_settings, with_tls_servers, write_credential)
from mesh_pki import MeshPki, client_context as mesh_client_context, curl_cert, uri as mesh_uri
from proxy_harness import LOCALHOST, TcpServer, endpoint, free_port, http_mesh, service_entry, tcp_mesh, wait_until
from pymesh.proxy.gateway_tls import GatewayTlsRouter
from pymesh.routing.sni import SniChain, SniTable
from tls_material import server_context
from throwaway_ca import ThrowawayCA

pytestmark = pytest.mark.timeout(120)

HTTPBIN, HELLO = "httpbin.example.com", "helloworld.example.com"
HOST = "svc.local"


@pytest.fixture(scope="module")
def certs1(tmp_path_factory):
    return istio_example_certs(tmp_path_factory.mktemp("example_certs1"), hosts=(HTTPBIN, HELLO))


@pytest.fixture(scope="module")
def certs2(tmp_path_factory):
    return istio_example_certs(tmp_path_factory.mktemp("example_certs2"), hosts=(HTTPBIN,), clients=())


@pytest.fixture
def creds(tmp_path):
    directory = tmp_path / "credentials"
    directory.mkdir()
    return directory


@pytest.fixture
def mesh(upstreams):
    """A port with an HTTP route table to a real upstream (what a gateway's VirtualService
    compiles to); returns (port, snapshot, upstream)."""
    up = upstreams("httpbin")
    port = free_port()
    return port, compiled(http_mesh(port, {"v1": up})), up


def gateway(mesh_, creds, *chains, sni_routes=None):
    port, snapshot, _ = mesh_
    table = next(l for l in snapshot.listeners if l.port == port).route_table
    built = tuple(c(table) for c in chains)
    return InProcessGateway(with_tls_servers(snapshot, port, built, sni_routes), creds)


def simple(names, credential, **fields):
    return lambda table: chain(names, tls_settings("SIMPLE", credential_name=credential, **fields), route_table=table)


def mutual(names, credential, mode="MUTUAL", **fields):
    return lambda table: chain(names, tls_settings(mode, credential_name=credential, **fields), route_table=table)


def get(port, host, *args, path="/status/418"):
    return curl_https(port, host, path, "-H", f"Host: {HOST}", *args)


def served_subject(port, servername):
    """The subject of the certificate the gateway presents for `servername`."""
    done = s_client(port, servername=servername, stdin=b"")
    return done.stdout.decode(errors="replace")


# --- SIMPLE ------------------------------------------------------------------------------------


def test_simple_with_a_credential_serves_http2_and_http11(mesh, creds, certs1):
    write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
    port, _, up = mesh
    with gateway(mesh, creds, simple((HTTPBIN,), "httpbin-credential")) as gw:
        h2 = get(port, HTTPBIN, "--cacert", str(certs1 / "example.com.crt"))
        assert h2.stdout.endswith("200 2"), h2.stderr  # curl's default over TLS: ALPN h2
        h1 = get(port, HTTPBIN, "--http1.1", "--cacert", str(certs1 / "example.com.crt"))
        assert h1.stdout.endswith("200 1.1"), h1.stderr
        seen = up.wait_requests(2)
        assert [r.header("x-forwarded-proto") for r in seen] == ["https", "https"]
        listener = next(l for l in gw.snapshot.listeners if l.port == port).name
        assert gw.stats(listener)["ssl.handshake"] == 2


def test_the_wrong_ca_does_not_verify_the_gateway(mesh, creds, certs1, certs2):
    write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
    port, _, _ = mesh
    with gateway(mesh, creds, simple((HTTPBIN,), "httpbin-credential")):
        done = get(port, HTTPBIN, "--cacert", str(certs2 / "example.com.crt"))
        # the task's CAs share their name: curl finds the issuer by name and its signature fails
        assert done.returncode == 35 and "rsa routines" in done.stderr, done.stderr


def test_serverCertificate_and_privateKey_files(mesh, creds, certs1):
    port, _, _ = mesh
    files = lambda table: chain((HTTPBIN,), tls_settings("SIMPLE", server_certificate=str(certs1 / f"{HTTPBIN}.crt"),
                                                         private_key=str(certs1 / f"{HTTPBIN}.key")), route_table=table)
    with gateway(mesh, creds, files):
        done = get(port, HTTPBIN, "--cacert", str(certs1 / "example.com.crt"))
        assert done.stdout.endswith("200 2"), done.stderr


def test_two_servers_on_one_port_are_picked_by_sni(mesh, creds, certs1):
    write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
    write_credential(creds, "helloworld-credential", certs1 / f"{HELLO}.crt", certs1 / f"{HELLO}.key")
    port, _, _ = mesh
    with gateway(mesh, creds, simple((HTTPBIN,), "httpbin-credential"), simple((HELLO,), "helloworld-credential")):
        for host in (HTTPBIN, HELLO):
            done = get(port, host, "--cacert", str(certs1 / "example.com.crt"))
            assert done.stdout.endswith("200 2"), (host, done.stderr)  # curl checked the name: the right cert
            assert f"CN = {host}" in served_subject(port, host)


def test_a_name_no_server_serves_gets_an_alert_not_a_hang(mesh, creds, certs1):
    write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
    port, _, _ = mesh
    with gateway(mesh, creds, simple((HTTPBIN,), "httpbin-credential")) as gw:
        other = s_client(port, servername="other.example.com")
        assert other.returncode != 0 and b"unrecognized name" in other.stdout, other.stdout
        none = s_client(port)  # no SNI: no "*" server takes it
        assert none.returncode != 0 and b"handshake failure" in none.stdout, none.stdout
        listener = next(l for l in gw.snapshot.listeners if l.port == port).name
        assert gw.stats(listener)["no_filter_chain_match"] == 2


def test_a_wildcard_server_and_a_catch_all(mesh, creds, certs1, tmp_path):
    ca = ThrowawayCA(tmp_path / "ca")
    wild, anyname = ca.issue("wild", "*.example.com"), ca.issue("any", "fallback.test")
    write_credential(creds, "wild", wild.cert, wild.key)
    write_credential(creds, "any", anyname.cert, anyname.key)
    port, _, _ = mesh
    with gateway(mesh, creds, simple(("*.example.com",), "wild"), simple(("*",), "any")):
        assert "CN = *.example.com" in served_subject(port, "a.example.com")
        assert "CN = fallback.test" in served_subject(port, "other.org")
        assert "CN = fallback.test" in s_client(port).stdout.decode()  # no SNI: the "*" server


# --- MUTUAL ------------------------------------------------------------------------------------


def test_mutual_as_the_task(mesh, creds, certs1, certs2):
    """`kubectl create secret generic httpbin-credential --from-file=tls.key --from-file=tls.crt
    --from-file=ca.crt`, mode MUTUAL: no client certificate fails, one from another CA fails,
    the task's client certificate gets its answer."""
    write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key",
                     certs1 / "example.com.crt")
    other_client = istio_example_certs(certs2.parent / "other_clients", hosts=(), clients=("client.example.com",))
    port, _, _ = mesh
    cacert = ("--cacert", str(certs1 / "example.com.crt"))
    with gateway(mesh, creds, mutual((HTTPBIN,), "httpbin-credential")) as gw:
        bare = get(port, HTTPBIN, *cacert)
        # TLS 1.3: curl's handshake ends before the server checks; the connection then closes
        # (the loop's TLS protocol drops the certificate_required alert OpenSSL made)
        assert bare.returncode != 0 and "200" not in bare.stdout, bare.stderr
        wrong = get(port, HTTPBIN, *cacert, "--cert", str(other_client / "client.example.com.crt"),
                    "--key", str(other_client / "client.example.com.key"))
        assert wrong.returncode != 0, wrong.stdout
        right = get(port, HTTPBIN, *cacert, "--cert", str(certs1 / "client.example.com.crt"),
                    "--key", str(certs1 / "client.example.com.key"))
        assert right.stdout.endswith("200 2"), right.stderr
        listener = next(l for l in gw.snapshot.listeners if l.port == port).name
        stats = gw.stats(listener)
        assert stats["ssl.fail_verify_no_cert"] == 1 and stats["ssl.fail_verify_error"] == 1
        assert stats["ssl.handshake"] == 1


def test_mutual_with_the_ca_in_a_separate_cacert_secret(mesh, creds, certs1):
    write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
    write_credential(creds, "httpbin-credential-cacert", ca=certs1 / "example.com.crt")
    port, _, up = mesh
    with gateway(mesh, creds, mutual((HTTPBIN,), "httpbin-credential")):
        right = get(port, HTTPBIN, "--cacert", str(certs1 / "example.com.crt"),
                    "--cert", str(certs1 / "client.example.com.crt"), "--key", str(certs1 / "client.example.com.key"))
        assert right.stdout.endswith("200 2"), right.stderr
        xfcc = up.wait_requests(1)[0].header("x-forwarded-client-cert")
        assert xfcc is not None and "CN=client.example.com" in xfcc and "Hash=" in xfcc


def test_subject_alt_names_and_pins_refuse_other_clients(mesh, creds, tmp_path):
    ca = ThrowawayCA(tmp_path / "ca")
    server = ca.issue("server", HTTPBIN)
    alice, bob = ca.issue("alice", "alice.clients"), ca.issue("bob", "bob.clients")
    write_credential(creds, "cred", server.cert, server.key, ca.ca_path)
    port, _, up = mesh
    with gateway(mesh, creds, mutual((HTTPBIN,), "cred", subject_alt_names=("alice.clients",))) as gw:
        ok = get(port, HTTPBIN, "--cacert", str(ca.ca_path), "--cert", str(alice.cert), "--key", str(alice.key))
        assert ok.stdout.endswith("200 2"), ok.stderr
        xfcc = up.wait_requests(1)[0].header("x-forwarded-client-cert")
        assert xfcc.endswith(';Subject="CN=alice.clients";DNS=alice.clients'), xfcc  # Envoy's order
        refused = get(port, HTTPBIN, "--cacert", str(ca.ca_path), "--cert", str(bob.cert), "--key", str(bob.key))
        assert refused.returncode != 0
        listener = next(l for l in gw.snapshot.listeners if l.port == port).name
        assert gw.stats(listener)["ssl.fail_verify_san"] == 1


def test_optional_mutual_verifies_only_a_presented_certificate(mesh, creds, certs1, certs2):
    write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key",
                     certs1 / "example.com.crt")
    other_client = istio_example_certs(certs2.parent / "other_clients2", hosts=(), clients=("client.example.com",))
    port, _, _ = mesh
    cacert = ("--cacert", str(certs1 / "example.com.crt"))
    with gateway(mesh, creds, mutual((HTTPBIN,), "httpbin-credential", mode="OPTIONAL_MUTUAL")):
        assert get(port, HTTPBIN, *cacert).stdout.endswith("200 2")
        wrong = get(port, HTTPBIN, *cacert, "--cert", str(other_client / "client.example.com.crt"),
                    "--key", str(other_client / "client.example.com.key"))
        assert wrong.returncode != 0


# --- versions and ciphers ------------------------------------------------------------------------


def test_tls_auto_refuses_tls11_and_a_minimum_of_13_refuses_12(mesh, creds, certs1):
    write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
    write_credential(creds, "helloworld-credential", certs1 / f"{HELLO}.crt", certs1 / f"{HELLO}.key")
    port, _, _ = mesh
    with gateway(mesh, creds, simple((HTTPBIN,), "httpbin-credential"),
                 simple((HELLO,), "helloworld-credential", min_protocol_version="TLSV1_3")):
        assert s_client(port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", servername=HTTPBIN).returncode != 0
        assert b"TLSv1.2" in s_client(port, "-tls1_2", servername=HTTPBIN).stdout
        assert b"TLSv1.3" in s_client(port, servername=HTTPBIN).stdout
        assert s_client(port, "-tls1_2", servername=HELLO).returncode != 0
        assert b"TLSv1.3" in s_client(port, servername=HELLO).stdout


def test_an_old_minimum_asked_for_is_served(mesh, creds, certs1):
    """minProtocolVersion TLSV1_1 with TLS 1.1 ciphers (Istio warns they must be set): a TLS 1.1
    client gets in, although OpenSSL 3 refuses TLS 1.1 by default."""
    write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
    port, _, _ = mesh
    with gateway(mesh, creds, simple((HTTPBIN,), "httpbin-credential", min_protocol_version="TLSV1_1",
                                     cipher_suites=("ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES128-GCM-SHA256"))):
        old = s_client(port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", servername=HTTPBIN)
        assert b"Protocol version: TLSv1.1" in old.stdout, old.stdout


def test_cipher_suites_limit_tls12(mesh, creds, certs1):
    write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
    port, _, _ = mesh
    with gateway(mesh, creds, simple((HTTPBIN,), "httpbin-credential",
                                     cipher_suites=("ECDHE-RSA-AES256-GCM-SHA384", "NOT-A-CIPHER"))):
        ok = s_client(port, "-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384", servername=HTTPBIN)
        assert b"ECDHE-RSA-AES256-GCM-SHA384" in ok.stdout, ok.stdout
        refused = s_client(port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256", servername=HTTPBIN)
        assert refused.returncode != 0


# --- files on disk -------------------------------------------------------------------------------


def _served_fingerprint(port: int, servername: str, cafile) -> bytes:
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection((LOCALHOST, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=servername) as tls:
            return tls.getpeercert(True)


def test_a_rotated_certificate_is_served_without_a_restart(mesh, creds, certs1, certs2):
    """The task's rotation: the secret deleted and created again with example_certs2's."""
    write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
    port, _, _ = mesh
    with gateway(mesh, creds, simple((HTTPBIN,), "httpbin-credential")) as gw:
        first = _served_fingerprint(port, HTTPBIN, certs1 / "example.com.crt")
        remove_credential(creds, "httpbin-credential")
        write_credential(creds, "httpbin-credential", certs2 / f"{HTTPBIN}.crt", certs2 / f"{HTTPBIN}.key")
        wait_until(lambda: get(port, HTTPBIN, "--cacert", str(certs2 / "example.com.crt")).returncode == 0,
                   timeout=10)
        assert _served_fingerprint(port, HTTPBIN, certs2 / "example.com.crt") != first
        assert get(port, HTTPBIN, "--cacert", str(certs1 / "example.com.crt")).returncode == 35
        listener = next(l for l in gw.snapshot.listeners if l.port == port).name
        assert gw.stats(listener)["server_ssl_socket_factory.ssl_context_update_by_sds"] >= 2


def test_a_broken_new_file_keeps_the_last_good_certificate(mesh, creds, certs1, tmp_path):
    write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
    port, _, _ = mesh
    with gateway(mesh, creds, simple((HTTPBIN,), "httpbin-credential")) as gw:
        listener = next(l for l in gw.snapshot.listeners if l.port == port).name
        garbage = tmp_path / "garbage.pem"
        garbage.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        write_credential(creds, "httpbin-credential", cert=garbage)
        wait_until(lambda: gw.stats(listener)["server_ssl_socket_factory.ssl_context_update_rejected"] == 1,
                   timeout=10)
        done = get(port, HTTPBIN, "--cacert", str(certs1 / "example.com.crt"))
        assert done.stdout.endswith("200 2"), done.stderr


def test_a_missing_credential_fails_only_its_own_server(mesh, creds, certs1):
    write_credential(creds, "helloworld-credential", certs1 / f"{HELLO}.crt", certs1 / f"{HELLO}.key")
    port, _, _ = mesh
    with gateway(mesh, creds, simple((HTTPBIN,), "httpbin-credential"),
                 simple((HELLO,), "helloworld-credential")) as gw:
        assert get(port, HELLO, "--cacert", str(certs1 / "example.com.crt")).stdout.endswith("200 2")
        missing = s_client(port, servername=HTTPBIN)
        assert missing.returncode != 0 and b"handshake failure" in missing.stdout, missing.stdout
        listener = next(l for l in gw.snapshot.listeners if l.port == port).name
        assert gw.stats(listener)["server_ssl_socket_factory.downstream_context_secrets_not_ready"] == 1
        # created after start: served from the next handshake on
        write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
        wait_until(lambda: get(port, HTTPBIN, "--cacert", str(certs1 / "example.com.crt")).returncode == 0,
                   timeout=10)


# --- PASSTHROUGH on the same port ----------------------------------------------------------------


def test_a_passthrough_server_on_the_same_port(upstreams, creds, certs1, tmp_path):
    ca = ThrowawayCA(tmp_path / "ca")
    backend_cert = ca.issue("backend", "nginx.example.com")
    backend = TcpServer("echo", tls=server_context(backend_cert))
    try:
        up = upstreams("httpbin")
        port, tcp_port = free_port(), free_port()
        resources = http_mesh(port, {"v1": up})
        resources.insert(0, service_entry(tcp_port, [endpoint(backend, port_name="tcp")], host="nginx.local",
                                          protocol="TCP", name="nginx"))
        resources[-1]["spec"]["egress"].append({"port": {"number": tcp_port, "protocol": "TCP", "name": "tcp"},
                                                "bind": LOCALHOST, "captureMode": "NONE", "hosts": ["*/*"]})
        snapshot = compiled(resources)
        route = next(l for l in snapshot.listeners if l.port == tcp_port).tcp_route
        table = next(l for l in snapshot.listeners if l.port == port).route_table
        write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
        sni = SniTable((SniChain(("nginx.example.com",), (), route),))
        terminated = chain((HTTPBIN,), tls_settings("SIMPLE", credential_name="httpbin-credential"), route_table=table)
        with InProcessGateway(with_tls_servers(snapshot, port, (terminated,), sni), creds):
            assert get(port, HTTPBIN, "--cacert", str(certs1 / "example.com.crt")).stdout.endswith("200 2")
            # the backend's own certificate, through the gateway that holds no key for it
            assert tls_echo(port, "nginx.example.com", ca.ca_path) == b"ping"
    finally:
        backend.stop()


# --- hostile clients -----------------------------------------------------------------------------


def test_garbage_and_a_slow_hello_are_handled(mesh, creds, certs1):
    write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
    port, _, _ = mesh
    with gateway(mesh, creds, simple((HTTPBIN,), "httpbin-credential")):
        with socket.create_connection((LOCALHOST, port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # plaintext on a TLS port: closed
            assert sock.recv(100) == b""
        with socket.create_connection((LOCALHOST, port), timeout=5) as sock:
            sock.sendall(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00")  # a handshake record, not a hello
            assert sock.recv(100) == b""
        # a real ClientHello sent a few bytes at a time still completes
        context = ssl.create_default_context(cafile=str(certs1 / "example.com.crt"))
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = context.wrap_bio(incoming, outgoing, server_hostname=HTTPBIN)
        with pytest.raises(ssl.SSLWantReadError):
            client.do_handshake()
        hello = outgoing.read()
        with socket.create_connection((LOCALHOST, port), timeout=5) as sock:
            for at in range(0, len(hello), 64):
                sock.sendall(hello[at:at + 64])
                time.sleep(0.01)  # separate segments: the router waits for the whole hello
            reply = sock.recv(5)
            assert reply[:1] == b"\x16", reply  # a ServerHello record


# --- ISTIO_MUTUAL, two certificates, TLS servers -------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return MeshPki(tmp_path_factory.mktemp("mesh-pki"))


def test_istio_mutual_takes_mesh_workloads_only(mesh, creds, pki, tmp_path):
    """The gateway's own mesh certificate (--cert-dir) and the mesh roots: a sidecar's
    certificate gets in, with its SPIFFE identity in x-forwarded-client-cert; none, or one of
    another mesh, does not."""
    gateway_dir = pki.issue("istio-system", "istio-ingressgateway-service-account")
    client_dir = pki.issue("default", "sleep")
    stranger_dir = MeshPki(tmp_path / "other-mesh").issue("default", "sleep")
    port, snapshot, up = mesh
    table = next(l for l in snapshot.listeners if l.port == port).route_table
    mtls = chain((HTTPBIN,), tls_settings("ISTIO_MUTUAL"), route_table=table)
    with InProcessGateway(with_tls_servers(snapshot, port, (mtls,)), creds, cert_dir=gateway_dir) as gw:
        ok = get(port, HTTPBIN, *curl_cert(client_dir))
        assert ok.stdout.endswith("200 2"), ok.stderr
        xfcc = up.wait_requests(1)[0].header("x-forwarded-client-cert")
        assert f"URI={mesh_uri('default', 'sleep')}" in xfcc
        assert f"By={mesh_uri('istio-system', 'istio-ingressgateway-service-account')}" in xfcc
        assert get(port, HTTPBIN, "-k").returncode != 0
        assert get(port, HTTPBIN, *curl_cert(stranger_dir)).returncode != 0
        listener = next(l for l in gw.snapshot.listeners if l.port == port).name
        assert gw.stats(listener)["ssl.handshake"] == 1


def test_credential_names_serve_an_rsa_and_an_ecdsa_certificate(mesh, creds, certs1, tmp_path):
    ca = ThrowawayCA(tmp_path / "ca")  # EC P-256
    ec = ca.issue("ec", HTTPBIN)
    write_credential(creds, "rsa", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
    write_credential(creds, "ecdsa", ec.cert, ec.key)
    port, _, _ = mesh
    both = lambda table: chain((HTTPBIN,), tls_settings("SIMPLE", credential_names=("rsa", "ecdsa")),
                               route_table=table)
    with gateway(mesh, creds, both):
        rsa = s_client(port, "-sigalgs", "RSA-PSS+SHA256:RSA+SHA256", servername=HTTPBIN).stdout.decode()
        ecdsa = s_client(port, "-sigalgs", "ECDSA+SHA256", servername=HTTPBIN).stdout.decode()
        assert "O = httpbin organization" in rsa and "O = httpbin organization" not in ecdsa, (rsa, ecdsa)
        assert f"CN = {HTTPBIN}" in ecdsa


def tcp_gateway(backend):
    """(a free gateway port, a snapshot with a listener on it to become the TLS port, the TCP
    route to `backend` a TLS server's VirtualService would compile to)."""
    port, tcp_port = free_port(), free_port()
    snapshot = compiled(tcp_mesh(tcp_port, backend))
    route = next(l for l in snapshot.listeners if l.port == tcp_port).tcp_route
    return port, replace(snapshot, listeners=snapshot.listeners + (replace(snapshot.listeners[0], name="gw", port=port),)), route


def test_a_tls_server_terminates_then_proxies_tcp(upstreams, creds, certs1):
    """protocol TLS, mode SIMPLE: the gateway terminates and the plaintext goes to a TCP backend."""
    backend = TcpServer("echo")
    try:
        port, snapshot, route = tcp_gateway(backend)
        write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
        tls_server = chain((HTTPBIN,), tls_settings("SIMPLE", credential_name="httpbin-credential"), tcp_route=route,
                           protocol="TLS")
        with InProcessGateway(with_tls_servers(snapshot, port, (tls_server,), direction="outbound"), creds):
            assert tls_echo(port, HTTPBIN, certs1 / "example.com.crt", b"hello over tls") == b"hello over tls"
            wait_until(lambda: backend.received == b"hello over tls", timeout=5)
    finally:
        backend.stop()


def test_a_hello_that_never_completes_is_closed_not_hung(mesh, creds, certs1, monkeypatch):
    monkeypatch.setattr(GatewayTlsRouter, "hello_timeout", 0.3)  # Envoy's 15 s, shortened for the test
    write_credential(creds, "httpbin-credential", certs1 / f"{HTTPBIN}.crt", certs1 / f"{HTTPBIN}.key")
    port, _, _ = mesh
    with gateway(mesh, creds, simple((HTTPBIN,), "httpbin-credential")) as gw:
        with socket.create_connection((LOCALHOST, port), timeout=5) as sock:
            sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a hello's first bytes, then silence
            assert sock.recv(100) == b""  # closed by the gateway before the 5 s client timeout
        listener = next(l for l in gw.snapshot.listeners if l.port == port).name
        assert gw.stats(listener)["no_filter_chain_match"] == 1


def test_ca_crl_refuses_a_revoked_client(mesh, creds, tmp_path):
    ca = ThrowawayCA(tmp_path / "ca")
    server = ca.issue("server", HTTPBIN)
    alice, bob = ca.issue("alice", "alice.clients"), ca.issue("bob", "bob.clients")
    crl = ca.crl("revoked", (bob.cert,))
    write_credential(creds, "cred", server.cert, server.key, ca.ca_path)
    port, _, _ = mesh
    with gateway(mesh, creds, mutual((HTTPBIN,), "cred", ca_crl=str(crl))) as gw:
        ok = get(port, HTTPBIN, "--cacert", str(ca.ca_path), "--cert", str(alice.cert), "--key", str(alice.key))
        assert ok.stdout.endswith("200 2"), ok.stderr
        revoked = get(port, HTTPBIN, "--cacert", str(ca.ca_path), "--cert", str(bob.cert), "--key", str(bob.key))
        assert revoked.returncode != 0
        listener = next(l for l in gw.snapshot.listeners if l.port == port).name
        assert gw.stats(listener)["ssl.fail_verify_error"] == 1


def test_istio_mutual_tls_server_takes_a_sidecars_tcp(creds, pki):
    """ISTIO_MUTUAL on a TLS server (the egress gateway's leg from a sidecar): ALPN
    istio-peer-exchange as Istio's gateway offers it for TCP, then the TCP route."""
    gateway_dir, client_dir = pki.issue("istio-system", "egress"), pki.issue("default", "sleep")
    backend = TcpServer("echo")
    try:
        port, snapshot, route = tcp_gateway(backend)
        server = chain(("edition.cnn.com",), tls_settings("ISTIO_MUTUAL"), tcp_route=route, protocol="TLS")
        with InProcessGateway(with_tls_servers(snapshot, port, (server,), direction="outbound"), creds,
                              cert_dir=gateway_dir):
            context = mesh_client_context(client_dir, pki.root, alpn=("istio-peer-exchange", "istio"))
            with socket.create_connection((LOCALHOST, port), timeout=5) as raw:
                with context.wrap_socket(raw, server_hostname="edition.cnn.com") as tls:
                    assert tls.selected_alpn_protocol() == "istio-peer-exchange"
                    tls.sendall(b"ping")
                    assert tls.recv(4) == b"ping"
    finally:
        backend.stop()
