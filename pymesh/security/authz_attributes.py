"""The request side of AuthorizationPolicy matching: each attribute a policy can name, how it is
read from a request head, its connection and its verified JWT (head None: a TCP connection;
jwt None: no token), and which kind of value test it takes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from pymesh.security.authz_values import AnyItem, Globs, Networks, Ports, Strings, never, paths

SPIFFE = "spiffe://"


def _peer_uri(info) -> str | None:
    """The verified peer's SPIFFE URI: ConnectionInfo.peer_identity holds the URI (or a
    pymesh.security.identity.SpiffeId); a bare principal ("td/ns/N/sa/S") is read as one too."""
    identity = info.peer_identity
    if identity is None:
        return None
    if type(identity) is not str:
        return identity.uri
    return identity if identity.startswith(SPIFFE) else SPIFFE + identity


def _identity_part(uri: str | None, key: str) -> str | None:
    """The `ns` or `sa` segment of spiffe://td/ns/N/sa/S."""
    if uri is None or not uri.startswith(SPIFFE):
        return None
    parts = uri[len(SPIFFE):].split("/")
    for index in range(1, len(parts) - 1, 2):
        if parts[index] == key:
            return parts[index + 1]
    return None


def _service_account(uri: str | None) -> str | None:
    namespace, account = _identity_part(uri, "ns"), _identity_part(uri, "sa")
    return None if namespace is None or account is None else f"{namespace}/{account}"


def _remote_ip(head, info) -> str:
    """Envoy's downstream remote address on an inbound sidecar (use_remote_address false, no
    trusted hops): the last x-forwarded-for entry when there is one, else the peer."""
    if head is not None:
        forwarded = head.header(b"x-forwarded-for")
        if forwarded:
            return forwarded.rsplit(b",", 1)[-1].strip().decode("latin-1")
    return info.source_ip


def _destination(info) -> tuple[str, int]:
    original = info.original_destination
    if original is not None:
        return original
    return info.local_ip, info.local_port


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def normalize_path(target: str) -> str:
    """The path part of a request target as Envoy's normalize_path (Istio's default BASE)
    sees it: no query or fragment, %-encoded unreserved characters decoded, dot segments
    removed (RFC 3986 5.2.4). Policies match this, so "/./admin" and "/%61dmin" are "/admin"."""
    end = len(target)
    for mark in ("?", "#"):
        index = target.find(mark)
        if 0 <= index < end:
            end = index
    path = target[:end] if end < len(target) else target
    if "%" not in path and "/." not in path:
        return path
    if "%" in path:
        path = re.sub(r"%([0-9A-Fa-f]{2})", _decode_unreserved, path)
    output: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments[1:], 1):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if output:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    return "/" + "/".join(output)


def _decode_unreserved(match: re.Match) -> str:
    code = int(match.group(1), 16)
    return chr(code) if code in _UNRESERVED else "%" + match.group(1).upper()


def _claim(claims: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = claims
    for name in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return value


_BRACKETS = re.compile(r"\[([^\[\]]+)\]")


@dataclass(frozen=True)
class Attribute:
    """One thing a policy can look at: how to read it and how to match its values."""

    read: Callable[[Any, Any, Any], Any]
    values: Callable[[tuple[str, ...]], Callable[[Any], bool]]
    http_only: bool = False


def _strings(**options) -> Callable[[tuple[str, ...]], Strings]:
    return lambda values: Strings(values, **options)


_PRINCIPAL = Attribute(lambda head, info, jwt: _peer_uri(info), _strings(prefix=SPIFFE))
_NAMESPACE = Attribute(lambda head, info, jwt: _identity_part(_peer_uri(info), "ns"), Globs)
_REQUEST_PRINCIPAL = Attribute(lambda head, info, jwt: jwt.principal if jwt is not None else None,
                               _strings(), http_only=True)
_SOURCE_IP = Attribute(lambda head, info, jwt: info.source_ip, Networks)
_REMOTE_IP = Attribute(lambda head, info, jwt: _remote_ip(head, info), Networks)
HOST = Attribute(lambda head, info, jwt: head.authority if head is not None else None,
                  _strings(ignore_case=True, present_star=True), http_only=True)
METHOD = Attribute(lambda head, info, jwt: head.method if head is not None else None,
                    _strings(present_star=True), http_only=True)
PATH = Attribute(lambda head, info, jwt: normalize_path(head.path) if head is not None else None,
                  paths, http_only=True)
DESTINATION_PORT = Attribute(lambda head, info, jwt: _destination(info)[1], Ports)
_ATTRIBUTES = {
    "source.principal": _PRINCIPAL,
    "source.namespace": _NAMESPACE,
    "source.ip": _SOURCE_IP,
    "remote.ip": _REMOTE_IP,
    "request.auth.principal": _REQUEST_PRINCIPAL,
    "request.auth.audiences": Attribute(lambda head, info, jwt: jwt.audiences if jwt is not None else None,
                                        lambda values: AnyItem(Strings(values)), http_only=True),
    "request.auth.presenter": Attribute(lambda head, info, jwt: (jwt.presenter or None) if jwt is not None else None,
                                        _strings(), http_only=True),
    "destination.ip": Attribute(lambda head, info, jwt: _destination(info)[0], Networks),
    "destination.port": DESTINATION_PORT,
    "connection.sni": Attribute(lambda head, info, jwt: info.sni, _strings()),
}


def _service_accounts(namespace: str) -> Attribute:
    """source.serviceAccount / serviceAccounts: "sa" is in the policy's namespace."""

    def values(entries: tuple[str, ...]) -> Callable[[Any], bool]:
        accounts = frozenset(e if "/" in e else f"{namespace}/{e}" for e in entries)
        return lambda value: value in accounts

    return Attribute(lambda head, info, jwt: _service_account(_peer_uri(info)), values)


def _keyed(key: str) -> Attribute:
    """request.headers[name], request.auth.claims[a][b], experimental.envoy.filters.*[...]"""
    names = tuple(_BRACKETS.findall(key))
    if key.startswith("request.headers"):
        header = names[0].lower()
        return Attribute(lambda head, info, jwt: head.headers.get(header) if head is not None else None,
                         _strings(present_star=True), http_only=True)
    if key.startswith("request.auth.claims"):
        return Attribute(lambda head, info, jwt: _claim(jwt.claims, names) if jwt is not None else None,
                         lambda values: AnyItem(Strings(values)), http_only=True)
    # Envoy filter metadata: pymesh's filters write none, so its values never match
    return Attribute(lambda head, info, jwt: None, lambda values: never)


def attribute(key: str, namespace: str) -> Attribute:
    if key == "source.serviceAccount":
        return _service_accounts(namespace)
    found = _ATTRIBUTES.get(key)
    return found if found is not None else _keyed(key)
