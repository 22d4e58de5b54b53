"""JWT verification as Envoy's jwt_authn does it for Istio's RequestAuthentication (pure: the
clock and the key sets are passed in; fetching keys is pymesh.proxy.jwks's job).

The order of checks and the failure texts are Envoy's (jwt_verify_lib's status strings), so
clients and runbooks that look for "Jwt is expired" keep working: the token's form, header and
payload; its issuer against the configured rules; exp/nbf with Envoy's 60 s clock skew; the
audiences (a mismatch is 403, everything else 401); then the signature, with a key chosen by kid
and alg the way jwt_verify_lib chooses it. Signatures are checked by joserfc, never here.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import warnings
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import unquote

from joserfc import jwk, jws
from joserfc.errors import JoseError

from pymesh.security.principal import RequestPrincipal

# joserfc warns that RFC 9864 deprecates the "EdDSA" name; Envoy verifies it, and so do we.
warnings.filterwarnings("ignore", message="EdDSA is deprecated", module="joserfc")

CLOCK_SKEW = 60  # seconds: Envoy's default clock_skew_seconds
DISCOVERY = "/.well-known/openid-configuration"  # OpenID discovery, under the issuer's URL
# What Envoy's jwt_authn verifies (its docs' list): HS* only with oct keys, EdDSA with Ed25519.
ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                        "HS256", "HS384", "HS512", "EdDSA"})
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}

# jwt_verify_lib's status strings (the 401/403 body)
NOT_YET_VALID = "Jwt not yet valid"
EXPIRED = "Jwt is expired"
BAD_FORMAT = "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
HEADER_BAD_BASE64 = "Jwt header is an invalid Base64url encoded"
HEADER_BAD_JSON = "Jwt header is an invalid JSON"
HEADER_BAD_ALG = "Jwt header [alg] field is required and must be a string"
HEADER_ALG_NOT_SUPPORTED = "Jwt header [alg] is not supported"
HEADER_BAD_KID = "Jwt header [kid] field is not a string"
PAYLOAD_BAD_BASE64 = "Jwt payload is an invalid Base64url encoded"
PAYLOAD_BAD_JSON = "Jwt payload is an invalid JSON"
SIGNATURE_BAD_BASE64 = "Jwt signature is an invalid Base64url encoded"
UNKNOWN_ISSUER = "Jwt issuer is not configured"
AUDIENCE_NOT_ALLOWED = "Audiences in Jwt are not allowed"
VERIFICATION_FAILS = "Jwt verification fails"
KID_ALG_MISMATCH = "Jwks doesn't have key to match kid or alg from Jwt"
JWKS_FETCH_FAILED = "Jwks remote fetch is failed"
JWKS_BAD_JSON = "Jwks is an invalid JSON"
JWKS_NO_KEYS = "Jwks does not have [keys] field"
JWKS_BAD_KEYS = "[keys] in Jwks is not an array"
JWKS_NO_VALID_KEYS = "Jwks doesn't have any valid public key"

_STRING_CLAIMS = {"iss": "Jwt payload [iss] field is not a string", "sub": "Jwt payload [sub] field is not a string",
                  "jti": "Jwt payload [jti] field is not a string"}
_TIME_CLAIMS = {"iat": "Jwt payload [iat] field is not an integer", "nbf": "Jwt payload [nbf] field is not an integer",
                "exp": "Jwt payload [exp] field is not an integer"}
_AUD_NOT_STRING = "Jwt payload [aud] field is not a string or string list"
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}\Z")
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_\-.=]*")  # what Envoy takes as the token after a header prefix
_HEADER_SAFE = re.compile(r"[^\x00-\x1f\x7f]*\Z")


class JwtFailure(Exception):
    """A token that must be refused: `message` is Envoy's body, `status` 401 (403 for audiences)."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class JwksError(ValueError):
    """A JWK Set that cannot be used (Envoy's Jwks status text)."""


# --- key sets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    kid: str
    alg: str  # "" when the JWK does not say
    kty: str
    crv: str
    key: Any  # a joserfc key


@dataclass(frozen=True)
class Jwks:
    keys: tuple[Key, ...]

    def kids(self) -> frozenset[str]:
        return frozenset(k.kid for k in self.keys if k.kid)


