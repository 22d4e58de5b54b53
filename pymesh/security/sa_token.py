"""A projected ServiceAccount token as the proxy holds it in a Kubernetes pod: the bootstrap
credential in place of a join token (the injector mounts it at /var/run/secrets/tokens/
pymesh-token with audience pymesh-ca).

The proxy reads the namespace and service account to ask for from the token's own claims
(unverified: the control server proves them with a TokenReview and signs nothing else), and
re-reads the file for every bootstrap, because the kubelet replaces it before it expires. The
token carries no pin of the mesh root, so the proxy verifies the server by --ca-root.
"""

from __future__ import annotations

from dataclasses import dataclass

from pymesh.kube.token_review import MAX_TOKEN_LENGTH, account_of, unverified_claims
from pymesh.security.jointoken import TokenRefused

DEFAULT_PATH = "/var/run/secrets/tokens/pymesh-token"


@dataclass(frozen=True, repr=False)
class ServiceAccountToken:
    namespace: str
    service_account: str
    trust_domain: str
    path: str | None  # the mounted file, re-read for each bootstrap; None: `text` only
    text: str  # as first read
    ca_pin = None  # no pin: the server is verified by --ca-root

    @classmethod
    def parse(cls, text: str, trust_domain: str, path: str | None = None) -> ServiceAccountToken:
        """TokenRefused when `text` is not a JWT naming a ServiceAccount."""
        text = text.strip()
        if len(text) > MAX_TOKEN_LENGTH:
            raise TokenRefused(f"token longer than {MAX_TOKEN_LENGTH} characters")
        try:
            namespace, account = account_of(unverified_claims(text))
        except ValueError as exc:
            raise TokenRefused(f"not a pymesh join token nor a ServiceAccount token: {exc}") from None
        return cls(namespace, account, trust_domain, path, text)

    def bearer(self) -> str:
        """The token as it is now (the file, when there is one); OSError when it cannot be read."""
        if self.path is None:
            return self.text
        with open(self.path, encoding="utf-8") as stream:
            return stream.read(MAX_TOKEN_LENGTH + 1).strip()

    def __repr__(self) -> str:  # never the token
        return f"ServiceAccountToken(namespace={self.namespace!r}, service_account={self.service_account!r})"

    __str__ = __repr__
