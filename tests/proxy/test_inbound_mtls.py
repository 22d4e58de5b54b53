"""Inbound mutual TLS end to end, with real clients (curl, openssl s_client, Python's ssl) against
a real `pymesh proxy --cert-dir` whose Sidecar ingress listener fronts a real upstream: what
PeerAuthentication's modes accept and refuse, what the app then sees (plaintext, XFCC), what
ALPN selects, and what metrics, the access log, /certs and readiness say."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import threading
import time
from datetime import datetime, timezone

import pytest
from cryptography import x509

from mesh_pki import MeshPki, client_context, curl_cert, leaf, leaf_sha256, uri
from proxy_harness import LOCALHOST, curl, free_ports, samples, wait_until

NAMESPACE = "default"  # the proxy's (the harness's Sidecar lives there)


def peer_authentication(name: str, mode: str | None = None, selector: dict | None = None,
                        ports: dict[int, str] | None = None, namespace: str = NAMESPACE) -> dict:
    spec: dict = {}
    if mode:
        spec["mtls"] = {"mode": mode}
    if selector:
        spec["selector"] = {"matchLabels": selector}
    if ports:
        spec["portLevelMtls"] = {port: {"mode": m} for port, m in ports.items()}
    return {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def ingress(app, *ports: tuple[int, str]) -> dict:
    """A Sidecar with an ingress listener on 127.0.0.1 for each (port, protocol), all to `app`."""
    return {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
            "metadata": {"name": "default", "namespace": NAMESPACE},
            "spec": {"ingress": [{"port": {"number": port, "protocol": protocol, "name": f"in-{port}"},
                                  "bind": LOCALHOST, "defaultEndpoint": f"{LOCALHOST}:{app.port}"}
                                 for port, protocol in ports]}}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    pki = MeshPki(tmp_path_factory.mktemp("pki"))
    pki.server = pki.issue(NAMESPACE, "reviews")
    pki.client = pki.issue("bar", "productpage")
    pki.other_root = MeshPki(tmp_path_factory.mktemp("other")).issue("bar", "productpage")
    pki.expired_client = pki.expired("bar", "productpage")
    return pki


def start(proxies, pki, resources, cert_dir=None, labels="app=reviews", wait=True):
    extra = ["--namespace", NAMESPACE, "--service-account", "reviews", "--cert-dir", str(cert_dir or pki.server)]
    return proxies(resources, labels=labels, extra_args=extra, wait=wait)


def mtls_curl(port, cert_dir, *args, **kwargs):
    return curl(port, "/", *curl_cert(cert_dir), *args, scheme="https", **kwargs)


def test_strict_accepts_mesh_mtls_and_the_app_sees_plaintext_with_xfcc(proxies, upstreams, pki):
    app = upstreams("app")
    port = free_ports(1)[0]
    proxy = start(proxies, pki, [ingress(app, (port, "HTTP")), peer_authentication("default", "STRICT")])

    reply = mtls_curl(port, pki.client, "--http1.1", "-H", "x-forwarded-client-cert: By=forged;URI=spiffe://evil")

    assert reply.status == 200, reply.stderr
    (request,) = app.wait_requests(1)
    assert request.header("x-forwarded-client-cert") == (
        f'By={uri(NAMESPACE, "reviews")};Hash={leaf_sha256(pki.client)};Subject="";URI={uri("bar", "productpage")}')
    assert len(request.header_all("x-forwarded-client-cert")) == 1  # the client's own is gone
    stats = proxy.stats()
    assert stats[f"listener.ingress|{LOCALHOST}|{port}.ssl.handshake"] == 1


@pytest.mark.parametrize("client", ["plaintext", "no client certificate", "another CA", "expired"])
def test_strict_refuses_everything_else(proxies, upstreams, pki, client):
    app = upstreams("app")
    port = free_ports(1)[0]
    proxy = start(proxies, pki, [ingress(app, (port, "HTTP")), peer_authentication("default", "STRICT")])
    if client == "plaintext":
        reply = curl(port, "/")
    elif client == "no client certificate":
        reply = curl(port, "/", "-k", scheme="https")
    else:
        reply = mtls_curl(port, pki.other_root if client == "another CA" else pki.expired_client)

    assert reply.status == 0 and reply.returncode != 0, reply
    assert app.count() == 0
    stat = {"plaintext": "no_filter_chain_match", "no client certificate": "ssl.fail_verify_no_cert",
            "another CA": "ssl.fail_verify_error", "expired": "ssl.fail_verify_error"}[client]
    wait_until(lambda: proxy.stats()[f"listener.ingress|{LOCALHOST}|{port}.{stat}"] == 1, what=stat)


def test_permissive_accepts_both_on_one_port_and_plaintext_gets_no_xfcc(proxies, upstreams, pki):
    app = upstreams("app")
    port = free_ports(1)[0]
    proxy = start(proxies, pki, [ingress(app, (port, "HTTP")), peer_authentication("default", "PERMISSIVE")])

    plain = curl(port, "/", "-H", "x-forwarded-client-cert: By=forged")
    secure = mtls_curl(port, pki.client)

    assert (plain.status, secure.status) == (200, 200), (plain.stderr, secure.stderr)
    first, second = app.wait_requests(2)
    assert first.header("x-forwarded-client-cert") is None
    assert f'URI={uri("bar", "productpage")}' in second.header("x-forwarded-client-cert")
    metrics = wait_until(lambda: [s for s in samples(proxy.prometheus(), "istio_requests_total")
                                  if s.labels["reporter"] == "destination"] or None, what="metrics")
    by_policy = {s.labels["connection_security_policy"]: s.labels for s in metrics}
    assert by_policy["none"]["source_principal"] == "unknown"
    assert by_policy["mutual_tls"]["source_principal"] == uri("bar", "productpage")
    assert by_policy["mutual_tls"]["source_workload_namespace"] == "bar"  # from the certificate
    assert by_policy["mutual_tls"]["destination_principal"] == uri(NAMESPACE, "reviews")
    entry = proxy.wait_log(lambda e: e["downstream_peer_uri_san"] is not None)
    assert entry["downstream_local_uri_san"] == uri(NAMESPACE, "reviews")
    assert entry["downstream_tls_version"] == "TLSv1.3"


def test_no_policy_is_permissive(proxies, upstreams, pki):
    app = upstreams("app")
    port = free_ports(1)[0]
    start(proxies, pki, [ingress(app, (port, "HTTP"))])
    assert curl(port, "/").status == 200
    assert mtls_curl(port, pki.client).status == 200


def test_disable_takes_plaintext_only(proxies, upstreams, pki):
    app = upstreams("app")
    port = free_ports(1)[0]
    start(proxies, pki, [ingress(app, (port, "HTTP")), peer_authentication("default", "DISABLE")])
    assert curl(port, "/").status == 200
    refused = mtls_curl(port, pki.client)
    assert refused.status == 0 and refused.returncode != 0
    assert app.count() == 1


def test_port_level_mtls_and_scopes_choose_each_ports_mode(proxies, upstreams, pki):
    """Mesh-wide STRICT, the namespace UNSET (inherits), the workload PERMISSIVE on one port and
    DISABLE on another; a third port inherits STRICT; another workload's policy is ignored."""
    app = upstreams("app")
    strict, permissive, disabled = free_ports(3)
    resources = [
        ingress(app, (strict, "HTTP"), (permissive, "HTTP"), (disabled, "HTTP")),
        peer_authentication("default", "STRICT", namespace="istio-system"),
        peer_authentication("default"),
        peer_authentication("reviews", selector={"app": "reviews"}, ports={permissive: "PERMISSIVE", disabled: "DISABLE"}),
        peer_authentication("ratings", "DISABLE", selector={"app": "ratings"}),
    ]
    start(proxies, pki, resources)

    assert curl(strict, "/").returncode != 0
    assert mtls_curl(strict, pki.client).status == 200
    assert curl(permissive, "/").status == 200
    assert mtls_curl(permissive, pki.client).status == 200
    assert curl(disabled, "/").status == 200
    assert mtls_curl(disabled, pki.client).returncode != 0


