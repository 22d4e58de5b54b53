"""Peer metadata exchange: how the server-side sidecar learns who called it, for the source_*
labels of its metrics (Istio's x-envoy-peer-metadata, in a compact text form).

The client's sidecar replaces any `x-pymesh-peer` header the app sent with its own identity; the
server's sidecar reads it and removes it before the request reaches the app. Without mTLS this is
a claim, not a proof, exactly as in Istio's plaintext mode: it labels metrics, it grants nothing.
Over mTLS the caller's principal and namespace come from its verified certificate instead; the
header then only says which workload (and app/version) of that identity called.
"""

from __future__ import annotations

from pymesh.routing.snapshot import ProxyIdentity
from pymesh.security.identity import SpiffeId
from pymesh.telemetry.metrics import Peer

HEADER = b"x-pymesh-peer"
MAX_LENGTH = 512


def encode_peer(identity: ProxyIdentity) -> bytes:
    """"workload;namespace;app;version" with the separators removed from the values."""
    labels = identity.labels
    fields = (identity.workload, identity.namespace, labels.get("app", ""), labels.get("version", ""))
    return ";".join(field.replace(";", "") for field in fields).encode("latin-1", "replace")


def decode_peer(value: bytes | None, verified: str | None = None) -> Peer:
    """The caller as metric labels; unknown when absent or malformed.

    `verified` is the SPIFFE URI of an mTLS client certificate: then the principal and the
    namespace come from it and never from the header, which still names the workload and its
    app/version labels (claims the certificate does not carry, good for metrics only)."""
    workload, namespace, labels = "", "", {}
    parts = value.decode("latin-1").split(";") if value and len(value) <= MAX_LENGTH else ()
    if len(parts) == 4:
        workload, namespace, app, version = parts
        labels = {key: val for key, val in (("app", app), ("version", version)) if val}
    if verified is None:
        return Peer.of(workload, namespace, labels) if parts else Peer()
    try:
        namespace = SpiffeId.parse(verified).namespace
    except ValueError:
        namespace = ""
    return Peer.of(workload, namespace, labels, principal=verified)
