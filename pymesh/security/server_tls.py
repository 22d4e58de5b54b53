"""The rules of a Gateway server's TLS settings (Istio's ServerTLSSettings, as Istio hands them
to Envoy), kept pure so they are tested without sockets; pymesh.proxy.gateway_tls builds the
`ssl` contexts from them.

- Versions: `TLS_AUTO` is Envoy's server default, TLS 1.2 to 1.3; a minimum above the maximum
  is refused (it would accept nothing).
- Cipher suites (TLS 1.0-1.2 only: TLS 1.3's are not configurable, as in Envoy): Istio's own
  list of names (`security.ValidCipherSuites`); a name outside it is ignored with a warning, as
  Istio's validation warns and its gateway builder drops it, and so are duplicates. Envoy's
  equal-preference groups `[A|B]` are flattened (OpenSSL has no such groups). None left: Envoy's
  default server list.
- Client certificate checks Envoy makes after the chain verifies: `subjectAltNames` (one SAN of
  the client certificate must equal one of them, DNS wildcards as Envoy's dnsNameMatch),
  `verifyCertificateSpki` (base64 SHA-256 of the SubjectPublicKeyInfo) and
  `verifyCertificateHash` (hex SHA-256 of the DER, colons allowed): with both, either matching
  list accepts the certificate.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pymesh.api.gateway import CIPHER_SUITES as ISTIO_CIPHER_SUITES  # Istio's ValidCipherSuites
from pymesh.security.san import certificate_sans, matches_any

VERSIONS = {"TLSV1_0": ssl.TLSVersion.TLSv1, "TLSV1_1": ssl.TLSVersion.TLSv1_1,
            "TLSV1_2": ssl.TLSVersion.TLSv1_2, "TLSV1_3": ssl.TLSVersion.TLSv1_3}
AUTO_MIN, AUTO_MAX = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3

# Envoy's default server cipher list (non-FIPS), its [a|b] groups flattened in order
ENVOY_SERVER_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA", "AES128-GCM-SHA256",
    "AES128-SHA", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA", "AES256-GCM-SHA384", "AES256-SHA",
)


def version_range(minimum: str, maximum: str) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    """The (min, max) TLS versions a server accepts; ValueError names a range that is empty."""
    low = VERSIONS.get(minimum, AUTO_MIN) if minimum != "TLS_AUTO" else AUTO_MIN
    high = VERSIONS.get(maximum, AUTO_MAX) if maximum != "TLS_AUTO" else AUTO_MAX
    if low > high:
        raise ValueError(f"minProtocolVersion {minimum} is above maxProtocolVersion {maximum}")
    return low, high


def is_valid_cipher_suite(name: str) -> bool:
    """Istio's IsValidCipherSuite: a listed name, "", "ALL", or an expression starting with an
    operator (`-`, `+`, `!`, `[`), which Istio passes on without parsing it."""
    return name in ("", "ALL") or not name[0].isalnum() or name in ISTIO_CIPHER_SUITES


def cipher_list(names: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """The OpenSSL cipher string for `cipherSuites`, and the names ignored (invalid or
    repeated) for a warning."""
    kept: list[str] = []
    ignored: list[str] = []
    for name in names:
        if not is_valid_cipher_suite(name) or name in kept:
            ignored.append(name)
            continue
        kept.append(name)
    flat: list[str] = []
    for name in kept:
        if name.startswith("[") and name.endswith("]"):
            flat.extend(part for part in name[1:-1].split("|") if part)
        elif name:
            flat.append(name)
    return ":".join(flat or ENVOY_SERVER_CIPHERS), tuple(ignored)


@dataclass(frozen=True)
class ClientChecks:
    """What a verified client certificate must also satisfy; empty: nothing more."""

    subject_alt_names: tuple[str, ...] = ()
    spki_pins: frozenset[bytes] = frozenset()  # SHA-256 digests of the SubjectPublicKeyInfo
    hash_pins: frozenset[bytes] = frozenset()  # SHA-256 digests of the certificate's DER

    @classmethod
    def from_settings(cls, subject_alt_names, spki, hashes) -> "ClientChecks":
        """ValueError names a pin that is not what Envoy reads (base64 or hex SHA-256)."""
        return cls(tuple(subject_alt_names), frozenset(_spki_pin(p) for p in spki),
                   frozenset(_hash_pin(p) for p in hashes))

    @property
    def empty(self) -> bool:
        return not (self.subject_alt_names or self.spki_pins or self.hash_pins)

    def problem(self, der: bytes | None) -> tuple[str, str] | None:
        """(Envoy's listener stat, why) for a client certificate these checks refuse, or None.
        No certificate (OPTIONAL_MUTUAL without one) passes: there is nothing to check."""
        if not der or self.empty:
            return None
        if self.spki_pins or self.hash_pins:
            digest = hashlib.sha256(der).digest()
            spki = hashlib.sha256(x509.load_der_x509_certificate(der).public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()
            if digest not in self.hash_pins and spki not in self.spki_pins:
                return "ssl.fail_verify_cert_hash", "the client certificate matches no verifyCertificateSpki/Hash pin"
        if self.subject_alt_names and not matches_any(certificate_sans(der), self.subject_alt_names):
            return "ssl.fail_verify_san", "the client certificate carries none of subjectAltNames"
        return None


def _spki_pin(text: str) -> bytes:
    try:
        pin = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pin = b""
    if len(pin) != 32:
        raise ValueError(f"verifyCertificateSpki {text!r} is not a base64 SHA-256 digest")
    return pin


def _hash_pin(text: str) -> bytes:
    try:
        pin = bytes.fromhex(text.replace(":", ""))
    except ValueError:
        pin = b""
    if len(pin) != 32:
        raise ValueError(f"verifyCertificateHash {text!r} is not a hex SHA-256 digest")
    return pin
