"""Which RequestAuthentication rules apply to a proxy, compiled into the JWT engine's providers
(pymesh.security.jwt.Provider) once per snapshot.

Istio's scoping (pilot/pkg/model/authentication.go, getConfigsForWorkload): the policies of the
proxy's namespace and of the root namespace apply when their selector, if any, matches the
proxy's labels; so a root-namespace policy without a selector applies to the whole mesh, and one
with a selector to the matching workloads of every namespace. Every applicable policy's rules are
used together. Policies with targetRef(s) select gateways and waypoints, which pymesh's sidecar is not.
"""

from __future__ import annotations

from pymesh.api import model
from pymesh.routing.scope import ROOT_NAMESPACE, selects
from pymesh.routing.snapshot import ProxyIdentity
from pymesh.security.jwt import (DEFAULT_LOCATIONS, DISCOVERY, SPACE_DELIMITED, Jwks, JwksError, Location, Provider,
                                 parse_jwks)

DEFAULT_TIMEOUT = 5.0  # seconds: Istio's JWTRule.timeout default


def applies(policy: model.RequestAuthentication, identity: ProxyIdentity) -> bool:
    namespace = policy.metadata.namespace
    if policy.target_refs:
        return False
    if namespace != identity.namespace and namespace != ROOT_NAMESPACE:
        return False
    return policy.selector is None or selects(policy.selector, identity.labels)


def providers_for(config: model.MeshConfig, identity: ProxyIdentity) -> tuple[Provider, ...]:
    """The rules of every RequestAuthentication that applies to the proxy, in file order."""
    return tuple(provider(rule) for policy in config.request_authentications if applies(policy, identity)
                 for rule in policy.jwt_rules)


def provider(rule: model.JWTRule) -> Provider:
    locations = (tuple(Location("header", h.name, h.prefix) for h in rule.from_headers)
                 + tuple(Location("param", name) for name in rule.from_params)
                 + tuple(Location("cookie", name) for name in rule.from_cookies))
    return Provider(
        issuer=rule.issuer,
        audiences=rule.audiences,
        locations=locations or DEFAULT_LOCATIONS,
        forward=rule.forward_original_token,
        payload_header=rule.output_payload_to_header.encode(),
        claim_headers=tuple((c.header.encode(), tuple(c.claim.split("."))) for c in rule.output_claim_to_headers),
        jwks_uri="" if rule.jwks else rule.jwks_uri or _discovery(rule.issuer),
        jwks=_inline(rule.jwks) if rule.jwks else None,
        timeout=rule.timeout or DEFAULT_TIMEOUT,
        space_delimited=SPACE_DELIMITED | frozenset(rule.space_delimited_claims),
    )


def _discovery(issuer: str) -> str:
    """Neither jwks nor jwksUri: istiod's OpenID discovery at the issuer, when it is a URL (else
    nothing to fetch, and the rule's tokens are refused)."""
    if issuer.startswith(("https://", "http://")):
        return issuer.rstrip("/") + DISCOVERY
    return ""


def _inline(text: str) -> Jwks:
    """Inline keys (validated when loaded; a set that still fails verifies nothing: fail closed)."""
    try:
        return parse_jwks(text)
    except JwksError:
        return Jwks(())
