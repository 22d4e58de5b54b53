"""The request filters: what happens to a request after its route is chosen and before the router
sends it upstream (Envoy's HTTP filter chain, with the route already cached).

A filter sees the exchange (route, cluster, connection facts) and the `UpstreamRequest` being
built, and acts only through its return value:

    None          continue with the next filter
    a LocalReply  answer the client now; nothing goes upstream
    PAUSE         stop here; the filter later calls `exchange.resume_filters()` (a fault delay,
                  an external check), and the chain carries on after it

A filter object is configuration, shared by every request on its listener; per-request state, if
any, lives on the exchange. The chains are built once per snapshot (`chains_for`), one per
listener direction, and an exchange only iterates a tuple.
"""

from __future__ import annotations

import os
import uuid
from typing import Protocol

from pymesh.http.message import UpstreamRequest
from pymesh.proxy.headers import apply_header_ops, rewrite_target
from pymesh.proxy.local_reply import LocalReply
from pymesh.telemetry.peer_metadata import HEADER as PEER_HEADER

PAUSE = object()


class RequestFilter(Protocol):
    def on_request(self, exchange, request: UpstreamRequest) -> LocalReply | object | None: ...


class RequestId:
    """x-request-id: kept when the client sent one, generated (UUID4) when not, as Envoy does;
    the access log and traces read it from the exchange."""

    def on_request(self, exchange, request: UpstreamRequest) -> None:
        request_id = exchange.head.header(b"x-request-id")
        if request_id is None:
            request_id = str(uuid.UUID(bytes=os.urandom(16), version=4)).encode()
            request.headers.append((b"x-request-id", request_id))
        exchange.request_id = request_id.decode("latin-1")


class PeerMetadata:
    """The client-side sidecar stamps who is calling (pymesh.telemetry.peer_metadata); the
    client's own copy of the header was already dropped, it is never trusted from an app."""

    def __init__(self, value: bytes) -> None:
        self.header = (PEER_HEADER, value)

    def on_request(self, exchange, request: UpstreamRequest) -> None:
        request.headers.append(self.header)


class Forwarded:
    """On the server's side: x-forwarded-for gets the caller's address appended and
    x-forwarded-proto is set if absent. The client's sidecar leaves them alone (its caller is
    the local app), so a hop through two sidecars adds the caller's address once."""

    def on_request(self, exchange, request: UpstreamRequest) -> None:
        head = exchange.head
        client = head.source_ip.encode()
        headers = request.headers
        for index, (name, value) in enumerate(headers):
            if name == b"x-forwarded-for":
                headers[index] = (name, value + b", " + client)
                break
        else:
            headers.append((b"x-forwarded-for", client))
        if head.header(b"x-forwarded-proto") is None:
            headers.append((b"x-forwarded-proto", head.scheme.encode()))


class RouteHeaders:
    """The route's and the chosen destination's header operations (Istio's order: remove, set,
    add), then the route's rewrite. A header operation that sets `host` rewrites the authority."""

    def on_request(self, exchange, request: UpstreamRequest) -> None:
        route = exchange.route
        for ops in (route.request_headers, exchange.weighted.request_headers):
            if not ops.empty:
                headers = apply_header_ops(request.headers, ops)
                request.headers = [(n, v) for n, v in headers if n != b"host"]
                if len(request.headers) != len(headers):
                    request.authority = next(v for n, v in headers if n == b"host").decode("latin-1")
        if route.rewrite is not None:
            request.target, authority = rewrite_target(route.rewrite, exchange.matched_prefix, request.target)
            request.authority = authority or request.authority


_REQUEST_ID = RequestId()
_FORWARDED = Forwarded()
_ROUTE_HEADERS = RouteHeaders()


def chains_for(peer_header: bytes) -> dict[str, tuple[RequestFilter, ...]]:
    """The chain of each listener direction for one snapshot (the peer header is this proxy's)."""
    return {
        "outbound": (_REQUEST_ID, PeerMetadata(peer_header), _ROUTE_HEADERS),
        "inbound": (_REQUEST_ID, _FORWARDED, _ROUTE_HEADERS),
    }
