"""The mesh CA as the control server runs it: where the signing key comes from (plug-in files,
--data-dir, or memory), what it signs for whom (a CSR only for the identity its credential
proves, for at most --max-cert-ttl), and the server's own TLS certificate for the proxy listener.

The listener asks for a client certificate but does not require one (CERT_OPTIONAL): a proxy
bootstrapping with a join token has none yet. A certificate that is presented must chain to the
mesh roots and be valid, or the handshake fails; what each path then requires is the listener's
business (h2server: the push stream only with a certificate).
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from pymesh.api.wire import CONTROL_NAMESPACE, CONTROL_SERVICE_ACCOUNT
from pymesh.control import ca_store
from pymesh.security.ca import CertificateAuthority, WorkloadCertificate, utc_now
from pymesh.security.identity import SpiffeId
from pymesh.security.jointoken import spki_pin
from pymesh.security.tls import load_key_pair

log = logging.getLogger("pymesh.control.ca")

MIN_TLS = ssl.TLSVersion.TLSv1_3  # both ends are pymesh


@dataclass(frozen=True)
class CaOptions:
    trust_domain: str = "cluster.local"
    cert_ttl: timedelta = timedelta(hours=24)
    max_cert_ttl: timedelta = timedelta(days=90)  # Istio's MAX_WORKLOAD_CERT_TTL
    plugin: ca_store.PluginFiles | None = None  # --ca-cert/--ca-key [--ca-chain] [--ca-root]


def load_authority(options: CaOptions, data_dir: str | None) -> CertificateAuthority:
    """Plug-in files first, then `<data-dir>/ca` (made on first start), else a root in memory
    for this run only (logged: its proxies' certificates die with it)."""
    if options.plugin is not None:
        ca = ca_store.load_plugin(options.plugin)
        if ca.trust_domain != options.trust_domain:
            log.warning("plug-in CA %s names trust domain %s; signing for --trust-domain %s",
                        options.plugin.cert, ca.trust_domain, options.trust_domain)
            ca.trust_domain = options.trust_domain
        log.info("mesh CA: plug-in certificate %s", options.plugin.cert)
        return ca
    if data_dir is not None:
        directory = os.path.join(data_dir, "ca")
        ca = ca_store.load_or_create(directory, options.trust_domain)
        log.info("mesh CA: root in %s", directory)
        return ca
    log.warning("mesh CA: a new root kept in memory for this run only (no --data-dir): certificates it "
                "signs stop being trusted when the server restarts")
    return CertificateAuthority.create_root(options.trust_domain, utc_now())


class MeshCA:
    def __init__(self, authority: CertificateAuthority, options: CaOptions,
                 clock: Callable[[], datetime] = utc_now):
        self.authority = authority
        self.options = options
        self._clock = clock
        self.control_identity = SpiffeId(authority.trust_domain, CONTROL_NAMESPACE, CONTROL_SERVICE_ACCOUNT)
        self.serving: WorkloadCertificate | None = None

    @property
    def trust_domain(self) -> str:
        return self.authority.trust_domain

    @property
    def bundle_pem(self) -> bytes:
        return self.authority.trust_bundle_pem

    @property
    def pin(self) -> str:
        """The pin join tokens carry: the root the server's own certificate chains to (during a
        root rotation the bundle holds others too)."""
        authority = self.authority
        top = authority.chain[-1] if authority.chain else authority.cert
        return spki_pin(next((r for r in authority.roots if _issued(top, r)), authority.roots[0]))

    def sign(self, csr_pem: bytes, identity: SpiffeId, ttl: float | None) -> bytes:
        """The chain for a CSR asking for exactly `identity` (CsrRejected otherwise), valid for
        the asked `ttl` seconds within --max-cert-ttl, --cert-ttl when none is asked."""
        lifetime = self.options.cert_ttl if ttl is None else timedelta(seconds=max(1.0, ttl))
        return self.authority.sign_csr(csr_pem, identity, min(lifetime, self.options.max_cert_ttl), self._clock())

    def leaf_expired(self, der: bytes) -> bool:
        """For a presented certificate that the handshake verified (ssl checks expiry at the
        handshake; a long-lived connection can outlast it, a renewal must not)."""
        return x509.load_der_x509_certificate(der).not_valid_after_utc <= self._clock()

    def server_context(self) -> ssl.SSLContext:
        """The proxy listener's context: the server certificate (renewed by `renew_serving`,
        in place, so new connections get the new one), client certificates asked for and,
        when presented, verified against the bundle."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = MIN_TLS
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cadata=self.bundle_pem.decode("ascii"))
        context.set_alpn_protocols(["h2"])
        self._context = context
        return context

    def renew_serving(self) -> float:
        """A new serving certificate into the listener's context; seconds until the next renewal."""
        cert = self.authority.issue(self.control_identity, self.options.cert_ttl, self._clock())
        load_key_pair(self._context, cert.chain_pem, cert.key_pem)
        self.serving = cert
        # half of the life it has from now (notBefore is backdated for clock skew)
        return max(1.0, (cert.not_after - self._clock()).total_seconds() / 2)



def _issued(cert: x509.Certificate, by: x509.Certificate) -> bool:
    """Whether `by` signed `cert` (subjects alone do not tell: every mesh root is O=<td>)."""
    try:
        cert.verify_directly_issued_by(by)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
