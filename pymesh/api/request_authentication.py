"""RequestAuthentication (security.istio.io v1/v1beta1): which JWTs a workload accepts.

Validated as Istio's ValidateRequestAuthentication: selector and targetRef(s) are exclusive, a
targetRef names a kind Istio binds (shared with AuthorizationPolicy) in the policy's namespace;
each jwtRule needs an issuer (or a jwksUri), non-empty audiences, an http(s) jwksUri, an inline
jwks that parses as a JWK Set, non-empty token locations, and output headers that are real header
names (never a pseudo-header or Host).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pymesh.api import checks, common, model, shapes
from pymesh.api.reader import ISTIO_DURATION, Reader, boolean, message, text
from pymesh.security.jwt import JwksError, parse_jwks


# (group, kind) a targetRef may name, as Istio's validatePolicyTargetReference ("core" is "")
TARGET_KINDS = {("", "Service"), ("gateway.networking.k8s.io", "Gateway"),
                ("gateway.networking.k8s.io", "GatewayClass"), ("networking.istio.io", "ServiceEntry")}


def request_authentication(metadata: model.Metadata, r: Reader) -> model.RequestAuthentication:
    return model.RequestAuthentication(
        metadata=metadata,
        selector=match_labels_selector(r),
        target_refs=target_refs(r, metadata.namespace),
        jwt_rules=r.get_list("jwtRules", message(shapes.JWT_RULE, _rule)),
    )


def match_labels_selector(r: Reader) -> dict[str, str] | None:
    """The security kinds' `selector: {matchLabels: {...}}` as its labels; None when absent."""
    return r.get("selector", message(shapes.MATCH_LABELS_SELECTOR, lambda s: common.labels(s, "matchLabels")))


def target_refs(r: Reader, namespace: str, kinds: set[tuple[str, str]] = TARGET_KINDS
                ) -> tuple[model.PolicyTargetReference, ...]:
    """targetRef or targetRefs (one of them), neither with a selector (Istio's
    validateOneOfSelectorType), each one of `kinds` (group, kind), in the policy's own namespace."""
    ref = message(shapes.POLICY_TARGET_REFERENCE, _target_ref)
    if r.has("targetRef") and r.has("targetRefs"):
        r.error("targetRefs", "only one of targetRef or targetRefs can be set")
    if r.has("selector") and (r.has("targetRef") or r.has("targetRefs")):
        r.error("selector", "only one of targetRefs or workloadSelector can be set")
    single = r.get("targetRef", ref)
    refs = (single,) if single is not None else r.get_list("targetRefs", ref)
    for index, target in enumerate(refs):
        _check_target(r, index if r.has("targetRefs") else None, target, namespace, kinds)
    return refs


def _check_target(r: Reader, index: int | None, ref: model.PolicyTargetReference, namespace: str,
                  kinds: set[tuple[str, str]]) -> None:
    """Istio's validatePolicyTargetReference: a kind it can bind, in the policy's namespace."""
    path = "targetRef" if index is None else f"targetRefs[{index}]"
    group = "" if ref.group == "core" else ref.group
    if ref.kind and (group, ref.kind) not in kinds:
        expected = ", ".join(f"{g or 'core'}/{k}" for g, k in sorted(kinds))
        r.sink.add(r.line_of(path.split("[")[0]), r.path_of(path) + ".kind",
                   f"targetRef {ref.group or 'core'}/{ref.kind} is not supported (expected one of {expected})")
    if ref.namespace and ref.namespace != namespace:
        r.sink.add(r.line_of(path.split("[")[0]), r.path_of(path) + ".namespace",
                   f"targetRef namespace {ref.namespace} must be empty or the policy's namespace ({namespace})")


def _target_ref(r: Reader) -> model.PolicyTargetReference:
    return model.PolicyTargetReference(
        kind=r.get("kind", text(checks.not_empty), "", required=True),
        name=r.get("name", text(checks.not_empty), "", required=True),
        group=r.get("group", text(), ""),
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
    uri_key = r.spelling("jwksUri", "jwks_uri")
    uri = r.get(uri_key, text(jwks_uri), "")
    if not issuer and not r.has(uri_key):
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
        space_delimited_claims=r.get_list("spaceDelimitedClaims", text(checks.not_empty)),
    )

