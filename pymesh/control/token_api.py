"""The admin port's join-token API, behind `pymesh control token create|list|revoke`:

    GET  /tokens                 every token's record (never a secret or hash)
    POST /tokens                 {"namespace", "service_account", "ttl" (seconds, default 3600)}
                                 -> {"token", "id", "expires"}: the only time the token is shown
    POST /tokens/<id>/revoke     -> the record, now revoked
"""

from __future__ import annotations

import json

from pymesh.api import checks, wire
from pymesh.control.admin import Answer
from pymesh.api.wire import CONTROL_NAMESPACE
from pymesh.control.authority import MeshCA
from pymesh.control.tokens import TokenStore

DEFAULT_TTL = 3600.0


class TokenApi:
    def __init__(self, store: TokenStore, ca: MeshCA):
        self.store = store
        self.ca = ca

    def __call__(self, method: str, path: str, body: bytes) -> Answer:
        if path in ("", "/"):
            if method == "GET":
                return _json(200, {"tokens": [r.public() for r in self.store.records()]})
            if method == "POST":
                return self._create(body)
            return _json(405, {"error": "GET or POST /tokens"})
        token_id, _, action = path.strip("/").partition("/")
        if action != "revoke":
            return _json(404, {"error": "try GET /tokens, POST /tokens or POST /tokens/<id>/revoke"})
        if method != "POST":
            return _json(405, {"error": "POST /tokens/<id>/revoke"})
        try:
            return _json(200, self.store.revoke(token_id).public())
        except KeyError:
            return _json(404, {"error": f"no token {token_id!r}"})

    def _create(self, body: bytes) -> Answer:
        try:
            request = json.loads(body or b"{}")
            missing = [name for name in ("namespace", "service_account") if not isinstance(request.get(name), str)]
            if missing:
                raise ValueError(f"{' and '.join(missing)} required (strings)")
            namespace, account = request["namespace"], request["service_account"]
            ttl = float(request.get("ttl", DEFAULT_TTL))
            for what, problem in (("namespace", checks.dns_label(namespace)),
                                  ("service_account", checks.dns_subdomain(account))):
                if problem:
                    raise ValueError(f"{what}: {problem}")
            if namespace == CONTROL_NAMESPACE:
                raise ValueError(f"namespace {CONTROL_NAMESPACE} is the control server's own")
            if not 0 < ttl < float("inf"):
                raise ValueError("ttl must be a positive number of seconds")
        except (ValueError, TypeError, AttributeError) as exc:
            return _json(400, {"error": f"token request: {exc}"})
        token = self.store.create(namespace, account, ttl, self.ca.trust_domain, self.ca.pin)
        record = next(r for r in self.store.records() if r.id == token.id)
        return _json(201, {"token": str(token), "id": token.id, "expires": record.expires})


def _json(status: int, value: object) -> Answer:
    return status, wire.JSON_TYPE, json.dumps(value, indent=2).encode() + b"\n"
