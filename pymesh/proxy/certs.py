"""The proxy's workload certificate and the TLS contexts made from it.

One `CertificateStore` per proxy process holds the current `WorkloadCertificate`, whoever got
it: `CertDirSource` from Istio's file-mounted layout (--cert-dir), or the control client from a
signed CSR. Each update makes new `ssl.SSLContext`s; a connection keeps the context it was
opened with, so rotation never cuts an existing connection, and a new one always gets the newest
certificate. An expired certificate is never handed out: past its expiry the store gives no
context at all, and callers refuse mTLS rather than present it.

Mesh peers are identified by the SPIFFE URI SAN, which `ssl` cannot match: the contexts verify
the chain against the mesh roots (CERT_REQUIRED both ways) with hostname checking off, and the
caller MUST then check the peer's identity (`pymesh.security.identity.peer_spiffe_id`).
"""

from __future__ import annotations

import logging
import os
import ssl
from datetime import datetime
from typing import Callable

from pymesh.proxy.polling import Poller
from pymesh.security.ca import WorkloadCertificate, utc_now, workload_certificate
from pymesh.security.tls import load_key_pair

log = logging.getLogger("pymesh.certs")

CERT_CHAIN, KEY, ROOT_CERT = "cert-chain.pem", "key.pem", "root-cert.pem"  # Istio's file names
MESH_MIN_TLS = ssl.TLSVersion.TLSv1_2  # Istio's default minimum; peers that can, use 1.3


class CertificateStore:
    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self.current: WorkloadCertificate | None = None
        self.generation = 0
        self._clock = clock
        self._contexts: dict[tuple, ssl.SSLContext] = {}
        self._subscribers: list[Callable[[WorkloadCertificate], None]] = []

    def update(self, cert: WorkloadCertificate) -> None:
        """Install a new certificate (and trust bundle) for every connection from now on."""
        self._build(cert, server_side=False, alpn=())  # fail here, not at the next handshake
        self.current = cert
        self.generation += 1
        self._contexts = {}
        log.info("workload certificate %s serial %x, valid until %s", cert.identity.uri, cert.serial,
                 cert.not_after.isoformat())
        for callback in list(self._subscribers):
            callback(cert)

    def subscribe(self, callback: Callable[[WorkloadCertificate], None]) -> None:
        self._subscribers.append(callback)

    def valid(self) -> WorkloadCertificate | None:
        """The current certificate if it has not expired."""
        cert = self.current
        if cert is None or cert.expired(self._clock()):
            return None
        return cert

    def server_context(self, alpn: tuple[str, ...] = ()) -> ssl.SSLContext | None:
        """For accepting mesh mTLS: presents the workload certificate, requires a client
        certificate chaining to the mesh roots. None without a valid certificate."""
        return self._context(True, alpn)

    def client_context(self, alpn: tuple[str, ...] = ()) -> ssl.SSLContext | None:
        """For connecting with mesh mTLS: presents the workload certificate, verifies the
        server's chain against the mesh roots. None without a valid certificate."""
        return self._context(False, alpn)

    def _context(self, server_side: bool, alpn: tuple[str, ...]) -> ssl.SSLContext | None:
        cert = self.valid()
        if cert is None:
            return None
        key = (server_side, alpn)
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = self._build(cert, server_side, alpn)
        return context

    @staticmethod
    def _build(cert: WorkloadCertificate, server_side: bool, alpn: tuple[str, ...]) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = MESH_MIN_TLS
        context.check_hostname = False  # identity is the SPIFFE URI SAN, checked by the caller
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=cert.roots_pem.decode("ascii"))
        load_key_pair(context, cert.chain_pem, cert.key_pem)
        if alpn:
            context.set_alpn_protocols(list(alpn))
        return context


class CertDirSource:
    """Istio's file-mounted certificates (cert-chain.pem, key.pem, root-cert.pem in one
    directory), loaded into a store and reloaded when the files change. A half-written or
    mismatched set (the chain replaced, the key not yet) is skipped and retried at the next look,
    so the store only ever holds a consistent pair."""

    def __init__(self, directory: str, store: CertificateStore, interval: float = 1.0) -> None:
        self.directory = directory
        self.store = store
        self.interval = interval
        self.error: str | None = None  # why the last look did not load, for readiness and logs
        self._seen: tuple | None = None
        self._poller = Poller(self.load, interval, f"the certificates in {directory}")

    def load(self) -> bool:
        """Look once; True when a new certificate went into the store."""
        fingerprint = self._fingerprint()
        if fingerprint == self._seen:
            return False
        try:
            cert = workload_certificate(*(self._read(name) for name in (CERT_CHAIN, KEY, ROOT_CERT)))
            self.store.update(cert)
        except (OSError, ValueError, ssl.SSLError) as error:
            if self.error != str(error):
                log.error("certificates in %s not loaded (keeping the current ones): %s", self.directory, error)
            self.error = str(error)
            return False
        self._seen, self.error = fingerprint, None
        return True

    def start(self) -> None:
        self._poller.start()

    def close(self) -> None:
        self._poller.close()

    def _read(self, name: str) -> bytes:
        with open(os.path.join(self.directory, name), "rb") as stream:
            return stream.read()

    def _fingerprint(self) -> tuple:
        marks = []
        for name in (CERT_CHAIN, KEY, ROOT_CERT):
            try:
                status = os.stat(os.path.join(self.directory, name))
                marks.append((status.st_ino, status.st_mtime_ns, status.st_size))
            except OSError:
                marks.append(None)
        return tuple(marks)
