"""The mesh CA without I/O: roots, intermediates, signing CSRs only for the identity asked, and
reading a workload's certificate back. Time is injected."""

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from pymesh.security.ca import (
    CertificateAuthority, CsrRejected, certs_pem, key_pem, new_key_and_csr, utc_now, verify_issued_by,
    workload_certificate,
)
from pymesh.security.identity import SpiffeId, peer_spiffe_id, spiffe_id_of

NOW = utc_now().replace(microsecond=0)  # certificates hold whole seconds
REVIEWS = SpiffeId("cluster.local", "demo", "reviews")


@pytest.fixture(scope="module")
def root():
    return CertificateAuthority.create_root("cluster.local", NOW)


def test_spiffe_id_round_trip_and_principal():
    parsed = SpiffeId.parse("spiffe://cluster.local/ns/demo/sa/reviews")
    assert parsed == REVIEWS
    assert parsed.principal == "cluster.local/ns/demo/sa/reviews"
    assert str(parsed) == REVIEWS.uri


@pytest.mark.parametrize("uri", [
    "https://cluster.local/ns/demo/sa/reviews", "spiffe://cluster.local/ns/demo", "spiffe://cluster.local/sa/x/ns/y",
    "spiffe://Cluster.Local/ns/demo/sa/reviews", "spiffe://cluster.local/ns/../sa/x", "spiffe:///ns/a/sa/b",
    "spiffe://cluster.local/ns/demo/sa/reviews/extra", "spiffe://cluster.local/ns/de mo/sa/x",
])
def test_bad_spiffe_ids_are_refused(uri):
    with pytest.raises(ValueError):
        SpiffeId.parse(uri)


def test_issued_certificate_has_istio_shape(root):
    cert = root.issue(REVIEWS, timedelta(hours=24), NOW)
    leaf = x509.load_pem_x509_certificates(cert.chain_pem)[0]
    assert spiffe_id_of(leaf) == REVIEWS == cert.identity
    assert leaf.subject == x509.Name([])
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_after - NOW == timedelta(hours=24)
    verify_issued_by(cert.chain_pem, root.trust_bundle_pem, NOW)
    assert "PRIVATE" not in repr(cert) and REVIEWS.uri in repr(cert)


def test_csr_signed_only_for_the_identity_it_asks(root):
    key, csr = new_key_and_csr(REVIEWS)
    chain = root.sign_csr(csr, REVIEWS, timedelta(hours=1), NOW)
    assert workload_certificate(chain, key, root.trust_bundle_pem).identity == REVIEWS
    with pytest.raises(CsrRejected, match="asks for spiffe://cluster.local/ns/demo/sa/reviews"):
        root.sign_csr(csr, SpiffeId("cluster.local", "demo", "ratings"), timedelta(hours=1), NOW)


def test_csr_with_extra_sans_or_bad_signature_is_refused(root):
    key = ec.generate_private_key(ec.SECP256R1())
    extra = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
             .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(REVIEWS.uri),
                                                         x509.DNSName("evil.example")]), critical=True)
             .sign(key, hashes.SHA256()))
    from cryptography.hazmat.primitives.serialization import Encoding
    with pytest.raises(CsrRejected):
        root.sign_csr(extra.public_bytes(Encoding.PEM), REVIEWS, timedelta(hours=1), NOW)
    with pytest.raises(CsrRejected, match="unreadable"):
        root.sign_csr(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                      REVIEWS, timedelta(hours=1), NOW)


def test_other_trust_domain_refused(root):
    _, csr = new_key_and_csr(SpiffeId("other.domain", "demo", "reviews"))
    with pytest.raises(CsrRejected, match="trust domain"):
        root.sign_csr(csr, SpiffeId("other.domain", "demo", "reviews"), timedelta(hours=1), NOW)


def test_lifetime_is_cut_to_the_ca_own(root):
    short = CertificateAuthority.create_root("cluster.local", NOW, ttl=timedelta(hours=2))
    assert short.issue(REVIEWS, timedelta(days=30), NOW).not_after == short.cert.not_valid_after_utc


def test_certificate_from_another_ca_or_expired_does_not_verify(root):
    other = CertificateAuthority.create_root("cluster.local", NOW)
    foreign = other.issue(REVIEWS, timedelta(hours=1), NOW)
    with pytest.raises(ValueError):
        verify_issued_by(foreign.chain_pem, root.trust_bundle_pem, NOW)
    cert = root.issue(REVIEWS, timedelta(seconds=30), NOW)
    assert cert.expired(NOW + timedelta(seconds=31))
    with pytest.raises(ValueError):
        verify_issued_by(cert.chain_pem, root.trust_bundle_pem, NOW + timedelta(minutes=5))


def test_intermediate_ca_chain_verifies_against_root(root):
    # An intermediate signed by the root, as Istio's plug-in CA: ca-cert, ca-key, cert-chain, root-cert.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.ORGANIZATION_NAME, "cluster.local"),
                      x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "intermediate")])
    inter = (x509.CertificateBuilder().subject_name(name).issuer_name(root.cert.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(NOW - timedelta(minutes=1)).not_valid_after(NOW + timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
             .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()), critical=False)
             .sign(root.key, hashes.SHA256()))
    plugin = CertificateAuthority.from_pem(certs_pem([inter]), key_pem(key), certs_pem([inter, root.cert]),
                                           root.trust_bundle_pem)
    cert = plugin.issue(REVIEWS, timedelta(hours=1), NOW)
    assert len(x509.load_pem_x509_certificates(cert.chain_pem)) == 2  # leaf, intermediate
    verify_issued_by(cert.chain_pem, root.trust_bundle_pem, NOW)
    with pytest.raises(ValueError, match="root"):
        CertificateAuthority.from_pem(certs_pem([inter]), key_pem(key))


def test_rotation_bundle_trusts_both_roots(root):
    new_root = CertificateAuthority.create_root("cluster.local", NOW)
    overlap = new_root.with_roots(root.roots)
    assert len(x509.load_pem_x509_certificates(overlap.trust_bundle_pem)) == 2
    for issuer in (root, new_root):
        verify_issued_by(issuer.issue(REVIEWS, timedelta(hours=1), NOW).chain_pem, overlap.trust_bundle_pem, NOW)


def test_workload_files_that_do_not_belong_together_are_refused(root):
    a = root.issue(REVIEWS, timedelta(hours=1), NOW)
    b = root.issue(REVIEWS, timedelta(hours=1), NOW)
    with pytest.raises(ValueError, match="does not match"):
        workload_certificate(a.chain_pem, b.key_pem, a.roots_pem)
    with pytest.raises(ValueError, match="no root"):
        workload_certificate(a.chain_pem, a.key_pem, b"")
    with pytest.raises(ValueError, match="no certificate"):
        workload_certificate(b"", a.key_pem, a.roots_pem)


def test_peer_spiffe_id_from_der(root):
    cert = root.issue(REVIEWS, timedelta(hours=1), NOW)
    from cryptography.hazmat.primitives.serialization import Encoding
    der = x509.load_pem_x509_certificates(cert.chain_pem)[0].public_bytes(Encoding.DER)
    assert peer_spiffe_id(der) == REVIEWS
    assert peer_spiffe_id(None) is None and peer_spiffe_id(b"junk") is None
