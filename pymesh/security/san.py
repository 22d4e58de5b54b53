"""Matching a server certificate's subject alternative names against a DestinationRule's
`subjectAltNames`, as Envoy's `match_subject_alt_names` with exact matchers does: a wanted name
matches a SAN of any type with the same value, and a DNS SAN may be a wildcard (`*.example.com`
matches `a.example.com`, one label, as Envoy's dnsNameMatch)."""

from __future__ import annotations

from typing import Iterable

from cryptography import x509


def certificate_sans(der: bytes) -> tuple[tuple[str, str], ...]:
    """(kind, value) of every SAN: kind dns, uri, ip or email. None parse as ()."""
    try:
        cert = x509.load_der_x509_certificate(der)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return ()
    return (tuple(("dns", v) for v in sans.get_values_for_type(x509.DNSName))
            + tuple(("uri", v) for v in sans.get_values_for_type(x509.UniformResourceIdentifier))
            + tuple(("ip", str(v)) for v in sans.get_values_for_type(x509.IPAddress))
            + tuple(("email", v) for v in sans.get_values_for_type(x509.RFC822Name)))


def dns_name_matches(wanted: str, san: str) -> bool:
    """Envoy's Utility::dnsNameMatch: exact (case-insensitive), or a `*.` SAN covering exactly
    one leading label of `wanted`."""
    wanted, san = wanted.lower().rstrip("."), san.lower().rstrip(".")
    if wanted == san:
        return True
    if san.startswith("*.") and "." in wanted:
        label, _, rest = wanted.partition(".")
        return bool(label) and rest == san[2:]
    return False


def matches_any(sans: Iterable[tuple[str, str]], wanted: Iterable[str]) -> bool:
    sans = tuple(sans)
    for name in wanted:
        for kind, value in sans:
            if value == name or (kind == "dns" and dns_name_matches(name, value)):
                return True
    return False
