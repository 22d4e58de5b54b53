"""What the identity tests need around a secure control server: its CA (read from its
--data-dir, to make the certificates an authenticated or a rogue client would hold), join
tokens made with the real CLI, and TLS client contexts."""

from __future__ import annotations

import os
import ssl
import subprocess
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from control_harness import ControlServer, cli
from pymesh.api import wire
from pymesh.control import ca_store
from pymesh.security.ca import CertificateAuthority, WorkloadCertificate, utc_now
from pymesh.security.identity import SpiffeId

TD = "cluster.local"


def spiffe(namespace: str, account: str) -> SpiffeId:
    return SpiffeId(TD, namespace, account)


def server_ca(data_dir: Path) -> CertificateAuthority:
    """The mesh CA the server made in its data directory."""
    return ca_store.load_root(str(data_dir / "ca"))


def certificate(ca: CertificateAuthority, namespace: str, account: str, ttl: timedelta = timedelta(hours=1),
                now: datetime | None = None) -> WorkloadCertificate:
    return ca.issue(spiffe(namespace, account), ttl, now or utc_now())


def context(cert: WorkloadCertificate | None, roots_pem: bytes) -> ssl.SSLContext:
    """A client context that verifies the server by `roots_pem` and presents `cert` (if any)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # the control server is checked by SPIFFE identity (test_control_identity)
    ctx.load_verify_locations(cadata=roots_pem.decode())
    ctx.set_alpn_protocols(["h2"])
    if cert is not None:
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "pair.pem")
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as stream:
                stream.write(cert.chain_pem + cert.key_pem)
            ctx.load_cert_chain(path)
    return ctx


def token_command(server: ControlServer, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*cli(), "token", *args, "--server", f"127.0.0.1:{server.admin_port}"],
                          capture_output=True, text=True, timeout=30)


def create_token(server: ControlServer, namespace: str, account: str, ttl: str = "1h") -> str:
    done = token_command(server, "create", "--namespace", namespace, "--service-account", account, "--ttl", ttl)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pm1."), done.stdout  # one token, alone on stdout
    return lines[0]


CONTROL = SpiffeId(TD, wire.CONTROL_NAMESPACE, wire.CONTROL_SERVICE_ACCOUNT)
