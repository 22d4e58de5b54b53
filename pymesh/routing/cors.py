"""A route's corsPolicy compiled for Envoy's CORS filter semantics (pure; the filter is
pymesh.proxy.cors):

- a request without Origin is not a CORS request: nothing happens;
- a preflight (OPTIONS with Origin and Access-Control-Request-Method) from an allowed origin is
  answered by the proxy: 200 with Access-Control-Allow-Origin (the request's origin),
  -Allow-Methods, -Allow-Headers, -Max-Age, -Expose-Headers and -Allow-Credentials as configured;
- a preflight from an origin not allowed goes upstream (unmatchedPreflights FORWARD, Istio's
  default) or is answered 200 without CORS headers (IGNORE);
- any other request from an allowed origin goes upstream, and its response gets
  Access-Control-Allow-Origin, -Allow-Credentials and -Expose-Headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from pymesh.api import model
from pymesh.routing.match import string_matcher
from pymesh.routing.snapshot import HeaderOps

Header = tuple[bytes, bytes]


@dataclass(frozen=True)
class CompiledCors:
    origins: tuple[model.StringMatch, ...]  # as configured: what /config_dump shows
    matchers: tuple[Callable[[str], object], ...] = field(compare=False, repr=False)
    preflight: tuple[Header, ...] = ()  # the preflight answer's headers besides the origin
    response: tuple[tuple[str, str], ...] = ()  # added to an allowed origin's response besides the origin
    forward_unmatched_preflights: bool = True

    @classmethod
    def from_model(cls, policy: model.CorsPolicy) -> CompiledCors:
        credentials = (("access-control-allow-credentials", "true"),) if policy.allow_credentials else ()
        preflight = [*credentials]
        if policy.allow_methods:
            preflight.append(("access-control-allow-methods", ",".join(policy.allow_methods)))
        if policy.allow_headers:
            preflight.append(("access-control-allow-headers", ",".join(policy.allow_headers)))
        if policy.max_age is not None:
            preflight.append(("access-control-max-age", str(policy.max_age)))
        expose = (("access-control-expose-headers", ",".join(policy.expose_headers)),) if policy.expose_headers else ()
        preflight += expose  # Envoy's filter sends it on the preflight too (and the Gateway API's conformance wants it)
        return cls(
            origins=policy.allow_origins,
            matchers=tuple(_origin_matcher(m) for m in policy.allow_origins),
            preflight=tuple((n.encode(), v.encode("latin-1")) for n, v in preflight),
            response=credentials + expose,
            forward_unmatched_preflights=policy.unmatched_preflights != "IGNORE",
        )

    def allows(self, origin: str) -> bool:
        return any(match(origin) for match in self.matchers)

    def preflight_headers(self, origin: bytes) -> tuple[Header, ...]:
        return ((b"access-control-allow-origin", origin),) + self.preflight

    def response_ops(self, origin: str) -> HeaderOps:
        return HeaderOps(set=(("access-control-allow-origin", origin),) + self.response)


def _origin_matcher(match: model.StringMatch) -> Callable[[str], object]:
    if match.kind == "exact" and match.value == "*":  # the classic wildcard: any origin
        return lambda origin: True
    return string_matcher(match)
