"""A snapshot as plain JSON-able data, for the admin server's /config_dump and `analyze`."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from pymesh.routing.snapshot import Listener, Snapshot


def plain(obj: Any) -> Any:
    """Dataclasses, mappings and sequences -> dicts and lists, recursively; scalars as they are."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.compare}
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list, set, frozenset)):
        return [plain(v) for v in obj]
    return repr(obj)


def _route_table(table: Any) -> Any:
    virtual_hosts = getattr(table, "virtual_hosts", None)
    if virtual_hosts is None:  # some other RouteTable implementation
        return None if table is None else repr(table)
    return {
        "port": table.port,
        "virtual_hosts": [
            {
                "name": vh.name,
                "domains": list(vh.domains),
                "routes": [{"match": plain(r.matches), **plain(r.route)} for r in vh.routes],
            }
            for vh in virtual_hosts
        ],
    }


def _listener(listener: Listener) -> dict:
    out = {f.name: plain(getattr(listener, f.name)) for f in dataclasses.fields(listener) if f.name != "route_table"}
    out["route_table"] = _route_table(listener.route_table)
    return out


def _provider(provider: Any) -> dict:
    """A JWT rule without its key material (an inline set may hold HMAC secrets): the kids only."""
    out = {"issuer": provider.issuer, "audiences": list(provider.audiences), "jwks_uri": provider.jwks_uri,
           "locations": plain(provider.locations), "forward_original_token": provider.forward,
           "output_payload_to_header": provider.payload_header.decode(),
           "output_claim_to_headers": {h.decode(): ".".join(path) for h, path in provider.claim_headers}}
    if provider.jwks is not None:
        out["inline_jwks_kids"] = sorted(provider.jwks.kids())
    return out


def dump_snapshot(snapshot: Snapshot) -> dict:
    named = {l.name: l for l in snapshot.listeners}
    for l in snapshot.captured_outbound.values():
        named.setdefault(l.name, l)
    return {
        "version": snapshot.version,
        "identity": plain(snapshot.identity),
        "outbound_traffic_policy": snapshot.outbound_traffic_policy,
        "listeners": [_listener(l) for l in named.values()],
        "captured_outbound": {str(port): l.name for port, l in sorted(snapshot.captured_outbound.items())},
        "peer_authentication": {
            "mode": snapshot.peer_authn.mode,
            "port_level": {str(port): mode for port, mode in sorted(snapshot.peer_authn.per_port.items())},
            "policies": list(snapshot.peer_authn.sources),
        },
        "clusters": [plain(snapshot.clusters[name]) for name in sorted(snapshot.clusters)],
        "request_authn": [_provider(p) for p in snapshot.request_authn],
        "warnings": list(snapshot.warnings),
    }
