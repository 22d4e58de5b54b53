"""The rules of a Gateway server's TLS settings (pymesh.security.server_tls), table-driven."""

from __future__ import annotations

import base64
import hashlib
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pymesh.routing.sni import ServerNames
from pymesh.security.server_tls import ENVOY_SERVER_CIPHERS, ClientChecks, cipher_list, is_valid_cipher_suite, version_range
from tests.throwaway_ca import ThrowawayCA

V = ssl.TLSVersion


@pytest.mark.parametrize("minimum, maximum, expected", [
    ("TLS_AUTO", "TLS_AUTO", (V.TLSv1_2, V.TLSv1_3)),  # Envoy's server default
    ("TLSV1_3", "TLS_AUTO", (V.TLSv1_3, V.TLSv1_3)),
    ("TLS_AUTO", "TLSV1_2", (V.TLSv1_2, V.TLSv1_2)),
    ("TLSV1_0", "TLSV1_1", (V.TLSv1, V.TLSv1_1)),
    ("TLSV1_2", "TLSV1_3", (V.TLSv1_2, V.TLSv1_3)),
])
def test_version_range(minimum, maximum, expected):
    assert version_range(minimum, maximum) == expected


@pytest.mark.parametrize("minimum, maximum", [("TLSV1_3", "TLSV1_2"), ("TLS_AUTO", "TLSV1_1")])
def test_an_empty_version_range_is_refused_by_name(minimum, maximum):
    with pytest.raises(ValueError, match="minProtocolVersion"):
        version_range(minimum, maximum)


@pytest.mark.parametrize("name, valid", [
    ("ECDHE-RSA-AES256-GCM-SHA384", True), ("AES128-SHA", True), ("DES-CBC3-SHA", True),
    ("ALL", True), ("", True), ("-AES128-SHA", True), ("[ECDHE-RSA-AES128-GCM-SHA256|ECDHE-RSA-CHACHA20-POLY1305]", True),
    ("TLS_AES_128_GCM_SHA256", False),  # a TLS 1.3 suite: not configurable, as in Envoy
    ("ECDHE-RSA-AES256-GCM-SHA385", False), ("rsa", False), ("NOT-A-CIPHER", False),
])
def test_cipher_names_as_istio_validates_them(name, valid):
    assert is_valid_cipher_suite(name) is valid


@pytest.mark.parametrize("names, openssl, ignored", [
    ((), ":".join(ENVOY_SERVER_CIPHERS), ()),
    (("ECDHE-RSA-AES256-GCM-SHA384",), "ECDHE-RSA-AES256-GCM-SHA384", ()),
    (("ECDHE-RSA-AES256-GCM-SHA384", "bogus", "ECDHE-RSA-AES256-GCM-SHA384"), "ECDHE-RSA-AES256-GCM-SHA384",
     ("bogus", "ECDHE-RSA-AES256-GCM-SHA384")),
    (("bogus",), ":".join(ENVOY_SERVER_CIPHERS), ("bogus",)),  # nothing valid left: the default list
    (("[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]", "AES256-SHA"),
     "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:AES256-SHA", ()),
])
def test_cipher_list(names, openssl, ignored):
    assert cipher_list(names) == (openssl, ignored)


def test_every_cipher_list_loads_into_openssl():
    for names in ((), ("ECDHE-RSA-AES256-GCM-SHA384", "AES128-SHA")):
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(cipher_list(names)[0])


@pytest.fixture(scope="module")
def client_der(tmp_path_factory):
    ca = ThrowawayCA(tmp_path_factory.mktemp("ca"))
    cert = ca.issue("client", "client.example.com", "*.clients.example.com")
    return x509.load_pem_x509_certificate(cert.cert.read_bytes()).public_bytes(serialization.Encoding.DER)


def _spki(der: bytes) -> str:
    key = x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(key).digest()).decode()


def _hash(der: bytes, colons: bool = False) -> str:
    text = hashlib.sha256(der).hexdigest()
    return ":".join(text[i:i + 2] for i in range(0, len(text), 2)).upper() if colons else text


OTHER_SPKI = base64.b64encode(b"\x01" * 32).decode()
OTHER_HASH = "ab" * 32


@pytest.mark.parametrize("sans, spki, hashes, stat", [
    ((), (), (), None),
    (("client.example.com",), (), (), None),
    (("a.clients.example.com",), (), (), None),  # a wildcard SAN covers one label
    (("other.example.com", "client.example.com"), (), (), None),  # any one of them
    (("other.example.com",), (), (), "ssl.fail_verify_san"),
    ((), ("SPKI",), (), None),
    ((), (), ("HASH",), None),
    ((), (), ("HASH:",), None),  # colons, upper case, as Envoy prints them
    ((), (OTHER_SPKI,), ("HASH",), None),  # with both lists, either matching accepts
    ((), (OTHER_SPKI,), (OTHER_HASH,), "ssl.fail_verify_cert_hash"),
    (("client.example.com",), (OTHER_SPKI,), (), "ssl.fail_verify_cert_hash"),
])
def test_client_checks(client_der, sans, spki, hashes, stat):
    spki = tuple(_spki(client_der) if p == "SPKI" else p for p in spki)
    hashes = tuple(_hash(client_der, colons=h.endswith(":")) if h.startswith("HASH") else h for h in hashes)
    problem = ClientChecks.from_settings(sans, spki, hashes).problem(client_der)
    assert (problem[0] if problem else None) == stat


def test_no_client_certificate_has_nothing_to_check():
    assert ClientChecks.from_settings(("a.example.com",), (), ()).problem(None) is None


@pytest.mark.parametrize("spki, hashes, field", [
    (("not base64!",), (), "verifyCertificateSpki"), ((base64.b64encode(b"short").decode(),), (), "verifyCertificateSpki"),
    ((), ("zz" * 32,), "verifyCertificateHash"), ((), ("ab" * 31,), "verifyCertificateHash"),
])
def test_malformed_pins_are_refused_by_field(spki, hashes, field):
    with pytest.raises(ValueError, match=field):
        ClientChecks.from_settings((), spki, hashes)


@pytest.mark.parametrize("sni, expected", [
    ("a.example.com", "exact"), ("b.example.com", "wild"), ("x.b.example.com", "deeper"), ("y.x.b.example.com", "deeper"),
    ("example.com", "any"), ("other.org", "any"), (None, "any"),
])
def test_server_names_pick_as_envoys_filter_chain_match(sni, expected):
    names = ServerNames()
    names.add(("A.example.com",), "exact")
    names.add(("*.example.com",), "wild")
    names.add(("*.b.example.com",), "deeper")
    names.add(("*",), "any")
    names.add(("a.example.com",), "second")  # the first server naming a name keeps it
    assert names.match(sni) == expected


def test_server_names_without_a_catch_all_match_nothing_else():
    names = ServerNames()
    names.add(("a.example.com",), "a")
    assert names.match("b.example.com") is None and names.match(None) is None
