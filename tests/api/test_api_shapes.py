"""The shapes table and the parsers agree: every field pymesh accepts is actually read.

A field listed as supported but never read would be accepted and silently ignored, which is
exactly what the "not supported by pymesh yet" errors exist to prevent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pymesh.api import shapes
from pymesh.api.load import load_paths
from pymesh.api.reader import Reader

# Accepted on purpose and ignored: Kubernetes bookkeeping that `kubectl get -o yaml` writes.
IGNORED = {
    "Resource": {"status"},
    "ObjectMeta": set(shapes.METADATA.fields) - {"name", "namespace", "labels", "annotations"},
    "Port": {"targetPort"},  # a Gateway port's: an Istio field, read only to be rejected as Istio does
    # Kubernetes ConfigMap fields with no meaning for the istio ConfigMap (its text is in data)
    "ConfigMap": {"binaryData", "immutable"},
    # provider kinds pymesh does not run (ext authz is AuthorizationPolicy CUSTOM's): kept by name,
    # and a Telemetry naming one gets a warning (pymesh.routing.telemetry)
    "MeshConfig.ExtensionProvider": set(shapes.MESH_EXTENSION_PROVIDER.fields) - {
        "name", "zipkin", "opentelemetry", "envoyFileAccessLog", "prometheus"},
    # resource detectors add resource attributes from the environment; pymesh's exporter sets its own
    "OpenTelemetryTracingProvider": {"resourceDetectors"},
}


def test_every_supported_field_is_read(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read: dict[str, set[str]] = {}
    original = Reader.slot

    def recording_slot(self: Reader, key: str, **kwargs):
        read.setdefault(self.shape.name, set()).add(key)
        return original(self, key, **kwargs)

    monkeypatch.setattr(Reader, "slot", recording_slot)
    kinds = ["serviceentry", "workloadentry", "virtualservice", "destinationrule", "sidecar", "localratelimit",
             "requestauthentication", "peerauthentication", "authorizationpolicy", "gateway", "workloadgroup",
             "proxyconfig", "gatewayapi", "telemetry", "meshconfig", "delegate", "pythonfilter"]
    result = load_paths([str(data / f"{kind}.yaml") for kind in kinds])
    assert result.errors == []

    table = [value for value in vars(shapes).values() if isinstance(value, shapes.Shape)]
    for shape in table:
        assert shape.name in read, f"no fixture reaches {shape.name}"
        unread = set(shape.fields) - read[shape.name] - IGNORED.get(shape.name, set())
        assert not unread, f"{shape.name} accepts but never reads {sorted(unread)}"
        assert not shape.fields & shape.unsupported, shape.name
