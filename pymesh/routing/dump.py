"""A snapshot as plain JSON-able data, for the admin server's /config_dump and `analyze`.

Secrets are redacted unless asked for, by a rule on field names rather than a list of today's
fields, so a field added later is covered too: a field whose name ends in password, passphrase,
secret or token, or in private key, key pem or api key (any case and separator: privateKey,
key_pem, bearer-token); the values of a PythonFilter's pluginConfig; and the values of header mutations (`set` and `add` under a field named
*headers*), which VirtualServices use to attach credentials such as `Authorization: Bearer ...`.
Header names stay visible, so the dump still shows what is done.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from pymesh.routing.snapshot import Listener, Snapshot

REDACTED = "[redacted]"
_SECRET_LAST = frozenset({"password", "passwd", "passphrase", "secret", "token"})
_SECRET_PAIRS = frozenset({("private", "key"), ("key", "pem"), ("api", "key")})
_HEADER_MUTATIONS = frozenset({"set", "add"})
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def words(name: str) -> list[str]:
    """A field name's words, lower-case: "privateKey", "key_pem", "X-API-Key" alike."""
    return [w.lower() for w in _WORD.findall(name)]


def secret_field(name: str) -> bool:
    """Whether a field of this name holds a secret value."""
    found = words(name)
    return bool(found) and (found[-1] in _SECRET_LAST or tuple(found[-2:]) in _SECRET_PAIRS)


def plain(obj: Any, redact: bool = False, _headers: bool = False) -> Any:
    """Dataclasses, mappings and sequences -> dicts and lists, recursively; scalars as they are.
    With `redact`, secret values are replaced by REDACTED (see the module's rule)."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _field(f.name, getattr(obj, f.name), redact, _headers)
                for f in dataclasses.fields(obj) if f.compare}
    if isinstance(obj, Mapping):
        return {str(k): _field(str(k), v, redact, _headers) for k, v in obj.items()}
    if isinstance(obj, (tuple, list, set, frozenset)):
        return [plain(v, redact, _headers) for v in obj]
    return repr(obj)


def _field(name: str, value: Any, redact: bool, headers: bool) -> Any:
    if redact:
        if secret_field(name) and value not in (None, "", (), [], {}):
            return REDACTED
        if headers and name in _HEADER_MUTATIONS:
            return _header_values(value)
        headers = headers or any(w in ("header", "headers") for w in words(name))
    return plain(value, redact, headers)


def _header_values(value: Any) -> Any:
    """Header name -> value pairs (a mapping or a sequence of pairs) with the values redacted."""
    if isinstance(value, Mapping):
        return {str(k): REDACTED for k in value}
    if isinstance(value, (tuple, list)):
        return [[item[0], REDACTED] if isinstance(item, (tuple, list)) and len(item) == 2 else REDACTED
                for item in value]
    return REDACTED


def _route_table(table: Any, redact: bool) -> Any:
    virtual_hosts = getattr(table, "virtual_hosts", None)
    if virtual_hosts is None:  # some other RouteTable implementation
        return None if table is None else repr(table)
    return {
        "port": table.port,
        "virtual_hosts": [
            {
                "name": vh.name,
                "domains": list(vh.domains),
                "routes": [{"match": plain(r.matches, redact), **plain(r.route, redact)} for r in vh.routes],
            }
            for vh in virtual_hosts
        ],
    }


def _listener(listener: Listener, redact: bool) -> dict:
    out = {f.name: _field(f.name, getattr(listener, f.name), redact, False)
           for f in dataclasses.fields(listener) if f.name != "route_table"}
    out["route_table"] = _route_table(listener.route_table, redact)
    out["tls_servers"] = [{**plain(dataclasses.replace(chain, route_table=None), redact),
                           "route_table": _route_table(chain.route_table, redact)} for chain in listener.tls_servers]
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


def dump_snapshot(snapshot: Snapshot, include_secrets: bool = False) -> dict:
    """The snapshot as JSON-able data; secrets redacted unless `include_secrets`."""
    redact = not include_secrets
    named = {l.name: l for l in snapshot.listeners}
    for l in snapshot.captured_outbound.values():
        named.setdefault(l.name, l)
    return {
        "version": snapshot.version,
        "identity": plain(snapshot.identity, redact),
        "outbound_traffic_policy": snapshot.outbound_traffic_policy,
        "egress_proxy": snapshot.egress_proxy.route.clusters[0].cluster if snapshot.egress_proxy else None,
        "listeners": [_listener(l, redact) for l in named.values()],
        "captured_outbound": {str(port): l.name for port, l in sorted(snapshot.captured_outbound.items())},
        "peer_authentication": {
            "mode": snapshot.peer_authn.mode,
            "port_level": {str(port): mode for port, mode in sorted(snapshot.peer_authn.per_port.items())},
            "policies": list(snapshot.peer_authn.sources),
        },
        "clusters": [plain(snapshot.clusters[name], redact) for name in sorted(snapshot.clusters)],
        "request_authn": [_provider(p) for p in snapshot.request_authn],
        "warnings": list(snapshot.warnings),
        # the AuthorizationPolicies that apply to this workload, "namespace/name"
        "authorization_policies": list(snapshot.authz.names) if snapshot.authz is not None else [],
        "telemetry": _telemetry(snapshot.telemetry, redact),
        # the PythonFilters each direction's chains run, in order
        "python_filters": {direction: [_python_filter(spec, redact) for spec in specs]
                           for direction, specs in snapshot.python_filters.items()},
    }


def _python_filter(spec: Any, redact: bool) -> dict:
    """A FilterSpec; redacted, its pluginConfig shows its keys only: free-form configuration is
    where a filter's API keys and tokens go, under names no rule can foresee."""
    out = plain(spec)
    if redact:
        out["config"] = {str(key): REDACTED for key in spec.config}
    return out


def _telemetry(policy: Any, redact: bool) -> dict:
    """The Telemetry API's compiled policy; a trace provider's header values (an OTLP collector's
    credentials, often) redacted."""
    out = plain(policy, redact)
    provider = out["tracing"]["provider"]
    if redact and provider is not None:
        provider["headers"] = _header_values(provider["headers"])
    return out