def parse_jwks(text: str | bytes) -> Jwks:
    """A JWK Set, as jwt_verify_lib reads one: keys it cannot use are skipped, and a set with
    none left is an error (JwksError with Envoy's text)."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise JwksError(JWKS_BAD_JSON) from None
    if not isinstance(data, dict):
        raise JwksError(JWKS_BAD_JSON)
    if "keys" not in data:
        raise JwksError(JWKS_NO_KEYS)
    if not isinstance(data["keys"], list):
        raise JwksError(JWKS_BAD_KEYS)
    keys = tuple(k for k in map(_key, data["keys"]) if k is not None)
    if not keys:
        raise JwksError(JWKS_NO_VALID_KEYS)
    return Jwks(keys)


def _key(entry: Any) -> Key | None:
    if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC", "oct", "OKP"):
        return None
    kid, alg, crv = entry.get("kid", ""), entry.get("alg", ""), entry.get("crv", "")
    if not all(isinstance(v, str) for v in (kid, alg, crv)):
        return None
    if entry["kty"] == "OKP" and crv != "Ed25519":
        return None
    try:
        key = jwk.import_key(entry)
    except (JoseError, ValueError, TypeError, KeyError):
        return None
    return Key(kid=kid, alg=alg, kty=entry["kty"], crv=crv, key=key)


def _fits(key: Key, alg: str) -> bool:
    """Whether jwt_verify_lib would try `key` for a token signed with `alg`."""
    if key.alg and key.alg != alg:
        return False
    if alg[:2] in ("RS", "PS"):
        return key.kty == "RSA"
    if alg[:2] == "ES":
        return key.kty == "EC" and key.crv == _EC_CURVES[alg]
    if alg[:2] == "HS":
        return key.kty == "oct"
    return key.kty == "OKP"  # EdDSA


# --- tokens ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Jwt:
    """A token parsed but not yet verified."""

    token: str
    header: Mapping[str, Any]
    payload: Mapping[str, Any]
    payload_segment: str  # base64url, as it came: what outputPayloadToHeader forwards

    @property
    def alg(self) -> str:
        return self.header["alg"]

    @property
    def kid(self) -> str:
        return self.header.get("kid", "")

    @property
    def issuer(self) -> str:
        return self.payload.get("iss", "")

    @property
    def audiences(self) -> tuple[str, ...]:
        aud = self.payload.get("aud", ())
        return (aud,) if isinstance(aud, str) else tuple(aud)


def _b64decode(segment: str, problem: str) -> bytes:
    if not _BASE64URL.match(segment) or len(segment.rstrip("=")) % 4 == 1:
        raise JwtFailure(problem)
    try:
        return base64.urlsafe_b64decode(segment.rstrip("=") + "=" * (-len(segment.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise JwtFailure(problem) from None


def _json_object(raw: bytes, problem: str) -> dict:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise JwtFailure(problem) from None
    if not isinstance(value, dict):
        raise JwtFailure(problem)
    return value


def parse_jwt(token: str) -> Jwt:
    """The token's header and payload, checked for the types Envoy requires (JwtFailure)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtFailure(BAD_FORMAT)
    header = _json_object(_b64decode(parts[0], HEADER_BAD_BASE64), HEADER_BAD_JSON)
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise JwtFailure(HEADER_BAD_ALG)
    if alg not in ALGORITHMS:
        raise JwtFailure(HEADER_ALG_NOT_SUPPORTED)
    if not isinstance(header.get("kid", ""), str):
        raise JwtFailure(HEADER_BAD_KID)
    payload = _json_object(_b64decode(parts[1], PAYLOAD_BAD_BASE64), PAYLOAD_BAD_JSON)
    for name, problem in _STRING_CLAIMS.items():
        if not isinstance(payload.get(name, ""), str):
            raise JwtFailure(problem)
    for name, problem in _TIME_CLAIMS.items():
        value = payload.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise JwtFailure(problem)
    aud = payload.get("aud", "")
    if not (isinstance(aud, str) or (isinstance(aud, list) and all(isinstance(a, str) for a in aud))):
        raise JwtFailure(_AUD_NOT_STRING)
    if not _b64decode(parts[2], SIGNATURE_BAD_BASE64):
        raise JwtFailure(BAD_FORMAT)
    return Jwt(token, MappingProxyType(header), MappingProxyType(payload), parts[1])


# --- rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """Where a token may be: a header (lower-case name, optional value prefix), a query
    parameter or a cookie."""

    kind: str  # "header" | "param" | "cookie"
    name: str
    prefix: str = ""


# Istio's default when a rule names no location: "Authorization: Bearer <token>" and ?access_token=
DEFAULT_LOCATIONS = (Location("header", "authorization", "Bearer "), Location("param", "access_token"))
SPACE_DELIMITED = frozenset(("scope", "permission"))


@dataclass(frozen=True)
class Provider:
    """One jwtRule, compiled: Envoy's JwtProvider as Istio writes it."""

    issuer: str  # "": the rule accepts any issuer no other rule claims (Istio allows it with jwksUri)
    audiences: tuple[str, ...] = ()
    locations: tuple[Location, ...] = DEFAULT_LOCATIONS
    forward: bool = False  # forwardOriginalToken
    payload_header: bytes = b""  # outputPayloadToHeader, lower-case
    claim_headers: tuple[tuple[bytes, tuple[str, ...]], ...] = ()  # (header, claim path)
    jwks_uri: str = ""
    jwks: Jwks | None = None  # inline keys
    timeout: float = 5.0  # jwksUri fetch timeout (Istio's default)
    # top-level claims whose string value authorization sees split on spaces (Envoy's
    # normalize_payload_in_metadata; Istio always adds scope and permission)
    space_delimited: frozenset[str] = SPACE_DELIMITED
    allowed: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed", frozenset(_sanitize(a) for a in self.audiences))


def _sanitize(audience: str) -> str:
    """jwt_verify_lib compares audiences without their http(s):// scheme and trailing slash."""
    for scheme in ("http://", "https://"):
        if audience.startswith(scheme):
            audience = audience[len(scheme):]
            break
    return audience.rstrip("/")


