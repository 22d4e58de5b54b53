"""The mesh root as a ConfigMap in every namespace, the pure part: what the control server
writes so that injected pods can mount it (`--ca-root`), as istiod writes `istio-ca-root-cert`
(its NamespaceController). The proxy's ServiceAccount token pins no root: this ConfigMap is how
a pod learns which server to trust before it has a certificate."""

from __future__ import annotations

from pymesh.kube.resources import CONFIG_MAPS

NAME = "pymesh-ca-root-cert"
KEY = "root-cert.pem"
LABELS = {"pymesh.dev/config": "true"}  # Istio labels its own istio.io/config: "true"


def config_map(namespace: str, bundle_pem: str) -> dict:
    """The ConfigMap to create in `namespace`."""
    return {"apiVersion": CONFIG_MAPS.api_version, "kind": CONFIG_MAPS.kind,
            "metadata": {"name": NAME, "namespace": namespace, "labels": dict(LABELS)},
            "data": {KEY: bundle_pem}}


def patch(existing: dict, bundle_pem: str) -> dict | None:
    """The merge patch that makes `existing` hold the bundle (and our labels); None when it does."""
    data = existing.get("data") if isinstance(existing.get("data"), dict) else {}
    labels = (existing.get("metadata") or {}).get("labels") or {}
    out: dict = {}
    if data.get(KEY) != bundle_pem:
        out["data"] = {KEY: bundle_pem}
    if any(labels.get(k) != v for k, v in LABELS.items()):
        out["metadata"] = {"labels": dict(LABELS)}
    return out or None


def wanted(namespace: dict) -> str | None:
    """The namespace's name when it should hold the ConfigMap: every namespace that exists and
    is not being deleted (a create there is refused)."""
    metadata = namespace.get("metadata") or {}
    name = metadata.get("name")
    if not isinstance(name, str) or not name or metadata.get("deletionTimestamp"):
        return None
    if (namespace.get("status") or {}).get("phase") == "Terminating":
        return None
    return name
