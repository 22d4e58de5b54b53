"""Consistent-hash keys: which bytes of a request pick its endpoint, and the hash over them.

The hash must be the same in every worker process and every proxy, so it is blake2b, never
Python's per-process randomised `hash()`.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Mapping

from pymesh.api import model


def stable_hash64(data: bytes, seed: int = 0) -> int:
    """A 64-bit hash that every process and machine agrees on; `seed` picks an independent one."""
    digest = blake2b(data, digest_size=8, salt=seed.to_bytes(16, "big")) if seed else blake2b(data, digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def _encode(value: str) -> bytes:
    # Header values may carry undecodable bytes smuggled through as surrogates.
    return value.encode("utf-8", "surrogateescape")


def cookie_value(cookie_header: str, name: str) -> str | None:
    """The value of cookie `name` in a Cookie header, or None.

    Pairs are split on ";" and also on "," because the HTTP/2 handler joins repeated cookie
    headers with ","; RFC 6265 cookie values cannot contain either character.
    """
    for part in cookie_header.replace(",", ";").split(";"):
        key, eq, value = part.partition("=")
        if eq and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value
    return None


def query_value(query: str, name: str) -> str | None:
    """The first raw (not percent-decoded, like Envoy) value of `name` in a query string, or None."""
    for part in query.removeprefix("?").split("&"):
        key, _, value = part.partition("=")
        if key == name:
            return value
    return None


def hash_key(
    consistent_hash: model.ConsistentHash,
    headers: Mapping[str, str],
    source_ip: str,
    query: str,
) -> bytes | None:
    """The request's hash key, or None when its source is missing (the balancer then picks at
    random, like Envoy). `headers` has lower-case names; `query` is the part after "?".

    A missing cookie is not generated here (Istio's cookie `ttl` is not modelled): the request
    falls back to a random pick.
    """
    ch = consistent_hash
    if ch.http_header_name:
        value = headers.get(ch.http_header_name.lower())
    elif ch.http_cookie:
        header = headers.get("cookie")
        value = cookie_value(header, ch.http_cookie) if header else None
    elif ch.use_source_ip:
        value = source_ip or None
    elif ch.http_query_parameter_name:
        value = query_value(query, ch.http_query_parameter_name) if query else None
    else:
        value = None
    return None if value is None else _encode(value)