def check_claims(jwt: Jwt, provider: Provider, now: float) -> None:
    """Envoy's checks before the signature: time window (with clock skew), then audiences."""
    nbf = jwt.payload.get("nbf", 0)
    if nbf and now + CLOCK_SKEW < nbf:
        raise JwtFailure(NOT_YET_VALID)
    exp = jwt.payload.get("exp", 0)
    if exp and now > exp + CLOCK_SKEW:
        raise JwtFailure(EXPIRED)
    if provider.allowed and not any(_sanitize(a) in provider.allowed for a in jwt.audiences):
        raise JwtFailure(AUDIENCE_NOT_ALLOWED, 403)


def check_signature(jwt: Jwt, jwks: Jwks) -> None:
    """The signature against the first fitting key that verifies it: a key is tried when its kid
    (if both have one) and alg (if the key has one) match the token's. No fitting key is
    KID_ALG_MISMATCH (the proxy may refetch the set once), fitting keys that fail
    VERIFICATION_FAILS."""
    alg, kid = jwt.alg, jwt.kid
    tried = False
    for key in jwks.keys:
        if (kid and key.kid and key.kid != kid) or not _fits(key, alg):
            continue
        tried = True
        try:
            jws.deserialize_compact(jwt.token, key.key, algorithms=[alg])
            return
        except (JoseError, ValueError, TypeError):
            continue
    raise JwtFailure(VERIFICATION_FAILS if tried else KID_ALG_MISMATCH)


def principal_of(jwt: Jwt, provider: Provider) -> RequestPrincipal:
    payload = jwt.payload
    return RequestPrincipal(
        principal=f"{payload.get('iss', '')}/{payload.get('sub', '')}",
        audiences=jwt.audiences,
        presenter=payload.get("azp", "") if isinstance(payload.get("azp", ""), str) else "",
        claims=_normalized(payload, provider.space_delimited),
    )


def _normalized(payload: Mapping[str, Any], names: frozenset[str]) -> Mapping[str, Any]:
    """The payload with the space-delimited claims' string values as lists of their words."""
    split = {n: [w for w in payload[n].split(" ") if w] for n in names if isinstance(payload.get(n), str)}
    return {**payload, **split} if split else payload


def output_headers(jwt: Jwt, provider: Provider) -> list[tuple[bytes, bytes]]:
    """outputPayloadToHeader (the payload, base64url) and outputClaimToHeaders: string, number
    and boolean claims (nested ones by a dotted path), UTF-8; other types, and values with
    control characters (a header cannot carry them), are left out."""
    out = []
    if provider.payload_header:
        out.append((provider.payload_header, jwt.payload_segment.rstrip("=").encode()))
    for header, path in provider.claim_headers:
        value = _claim(jwt.payload, path)
        if value is not None:
            out.append((header, value))
    return out


def _claim(payload: Mapping[str, Any], path: tuple[str, ...]) -> bytes | None:
    value: Any = payload
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = str(int(value)) if value.is_integer() else repr(value)
    elif isinstance(value, str):
        text = value
    else:
        return None
    return text.encode() if _HEADER_SAFE.match(text) else None


# --- extraction -----------------------------------------------------------------------------


def extract(location: Location, headers: Sequence[tuple[bytes, bytes]], query: str) -> str | None:
    """The token at `location` in a request (headers as (lower-case name, value) pairs), if any.
    After a header prefix the token is the run of base64url characters and dots that follows it,
    as Envoy takes it (so "Bearer <token>, more" still yields the token)."""
    if location.kind == "param":
        for pair in query.split("&"):
            name, eq, value = pair.partition("=")
            if eq and unquote(name) == location.name and value:
                return unquote(value)
        return None
    name = b"cookie" if location.kind == "cookie" else location.name.encode()
    for header, raw in headers:
        if header != name:
            continue
        value = raw.decode("latin-1")
        if location.kind == "cookie":
            for part in value.split(";"):
                key, eq, cookie = part.strip().partition("=")
                if eq and key == location.name and cookie:
                    return cookie
            continue
        if location.prefix:
            at = value.find(location.prefix)
            if at < 0:
                continue
            value = _TOKEN_RUN.match(value, at + len(location.prefix)).group()
        value = value.strip()
        if value:
            return value
    return None


def locations_of(providers: Iterable[Provider]) -> tuple[Location, ...]:
    """Every location any provider reads, each once, in rule order."""
    return tuple(dict.fromkeys(loc for p in providers for loc in p.locations))


def select(providers: Iterable[Provider], jwt: Jwt, location: Location) -> Provider:
    """The rule that checks a token found at `location`: the one for its issuer that reads that
    location (else an issuer-less rule reading it), or UNKNOWN_ISSUER."""
    fallback = None
    for provider in providers:
        if location not in provider.locations:
            continue
        if provider.issuer == jwt.issuer:
            return provider
        if not provider.issuer and fallback is None:
            fallback = provider
    if fallback is None:
        raise JwtFailure(UNKNOWN_ISSUER)
    return fallback
