"""The mesh CA on disk: its root kept in the control server's --data-dir, Istio's plug-in CA
files, and the workload files `pymesh ca issue` writes (Istio's file-mounted layout).

Every private key is written 0600 in a 0700 directory, atomically (a temporary file renamed),
so a crash never leaves half a key and no other user can read one even for a moment.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from pymesh.security.ca import CertificateAuthority, WorkloadCertificate, load_certs, utc_now
from pymesh.security.files import write_private, write_public

log = logging.getLogger("pymesh.ca")

ROOT_CERT, ROOT_KEY = "root-cert.pem", "root-key.pem"  # `pymesh ca init` and the data dir's ca/
CERT_CHAIN, KEY, ROOT_BUNDLE = "cert-chain.pem", "key.pem", "root-cert.pem"  # a workload's files
EXTRA_ROOTS = "extra-roots.pem"  # more roots to trust while rotating (see docs/identity.md)


@dataclass(frozen=True)
class PluginFiles:
    """Istio's plug-in CA (the `cacerts` secret): a signing certificate, its key, its chain and
    the trust bundle; an intermediate under an offline root, typically."""

    cert: str
    key: str
    chain: str | None = None
    root: str | None = None


def _read(path: str) -> bytes:
    with open(path, "rb") as stream:
        return stream.read()


def init_root(directory: str, trust_domain: str) -> CertificateAuthority:
    """Make a new root in `directory` (root-cert.pem, root-key.pem 0600)."""
    ca = CertificateAuthority.create_root(trust_domain, utc_now())
    cert_pem, key_pem = ca.to_pem()
    write_private(os.path.join(directory, ROOT_KEY), key_pem)
    write_public(os.path.join(directory, ROOT_CERT), cert_pem)
    return ca


def load_root(directory: str) -> CertificateAuthority:
    """The root in `directory`, trusting extra-roots.pem beside it too when present.
    OSError or ValueError when it cannot be read."""
    ca = CertificateAuthority.from_pem(_read(os.path.join(directory, ROOT_CERT)),
                                       _read(os.path.join(directory, ROOT_KEY)))
    return _with_extra_roots(ca, directory)


def load_or_create(directory: str, trust_domain: str) -> CertificateAuthority:
    """The control server's self-signed CA in `<data-dir>/ca`, made on first start."""
    if os.path.exists(os.path.join(directory, ROOT_KEY)):
        ca = load_root(directory)
        if ca.trust_domain != trust_domain:
            raise ValueError(f"the CA in {directory} is for trust domain {ca.trust_domain}, "
                             f"not {trust_domain}")
        return ca
    log.info("creating a new mesh root CA for %s in %s", trust_domain, directory)
    return init_root(directory, trust_domain)


def load_plugin(files: PluginFiles) -> CertificateAuthority:
    return CertificateAuthority.from_pem(
        _read(files.cert), _read(files.key),
        _read(files.chain) if files.chain else b"", _read(files.root) if files.root else b"")


def write_workload(directory: str, cert: WorkloadCertificate) -> None:
    """cert-chain.pem, key.pem (0600) and root-cert.pem, as Istio mounts them for a proxy; the
    key last, so a reader watching for it sees the chain that goes with it."""
    write_public(os.path.join(directory, CERT_CHAIN), cert.chain_pem)
    write_public(os.path.join(directory, ROOT_BUNDLE), cert.roots_pem)
    write_private(os.path.join(directory, KEY), cert.key_pem)


def _with_extra_roots(ca: CertificateAuthority, directory: str) -> CertificateAuthority:
    path = os.path.join(directory, EXTRA_ROOTS)
    if not os.path.exists(path):
        return ca
    return ca.with_roots(load_certs(_read(path)))
