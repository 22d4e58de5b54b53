"""Envoy's request attributes (pymesh.telemetry.cel.ATTRIBUTES) read from a finished exchange,
for access-log filters and metric tag values. Made only for proxies whose Telemetry uses an
expression; each attribute is read when the expression asks for it."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from pymesh.telemetry.metrics import UNKNOWN, Peer
from pymesh.telemetry.peer_metadata import HEADER as PEER_HEADER, decode_peer


def _url_path(x) -> str:
    return x.head.path.partition("?")[0]


def _header(x, name: str) -> str | None:
    value = x.head.header(name.encode("latin-1"))
    return value.decode("latin-1") if value is not None else None


def _destination_port(x) -> int:
    endpoint = x.last_endpoint
    return endpoint.port if endpoint is not None and x.listener.direction == "outbound" else x.listener.port


def _cluster_name(x) -> str | None:
    state = x.cluster_state
    return state.cluster.name if state is not None else None


_READERS: dict[str, Callable[[Any], Any]] = {
    "request.path": lambda x: x.head.path,
    "request.url_path": _url_path,
    "request.host": lambda x: x.head.authority,
    "request.scheme": lambda x: x.head.scheme,
    "request.method": lambda x: x.head.method,
    "request.useragent": lambda x: _header(x, "user-agent"),
    "request.id": lambda x: x.request_id,
    "request.protocol": lambda x: "HTTP/" + x.head.http_version,
    "request.size": lambda x: x.request_bytes,
    "request.total_size": lambda x: x.request_bytes,
    "response.code": lambda x: x.status,
    "response.flags": lambda x: x.flags,
    "response.size": lambda x: x.response_bytes,
    "response.total_size": lambda x: x.response_bytes,
    "response.grpc_status": lambda x: x.grpc_status,
    "connection.mtls": lambda x: bool(x.head.connection.tls and x.head.connection.peer_identity),
    "connection.requested_server_name": lambda x: x.head.connection.sni,
    "source.address": lambda x: x.head.connection.source_ip,
    "source.port": lambda x: x.head.connection.source_port,
    "destination.address": lambda x: x.last_endpoint.address if x.last_endpoint else x.head.connection.local_ip,
    "destination.port": _destination_port,
    "upstream.address": lambda x: x.last_endpoint.key if x.last_endpoint else None,
    "xds.cluster_name": _cluster_name,
    "xds.route_name": lambda x: x.route.name if x.route else None,
}


def _peer(exchange, identity, side: str) -> tuple[Peer, Mapping[str, str]]:
    """Istio's upstream_peer / downstream_peer: the other end's metadata, or this proxy's own
    (outbound, this proxy is downstream; inbound, upstream). Labels beyond app and version are
    known only for this proxy and for endpoints."""
    own = (side == "downstream") == (exchange.listener.direction == "outbound")
    if own:
        return Peer.from_identity(identity), identity.labels
    if side == "upstream":
        endpoint = exchange.last_endpoint
        return Peer.from_endpoint(endpoint), endpoint.labels if endpoint is not None else {}
    peer = decode_peer(exchange.head.header(PEER_HEADER))
    return peer, {k: v for k, v in (("app", peer.app), ("version", peer.version)) if v != UNKNOWN}


_PEER_FIELDS = {"workload": "workload", "namespace": "namespace", "app": "app", "version": "version",
                "service": "canonical_service", "revision": "canonical_revision", "cluster": "cluster"}


def lookup_for(exchange, identity) -> Callable[[str, str | None], Any]:
    def lookup(attribute: str, key: str | None) -> Any:
        side, _, name = attribute.partition("_peer.")
        if name:
            peer, labels = _peer(exchange, identity, side)
            if key is not None:
                return labels.get(key)
            value = getattr(peer, _PEER_FIELDS[name])
            return None if value == UNKNOWN else value
        if key is not None:
            return _header(exchange, key) if attribute == "request.headers" else None
        reader = _READERS.get(attribute)
        return reader(exchange) if reader is not None else None

    return lookup


def tcp_lookup_for(proxy) -> Callable[[str, str | None], Any]:
    """A TCP connection's attributes (no request or response: those are absent)."""
    info = proxy.info
    readers: dict[str, Callable[[], Any]] = {
        "connection.mtls": lambda: bool(info.tls and info.peer_identity),
        "connection.requested_server_name": lambda: info.sni,
        "source.address": lambda: info.source_ip,
        "source.port": lambda: info.source_port,
        "destination.port": lambda: proxy.endpoint.port if proxy.endpoint else info.local_port,
        "upstream.address": lambda: proxy.endpoint.key if proxy.endpoint else None,
        "xds.cluster_name": lambda: proxy.cluster_state.cluster.name if proxy.cluster_state else None,
    }

    def lookup(attribute: str, key: str | None) -> Any:
        reader = readers.get(attribute) if key is None else None
        return reader() if reader is not None else None

    return lookup
