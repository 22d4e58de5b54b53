"""The inbound JWT filter (Envoy's jwt_authn as Istio configures it for RequestAuthentication).

A request without a token passes with no principal (authorization decides whether one is
needed); a request whose token fails any check is answered 401 (403 for audiences) with Envoy's
body and `www-authenticate: Bearer realm="<url>", error="invalid_token"`. A valid token sets
`exchange.request_principal`, its header is removed unless forwardOriginalToken, and the rule's
output headers are written. The output headers are removed from every request first, so a client
cannot pass off its own values as claims.

The checks are pymesh.security.jwt's; keys come from the rule itself (jwks) or the worker's
JwksCache (jwksUri). A request may pause for a fetch: the first one of a URI, or the one early
refetch that a token with an unknown kid asks for.
"""

from __future__ import annotations

import time
from typing import Sequence

from pymesh.http.message import UpstreamRequest
from pymesh.policy import flags
from pymesh.proxy.interfaces import PAUSE
from pymesh.proxy.jwks import JwksCache
from pymesh.proxy.local_reply import LocalReply
from pymesh.security import jwt
from pymesh.security.jwt import JwtFailure, Location, Provider
from pymesh.telemetry.accesslog import redact_query


class JwtAuthn:
    """A RequestFilter for one snapshot's providers (None from `for_providers` when there are
    none, so an unconfigured proxy runs nothing)."""

    def __init__(self, providers: Sequence[Provider], cache: JwksCache, clock=time.time) -> None:
        self.providers = tuple(providers)
        self.cache = cache
        self.clock = clock
        self.locations = jwt.locations_of(self.providers)
        self.outputs = frozenset(h for p in self.providers
                                 for h in ((p.payload_header,) if p.payload_header else ()) + tuple(n for n, _ in p.claim_headers))

    @classmethod
    def for_providers(cls, providers: Sequence[Provider], cache: JwksCache, clock=time.time) -> JwtAuthn | None:
        cache.retain((p.jwks_uri, p.timeout) for p in providers if p.jwks_uri)
        return cls(providers, cache, clock) if providers else None

    def on_request(self, exchange, request: UpstreamRequest):
        if self.outputs:
            request.headers = [(n, v) for n, v in request.headers if n not in self.outputs]
        query = request.target.partition("?")[2].partition("#")[0]
        found = []
        for location in self.locations:
            token = jwt.extract(location, request.headers, query)
            if token is not None and all(token != t for _, t in found):
                found.append((location, token))
        if not found:
            _stats(exchange)["allowed"] += 1
            return None
        params = frozenset(location.name for location, _ in found if location.kind == "param")
        if params:  # valid or not, a token is a credential: the access log keeps the path without it
            exchange.logged_path = redact_query(exchange.head.path, params)
        return self._verify(exchange, request, found, 0, ())

    def _verify(self, exchange, request: UpstreamRequest, found: list, index: int, refetched: tuple):
        """Check found[index:]; PAUSE when a fetch must end first (it calls `_resume`)."""
        while index < len(found):
            location, token = found[index]
            try:
                parsed = jwt.parse_jwt(token)
                provider = jwt.select(self.providers, parsed, location)
                jwt.check_claims(parsed, provider, self.clock())
                keys = provider.jwks if provider.jwks is not None else self.cache.keys(provider.jwks_uri)
                if keys is not None:
                    try:
                        jwt.check_signature(parsed, keys)
                    except JwtFailure as failure:
                        if failure.message != jwt.KID_ALG_MISMATCH or provider.jwks is not None:
                            raise
                        keys = None  # an unknown kid: perhaps a key rotated at the issuer
                if keys is None:
                    uri = provider.jwks_uri
                    early = uri not in refetched
                    resume = lambda: self._resume(exchange, request, found, index, refetched + (uri,))  # noqa: E731
                    if self.cache.wait(uri, resume, early=early):
                        return PAUSE
                    if self.cache.keys(uri) is None:
                        raise JwtFailure(jwt.JWKS_FETCH_FAILED)
                    jwt.check_signature(parsed, self.cache.keys(uri))
            except JwtFailure as failure:
                return self._refuse(exchange, failure)
            if index == 0:
                exchange.request_principal = jwt.principal_of(parsed, provider)
            self._forward(request, location, provider, parsed)
            index += 1
        _stats(exchange)["allowed"] += 1
        return None

    def _resume(self, exchange, request: UpstreamRequest, found: list, index: int, refetched: tuple) -> None:
        if exchange.done:
            return
        result = self._verify(exchange, request, found, index, refetched)
        if result is PAUSE:
            return
        if result is not None:
            exchange.reply(result)
        else:
            exchange.resume_filters()

    @staticmethod
    def _forward(request: UpstreamRequest, location: Location, provider: Provider, parsed: jwt.Jwt) -> None:
        headers = request.headers
        if not provider.forward and location.kind == "header":
            name = location.name.encode()
            headers = [(n, v) for n, v in headers if n != name]
        outputs = jwt.output_headers(parsed, provider)
        if outputs:
            names = {n for n, _ in outputs}
            headers = [(n, v) for n, v in headers if n not in names] + outputs
        request.headers = headers

    @staticmethod
    def _refuse(exchange, failure: JwtFailure) -> LocalReply:
        _stats(exchange)["denied"] += 1
        head = exchange.head
        realm = f"{head.scheme}://{head.authority}{head.path.partition('?')[0]}"
        challenge = f'Bearer realm="{realm}", error="invalid_token"'.encode("latin-1", "replace")
        return LocalReply(failure.status, flags.NONE, failure.message.encode(), ((b"www-authenticate", challenge),))


def _stats(exchange) -> dict[str, int]:
    return exchange.runtime.telemetry.metrics.filter_stats(exchange.listener.name, "jwt_authn")
