"""`credentialName` resolved from files (until the Kubernetes issue reads Secrets): the proxy's
--credentials-dir holds one folder per name, laid out as Kubernetes mounts a Secret.

A TLS secret has `tls.crt`, `tls.key` and optionally `ca.crt` and `ca.crl`; an Opaque one, as
Istio also reads it, `cert`, `key`, `cacert` and `crl`. The CA may instead live in a folder
`<name>-cacert` (Istio's separate CA secret, which wins, as Istio looks up `<name>-cacert` first
and then `<name>`'s ca.crt), and a CA-only credential may be that folder alone (the egress TLS
origination task's `client-credential-cacert` for `credentialName: client-credential`). Names are Kubernetes Secret names, optionally
prefixed `kubernetes://`: nothing else is looked up, so a name cannot reach outside the folder.
Gateways (issue 12) use the same resolver for their server certificates.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")
_PREFIX = "kubernetes://"
_CERT, _KEY, _CA, _CRL = ("tls.crt", "cert"), ("tls.key", "key"), ("ca.crt", "cacert"), ("ca.crl", "crl")


class CredentialNotFound(LookupError):
    """No usable credential of that name: TLS that needs it fails (never falls back to plaintext)."""


@dataclass(frozen=True)
class Credential:
    """Paths of one credential's files ("" when it has none)."""

    certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""
    ca_crl: str = ""


class CredentialResolver:
    def __init__(self, directory: str | None) -> None:
        self.directory = directory

    def resolve(self, name: str) -> Credential:
        if self.directory is None:
            raise CredentialNotFound(f"credentialName {name!r}: the proxy has no --credentials-dir")
        secret = name[len(_PREFIX):] if name.startswith(_PREFIX) else name
        if secret.endswith(".") or ".." in secret or not _SECRET_NAME.match(secret):
            raise CredentialNotFound(f"credentialName {name!r} is not a Kubernetes Secret name")
        folder = os.path.join(self.directory, secret)
        ca_folder = os.path.join(self.directory, f"{secret}-cacert")
        if not os.path.isdir(folder) and not os.path.isdir(ca_folder):
            raise CredentialNotFound(f"credentialName {name!r}: no folder {folder} (nor {ca_folder})")
        credential = Credential(
            certificate=_first(folder, _CERT),
            private_key=_first(folder, _KEY),
            ca_certificates=_first(ca_folder, _CA) or _first(folder, _CA),
            ca_crl=_first(folder, _CRL),
        )
        if bool(credential.certificate) != bool(credential.private_key):
            raise CredentialNotFound(f"credentialName {name!r}: {folder} has a certificate or a key without the other")
        return credential


def _first(folder: str, names: tuple[str, ...]) -> str:
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return ""
