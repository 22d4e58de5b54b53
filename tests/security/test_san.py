"""subjectAltNames matching (pymesh.security.san), as Envoy's exact SAN matchers do."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pymesh.security.san import certificate_sans, dns_name_matches, matches_any


def der_with(*names: x509.GeneralName) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(x509.Name([]))
               .public_key(key.public_key()).serial_number(1).not_valid_before(now).not_valid_after(now + timedelta(1)))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("wanted,san,expected", [
    ("a.example.com", "a.example.com", True),
    ("A.Example.com", "a.example.COM", True),
    ("a.example.com", "*.example.com", True),
    ("a.b.example.com", "*.example.com", False),  # one label only
    ("example.com", "*.example.com", False),
    (".example.com", "*.example.com", False),
    ("a.example.com", "b.example.com", False),
    ("*.example.com", "a.example.com", False),  # a wildcard in the wanted name is not a pattern
])
def test_dns_name_matches(wanted, san, expected):
    assert dns_name_matches(wanted, san) is expected


def test_every_san_kind_is_read_and_matched():
    der = der_with(x509.DNSName("*.api.example"), x509.UniformResourceIdentifier("spiffe://td/ns/a/sa/b"),
                   x509.IPAddress(ipaddress.ip_address("10.1.2.3")), x509.RFC822Name("ops@example.com"))
    sans = certificate_sans(der)
    assert sans == (("dns", "*.api.example"), ("uri", "spiffe://td/ns/a/sa/b"), ("ip", "10.1.2.3"),
                    ("email", "ops@example.com"))
    for wanted in ("eu.api.example", "spiffe://td/ns/a/sa/b", "10.1.2.3", "ops@example.com"):
        assert matches_any(sans, [wanted]), wanted
    for wanted in ("api.example", "spiffe://td/ns/a/sa/c", "10.1.2.4", "spiffe://td/ns/a/sa/b/"):
        assert not matches_any(sans, [wanted]), wanted
    assert matches_any(sans, ["nope", "eu.api.example"])  # any of the list


def test_no_sans_or_garbage_matches_nothing():
    assert certificate_sans(der_with()) == ()
    assert certificate_sans(b"not a certificate") == ()
    assert not matches_any((), ["a.example"])
