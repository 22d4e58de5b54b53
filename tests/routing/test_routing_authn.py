"""Which RequestAuthentications apply to a proxy (Istio's scoping), and their rules compiled into
the snapshot's providers; the control server's per-proxy view keeps what the proxy needs."""

from __future__ import annotations

import pytest

from pymesh.api import model as m
from pymesh.routing.authn import providers_for
from pymesh.routing.compile import compile_snapshot
from pymesh.routing.snapshot import ProxyIdentity
from pymesh.routing.view import proxy_view
from pymesh.security.jwt import DEFAULT_LOCATIONS, Location


def policy(name: str, ns: str, selector=None, targets=(), issuer: str | None = None, **rule) -> m.RequestAuthentication:
    return m.RequestAuthentication(
        metadata=m.Metadata(name=name, namespace=ns), selector=selector,
        target_refs=tuple(m.PolicyTargetReference(kind="Gateway", name=t) for t in targets),
        jwt_rules=(m.JWTRule(issuer=issuer or name, jwks_uri="https://keys.example/jwks", **rule),),
    )


CONFIG = m.MeshConfig(request_authentications=(
    policy("mesh", "istio-system"),
    policy("root-selected", "istio-system", selector={"app": "httpbin"}),  # matching workloads, mesh-wide
    policy("ns-foo", "foo"),
    policy("foo-httpbin", "foo", selector={"app": "httpbin"}),
    policy("foo-gateway", "foo", targets=("gw",)),  # targetRef: gateways and waypoints, not sidecars
    policy("ns-bar", "bar"),
))


@pytest.mark.parametrize("ns, labels, expected", [
    ("foo", {"app": "httpbin", "version": "v1"}, ["mesh", "root-selected", "ns-foo", "foo-httpbin"]),
    ("foo", {"app": "sleep"}, ["mesh", "ns-foo"]),
    ("bar", {"app": "httpbin"}, ["mesh", "root-selected", "ns-bar"]),
    ("baz", {}, ["mesh"]),
    ("istio-system", {"app": "httpbin"}, ["mesh", "root-selected"]),
])
def test_scope(ns, labels, expected):
    identity = ProxyIdentity(namespace=ns, labels=labels)
    assert [p.issuer for p in providers_for(CONFIG, identity)] == expected
    view = proxy_view(CONFIG, identity)  # what the control server sends: same outcome
    assert [p.issuer for p in providers_for(view, identity)] == expected
    assert {r.metadata.namespace for r in view.request_authentications} <= {ns, "istio-system"}


def test_a_rule_compiles_to_envoys_provider():
    rule = m.JWTRule(
        issuer="iss", audiences=("a",), jwks_uri="https://k/j", from_headers=(m.JwtHeader("x-token", "Bearer "),),
        from_params=("tok",), from_cookies=("session",), output_payload_to_header="x-payload",
        forward_original_token=True, output_claim_to_headers=(m.ClaimToHeader("x-group", "org.group"),), timeout=2.0,
    )
    (provider,) = providers_for(m.MeshConfig(request_authentications=(
        m.RequestAuthentication(m.Metadata("p", "default"), jwt_rules=(rule,)),)), ProxyIdentity())
    assert provider.locations == (Location("header", "x-token", "Bearer "), Location("param", "tok"),
                                  Location("cookie", "session"))
    assert (provider.forward, provider.payload_header, provider.claim_headers, provider.timeout) == (
        True, b"x-payload", ((b"x-group", ("org", "group")),), 2.0)
    default = providers_for(m.MeshConfig(request_authentications=(
        m.RequestAuthentication(m.Metadata("p", "default"), jwt_rules=(m.JWTRule(issuer="i", jwks_uri="https://k"),)),)),
        ProxyIdentity())[0]
    assert (default.locations, default.timeout) == (DEFAULT_LOCATIONS, 5.0)


def test_inline_jwks_wins_over_the_uri_and_the_dump_shows_no_key_material():
    secret = '{"keys": [{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}'
    config = m.MeshConfig(request_authentications=(m.RequestAuthentication(
        m.Metadata("p", "default"), jwt_rules=(m.JWTRule(issuer="i", jwks_uri="https://k/j", jwks=secret),)),))
    snapshot = compile_snapshot(config, ProxyIdentity(), "v1")
    (provider,) = snapshot.request_authn
    assert provider.jwks_uri == "" and provider.jwks.kids() == {"hmac"}
    dumped = repr(snapshot.dump())
    assert "inline_jwks_kids" in dumped and "c2VjcmV0" not in dumped


@pytest.mark.parametrize("issuer, uri", [
    ("https://accounts.example/realm/", "https://accounts.example/realm/.well-known/openid-configuration"),
    ("testing@secure.istio.io", ""),  # not a URL: nothing to discover, its tokens are refused
])
def test_a_rule_without_keys_uses_openid_discovery(issuer, uri):
    config = m.MeshConfig(request_authentications=(
        m.RequestAuthentication(m.Metadata("p", "default"), jwt_rules=(m.JWTRule(issuer=issuer),)),))
    assert providers_for(config, ProxyIdentity())[0].jwks_uri == uri
