"""Test issuers: signing keys, their public JWK Sets and tokens, made with joserfc (the same
library the proxy verifies with, but only its signing side is used here)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from joserfc import jwk
from joserfc import jwt as jose_jwt

DATA = Path(__file__).parent / "security" / "data"
# Istio's demo JWKS and token (istio/istio security/tools/jwt/samples, unchanged)
ISTIO_JWKS = (DATA / "jwks.json").read_text()
ISTIO_DEMO_TOKEN = (DATA / "demo.jwt").read_text().strip()
ISTIO_DEMO_ISSUER = "testing@secure.istio.io"

_KEYS = {"RS256": ("RSA", 2048), "PS256": ("RSA", 2048), "RS384": ("RSA", 2048), "RS512": ("RSA", 2048),
         "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"),
         "EdDSA": ("OKP", "Ed25519"), "HS256": ("oct", 256)}


class Issuer:
    """An issuer with one signing key per kid; `jwks()` publishes the public halves."""

    def __init__(self, iss: str = "https://issuer.example", alg: str = "RS256", kid: str = "key-1") -> None:
        self.iss = iss
        self.alg = alg
        self.keys: dict[str, object] = {}
        self.add_key(kid)

    def add_key(self, kid: str, alg: str | None = None):
        kty, size = _KEYS[alg or self.alg]
        key = jwk.generate_key(kty, size, parameters={"kid": kid})
        self.keys[kid] = key
        return key

    def jwks(self, *kids: str) -> dict:
        chosen = kids or tuple(self.keys)
        private = self.alg.startswith("HS")  # an oct key is its own "public" half
        return {"keys": [self.keys[k].as_dict(private=private) for k in chosen]}

    def jwks_json(self, *kids: str) -> str:
        return json.dumps(self.jwks(*kids))

    def token(self, sub: str = "alice", *, kid: str | None = None, key=None, alg: str | None = None,
              iss: str | None = None, lifetime: float = 3600, now: float | None = None, header: dict | None = None,
              **claims) -> str:
        now = time.time() if now is None else now
        kid = kid or next(iter(self.keys))
        payload = {"iss": self.iss if iss is None else iss, "sub": sub, "iat": int(now), "exp": int(now + lifetime)}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        head = {"alg": alg or self.alg, "kid": kid, **(header or {})}
        head = {k: v for k, v in head.items() if v is not None}
        return jose_jwt.encode(head, payload, key or self.keys[kid], algorithms=[head["alg"]])
