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

import functools
import ipaddress
from typing import Mapping

from pymesh.http.message import UpstreamRequest
from pymesh.proxy.authz import Authorization
from pymesh.proxy.cors import Cors
from pymesh.proxy.fault import FaultInjection
from pymesh.proxy.random_source import HEX
from pymesh.proxy.ratelimit import LocalRateLimit
from pymesh.proxy.headers import apply_header_ops, rewrite_target
from pymesh.proxy.interfaces import RequestFilter
from pymesh.routing import snapshot
from pymesh.telemetry.peer_metadata import HEADER as PEER_HEADER

class ProxyHeaders:
    """The headers the proxy itself writes on every request:

    - x-request-id: kept when the client sent one, generated (UUID4) when not, as Envoy does;
      the access log and traces read it from the exchange;
    - outbound, the caller's peer metadata (pymesh.telemetry.peer_metadata): the app's own copy
      of that header was already dropped, it is never trusted from an app;
    - inbound, x-forwarded-proto is set if absent; x-forwarded-for is left as it came, as Envoy
      does without use_remote_address (Istio's sidecars, both directions), so a client behind a
      gateway reaches the app with its address once, the gateway's append.
      x-forwarded-client-cert is removed and, over mTLS, set to the verified client certificate
      (By, Hash, Subject, URI);
    - on a gateway (`edge`: Envoy's use_remote_address, as Istio's gateways run it), both: the
      peer metadata goes upstream, and the client's address is appended to x-forwarded-for;
      see `_edge` for x-forwarded-proto, x-envoy-internal and x-envoy-external-address.
    """

    def __init__(self, peer_header: tuple[bytes, bytes] | None, edge: bool = False) -> None:
        self.peer_header = peer_header  # outbound listeners only
        self.forwarded = peer_header is None
        self.edge = edge

    def on_request(self, exchange, request: UpstreamRequest) -> None:
        head = exchange.head
        headers = request.headers
        request_id = head.header(b"x-request-id")
        if request_id is None:
            request_id = new_request_id()
            headers.append((b"x-request-id", request_id))
        exchange.request_id = request_id.decode("latin-1")
        if self.edge:
            _edge(head, headers)
            headers.append(self.peer_header)
            exchange.response_header_ops += (_EDGE_RESPONSE,)
        elif self.forwarded:
            _forwarded(head, headers)
        else:
            headers.append(self.peer_header)


# the UUID variant digit (8, 9, a or b) from a random hex digit's low two bits
_VARIANT = {ord(digit): b"89ab"[int(digit, 16) & 3:][:1] for digit in "0123456789abcdef"}


def new_request_id() -> bytes:
    """A random (version 4) UUID in its text form, without building a uuid.UUID: this runs for
    every request that arrives without an id, and the object costs more than the request's
    routing (RFC 9562 5.4: version nibble 4, variant bits 10)."""
    text = HEX.take(32)
    return b"%s-%s-4%s-%s%s-%s" % (text[:8], text[8:12], text[13:16], _VARIANT[text[16]], text[17:20], text[20:])


def _append_xff(head, headers) -> None:
    client = head.connection.source_ip.encode()
    for index, (name, value) in enumerate(headers):
        if name == b"x-forwarded-for":
            headers[index] = (name, value + b", " + client)
            break
    else:
        headers.append((b"x-forwarded-for", client))


def _forwarded(head, headers) -> None:
    if head.header(b"x-forwarded-proto") is None:
        headers.append((b"x-forwarded-proto", head.scheme.encode()))
    # x-forwarded-client-cert as Istio's sidecars (Envoy's SANITIZE_SET): a client's own is never
    # passed on; over mTLS the proxy writes what the handshake verified
    if head.header(_XFCC) is not None:
        headers[:] = [(n, v) for n, v in headers if n != _XFCC]
    client_cert = head.connection.forwarded_client_cert
    if client_cert is not None:
        headers.append((_XFCC, client_cert))


_XFCC = b"x-forwarded-client-cert"
# The response's Server header, as Istio's gateways write it (Envoy's server_name, OVERWRITE)
GATEWAY_SERVER = (b"server", b"istio-envoy")
_EDGE_RESPONSE = snapshot.HeaderOps(set=((GATEWAY_SERVER[0].decode(), GATEWAY_SERVER[1].decode()),))
# What a client outside the mesh may not set (Envoy's cleanInternalHeaders for an edge request)
_EDGE_REMOVED = frozenset({
    b"x-forwarded-proto", b"x-envoy-external-address", b"x-envoy-internal", b"x-envoy-decorator-operation",
    b"x-envoy-downstream-service-cluster", b"x-envoy-downstream-service-node", b"x-envoy-retriable-status-codes",
    b"x-envoy-retry-on", b"x-envoy-retry-grpc-on", b"x-envoy-max-retries", b"x-envoy-upstream-alt-stat-name",
    b"x-envoy-upstream-rq-timeout-ms", b"x-envoy-upstream-rq-per-try-timeout-ms",
    b"x-envoy-upstream-rq-timeout-alt-response", b"x-envoy-expected-rq-timeout-ms", b"x-envoy-force-trace",
    b"x-envoy-ip-tags", b"x-envoy-original-url", b"x-envoy-hedge-on-per-try-timeout",
})
# Envoy's default internal addresses (RFC 1918, loopback, IPv6 unique local)
_INTERNAL = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8",
                                                     "::1/128", "fd00::/8"))


