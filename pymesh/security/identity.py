"""SPIFFE identities: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`, the form
Istio puts in a workload certificate's URI SAN, and how they are read back from certificates.

The principal form (`<trust-domain>/ns/<namespace>/sa/<service-account>`, no scheme) is what
AuthorizationPolicy's `principals` and `source.principal` compare against.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509

SCHEME = "spiffe://"
# SPIFFE ID spec: trust domain lower-case letters, digits, '.', '-', '_'; path segments of
# letters, digits, '.', '-', '_' (not '.' or '..'). Istio's namespaces and service accounts are
# DNS labels/subdomains, a subset of this.
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]{1,253}")


@dataclass(frozen=True, slots=True)
class SpiffeId:
    trust_domain: str
    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        if not _TRUST_DOMAIN.fullmatch(self.trust_domain):
            raise ValueError(f"invalid trust domain {self.trust_domain!r}")
        for what, value in (("namespace", self.namespace), ("service account", self.service_account)):
            if not _SEGMENT.fullmatch(value) or value in (".", ".."):
                raise ValueError(f"invalid {what} {value!r}")

    @property
    def principal(self) -> str:
        return f"{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def uri(self) -> str:
        return SCHEME + self.principal

    def __str__(self) -> str:
        return self.uri

    @classmethod
    def parse(cls, uri: str) -> "SpiffeId":
        """The identity in a SPIFFE URI of Istio's shape; ValueError for any other."""
        if not uri.startswith(SCHEME):
            raise ValueError(f"not a SPIFFE ID: {uri!r}")
        parts = uri[len(SCHEME):].split("/")
        if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
            raise ValueError(f"not a workload SPIFFE ID (spiffe://<td>/ns/<ns>/sa/<sa>): {uri!r}")
        return cls(parts[0], parts[2], parts[4])


def spiffe_id_of(cert: x509.Certificate) -> SpiffeId | None:
    """The certificate's workload identity: its one SPIFFE URI SAN (None when it has none, or
    more than one, which the SPIFFE X.509-SVID spec forbids)."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = [uri for uri in sans.get_values_for_type(x509.UniformResourceIdentifier) if uri.startswith(SCHEME)]
    if len(uris) != 1:
        return None
    try:
        return SpiffeId.parse(uris[0])
    except ValueError:
        return None


def peer_spiffe_id(der: bytes | None) -> SpiffeId | None:
    """The identity of a TLS peer from its certificate as `SSLObject.getpeercert(True)` gives
    it. Only meaningful after the handshake verified the chain: the SAN itself proves nothing."""
    if not der:
        return None
    try:
        return spiffe_id_of(x509.load_der_x509_certificate(der))
    except ValueError:
        return None
