"""Join tokens as a proxy holds them: the credential that binds its first certificate request to
a namespace and service account outside Kubernetes (inside, a ServiceAccount token: see
docs/security.md).

A token reads `pm1.<claims>.<secret>`. `claims` is base64url JSON the proxy reads: the token id,
namespace, service account, trust domain, and the pin of the CA root ("sha256:" and the hex
SHA-256 of its SubjectPublicKeyInfo, kubeadm's discovery-token-ca-cert-hash) so that a proxy
holding only the token verifies the server on first contact. `secret` is 256 random bits. The
server trusts nothing in the claims: it looks up its own record under the id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

PREFIX = "pm1"
MAX_TOKEN_LENGTH = 4096  # a token longer than this is refused unread


class TokenRefused(Exception):
    """A token that cannot be used; the message never contains the secret."""


@dataclass(frozen=True)
class JoinToken:
    """A token as the proxy reads it (claims and secret)."""

    id: str
    namespace: str
    service_account: str
    trust_domain: str
    ca_pin: str  # "sha256:<hex>" of the root's SubjectPublicKeyInfo (DER)
    secret: str

    def __str__(self) -> str:
        claims = {"id": self.id, "ns": self.namespace, "sa": self.service_account, "td": self.trust_domain,
                  "ca": self.ca_pin}
        return f"{PREFIX}.{_b64(json.dumps(claims, separators=(',', ':')).encode())}.{self.secret}"

    def bearer(self) -> str:
        """What the proxy sends as `authorization: Bearer`."""
        return str(self)

    def __repr__(self) -> str:  # never the secret
        return f"JoinToken(id={self.id!r}, namespace={self.namespace!r}, service_account={self.service_account!r})"

    @classmethod
    def parse(cls, text: str) -> JoinToken:
        text = text.strip()
        if len(text) > MAX_TOKEN_LENGTH:
            raise TokenRefused(f"token longer than {MAX_TOKEN_LENGTH} characters")
        parts = text.split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise TokenRefused(f"not a pymesh join token (expected {PREFIX}.<claims>.<secret>)")
        try:
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, binascii.Error):
            raise TokenRefused("token claims are not base64url JSON") from None
        fields = ("id", "ns", "sa", "td", "ca")
        if not isinstance(claims, dict) or not all(isinstance(claims.get(k), str) and claims[k] for k in fields):
            raise TokenRefused(f"token claims need the strings {', '.join(fields)}")
        if not parts[2]:
            raise TokenRefused("token has no secret")
        return cls(claims["id"], claims["ns"], claims["sa"], claims["td"], claims["ca"], parts[2])


def spki_pin(cert: x509.Certificate) -> str:
    """The pin a token carries for a root: "sha256:" + hex SHA-256 of its public key (DER)."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def pinned_root(bundle_pem: bytes, pin: str) -> bytes:
    """The one certificate of a bundle (fetched unverified) whose pin is `pin`, as PEM: the only
    root a proxy trusts until the verified signing answer brings the whole bundle. ValueError
    when none matches."""
    try:
        certs = x509.load_pem_x509_certificates(bundle_pem)
    except ValueError as exc:
        raise ValueError(f"trust bundle is not PEM certificates: {exc}") from None
    for cert in certs:
        if spki_pin(cert) == pin:
            return cert.public_bytes(serialization.Encoding.PEM)
    raise ValueError(f"no root in the server's trust bundle matches the token's pin {pin}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
