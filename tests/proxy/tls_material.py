"""Certificates for the upstream TLS tests, made per test in its tmp directory (never committed).

Servers outside the mesh get theirs from tests/throwaway_ca.py; mesh certificates come from the
real commands, `pymesh ca init` and `pymesh ca issue` (`MeshCA`). `server_context` and
`mesh_server_context` make the SSLContexts of the harness's TLS servers.
"""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

from proxy_harness import pymesh_command, record_sni
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


class MeshCA:
    """A mesh root made by `pymesh ca init`, and workload certificates by `pymesh ca issue`."""

    def __init__(self, directory: Path, trust_domain: str = "cluster.local") -> None:
        self.directory = Path(directory)
        self.root_dir = self.directory / "root"
        _pymesh("ca", "init", str(self.root_dir), "--trust-domain", trust_domain)

    def issue(self, namespace: str, service_account: str, ttl: str = "1h") -> Path:
        """The --cert-dir of that identity (cert-chain.pem, key.pem, root-cert.pem)."""
        out = self.directory / f"{namespace}-{service_account}"
        _pymesh("ca", "issue", "--ca-dir", str(self.root_dir), "--namespace", namespace,
                "--service-account", service_account, "--out", str(out), "--ttl", ttl)
        return out


def mesh_server_context(cert_dir: Path, alpn: tuple[str, ...] = ("istio-h2", "istio-peer-exchange", "istio", "h2")
                        ) -> ssl.SSLContext:
    """What a server sidecar presents: its workload certificate; it requires a client certificate
    that chains to the mesh roots."""
    return server_context(ServerCert(cert_dir / "cert-chain.pem", cert_dir / "key.pem"), alpn, cert_dir / "root-cert.pem")


def _pymesh(*args: str) -> None:
    done = subprocess.run(pymesh_command() + list(args), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
