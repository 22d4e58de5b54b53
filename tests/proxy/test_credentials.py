"""credentialName from --credentials-dir (pymesh.proxy.credentials): Kubernetes' TLS and Opaque
secret layouts, the separate `-cacert` secret, and names that must not reach outside the folder."""

from __future__ import annotations

import pytest

from pymesh.proxy.credentials import Credential, CredentialNotFound, CredentialResolver


@pytest.fixture
def root(tmp_path):
    def secret(name: str, *files: str) -> None:
        folder = tmp_path / name
        folder.mkdir()
        for file in files:
            (folder / file).write_text("x")
    secret("tls-secret", "tls.crt", "tls.key", "ca.crt", "ca.crl")
    secret("opaque", "cert", "key", "cacert", "crl")
    secret("client-only", "tls.crt", "tls.key")
    secret("client-only-cacert", "ca.crt")
    secret("ca-only", "ca.crt")
    secret("separate-cacert", "ca.crt")  # the egress SDS task's client-credential-cacert, alone
    secret("both", "tls.crt", "tls.key", "ca.crt")
    secret("both-cacert", "ca.crt")
    secret("half", "tls.crt")
    (tmp_path / "outside").write_text("x")
    return tmp_path


def test_layouts(root):
    resolver = CredentialResolver(str(root))
    assert resolver.resolve("tls-secret") == Credential(*(str(root / "tls-secret" / f)
                                                          for f in ("tls.crt", "tls.key", "ca.crt", "ca.crl")))
    assert resolver.resolve("opaque") == Credential(*(str(root / "opaque" / f) for f in ("cert", "key", "cacert", "crl")))
    assert resolver.resolve("kubernetes://client-only") == Credential(
        str(root / "client-only" / "tls.crt"), str(root / "client-only" / "tls.key"),
        str(root / "client-only-cacert" / "ca.crt"))
    assert resolver.resolve("ca-only") == Credential(ca_certificates=str(root / "ca-only" / "ca.crt"))
    # Istio's GetCaCert: the `<name>-cacert` secret first, alone if need be, then <name>'s ca.crt
    assert resolver.resolve("separate") == Credential(ca_certificates=str(root / "separate-cacert" / "ca.crt"))
    assert resolver.resolve("both").ca_certificates == str(root / "both-cacert" / "ca.crt")


@pytest.mark.parametrize("name,problem", [
    ("missing", "no folder"),
    ("half", "a certificate or a key without the other"),
    ("../outside", "not a Kubernetes Secret name"),
    ("a/b", "not a Kubernetes Secret name"),
    ("..", "not a Kubernetes Secret name"),
    ("UPPER", "not a Kubernetes Secret name"),
    ("configmap://ns/name", "not a Kubernetes Secret name"),
    ("", "not a Kubernetes Secret name"),
])
def test_refused(root, name, problem):
    with pytest.raises(CredentialNotFound, match=problem):
        CredentialResolver(str(root)).resolve(name)


def test_no_directory():
    with pytest.raises(CredentialNotFound, match="no --credentials-dir"):
        CredentialResolver(None).resolve("tls-secret")
