"""Peer metadata exchange: how the server-side sidecar learns who called it, for the source_*
labels of its metrics (Istio's x-envoy-peer-metadata, in a compact text form).

The client's sidecar replaces any `x-pymesh-peer` header the app sent with its own identity; the
server's sidecar reads it and removes it before the request reaches the app. Without mTLS this is
a claim, not a proof, exactly as in Istio's plaintext mode: it labels metrics, it grants nothing.
"""

from __future__ import annotations

from pymesh.routing.snapshot import ProxyIdentity
from pymesh.telemetry.metrics import Peer

HEADER = b"x-pymesh-peer"
MAX_LENGTH = 512


def encode_peer(identity: ProxyIdentity) -> bytes:
    """"workload;namespace;app;version" with the separators removed from the values."""
    labels = identity.labels
    fields = (identity.workload, identity.namespace, labels.get("app", ""), labels.get("version", ""))
    return ";".join(field.replace(";", "") for field in fields).encode("latin-1", "replace")


def decode_peer(value: bytes | None) -> Peer:
    """The caller as metric labels; unknown when absent or malformed."""
    if not value or len(value) > MAX_LENGTH:
        return Peer()
    parts = value.decode("latin-1").split(";")
    if len(parts) != 4:
        return Peer()
    workload, namespace, app, version = parts
    labels = {key: val for key, val in (("app", app), ("version", version)) if val}
    return Peer.of(workload, namespace, labels)
