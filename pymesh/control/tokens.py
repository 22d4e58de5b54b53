"""The control server's join tokens (format: pymesh/security/jointoken.py): records by id with
only the secret's SHA-256, compared in constant time, kept 0600 in --data-dir across restarts.

A token may be used by every replica of a workload until it expires or is revoked, as Istio's
ServiceAccount tokens are; expiry and revocation stop new bootstraps, and a proxy's certificate
(short-lived) is renewed on the strength of the certificate itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import asdict, dataclass, replace
from typing import Callable

from pymesh.security.files import write_private
from pymesh.security.jointoken import JoinToken, TokenRefused

log = logging.getLogger("pymesh.control.tokens")

FILE = "join-tokens.json"
_DUMMY_HASH = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class TokenRecord:
    """What the server keeps of a token: never the secret, only its SHA-256."""

    id: str
    namespace: str
    service_account: str
    created: float  # Unix time
    expires: float
    secret_sha256: str
    revoked: float | None = None

    def public(self) -> dict:
        """For listings: everything but the hash."""
        out = asdict(self)
        del out["secret_sha256"]
        return out


class TokenStore:
    """Token records by id, saved (0600, atomically) in `data_dir` when there is one."""

    def __init__(self, data_dir: str | None, clock: Callable[[], float]):
        self.path = os.path.join(data_dir, FILE) if data_dir else None
        self._clock = clock
        self._records: dict[str, TokenRecord] = self._load()

    def create(self, namespace: str, service_account: str, ttl: float, trust_domain: str, ca_pin: str) -> JoinToken:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        now = self._clock()
        self._records[token_id] = TokenRecord(token_id, namespace, service_account, now, now + ttl, _sha256(secret))
        self._save()
        log.info("join token %s created for %s/%s, expires in %.0f s", token_id, namespace, service_account, ttl)
        return JoinToken(token_id, namespace, service_account, trust_domain, ca_pin, secret)

    def records(self) -> list[TokenRecord]:
        return sorted(self._records.values(), key=lambda r: (r.created, r.id))

    def revoke(self, token_id: str) -> TokenRecord:
        record = self._records.get(token_id)
        if record is None:
            raise KeyError(token_id)
        if record.revoked is None:
            record = self._records[token_id] = replace(record, revoked=self._clock())
            self._save()
            log.info("join token %s (%s/%s) revoked", token_id, record.namespace, record.service_account)
        return record

    def verify(self, token: JoinToken) -> TokenRecord:
        """The record a presented token stands for; TokenRefused when unknown, wrong, expired or
        revoked. The secret's hash is compared in constant time, even for an unknown id."""
        record = self._records.get(token.id)
        matches = hmac.compare_digest(_sha256(token.secret), record.secret_sha256 if record else _DUMMY_HASH)
        if record is None or not matches:
            raise TokenRefused(f"unknown token {token.id!r} or wrong secret")
        if record.revoked is not None:
            raise TokenRefused(f"token {token.id} was revoked")
        if self._clock() >= record.expires:
            raise TokenRefused(f"token {token.id} expired")
        return record

    def _load(self) -> dict[str, TokenRecord]:
        if self.path is None or not os.path.exists(self.path):
            return {}
        try:  # unreadable tokens: fail loudly at start rather than forget revocations
            with open(self.path, encoding="utf-8") as stream:
                data = json.load(stream)
            return {item["id"]: TokenRecord(**item) for item in data["tokens"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.path}: unreadable join tokens: {exc!r}") from None

    def _save(self) -> None:
        if self.path is not None:
            body = json.dumps({"tokens": [asdict(r) for r in self.records()]})
            write_private(self.path, body.encode())


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()

