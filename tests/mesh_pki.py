"""Mesh certificates for tests, made in a test's temporary directory and never committed: a root
by `pymesh ca init`, workload certificates by `pymesh ca issue` (Istio's file layout, what
--cert-dir reads), and the ones the CLI rightly cannot make (already expired) through the CA's
own API with an earlier `now`. Plus the client-side pieces tests need: curl's certificate
options and an SSL context, as a mesh peer (or an impostor) would use them."""

from __future__ import annotations

import hashlib
import ssl
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from cryptography import x509

from pymesh.control import ca_store
from pymesh.security.ca import utc_now
from pymesh.security.identity import SpiffeId

TRUST_DOMAIN = "cluster.local"


def _pymesh(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pymesh", *args], check=True, capture_output=True, timeout=60)


class MeshPki:
    """One root under `directory`, and the workload certificate directories issued by it."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.root = self.directory / "root"
        _pymesh("ca", "init", str(self.root))

    def issue(self, namespace: str, service_account: str, ttl: str = "24h", out: Path | None = None) -> Path:
        """`pymesh ca issue` into `out` (default: <directory>/<namespace>-<service account>)."""
        out = out or self.directory / f"{namespace}-{service_account}"
        _pymesh("ca", "issue", "--ca-dir", str(self.root), "--namespace", namespace,
                "--service-account", service_account, "--out", str(out), "--ttl", ttl)
        return out

    def expired(self, namespace: str, service_account: str) -> Path:
        """A certificate of this root that expired an hour ago."""
        out = self.directory / f"{namespace}-{service_account}-expired"
        ca = ca_store.load_root(str(self.root))
        identity = SpiffeId(ca.trust_domain, namespace, service_account)
        cert = ca.issue(identity, timedelta(hours=1), utc_now() - timedelta(hours=2))
        ca_store.write_workload(str(out), cert)
        return out


def uri(namespace: str, service_account: str) -> str:
    return SpiffeId(TRUST_DOMAIN, namespace, service_account).uri


def curl_cert(cert_dir: Path) -> tuple[str, ...]:
    """curl's options to present `cert_dir`'s certificate. With -k: a mesh server certificate
    has a SPIFFE URI and no DNS name for curl to check; tests that care about the server's
    certificate read it themselves (openssl s_client, `client_context`)."""
    return ("--cert", str(cert_dir / "cert-chain.pem"), "--key", str(cert_dir / "key.pem"), "-k")


def client_context(cert_dir: Path | None, roots: Path, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """A client context that verifies the server's chain against `roots` (mesh peers are known by
    their SPIFFE URI, not a host name) and presents `cert_dir`'s certificate if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(str(roots / "root-cert.pem"))
    if cert_dir is not None:
        context.load_cert_chain(str(cert_dir / "cert-chain.pem"), str(cert_dir / "key.pem"))
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def leaf(cert_dir: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates((cert_dir / "cert-chain.pem").read_bytes())[0]


def leaf_sha256(cert_dir: Path) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(leaf(cert_dir).public_bytes(Encoding.DER)).hexdigest()


def sidecar_h2_get(host: str, port: int, context: ssl.SSLContext, authority: str, path: str = "/",
                   sni: str | None = None, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes, str | None]:
    """One GET as a client sidecar sends it (contract with pymesh's client side): mTLS with ALPN
    istio-h2 and HTTP/2 inside, whatever the app spoke. (status, headers, body, ALPN chosen)."""
    import socket

    import h2.config
    import h2.connection
    import h2.events

    context.set_alpn_protocols(["istio-h2", "istio-peer-exchange", "istio"])
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname=sni) as tls:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", authority), (":path", path)],
                          end_stream=True)
        tls.sendall(conn.data_to_send())
        status, headers, body = 0, {}, b""
        for _ in range(1000):  # bounded: a reply is a few frames
            data = tls.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    headers = dict(event.headers)
                    status = int(headers.pop(":status"))
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamEnded):
                    return status, headers, body, tls.selected_alpn_protocol()
            tls.sendall(conn.data_to_send())
    raise AssertionError(f"no complete HTTP/2 response from {host}:{port}")
