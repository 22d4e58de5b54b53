"""The mesh certificate authority, without I/O: make a root, sign workload CSRs for a SPIFFE
identity, and read a workload's certificate back. Time is passed in (`now`), so expiry and
rotation are tested without waiting.

Keys are EC P-256 (what Istio's agent generates with `ECC_SIGNATURE_ALGORITHM=ECDSA`; smaller and
faster to handshake than RSA-2048). Workload certificates follow Istio's shape: an empty subject,
the SPIFFE URI as the only, critical, SAN, usable for both TLS client and server auth.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pymesh.security.identity import SpiffeId, spiffe_id_of

ROOT_TTL = timedelta(days=3650)
BACKDATE = timedelta(minutes=1)  # tolerate peers whose clocks run a little behind


class CsrRejected(ValueError):
    """A CSR the CA will not sign: unreadable, badly signed, or asking for another identity."""


@dataclass(frozen=True)
class WorkloadCertificate:
    """One workload's credentials: its chain (leaf first), its key, and the roots it trusts."""

    chain_pem: bytes
    key_pem: bytes
    roots_pem: bytes
    identity: SpiffeId
    serial: int
    not_before: datetime
    not_after: datetime

    def expired(self, now: datetime) -> bool:
        return now >= self.not_after

    def __repr__(self) -> str:  # never the key
        return f"WorkloadCertificate({self.identity.uri}, serial={self.serial:x}, not_after={self.not_after:%Y-%m-%dT%H:%M:%SZ})"


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def certs_pem(certs) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def load_certs(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle (none for empty input); ValueError for anything else."""
    return x509.load_pem_x509_certificates(pem) if pem.strip() else []


def new_key_and_csr(identity: SpiffeId) -> tuple[bytes, bytes]:
    """A fresh key and a CSR for `identity` (the key stays with whoever called this)."""
    key = new_key()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]), critical=True)
           .sign(key, hashes.SHA256()))
    return key_pem(key), csr.public_bytes(serialization.Encoding.PEM)


class CertificateAuthority:
    """Signs workload certificates with `key`/`cert` (a root, or an intermediate as Istio's
    plug-in CA), and hands out the trust bundle: every root in `roots`, so that during a root
    rotation both the old and the new root are trusted."""

    def __init__(self, cert: x509.Certificate, key, chain: list[x509.Certificate] | None = None,
                 roots: list[x509.Certificate] | None = None) -> None:
        if cert.public_key().public_numbers() != key.public_key().public_numbers():
            raise ValueError("the CA key does not match the CA certificate")
        self.cert = cert
        self.key = key
        self.chain = list(chain or [])  # from cert's issuer up to, not including, the root
        self.roots = list(roots or ([cert] if _self_signed(cert) else []))
        if not self.roots:
            raise ValueError("an intermediate CA needs its root certificate(s)")
        organization = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        self.trust_domain = str(organization[0].value) if organization else "cluster.local"

    @classmethod
    def create_root(cls, trust_domain: str, now: datetime, ttl: timedelta = ROOT_TTL) -> "CertificateAuthority":
        SpiffeId(trust_domain, "x", "x")  # validates the trust domain
        key = new_key()
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain)])
        cert = (x509.CertificateBuilder()
                .subject_name(name).issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - BACKDATE).not_valid_after(now + ttl)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return cls(cert, key)

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem_bytes: bytes, chain_pem: bytes = b"",
                 roots_pem: bytes = b"") -> "CertificateAuthority":
        """Istio's plug-in CA files: ca-cert.pem, ca-key.pem, cert-chain.pem (the CA's chain; its
        first entry may be ca-cert itself and its self-signed entries are roots, as Istio's
        layout has it), root-cert.pem (the trust bundle; may hold several roots)."""
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem_bytes, password=None)
        chain = [c for c in load_certs(chain_pem) if c != cert and not _self_signed(c)]
        return cls(cert, key, chain, load_certs(roots_pem) or None)

    def to_pem(self) -> tuple[bytes, bytes]:
        """(certificate, key) PEM, to store the CA."""
        return certs_pem([self.cert]), key_pem(self.key)

    @property
    def trust_bundle_pem(self) -> bytes:
        return certs_pem(self.roots)

    def with_roots(self, roots: list[x509.Certificate]) -> "CertificateAuthority":
        """The same signer trusting `roots` as well (a rotation's overlap), no duplicates."""
        merged = list(self.roots) + [root for root in roots if root not in self.roots]
        return CertificateAuthority(self.cert, self.key, self.chain, merged)

    def sign_csr(self, csr_pem: bytes, identity: SpiffeId, ttl: timedelta, now: datetime) -> bytes:
        """The chain (leaf first, then the CA's chain below the root) for a CSR that asks for
        exactly `identity`. The lifetime is cut to the CA's own."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as error:
            raise CsrRejected(f"unreadable CSR: {error}") from None
        if not csr.is_signature_valid:
            raise CsrRejected("the CSR's signature does not verify")
        asked = _csr_identity(csr)
        if asked != identity:
            raise CsrRejected(f"the CSR asks for {asked.uri if asked else 'no SPIFFE identity'}, "
                              f"the credential allows {identity.uri}")
        return self._sign(csr.public_key(), identity, ttl, now)

    def issue(self, identity: SpiffeId, ttl: timedelta, now: datetime) -> WorkloadCertificate:
        """A key and certificate made here (for `pymesh ca issue` and tests; a proxy makes its
        own key and sends a CSR instead)."""
        key = new_key()
        chain = self._sign(key.public_key(), identity, ttl, now)
        return workload_certificate(chain, key_pem(key), self.trust_bundle_pem)

    def issue_server(self, dns_names: list[str], ttl: timedelta, now: datetime) -> tuple[bytes, bytes]:
        """A key and a certificate for DNS names (the chain, leaf first, and the key in PEM): the
        serving certificate of a listener that clients outside the mesh reach by a Service's DNS
        name, such as the Kubernetes API server calling the admission webhooks."""
        key = new_key()
        names = x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names])
        return self._leaf(key.public_key(), names, ttl, now), key_pem(key)

    def _sign(self, public_key, identity: SpiffeId, ttl: timedelta, now: datetime) -> bytes:
        if identity.trust_domain != self.trust_domain:
            raise CsrRejected(f"{identity.uri} is not in this CA's trust domain {self.trust_domain}")
        return self._leaf(public_key, x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]),
                          ttl, now)

    def _leaf(self, public_key, names: x509.SubjectAlternativeName, ttl: timedelta, now: datetime) -> bytes:
        not_after = min(now + ttl, _not_after(self.cert))
        leaf = (x509.CertificateBuilder()
                .subject_name(x509.Name([])).issuer_name(self.cert.subject)
                .public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - BACKDATE).not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=False,
                                             crl_sign=False, content_commitment=False, data_encipherment=False,
                                             key_agreement=False, encipher_only=False, decipher_only=False),
                               critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                               critical=False)
                .add_extension(names, critical=True)
                .sign(self.key, hashes.SHA256()))
        above = [] if _self_signed(self.cert) else [self.cert, *self.chain]
        return certs_pem([leaf, *above])


def workload_certificate(chain_pem: bytes, key_pem_bytes: bytes, roots_pem: bytes) -> WorkloadCertificate:
    """Read a workload's files (Istio's cert-chain.pem, key.pem, root-cert.pem) into one
    object, checking what a TLS stack would only find out at the first handshake: the key is the
    leaf's, the leaf has one SPIFFE identity, and there is at least one root."""
    chain = load_certs(chain_pem)
    if not chain:
        raise ValueError("no certificate in the chain")
    if not load_certs(roots_pem):
        raise ValueError("no root certificate")
    leaf = chain[0]
    key = serialization.load_pem_private_key(key_pem_bytes, password=None)
    if key.public_key().public_numbers() != leaf.public_key().public_numbers():
        raise ValueError("the private key does not match the certificate")
    identity = spiffe_id_of(leaf)
    if identity is None:
        raise ValueError("the certificate has no SPIFFE identity (URI SAN spiffe://<td>/ns/<ns>/sa/<sa>)")
    return WorkloadCertificate(chain_pem, key_pem_bytes, roots_pem, identity, leaf.serial_number,
                               _not_before(leaf), _not_after(leaf))


def verify_issued_by(chain_pem: bytes, roots_pem: bytes, now: datetime) -> None:
    """Check that a chain leads to one of `roots` and is valid at `now` (ValueError if not):
    for certificates that arrive outside a TLS handshake, such as a signed CSR's answer."""
    from cryptography.x509.verification import PolicyBuilder, Store

    chain, roots = load_certs(chain_pem), load_certs(roots_pem)
    if not chain or not roots:
        raise ValueError("empty chain or trust bundle")
    verifier = PolicyBuilder().store(Store(roots)).time(now).build_client_verifier()
    try:
        verifier.verify(chain[0], chain[1:])
    except Exception as error:  # cryptography's VerificationError and friends
        raise ValueError(f"certificate does not verify against the trust bundle: {error}") from None


def _csr_identity(csr: x509.CertificateSigningRequest) -> SpiffeId | None:
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1 or len(list(sans)) != 1:
        return None
    try:
        return SpiffeId.parse(uris[0])
    except ValueError:
        return None


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _not_before(cert: x509.Certificate) -> datetime:
    return cert.not_valid_before_utc


def _not_after(cert: x509.Certificate) -> datetime:
    return cert.not_valid_after_utc


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
