"""Certificates for the TLS tests, made per test in its tmp directory (never committed).

`TestCA` is an ordinary (non-mesh) CA made with `cryptography`, for servers named by DNS; mesh
certificates come from the real commands, `pymesh ca init` and `pymesh ca issue` (`MeshCA`).
`server_context` / `mesh_server_context` make the SSLContexts of the harness's TLS servers.
"""

from __future__ import annotations

import ipaddress
import ssl
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from proxy_harness import pymesh_command, record_sni


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


class TestCA:
    __test__ = False

    def __init__(self, directory: Path, name: str = "test-ca") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.ca_path = self.directory / f"{name}.pem"
        self.ca_path.write_bytes(_pem(self.cert))

    def issue(self, stem: str, dns: tuple[str, ...] = (), ips: tuple[str, ...] = (), common_name: str = "",
              client: bool = False) -> tuple[Path, Path]:
        """(certificate path, key path) of a leaf for these names."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(timezone.utc)
        names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or stem)])
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                                         else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        cert_path, key_path = self.directory / f"{stem}.crt", self.directory / f"{stem}.key"
        cert_path.write_bytes(_pem(cert))
        key_path.write_bytes(_key_pem(key))
        key_path.chmod(0o600)
        return cert_path, key_path


    def crl(self, stem: str, revoked: tuple[Path, ...] = ()) -> Path:
        """A CRL of this CA revoking the given certificates."""
        now = datetime.now(timezone.utc)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
                   .last_update(now - timedelta(minutes=1)).next_update(now + timedelta(days=1)))
        for path in revoked:
            serial = x509.load_pem_x509_certificate(path.read_bytes()).serial_number
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now - timedelta(minutes=1)).build())
        path = self.directory / f"{stem}.crl"
        path.write_bytes(builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        return path


def server_context(cert: Path, key: Path, alpn: tuple[str, ...] = (), client_ca: Path | None = None) -> ssl.SSLContext:
    """A TLS server's context; with `client_ca` it requires a client certificate from it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
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
    context = server_context(cert_dir / "cert-chain.pem", cert_dir / "key.pem", alpn, cert_dir / "root-cert.pem")
    return context


def _pymesh(*args: str) -> None:
    done = subprocess.run(pymesh_command() + list(args), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