@functools.lru_cache(maxsize=1024)
def _internal(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in _INTERNAL)


def _edge(head, headers) -> None:
    """What Envoy with use_remote_address writes, as at Istio's gateways: the client's address
    appended to x-forwarded-for, x-forwarded-proto the client's scheme; a request from an
    internal address with no x-forwarded-for of its own is marked x-envoy-internal, any other
    loses the x-envoy-* headers only the mesh may set and gets x-envoy-external-address."""
    internal = head.header(b"x-forwarded-for") is None and _internal(head.connection.source_ip)
    _append_xff(head, headers)
    _forwarded(head, headers)
    if internal:
        headers[:] = [(n, v) for n, v in headers if n not in (b"x-forwarded-proto", b"x-envoy-internal")]
        headers.append((b"x-envoy-internal", b"true"))
    else:
        headers[:] = [(n, v) for n, v in headers if n not in _EDGE_REMOVED]
        headers.append((b"x-envoy-external-address", head.connection.source_ip.encode()))
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


def chains_for(peer_header: bytes, rng, clock, jwt_authn: RequestFilter | None = None, authorizer=None,
               gateway: bool = False, trace_headers: RequestFilter | None = None,
               user: Mapping[str, Mapping[str, tuple]] | None = None) -> dict[str, tuple[tuple[RequestFilter, ...], ...]]:
    """Each listener direction's chains for one snapshot, one per `Route.filter_set` (a bit per
    optional filter): `Exchange.begin` indexes them with the route's precomputed set, so a route
    without CORS, faults, rate limits or header operations runs ProxyHeaders alone.

    The order is Envoy's as Istio builds it: CORS (a preflight is answered even when a fault
    would fire), fault, local rate limit (inserted before the router), and the route's header
    operations last, where Envoy's router applies them. Inbound, `jwt_authn` (the workload's
    RequestAuthentication, pymesh.proxy.jwt_authn) comes first after ProxyHeaders, as Istio puts
    jwt_authn before the filters that act on a request, then authorization (the snapshot's
    `authz`, when any AuthorizationPolicy applies: Istio's RBAC filters, which read the verified
    JWT); None adds nothing. On a gateway (its listeners are "outbound") the outbound chain is
    the edge one, with the JWT check and authorization of the gateway's own policies, as Istio
    runs them on its gateways. `trace_headers` (pymesh.proxy.tracing, when the snapshot traces)
    follows ProxyHeaders in every chain: it reads the request id ProxyHeaders settled.

    `user` (pymesh.proxy.user_filters.chain_parts, per direction) places Python filters as Istio
    places Wasm plugins: AUTHN before the JWT check, AUTHZ after it and before authorization,
    STATS after authorization and the route's CORS, fault and rate limit, UNSPECIFIED_PHASE
    last before the router's header operations; the chain then starts with their `enter` and
    ends with their `leave`. A direction without any is built exactly as without the feature."""
    optional = ((snapshot.CORS, Cors()), (snapshot.FAULT, FaultInjection(rng)),
                (snapshot.RATE_LIMIT, LocalRateLimit(clock)))
    route_headers = RouteHeaders()
    chains = {}
    authorization = Authorization(authorizer) if authorizer is not None else None
    tracing = (trace_headers,) if trace_headers is not None else ()
    heads = {"outbound": ProxyHeaders((PEER_HEADER, peer_header), edge=gateway), "inbound": ProxyHeaders(None)}
    for direction, proxy_headers in heads.items():
        guarded = direction == "inbound" or gateway
        parts = (user or {}).get(direction) or _NO_USER
        jwt = (jwt_authn,) if guarded and jwt_authn is not None else ()
        authz = (authorization,) if guarded and authorization is not None else ()
        first = (*parts["enter"], proxy_headers, *tracing, *parts["AUTHN"], *jwt, *parts["AUTHZ"], *authz)
        chains[direction] = tuple(
            (*first, *(f for bit, f in optional if filter_set & bit), *parts["STATS"], *parts["UNSPECIFIED_PHASE"],
             *((route_headers,) if filter_set & snapshot.ROUTE_HEADERS else ()), *parts["leave"])
            for filter_set in range(snapshot.FILTER_SETS)
        )
    return chains


_NO_USER: Mapping[str, tuple] = {part: () for part in ("enter", "AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE", "leave")}
