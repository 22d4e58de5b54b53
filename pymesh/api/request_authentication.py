"""RequestAuthentication (security.istio.io v1/v1beta1): which JWTs a workload accepts.

Validated as Istio's ValidateRequestAuthentication: selector and targetRef(s) are exclusive;
each jwtRule needs an issuer (or a jwksUri), non-empty audiences, an http(s) jwksUri, an inline
jwks that parses as a JWK Set, non-empty token locations, and output headers that are real header
names (never a pseudo-header or Host).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pymesh.api import checks, common, model, shapes
from pymesh.api.reader import ISTIO_DURATION, Reader, boolean, message, text
from pymesh.security.jwt import JwksError, parse_jwks


def request_authentication(metadata: model.Metadata, r: Reader) -> model.RequestAuthentication:
    return model.RequestAuthentication(
        metadata=metadata,
        selector=match_labels_selector(r),
        target_refs=target_refs(r),
        jwt_rules=r.get_list("jwtRules", message(shapes.JWT_RULE, _rule)),
    )


def match_labels_selector(r: Reader) -> dict[str, str] | None:
    """The security kinds' `selector: {matchLabels: {...}}` as its labels; None when absent."""
    return r.get("selector", message(shapes.MATCH_LABELS_SELECTOR, lambda s: common.labels(s, "matchLabels")))


def target_refs(r: Reader) -> tuple[model.PolicyTargetReference, ...]:
    """targetRef or targetRefs (one of them), neither with a selector (Istio's
    validateOneOfSelectorType)."""
    ref = message(shapes.POLICY_TARGET_REFERENCE, _target_ref)
    if r.has("targetRef") and r.has("targetRefs"):
        r.error("targetRefs", "only one of targetRef or targetRefs can be set")
    if r.has("selector") and (r.has("targetRef") or r.has("targetRefs")):
        r.error("selector", "only one of targetRefs or workloadSelector can be set")
    single = r.get("targetRef", ref)
    return (single,) if single is not None else r.get_list("targetRefs", ref)


# The CRD's patterns for PolicyTargetReference (istio/api type/v1beta1/selector.proto)
_GROUP = re.compile(r"(|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)\Z")
_KIND = re.compile(r"[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?\Z")


def _pattern(pattern: re.Pattern, what: str, limit: int):
    def check(value: str) -> str | None:
        if len(value) > limit or not pattern.match(value):
            return f"{value!r} is not a valid {what}"
        return None

    return check


def _target_ref(r: Reader) -> model.PolicyTargetReference:
    return model.PolicyTargetReference(
        kind=r.get("kind", text(_pattern(_KIND, "kind", 63)), "", required=True),
        name=r.get("name", text(checks.not_empty), "", required=True),
        group=r.get("group", text(_pattern(_GROUP, "API group", 253)), ""),
        namespace=r.get("namespace", text(checks.dns_label), ""),
    )


def jwks_uri(value: str) -> str | None:
    """Istio's ParseJwksURI: an absolute http or https URL with a host."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        return f"jwksUri {value!r} is not a valid URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"jwksUri {value!r}: URI scheme {parts.scheme or '(none)'!r} is not supported (http or https)"
    if not parts.hostname:
        return f"jwksUri {value!r} has no host"
    return None


def _jwks(value: str) -> str | None:
    try:
        parse_jwks(value)
    except JwksError as exc:
        return f"jwks parse error: {exc}"
    return None


def _header(r: Reader) -> model.JwtHeader:
    name = r.get("name", text(checks.request_header_to_write), "", required=True)
    return model.JwtHeader(name=name.lower(), prefix=r.get("prefix", text(), ""))


def _claim_to_header(r: Reader) -> model.ClaimToHeader:
    return model.ClaimToHeader(
        header=r.get("header", text(checks.output_header), "", required=True).lower(),
        claim=r.get("claim", text(checks.not_empty), "", required=True),
    )


def _location_name(what: str):
    def check(value: str) -> str | None:
        return f"{what} must be non-empty string" if not value else None

    return text(check)


def _rule(r: Reader) -> model.JWTRule:
    issuer = r.get("issuer", text(), "")
    uri = r.get("jwksUri", text(jwks_uri), "")
    if not issuer and not r.has("jwksUri"):
        r.error("issuer", "issuer or jwksUri must be non-empty string")
    return model.JWTRule(
        issuer=issuer,
        audiences=r.get_list("audiences", _location_name("audience")),
        jwks_uri=uri,  # with jwks too, jwks wins (Istio)
        jwks=r.get("jwks", text(_jwks), ""),
        from_headers=r.get_list("fromHeaders", message(shapes.JWT_HEADER, _header)),
        from_params=r.get_list("fromParams", _location_name("location query")),
        from_cookies=r.get_list("fromCookies", text(checks.cookie_token)),
        output_payload_to_header=r.get("outputPayloadToHeader", text(checks.output_header), "").lower(),
        forward_original_token=r.get("forwardOriginalToken", boolean, False),
        output_claim_to_headers=r.get_list("outputClaimToHeaders", message(shapes.CLAIM_TO_HEADER, _claim_to_header)),
        timeout=r.get("timeout", ISTIO_DURATION),
    )

