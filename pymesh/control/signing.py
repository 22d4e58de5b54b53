"""The signing endpoint (POST /pymesh.control.v1/Sign), without I/O: which identity a request's
credential proves, and the CA's answer for its CSR.

Bootstrap: `authorization: Bearer <join token>` (exists, not expired, not revoked) proves the
token's namespace and service account; with --kubernetes, a bearer that is not a join token
(`pm1.`) is a projected ServiceAccount token, proven by a TokenReview (pymesh.control.kube.
token_review), which makes signing asynchronous. Renewal: the connection's client certificate,
verified by the TLS handshake against the mesh roots and not expired, proves its own identity.
Either way the CSR must ask for exactly that identity; a refusal is logged with the token's id
(or the reviewed account), never a secret, and answered 401 (no valid credential), 503 (the API
server could not review the token: try again) or 403 (a CSR for another identity).
"""

from __future__ import annotations

import logging
from typing import NamedTuple, Protocol

from pymesh.api import wire
from pymesh.control.authority import MeshCA
from pymesh.control.kube.token_review import ReviewUnavailable
from pymesh.control.tokens import TokenStore
from pymesh.kube.token_review import ReviewedAccount
from pymesh.security.ca import CsrRejected
from pymesh.security.identity import SpiffeId, peer_spiffe_id
from pymesh.security.jointoken import PREFIX, JoinToken, TokenRefused

log = logging.getLogger("pymesh.control.sign")


class Answer(NamedTuple):
    status: int
    content_type: str
    body: bytes


def _error(status: int, message: str) -> Answer:
    return Answer(status, wire.JSON_TYPE, wire.encode_json({"error": message}))


class Reviewer(Protocol):
    """What proves a ServiceAccount token (pymesh.control.kube.token_review.TokenReviewer)."""

    async def review(self, token: str) -> ReviewedAccount: ...


class Signer:
    def __init__(self, ca: MeshCA, tokens: TokenStore, on_result=lambda outcome: None,
                 reviewer: Reviewer | None = None):
        self.ca = ca
        self.tokens = tokens
        self.reviewer = reviewer  # with --kubernetes: ServiceAccount tokens are accepted too
        self._on_result = on_result  # outcome: "signed", "unauthenticated", "denied", "invalid"

    def bundle(self) -> Answer:
        return Answer(200, wire.PEM_TYPE, self.ca.bundle_pem)

    async def sign(self, authorization: str | None, body: bytes, peer_der: bytes | None, peer: str) -> Answer:
        try:
            request = wire.decode_body(wire.SignRequest, body)
        except ValueError as exc:
            return self._done("invalid", _error(400, f"signing request: {exc}"))
        try:
            identity, credential = await self._credential(authorization, peer_der)
        except TokenRefused as exc:  # ReviewUnavailable: not refused for good, the proxy retries
            log.warning("refused a certificate request from %s: %s", peer, exc)
            status = 503 if isinstance(exc, ReviewUnavailable) else 401
            return self._done("unauthenticated", _error(status, str(exc)))
        try:
            chain = self.ca.sign(request.csr.encode(), identity, request.ttl)
        except CsrRejected as exc:
            log.warning("refused a certificate request from %s with %s: %s", peer, credential, exc)
            return self._done("denied", _error(403, str(exc)))
        log.info("signed a certificate for %s (%s, from %s)", identity.uri, credential, peer)
        answer = wire.SignResponse(chain.decode("ascii"), self.ca.bundle_pem.decode("ascii"))
        return self._done("signed", Answer(200, wire.JSON_TYPE, wire.encode_body(answer)))

    async def _credential(self, authorization: str | None, peer_der: bytes | None) -> tuple[SpiffeId, str]:
        """(identity, how it was proven, for the log); TokenRefused without a usable one."""
        if authorization is not None:
            scheme, _, value = authorization.partition(" ")
            value = value.strip()
            if scheme.lower() != "bearer" or not value:
                raise TokenRefused("authorization: expected Bearer <join token>")
            if self.reviewer is not None and not value.startswith(PREFIX + "."):
                return await self._service_account(value)
            record = self.tokens.verify(JoinToken.parse(value))
            return SpiffeId(self.ca.trust_domain, record.namespace, record.service_account), f"token {record.id}"
        identity = peer_spiffe_id(peer_der)
        if identity is None:
            raise TokenRefused("no credential: a join token (authorization: Bearer) or a mesh client certificate")
        if self.ca.leaf_expired(peer_der):
            raise TokenRefused(f"the client certificate of {identity.uri} has expired")
        if identity == self.ca.control_identity:
            raise TokenRefused("the control server's identity is not a workload's")
        return identity, "its client certificate"

    async def _service_account(self, token: str) -> tuple[SpiffeId, str]:
        account = await self.reviewer.review(token)
        try:
            identity = SpiffeId(self.ca.trust_domain, account.namespace, account.service_account)
        except ValueError as exc:
            raise TokenRefused(f"TokenReview: {exc}") from None
        if identity == self.ca.control_identity:
            raise TokenRefused("the control server's identity is not a workload's")
        pod = f" of pod {account.pod}" if account.pod else ""
        return identity, f"ServiceAccount token{pod}"

    def _done(self, outcome: str, answer: Answer) -> Answer:
        self._on_result(outcome)
        return answer
