"""A proxy's configuration view (its MeshConfig and identity) as JSON, for the admin port's
/mesh_config and `pymesh explain --admin`: explain compiles the very snapshot the proxy runs.

Encoded with pymesh.api.codec, so decoding is strict and the dataclasses round-trip. Secret
string values are redacted by /config_dump's rule (pymesh.routing.dump): fields named like
secrets, header mutation values, and inline JWK Sets (which may hold HMAC keys; /config_dump shows
their kids only); a redacted string still decodes, so the view compiles.
"""

from __future__ import annotations

from typing import Any

from pymesh.api import codec, model
from pymesh.routing.dump import REDACTED, secret_field, words
from pymesh.routing.snapshot import ProxyIdentity, Snapshot

_HEADER_MUTATIONS = frozenset({"set", "add"})
_KEY_MATERIAL = frozenset({"jwks"})


def encode_view(snapshot: Snapshot) -> dict:
    return {"version": snapshot.version, "identity": codec.encode(snapshot.identity),
            "config": redact(codec.encode(snapshot.config))}


def decode_view(data: Any) -> tuple[str, ProxyIdentity, model.MeshConfig]:
    """(version, identity, config); ValueError naming the field on anything malformed."""
    if not isinstance(data, dict):
        raise ValueError("mesh config view: expected a JSON object")
    return (str(data.get("version", "")), codec.decode(ProxyIdentity, data.get("identity", {}), "identity"),
            codec.decode(model.MeshConfig, data.get("config", {}), "config"))


def redact(value: Any, headers: bool = False) -> Any:
    """Encoded data with secret strings replaced by REDACTED; other types kept (so it decodes)."""
    if isinstance(value, list):
        return [redact(v, headers) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if isinstance(item, str) and item and (secret_field(key) or key in _KEY_MATERIAL or (headers and key in _HEADER_MUTATIONS)):
            out[key] = REDACTED
        elif headers and key in _HEADER_MUTATIONS and isinstance(item, dict):
            out[key] = {k: REDACTED if isinstance(v, str) else v for k, v in item.items()}
        else:
            out[key] = redact(item, headers or any(w in ("header", "headers") for w in words(key)))
    return out
