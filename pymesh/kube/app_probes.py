"""App probe rewriting, as Istio's pkg/kube/inject/app_probe.go: with mTLS (and capture) on, the
kubelet cannot reach an app's probe port, so each httpGet, tcpSocket or grpc probe of an app
container is pointed at the sidecar's health port `/app-health/<container>/livez|readyz|startupz`
and the original handler travels to the proxy in PYMESH_KUBE_APP_PROBERS (the JSON shape of
Istio's ISTIO_KUBE_APP_PROBERS); the proxy runs it against the app. `restore` is the inverse,
for kube-uninject. exec probes run inside the app container and are left alone.
"""

from __future__ import annotations

import json
from typing import Any

PROBERS_ENV = "PYMESH_KUBE_APP_PROBERS"
HEALTH_PORT = 15021
PATH_PREFIX = "/app-health/"
KINDS = {"livenessProbe": "livez", "readinessProbe": "readyz", "startupProbe": "startupz"}
HANDLERS = ("httpGet", "tcpSocket", "grpc")


def probe_path(container: str, probe_kind: str) -> str:
    return f"{PATH_PREFIX}{container}/{KINDS[probe_kind]}"


def rewrite(containers: list[dict]) -> dict[str, dict]:
    """Rewrite the probes of `containers` (dicts, changed in place) to the health port; returns
    the probers by path. A named port that no containerPort declares is left as the kubelet
    would see it (not rewritten: the proxy could not resolve it either)."""
    probers: dict[str, dict] = {}
    for container in containers:
        for kind in KINDS:
            probe = container.get(kind)
            if not isinstance(probe, dict):
                continue
            handler_key = next((key for key in HANDLERS if key in probe), None)
            if handler_key is None:
                continue
            original = probe[handler_key]
            resolved = _resolve_port(original, container)
            if resolved is None:
                continue
            path = probe_path(container["name"], kind)
            prober: dict[str, Any] = {handler_key: resolved}
            if "timeoutSeconds" in probe:
                prober["timeoutSeconds"] = probe["timeoutSeconds"]
            if resolved != original:
                prober["original"] = original  # pymesh's: the named port, for kube-uninject
            probers[path] = prober
            container[kind] = _replace_key(probe, handler_key, "httpGet",
                                           {"path": path, "port": HEALTH_PORT, "scheme": "HTTP"})
    return probers


def restore(containers: list[dict], probers_json: str) -> None:
    """Put the original handlers back in the probes `rewrite` changed (in place)."""
    probers = decode(probers_json)
    for container in containers:
        for kind in KINDS:
            prober = probers.get(probe_path(container.get("name", ""), kind))
            probe = container.get(kind)
            if prober is None or not isinstance(probe, dict) or "httpGet" not in probe:
                continue
            handler_key = next(key for key in HANDLERS if key in prober)
            container[kind] = _replace_key(probe, "httpGet", handler_key, prober.get("original", prober[handler_key]))


def encode(probers: dict[str, dict]) -> str:
    return json.dumps(probers, sort_keys=True, separators=(",", ":"))


def decode(text: str) -> dict[str, dict]:
    """The probers env var; ValueError when it is not the shape `rewrite` writes."""
    try:
        probers = json.loads(text) if text else {}
    except ValueError as error:
        raise ValueError(f"{PROBERS_ENV} is not JSON: {error}") from None
    if not isinstance(probers, dict):
        raise ValueError(f"{PROBERS_ENV}: expected an object of probers by path")
    for path, prober in probers.items():
        if not path.startswith(PATH_PREFIX) or not isinstance(prober, dict) \
                or sum(key in prober for key in HANDLERS) != 1:
            raise ValueError(f"{PROBERS_ENV}: {path!r} needs exactly one of {', '.join(HANDLERS)}")
    return probers


def _resolve_port(handler: Any, container: dict) -> dict | None:
    """The handler with a named port replaced by its containerPort number, or None."""
    if not isinstance(handler, dict):
        return None
    port = handler.get("port")
    if isinstance(port, int) and not isinstance(port, bool):
        return handler
    for declared in container.get("ports") or ():
        if isinstance(declared, dict) and declared.get("name") == port and isinstance(declared.get("containerPort"), int):
            return {**handler, "port": declared["containerPort"]}
    return None


def _replace_key(mapping: dict, old: str, new: str, value: Any) -> dict:
    """`mapping` with `old` replaced by `new: value` at the same position (keeps key order, so a
    restored manifest prints as the original did)."""
    return {new if key == old else key: value if key == old else item for key, item in mapping.items()}
