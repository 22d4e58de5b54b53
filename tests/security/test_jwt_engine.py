"""The JWT engine (pymesh.security.jwt) with an injected clock: Envoy's checks, order and texts."""

from __future__ import annotations

import base64
import json

import pytest

import jwt_tokens
from jwt_tokens import Issuer
from pymesh.security import jwt
from pymesh.security.jwt import JwtFailure, Location, Provider

NOW = 1_800_000_000.0
RSA = Issuer("https://rsa.example", "RS256")
EC = Issuer("https://ec.example", "ES256")


def run(token: str, provider: Provider, keys: jwt.Jwks, now: float = NOW):
    """The engine's whole check of one token; the principal, or the failure's (status, text)."""
    try:
        parsed = jwt.parse_jwt(token)
        chosen = jwt.select((provider,), parsed, jwt.DEFAULT_LOCATIONS[0])
        jwt.check_claims(parsed, chosen, now)
        jwt.check_signature(parsed, keys)
    except JwtFailure as failure:
        return failure.status, failure.message
    return jwt.principal_of(parsed, chosen)


def keys(issuer: Issuer, *kids: str) -> jwt.Jwks:
    return jwt.parse_jwks(issuer.jwks_json(*kids))


def test_istio_demo_token_verifies_against_istio_demo_jwks():
    provider = Provider(issuer=jwt_tokens.ISTIO_DEMO_ISSUER)
    result = run(jwt_tokens.ISTIO_DEMO_TOKEN, provider, jwt.parse_jwks(jwt_tokens.ISTIO_JWKS))
    assert result.principal == "testing@secure.istio.io/testing@secure.istio.io"
    assert result.claims["foo"] == "bar"
    # exp 4685989700: still valid in 2118, expired after it
    assert run(jwt_tokens.ISTIO_DEMO_TOKEN, provider, jwt.parse_jwks(jwt_tokens.ISTIO_JWKS), now=4685989700 + 61) == (
        401, jwt.EXPIRED)


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA", "HS256"])
def test_every_envoy_algorithm_verifies(alg):
    issuer = Issuer("https://any.example", alg)
    result = run(issuer.token(now=NOW, aud="svc", azp="web"), Provider(issuer=issuer.iss), keys(issuer))
    assert (result.principal, result.audiences, result.presenter) == ("https://any.example/alice", ("svc",), "web")


OTHER = Issuer("https://rsa.example", "RS256")  # same issuer name and kid, another key


@pytest.mark.parametrize("token, provider, expected", [
    (RSA.token(now=NOW - 7200, lifetime=3600), Provider(RSA.iss), (401, jwt.EXPIRED)),
    (RSA.token(now=NOW - 3600 - 59, lifetime=3600), Provider(RSA.iss), None),  # within the 60 s skew
    (RSA.token(now=NOW, nbf=int(NOW + 120)), Provider(RSA.iss), (401, jwt.NOT_YET_VALID)),
    (RSA.token(now=NOW, nbf=int(NOW + 59)), Provider(RSA.iss), None),  # within the skew
    (RSA.token(now=NOW, iss="https://evil.example"), Provider(RSA.iss), (401, jwt.UNKNOWN_ISSUER)),
    (RSA.token(now=NOW, aud="other"), Provider(RSA.iss, audiences=("svc",)), (403, jwt.AUDIENCE_NOT_ALLOWED)),
    (RSA.token(now=NOW), Provider(RSA.iss, audiences=("svc",)), (403, jwt.AUDIENCE_NOT_ALLOWED)),  # no aud
    (RSA.token(now=NOW, aud=["a", "https://svc/"]), Provider(RSA.iss, audiences=("svc",)), None),  # Envoy's sanitizing
    (RSA.token(now=NOW, aud="anything"), Provider(RSA.iss), None),  # no audiences configured: any
    (RSA.token(now=NOW, key=OTHER.keys["key-1"]), Provider(RSA.iss), (401, jwt.VERIFICATION_FAILS)),
    (RSA.token(now=NOW, kid="key-9", key=RSA.keys["key-1"]), Provider(RSA.iss), (401, jwt.KID_ALG_MISMATCH)),
    (RSA.token(now=NOW, alg="RS384"), Provider(RSA.iss), None),  # an RSA key without alg fits any RS*
])
def test_checks(token, provider, expected):
    result = run(token, provider, keys(RSA))
    assert (result if isinstance(result, tuple) else None) == expected


