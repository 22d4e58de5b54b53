"""Responses the proxy writes itself, with Envoy's status codes, bodies and response flags.

Keeping Envoy's texts means clients and runbooks that look for "no healthy upstream" or
"upstream request timeout" keep working when pymesh replaces Envoy.
"""

from __future__ import annotations

from dataclasses import dataclass

from pymesh.api import model
from pymesh.http.message import RequestHead
from pymesh.policy import flags
from pymesh.routing.hosts import split_authority

_RESET_BEFORE_HEADERS = b"upstream connect error or disconnect/reset before headers. reset reason: "

# primary flag -> (status, body)
_REPLIES = {
    flags.NR: (404, b""),
    flags.UH: (503, b"no healthy upstream"),
    flags.UF: (503, _RESET_BEFORE_HEADERS + b"connection failure"),
    flags.UC: (503, _RESET_BEFORE_HEADERS + b"connection termination"),
    flags.UR: (503, _RESET_BEFORE_HEADERS + b"remote reset"),
    flags.UO: (503, _RESET_BEFORE_HEADERS + b"overflow"),
    flags.UT: (504, b"upstream request timeout"),
}


@dataclass(frozen=True)
class LocalReply:
    status: int
    flags: str
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    close: bool = False  # close the downstream connection after it (malformed input)
    grpc_status: int | None = None  # to a gRPC call: this status, not the one mapped from `status`


def local_reply_for(flag_text: str, status: int | None = None, detail: bytes = b"") -> LocalReply:
    """The reply for a set of flags ("UF,URX"): the first flag with a reply decides the text."""
    for flag in flag_text.split(","):
        if flag in _REPLIES:
            default_status, body = _REPLIES[flag]
            if detail:
                separator = ", " if detail.startswith(b"transport failure") else ": "  # Envoy's texts
                body = f"{body.decode()}{separator}{detail.decode()}".encode() if body else detail
            return LocalReply(status or default_status, flag_text, body)
    raise ValueError(f"no local reply for flags {flag_text!r}")


_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def _without_default_port(authority: str, scheme: str) -> str:
    """Envoy's redirect to another scheme drops the old scheme's default port ("a:80" for http:
    https://a/), and keeps any other."""
    default = _DEFAULT_PORTS.get(scheme)
    return authority[:-len(default)] if default and authority.endswith(default) else authority


def redirect_reply(redirect: model.HTTPRedirect, head: RequestHead, matched_prefix: str | None = None) -> LocalReply:
    """Istio's HTTPRedirect: each part given replaces that part of the request's URL. A uri
    starting with Istio's %PREFIX()% replaces only the prefix the route matched (Envoy's
    prefix_rewrite, what Gateway API ReplacePrefixMatch redirects become)."""
    path, _, query = head.path.partition("?")
    if redirect.uri.startswith(PREFIX_MARKER):
        replacement = redirect.uri[len(PREFIX_MARKER):]
        path = replacement + path[len(matched_prefix):] if matched_prefix is not None else replacement
        if query:
            path = f"{path}?{query}"
    elif redirect.uri:
        path = redirect.uri
        if query and "?" not in path:
            path = f"{path}?{query}"
    elif query:
        path = f"{path}?{query}"
    authority = redirect.authority or head.authority
    if redirect.port:
        authority = f"{_host_of(authority)}:{redirect.port}"
    elif redirect.derive_port == "FROM_PROTOCOL_DEFAULT":
        authority = _host_of(authority)
    elif redirect.derive_port == "FROM_REQUEST_PORT" and redirect.authority:
        _, port = split_authority(head.authority)
        authority = f"{_host_of(authority)}:{port}" if port is not None else _host_of(authority)
    scheme = redirect.scheme or head.scheme
    if scheme != head.scheme and not (redirect.authority or redirect.port):
        authority = _without_default_port(authority, head.scheme)
    location = f"{scheme}://{authority}{path}".encode("latin-1")
    return LocalReply(redirect.redirect_code, flags.NONE, b"", ((b"location", location),))


PREFIX_MARKER = "%PREFIX()%"


def _host_of(authority: str) -> str:
    return split_authority(authority)[0]
