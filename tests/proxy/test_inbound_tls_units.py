"""The pure parts of inbound mTLS, table-driven: which codec an ALPN protocol asks for, the XFCC
value, /certs' shape and the readiness rule. (Telling a ClientHello from plaintext is
pymesh.http.tls_hello's, tested with it.)"""

from __future__ import annotations

from datetime import timedelta

import pytest

from mesh_pki import MeshPki, leaf_sha256, uri
from pymesh.proxy.certs_page import certs_dump, mtls_readiness
from pymesh.proxy.inbound_tls import H2, HTTP1, codec_for, forwarded_client_cert
from pymesh.routing.peer_authn import PeerAuthnPolicy
from pymesh.security.ca import utc_now, workload_certificate
from pymesh.telemetry.peer_metadata import decode_peer


@pytest.mark.parametrize("alpn, codec", [
    ("istio-h2", H2), ("h2", H2), ("istio-http/1.1", HTTP1), ("istio-http/1.0", HTTP1), ("http/1.1", HTTP1),
    ("istio-peer-exchange", None), ("istio", None), (None, None), ("h3", None),
])
def test_codec_for_alpn(alpn, codec):
    assert codec_for(alpn) == codec


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    pki = MeshPki(tmp_path_factory.mktemp("pki"))
    return pki, pki.issue("foo", "server")


def _load(directory):
    return workload_certificate(*((directory / name).read_bytes() for name in ("cert-chain.pem", "key.pem",
                                                                                 "root-cert.pem")))


def test_forwarded_client_cert_is_istios(certs):
    _, directory = certs
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = x509.load_pem_x509_certificates((directory / "cert-chain.pem").read_bytes())[0]
    der = cert.public_bytes(Encoding.DER)
    value = forwarded_client_cert(der, cert, uri("foo", "server"), uri("bar", "me"))
    assert value == (f'By={uri("bar", "me")};Hash={leaf_sha256(directory)};Subject="";'
                     f'URI={uri("foo", "server")}').encode()
    assert forwarded_client_cert(None, None, None, uri("bar", "me")) is None


def test_certs_dump_has_envoys_shape_and_no_key(certs):
    _, directory = certs
    cert = _load(directory)
    dump = certs_dump(cert, utc_now(), "/etc/certs/cert-chain.pem", "/etc/certs/root-cert.pem")
    (entry,) = dump["certificates"]
    (leaf_entry,) = entry["cert_chain"]
    assert set(leaf_entry) == {"path", "serial_number", "subject_alt_names", "days_until_expiration", "valid_from",
                               "expiration_time"}
    assert leaf_entry["serial_number"] == format(cert.serial, "x")
    assert leaf_entry["subject_alt_names"] == [{"uri": uri("foo", "server")}]
    assert leaf_entry["days_until_expiration"] == "0"  # 24h minus a moment: whole days, as Envoy
    assert entry["ca_cert"][0]["path"] == "/etc/certs/root-cert.pem"
    assert "PRIVATE" not in repr(dump) and certs_dump(None, utc_now()) == {"certificates": []}
    later = certs_dump(cert, utc_now() + timedelta(days=3))
    assert later["certificates"][0]["cert_chain"][0]["days_until_expiration"] == "0"  # expired: 0, not negative


@pytest.mark.parametrize("policy, has_cert, expired, problem", [
    (PeerAuthnPolicy("PERMISSIVE"), False, False, None),
    (PeerAuthnPolicy("DISABLE", {8080: "PERMISSIVE"}), False, False, None),
    (PeerAuthnPolicy("STRICT"), True, False, None),
    (PeerAuthnPolicy("STRICT"), False, False, "STRICT mTLS ports but no workload certificate (files missing)"),
    (PeerAuthnPolicy("PERMISSIVE", {8443: "STRICT"}), False, False, "STRICT mTLS ports but no workload certificate (files missing)"),
    (PeerAuthnPolicy("STRICT"), True, True, "STRICT mTLS ports but the workload certificate expired at"),
])
def test_readiness(certs, policy, has_cert, expired, problem):
    _, directory = certs
    cert = _load(directory) if has_cert else None
    now = utc_now() + (timedelta(days=2) if expired else timedelta())
    got = mtls_readiness(policy, cert, now, None if has_cert else "files missing")
    assert (got is None and problem is None) or got.startswith(problem), got


@pytest.mark.parametrize("header, verified, expected", [
    (b"reviews-v1;default;reviews;v1", None, ("reviews-v1", "default", "unknown", "reviews", "v1")),
    # over mTLS the certificate decides principal and namespace, whatever the header claims
    (b"reviews-v1;default;reviews;v1", uri("prod", "reviews"),
     ("reviews-v1", "prod", uri("prod", "reviews"), "reviews", "v1")),
    (None, uri("prod", "reviews"), ("unknown", "prod", uri("prod", "reviews"), "unknown", "unknown")),
    (b"garbage", uri("prod", "reviews"), ("unknown", "prod", uri("prod", "reviews"), "unknown", "unknown")),
    (None, None, ("unknown", "unknown", "unknown", "unknown", "unknown")),
])
def test_peer_labels_trust_the_certificate_over_the_header(header, verified, expected):
    peer = decode_peer(header, verified)
    assert (peer.workload, peer.namespace, peer.principal, peer.app, peer.version) == expected