def test_a_key_that_names_its_alg_is_only_tried_for_it_and_no_kid_tries_every_key():
    issuer = Issuer("https://rot.example", "RS256", kid="old")
    issuer.add_key("new")
    published = issuer.jwks()
    published["keys"][1]["alg"] = "RS256"
    ks = jwt.parse_jwks(json.dumps(published))
    assert run(issuer.token(now=NOW, kid="new"), Provider(issuer.iss), ks).principal.endswith("/alice")
    no_kid = issuer.token(now=NOW, kid="new", header={"kid": None})
    assert run(no_kid, Provider(issuer.iss), ks).principal.endswith("/alice")
    assert run(issuer.token(now=NOW, kid="new", alg="RS512"), Provider(issuer.iss), ks) == (401, jwt.KID_ALG_MISMATCH)


def test_an_ec_key_is_not_tried_for_rsa_nor_the_wrong_curve():
    assert run(RSA.token(now=NOW), Provider(RSA.iss), keys(EC)) == (401, jwt.KID_ALG_MISMATCH)
    p384 = Issuer("https://ec.example", "ES384")
    assert run(p384.token(now=NOW), Provider(EC.iss), keys(EC)) == (401, jwt.KID_ALG_MISMATCH)


def b64(data) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


GOOD_HEAD, GOOD_BODY = b64({"alg": "RS256"}), b64({"iss": "x", "sub": "y"})


@pytest.mark.parametrize("token, message", [
    ("deadbeef", jwt.BAD_FORMAT),
    ("a.b", jwt.BAD_FORMAT),
    ("a.b.c.d", jwt.BAD_FORMAT),
    (f"!!.{GOOD_BODY}.c2ln", jwt.HEADER_BAD_BASE64),
    (f"{b64(b'not json')}.{GOOD_BODY}.c2ln", jwt.HEADER_BAD_JSON),
    (f"{b64([1])}.{GOOD_BODY}.c2ln", jwt.HEADER_BAD_JSON),
    (f"{b64({'typ': 'JWT'})}.{GOOD_BODY}.c2ln", jwt.HEADER_BAD_ALG),
    (f"{b64({'alg': 'none'})}.{GOOD_BODY}.c2ln", jwt.HEADER_ALG_NOT_SUPPORTED),
    (f"{b64({'alg': 'none'})}.{GOOD_BODY}.", jwt.HEADER_ALG_NOT_SUPPORTED),
    (f"{b64({'alg': 'RS256', 'kid': 7})}.{GOOD_BODY}.c2ln", jwt.HEADER_BAD_KID),
    (f"{GOOD_HEAD}.!!.c2ln", jwt.PAYLOAD_BAD_BASE64),
    (f"{GOOD_HEAD}.{b64(b'[')}.c2ln", jwt.PAYLOAD_BAD_JSON),
    (f"{GOOD_HEAD}.{b64({'iss': 5})}.c2ln", "Jwt payload [iss] field is not a string"),
    (f"{GOOD_HEAD}.{b64({'exp': 'soon'})}.c2ln", "Jwt payload [exp] field is not an integer"),
    (f"{GOOD_HEAD}.{b64({'aud': [1]})}.c2ln", "Jwt payload [aud] field is not a string or string list"),
    (f"{GOOD_HEAD}.{GOOD_BODY}.!!", jwt.SIGNATURE_BAD_BASE64),
    (f"{GOOD_HEAD}.{GOOD_BODY}.", jwt.BAD_FORMAT),
])
def test_malformed_tokens(token, message):
    with pytest.raises(JwtFailure) as caught:
        jwt.parse_jwt(token)
    assert (caught.value.status, caught.value.message) == (401, message)


