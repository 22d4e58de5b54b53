"""Certificates for the upstream TLS tests, made per test in its tmp directory (never committed).

Servers outside the mesh get theirs from tests/throwaway_ca.py; mesh certificates from
tests/mesh_pki.py (the real `pymesh ca init` and `pymesh ca issue`). `server_context` and
`mesh_server_context` make the SSLContexts of the harness's TLS servers.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from proxy_harness import record_sni
from throwaway_ca import ServerCert


def server_context(cert: ServerCert, alpn: tuple[str, ...] = (), client_ca: Path | None = None) -> ssl.SSLContext:
    """A TLS server's context; with `client_ca` it requires a client certificate from it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert.cert), str(cert.key))
    if alpn:
        context.set_alpn_protocols(list(alpn))
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(client_ca))
    return record_sni(context)


def mesh_server_context(cert_dir: Path, alpn: tuple[str, ...] = ("istio-h2", "istio-peer-exchange", "istio", "h2")
                        ) -> ssl.SSLContext:
    """What a server sidecar presents: its workload certificate; it requires a client certificate
    that chains to the mesh roots."""
    return server_context(ServerCert(cert_dir / "cert-chain.pem", cert_dir / "key.pem"), alpn, cert_dir / "root-cert.pem")

