"""The request target of an HTTP/1.1 request line, in the forms RFC 9112 3.2 allows.

A proxy forwards the origin form (`/path?query`) only. An absolute-form target
(`http://host:port/path`) is turned into that form, and its authority replaces the Host header
(RFC 9112 3.2.2: a server must ignore Host then), as Envoy does; forwarding it verbatim would let
the proxy route by one host while the upstream serves another. `*` is only for OPTIONS.
Anything else (authority form outside CONNECT, other schemes, `https` over plaintext, user
information in the authority, an authority with characters RFC 3986 does not allow) is
refused. `*` (OPTIONS) is refused too, as Envoy does: no route can match it.
"""

from __future__ import annotations

# RFC 3986 3.2: unreserved, sub-delims, ':' for the port, '[]' for IPv6 literals, '%' encodings.
AUTHORITY_CHARS = bytes(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:[]%"
)


def valid_authority(authority: bytes) -> bool:
    """Only the characters an authority may hold (Envoy answers others 400 invalid_authority)."""
    return bool(authority) and not authority.translate(None, AUTHORITY_CHARS)


def parse_target(method: str, target: bytes) -> tuple[str, str | None]:
    """(origin-form path, authority from an absolute-form target or None); ValueError if bad."""
    if target[:1] == b"/":
        return target.decode("latin-1"), None
    if target == b"*":
        raise ValueError("the asterisk-form target '*' is not served")
    scheme, sep, rest = target.partition(b"://")
    if not sep:
        raise ValueError("request target is neither a path nor an absolute URL")
    if scheme.lower() != b"http":
        raise ValueError(f"scheme {scheme.decode('latin-1')!r} is not accepted on a plaintext listener")
    end = len(rest)
    for delimiter in (b"/", b"?"):
        index = rest.find(delimiter)
        if index != -1 and index < end:
            end = index
    authority, path = rest[:end], rest[end:]
    if not authority:
        raise ValueError("absolute URL without a host")
    if b"@" in authority:
        raise ValueError("user information in the request target")
    if not valid_authority(authority):
        raise ValueError("invalid characters in the request target's authority")
    if not path.startswith(b"/"):
        path = b"/" + path
    return path.decode("latin-1"), authority.decode("latin-1")