@pytest.mark.parametrize("text, message", [
    ("{", jwt.JWKS_BAD_JSON),
    ("[]", jwt.JWKS_BAD_JSON),
    ('{"nokeys": []}', jwt.JWKS_NO_KEYS),
    ('{"keys": {}}', jwt.JWKS_BAD_KEYS),
    ('{"keys": []}', jwt.JWKS_NO_VALID_KEYS),
    ('{"keys": [{"kty": "RSA", "n": "!!"}, {"kty": "XYZ"}, 5]}', jwt.JWKS_NO_VALID_KEYS),
])
def test_bad_key_sets(text, message):
    with pytest.raises(jwt.JwksError, match=message.replace("[", r"\[").replace("]", r"\]")):
        jwt.parse_jwks(text)


def test_unusable_keys_are_skipped_and_the_rest_kept():
    published = RSA.jwks()
    published["keys"].insert(0, {"kty": "EC", "crv": "P-256", "x": "bad"})
    assert [k.kid for k in jwt.parse_jwks(json.dumps(published)).keys] == ["key-1"]


HEADERS = [(b"authorization", b"Bearer aaa.bbb.ccc"), (b"x-jwt", b"Token ddd.eee.fff, other"),
           (b"cookie", b"theme=dark; session=ggg.hhh.iii")]


@pytest.mark.parametrize("location, query, expected", [
    (Location("header", "authorization", "Bearer "), "", "aaa.bbb.ccc"),
    (Location("header", "authorization", "Basic "), "", None),
    (Location("header", "x-jwt", "Token "), "", "ddd.eee.fff"),  # Envoy: the token run after the prefix
    (Location("header", "x-jwt"), "", "Token ddd.eee.fff, other"),  # no prefix: the whole value
    (Location("header", "x-missing"), "", None),
    (Location("param", "access_token"), "a=1&access_token=jjj.kkk.lll", "jjj.kkk.lll"),
    (Location("param", "access_token"), "access_token=", None),
    (Location("param", "tok"), "tok=a%2Eb.c", "a.b.c"),
    (Location("cookie", "session"), "", "ggg.hhh.iii"),
    (Location("cookie", "nothere"), "", None),
])
def test_extraction(location, query, expected):
    assert jwt.extract(location, HEADERS, query) == expected


def test_output_headers_carry_the_payload_and_scalar_claims_only():
    token = RSA.token(now=NOW, group="eng", admin=True, level=3, nested={"a": {"b": "deep"}}, roles=["x"],
                      evil="line\r\nx-injected: 1", name="José")
    provider = Provider(RSA.iss, payload_header=b"x-payload", claim_headers=(
        (b"x-sub", ("sub",)), (b"x-admin", ("admin",)), (b"x-level", ("level",)), (b"x-deep", ("nested", "a", "b")),
        (b"x-roles", ("roles",)), (b"x-evil", ("evil",)), (b"x-absent", ("absent",)), (b"x-name", ("name",))))
    parsed = jwt.parse_jwt(token)
    out = dict(jwt.output_headers(parsed, provider))
    assert json.loads(base64.urlsafe_b64decode(out.pop(b"x-payload") + b"==")) == dict(parsed.payload)
    assert out == {b"x-sub": b"alice", b"x-admin": b"true", b"x-level": b"3", b"x-deep": b"deep",
                   b"x-name": "José".encode()}


def test_a_token_goes_to_the_rule_of_its_issuer_reading_that_location():
    header, param = Location("header", "x-a"), Location("param", "t")
    a, b, anyone = Provider("A", locations=(header,)), Provider("B", locations=(param,)), Provider("", locations=(param,))
    parsed_b = jwt.parse_jwt(Issuer("B").token(now=NOW))
    assert jwt.select((a, b), parsed_b, param) is b
    with pytest.raises(JwtFailure, match="issuer is not configured"):
        jwt.select((a, b), parsed_b, header)  # B's token where only A's rule looks
    assert jwt.select((a, anyone), jwt.parse_jwt(Issuer("C").token(now=NOW)), param) is anyone