def test_permissive_waits_for_a_client_hello_sent_slowly(proxies, upstreams, pki):
    """A hello whose packets come 300 ms apart (past the 100 ms window in which a silent client is
    taken for a server-first protocol) is still TLS: the client spoke first."""
    app = upstreams("app")
    port = free_ports(1)[0]
    start(proxies, pki, [ingress(app, (port, "HTTP")), peer_authentication("default", "PERMISSIVE")])

    reply = _request_with_a_slow_hello(port, client_context(pki.client, pki.root, ("http/1.1",)))
    assert reply.startswith(b"HTTP/1.1 200"), reply
    assert app.wait_requests(1)[0].target == "/slow"


def _request_with_a_slow_hello(port: int, context: ssl.SSLContext) -> bytes:
    """GET /slow over TLS driven through memory BIOs, the ClientHello split in two packets with a
    pause between them (the slow client is the input here, not a wait for an event)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing)
    with socket.create_connection((LOCALHOST, port), timeout=10) as raw:
        def pump() -> None:
            raw.sendall(outgoing.read())
            data = raw.recv(65536)
            assert data, "the proxy closed the connection"
            incoming.write(data)

        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        hello = outgoing.read()
        raw.sendall(hello[:3])
        time.sleep(0.3)
        raw.sendall(hello[3:])
        for _ in range(20):
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pump()
        tls.write(b"GET /slow HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n")
        reply = b""
        for _ in range(50):
            if b"\r\n\r\n" in reply:
                break
            try:
                reply += tls.read(65536)
            except ssl.SSLWantReadError:
                pump()
        return reply


def _handshake(port: int, context: ssl.SSLContext, sni: str | None = None):
    with socket.create_connection((LOCALHOST, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=sni) as tls:
            return tls.selected_alpn_protocol(), tls.getpeercert(True), tls.version()


@pytest.mark.parametrize("offered, chosen, http_version", [
    (("istio-h2", "istio-peer-exchange", "istio"), "istio-h2", "2"),  # the client sidecar, HTTP
    (("h2", "http/1.1"), "h2", "2"),  # curl --http2, a browser: h2 over TLS
    (("istio-http/1.1", "istio"), "istio-http/1.1", "1.1"),
    (("http/1.1",), "http/1.1", "1.1"),
    (("istio-peer-exchange", "istio"), "istio-peer-exchange", "1.1"),  # sniffed inside: HTTP/1.1
    (("istio-peer-exchange", "istio", "h2"), "h2", "2"),  # an Istio sidecar's HTTP/2 cluster
])
def test_alpn_chooses_the_codec(proxies, upstreams, pki, offered, chosen, http_version):
    app = upstreams("app")
    port = free_ports(1)[0]
    start(proxies, pki, [ingress(app, (port, "HTTP")), peer_authentication("default", "STRICT")])

    alpn, der, version = _handshake(port, client_context(pki.client, pki.root, offered),
                                    sni=f"outbound_.{port}_._.reviews.default.svc.cluster.local")
    assert alpn == chosen and version == "TLSv1.3"
    if http_version == "2":
        reply = mtls_curl(port, pki.client, "--http2")
    else:
        reply = mtls_curl(port, pki.client, "--http1.1")
    assert reply.status == 200
    # over HTTP/2 the request reaches an HTTP/1.1 app as HTTP/1.1: the proxy translates
    assert app.wait_requests(1)[0].version == "HTTP/1.1"


def test_openssl_s_client_sees_the_spiffe_san_and_is_refused_without_a_certificate(proxies, upstreams, pki, tmp_path):
    app = upstreams("app")
    port = free_ports(1)[0]
    start(proxies, pki, [ingress(app, (port, "HTTP")), peer_authentication("default", "STRICT")])

    def s_client(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["openssl", "s_client", "-connect", f"{LOCALHOST}:{port}", "-CAfile",
                               str(pki.root / "root-cert.pem"), "-alpn", "istio-h2,istio", "-ign_eof", *args],
                              input=b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                              capture_output=True, timeout=20)

    without = s_client("-showcerts")
    presented = tmp_path / "server.pem"
    presented.write_bytes(without.stdout[without.stdout.index(b"-----BEGIN"):without.stdout.index(b"-----END CERTIFICATE-----") + 25])
    text = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(presented)],
                          capture_output=True, text=True, check=True).stdout
    assert f"URI:{uri(NAMESPACE, 'reviews')}" in text
    assert b"Verify return code: 0 (ok)" in without.stdout  # the chain verifies against the mesh root
    assert b"HTTP/" not in without.stdout  # no answer without a client certificate
    with_cert = s_client("-cert", str(pki.client / "cert-chain.pem"), "-key", str(pki.client / "key.pem"),
                         "-alpn", "istio-http/1.1")
    assert b"ALPN protocol: istio-http/1.1" in with_cert.stdout
    assert b"HTTP/1.1 200" in with_cert.stdout


def test_tcp_over_mtls_reaches_the_app_as_plain_bytes(proxies, upstreams, pki):
    echo = upstreams.tcp("echo")
    port = free_ports(1)[0]
    start(proxies, pki, [ingress(echo, (port, "TCP")), peer_authentication("default", "STRICT")])

    context = client_context(pki.client, pki.root, ("istio-peer-exchange", "istio"))
    with socket.create_connection((LOCALHOST, port), timeout=5) as raw:
        with context.wrap_socket(raw) as tls:
            tls.sendall(b"ping over mtls\n")
            got = b""
            while not got.endswith(b"\n"):
                chunk = tls.recv(100)
                assert chunk, "closed before the echo"
                got += chunk
    assert got == b"ping over mtls\n"


def test_tcp_over_mtls_server_closing_first_ends_the_tls_connection_cleanly(proxies, upstreams, pki):
    """TLS has no half-close in asyncio: the app's FIN ends the client's TLS connection, after
    what the app sent."""
    server = upstreams.tcp("banner-close")
    port = free_ports(1)[0]
    proxy = start(proxies, pki, [ingress(server, (port, "TCP")), peer_authentication("default", "STRICT")])

    context = client_context(pki.client, pki.root, ("istio-peer-exchange", "istio"))
    with socket.create_connection((LOCALHOST, port), timeout=5) as raw:
        with context.wrap_socket(raw) as tls:
            got = _read_to_eof(tls)
    assert got == server.BANNER
    assert "Traceback" not in proxy.stderr() and "NotImplementedError" not in proxy.stderr()


def test_certs_shows_the_chain_and_never_the_key(proxies, upstreams, pki):
    app = upstreams("app")
    port = free_ports(1)[0]
    proxy = start(proxies, pki, [ingress(app, (port, "HTTP"))])
    status, _, body = proxy.admin("/certs")
    assert status == 200 and b"PRIVATE KEY" not in body and (pki.server / "key.pem").read_bytes() not in body
    (entry,) = json.loads(body)["certificates"]
    (chain,) = entry["cert_chain"]
    assert chain["subject_alt_names"] == [{"uri": uri(NAMESPACE, "reviews")}]
    assert chain["serial_number"] == format(leaf(pki.server).serial_number, "x")
    assert chain["path"] == str(pki.server / "cert-chain.pem")
    assert entry["ca_cert"][0]["path"] == str(pki.server / "root-cert.pem")


def test_strict_without_a_certificate_is_not_ready_and_says_why(proxies, upstreams, pki, tmp_path):
    app = upstreams("app")
    port = free_ports(1)[0]
    proxy = start(proxies, pki, [ingress(app, (port, "HTTP")), peer_authentication("default", "STRICT")],
                  cert_dir=tmp_path / "empty", wait=False)
    # wait_ready would never return: poll /ready itself
    status, _, body = wait_until(lambda: (r := _ready(proxy)) and r, what="/ready answer")
    assert status == 503 and b"STRICT mTLS ports but no workload certificate" in body, body
    assert mtls_curl(port, pki.client).returncode != 0  # and it refuses rather than present nothing


def _ready(proxy):
    try:
        return proxy.admin("/ready")
    except OSError:
        return None


def test_rotation_under_continuous_traffic_fails_nothing_and_never_presents_an_expired_certificate(
        proxies, upstreams, pki, tmp_path):
    """`pymesh ca issue --ttl 10s` rewrites the proxy's --cert-dir again and again while a client
    makes a new mTLS connection per request and another keeps one connection open throughout.
    Every request succeeds; each new connection is served the newest certificate, never an
    expired one; the long-lived connection is not cut by the rotations."""
    app = upstreams("app")
    port = free_ports(1)[0]
    cert_dir = pki.issue(NAMESPACE, "reviews", ttl="10s", out=tmp_path / "rotating")
    start(proxies, pki, [ingress(app, (port, "HTTP")), peer_authentication("default", "STRICT")], cert_dir=cert_dir)
    context = client_context(pki.client, pki.root, ("http/1.1",))
    served: list[int] = []  # serials the new connections were shown
    failures: list[str] = []
    stop = threading.Event()

    def get(connection) -> None:
        connection.request("GET", "/", headers={"Host": "reviews"})
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            failures.append(f"status {response.status}")

    def new_connections() -> None:
        while not stop.is_set() and len(served) < 10_000:
            connection = http.client.HTTPSConnection(LOCALHOST, port, context=context, timeout=5)
            try:
                connection.connect()
                cert = x509.load_der_x509_certificate(connection.sock.getpeercert(True))
                if cert.not_valid_after_utc <= datetime.now(timezone.utc):
                    failures.append(f"expired certificate {cert.serial_number:x} presented")
                served.append(cert.serial_number)
                get(connection)
            except (OSError, http.client.HTTPException) as error:
                failures.append(repr(error))
            finally:
                connection.close()

    long_lived = http.client.HTTPSConnection(LOCALHOST, port, context=context, timeout=5)
    get(long_lived)
    first_socket = long_lived.sock
    worker = threading.Thread(target=new_connections, daemon=True)
    worker.start()
    try:
        rotations = []
        for _ in range(5):
            serial = leaf(pki.issue(NAMESPACE, "reviews", ttl="10s", out=cert_dir)).serial_number
            rotations.append(serial)
            wait_until(lambda: serial in served[-3:], timeout=8, what=f"new connections served {serial:x}")
            get(long_lived)  # the same connection, across every rotation
    finally:
        stop.set()
        worker.join(10)
    get(long_lived)
    assert long_lived.sock is first_socket  # never reconnected: not cut
    long_lived.close()
    assert failures == []
    assert set(rotations) <= set(served) and len(served) > len(rotations)


def _read_to_eof(tls_socket, reads: int = 100) -> bytes:
    data = b""
    for _ in range(reads):  # bounded: the answers here are a few records
        chunk = tls_socket.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _get_over(tls_socket) -> bytes:
    tls_socket.sendall(b"GET / HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n")
    return _read_to_eof(tls_socket)


def test_sni_and_tls_version_reach_the_access_log_and_tls_1_2_is_accepted(proxies, upstreams, pki):
    app = upstreams("app")
    port = free_ports(1)[0]
    proxy = start(proxies, pki, [ingress(app, (port, "HTTP")), peer_authentication("default", "STRICT")])
    sni = f"outbound_.{port}_._.reviews.default.svc.cluster.local"

    context = client_context(pki.client, pki.root, ("istio-http/1.1",))
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # Istio's minimum is still accepted
    with socket.create_connection((LOCALHOST, port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=sni) as tls:
        assert tls.version() == "TLSv1.2"
        assert _get_over(tls).startswith(b"HTTP/1.1 200")
    entry = proxy.wait_log(lambda e: e["requested_server_name"] is not None)
    assert (entry["requested_server_name"], entry["downstream_tls_version"]) == (sni, "TLSv1.2")

