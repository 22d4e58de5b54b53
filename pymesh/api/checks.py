"""Value checks shared by the per-kind parsers: each takes a value and returns a message when it
is wrong, None when it is fine. They follow Istio's own validation (pkg/config/validation) so
YAML that Istio rejects is rejected here with a similar explanation.
"""

from __future__ import annotations

import ipaddress
import re

from pymesh.api.regex import RegexError, compile_regex

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")  # RFC 9110 field name
_COOKIE_OCTETS = re.compile(r"[\x21-\x3a\x3c-\x7e]*\Z")  # RFC 6265: no CTL, space or ";"
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
UNIX_PREFIX = "unix://"


def dns_label(value: str) -> str | None:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        return f"{value!r} is not a valid name (lower-case letters, digits and '-', at most 63)"
    return None


def dns_subdomain(value: str) -> str | None:
    if len(value) > 253 or not all(_DNS_LABEL.match(part) for part in value.split(".")):
        return f"{value!r} is not a valid name (lower-case DNS name: letters, digits, '-' and '.')"
    return None


def ip_address(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not a valid IP address"
    return None


def ip_or_cidr(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"{value!r} is not a valid IP address or CIDR block"
    return None


def unix_path(value: str) -> str | None:
    """The path part of "unix:///path" (absolute, not a directory) or an abstract "@name"."""
    if not value:
        return "unix address must not be empty"
    if value.startswith("@"):
        return None
    if not value.startswith("/") or value.endswith("/"):
        return f"{value!r} is not an absolute path to a file"
    return None


def regex(value: str) -> str | None:
    """Compiles with RE2, as Envoy does and in Istio's limits (see pymesh.api.regex)."""
    try:
        compile_regex(value)
    except RegexError as exc:
        return f"invalid regex {value!r}: {exc}; Istio uses RE2 syntax (https://github.com/google/re2/wiki/Syntax)"
    return None


# RFC 9113 8.3's pseudo-headers, which Istio lets a match name (ValidateHTTPHeaderNameOrJwtClaimRoute)
PSEUDO_HEADERS = frozenset({":method", ":scheme", ":authority", ":path", ":status"})
# JWT claims as headers: Istio's "@request.auth.claims.NAME" (pkg/jwt ToRoutingClaim's only
# prefix; "x-jwt-claim.NAME", in Istio's API reference and older tests, is a plain header to Istio)
JWT_CLAIM_PREFIXES = ("@request.auth.claims",)


def match_header_name(value: str) -> str | None:
    """A header a match may name (Istio's ValidateHTTPHeaderNameOrJwtClaimRoute): any RFC 9110
    token, a pseudo-header, or a JWT claim ("@request.auth.claims.groups"), which pymesh does not
    route on yet: read as a plain header it would let a client choose the route, so it is refused."""
    if not value:
        return "header name cannot be empty"
    if value.lower().startswith(JWT_CLAIM_PREFIXES):
        return f"{value!r}: routing on JWT claims is not supported by pymesh yet"
    if value.lower() in PSEUDO_HEADERS:
        return None
    if not _TOKEN.match(value):
        return f"{value!r} is not a valid header name (an RFC 9110 token)"
    return None


AUTHORITY_HEADERS = frozenset({":authority", "host"})


def _operation_name(value: str) -> str | None:
    """Istio only asks for a name; Envoy (which would refuse the configuration) asks for an RFC
    9110 token, and so does pymesh, which writes the name into a request."""
    if not value:
        return "header name cannot be empty"
    if value.startswith(":") and value.lower() not in AUTHORITY_HEADERS:
        return f'invalid header {value!r}: header cannot have ":" prefix'
    if value.lower() not in AUTHORITY_HEADERS and not _TOKEN.match(value):
        return f"{value!r} is not a valid header name"
    return None


def request_header_to_write(value: str) -> str | None:
    """A header a route may set or add on the request (Istio's
    ValidateHTTPHeaderWithAuthorityOperationName): Host or :authority rewrite the authority."""
    return _operation_name(value)


def header_to_modify(value: str) -> str | None:
    """A header a route may remove from the request or change on the response (Istio's
    ValidateHTTPHeaderOperationName: not Host, no pseudo-header)."""
    if value.lower() == ":authority":
        return f'invalid header {value!r}: header cannot have ":" prefix'
    return _operation_name(value) or (
        f'invalid header {value!r}: cannot set Host header' if value.lower() == "host" else None
    )


def output_header(value: str) -> str | None:
    """A header the proxy writes from a verified token (Istio's ValidateStrictHTTPHeaderName;
    pseudo-headers and Host are never written this way)."""
    if not value:
        return "header name cannot be empty"
    if not _TOKEN.match(value):
        return f"{value!r} is not a valid header name"
    return f"{value!r} cannot be written from a token" if value.lower() == "host" else None


def header_value(value: str) -> str | None:
    if _CONTROL.search(value):
        return f"header value {value!r} contains control characters"
    return None


def label_key(value: str) -> str | None:
    """A Kubernetes label key: optional DNS-subdomain prefix and '/', then a name of <= 63."""
    prefix, slash, name = value.rpartition("/")
    if slash and (not prefix or dns_subdomain(prefix)):
        return f"label key {value!r} has an invalid prefix {prefix!r}"
    if len(name) > 63 or not _LABEL_NAME.match(name):
        return f"label key {value!r} is invalid (letters, digits, '-', '_' and '.', at most 63)"
    return None


def label_value(value: str) -> str | None:
    if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
        return f"label value {value!r} is invalid (letters, digits, '-', '_' and '.', at most 63)"
    return None


def not_empty(value: str) -> str | None:
    return "must not be empty" if not value else None


def default_endpoint(value: str) -> str | None:
    """A Sidecar ingress defaultEndpoint: "127.0.0.1:PORT", "0.0.0.0:PORT", "[::1]:PORT",
    "[::]:PORT" or "unix:///path", as Istio allows."""
    if value.startswith(UNIX_PREFIX):
        return unix_path(value[len(UNIX_PREFIX):])
    host, colon, port = value.rpartition(":")
    if not colon or host not in ("127.0.0.1", "0.0.0.0", "[::1]", "[::]", ""):
        return (
            f"defaultEndpoint {value!r} must be 127.0.0.1:PORT, 0.0.0.0:PORT, [::1]:PORT, [::]:PORT "
            "or unix:///path"
        )
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:  # "²" isdigit, int() raises
        return f"defaultEndpoint {value!r} has an invalid port (must be between 1 and 65535)"
    return None


def cookie_token(value: str) -> str | None:
    """A Set-Cookie name or attribute name: an RFC 9110 token (it is written into a header)."""
    return None if _TOKEN.match(value) else f"{value!r} is not a valid cookie token"


def cookie_octets(value: str) -> str | None:
    """A Set-Cookie attribute value or path: printable, without spaces or ";" (RFC 6265)."""
    return None if _COOKIE_OCTETS.match(value) else f"{value!r} may not contain spaces, \";\" or control characters"


def is_prime(n: int) -> bool:
    """Envoy's (and Istio's) primality test for Maglev table sizes."""
    if 0 < n < 4:
        return True
    if n % 2 == 0:
        return False
    return all(n % f for f in range(3, int(n ** 0.5) + 1, 2))
