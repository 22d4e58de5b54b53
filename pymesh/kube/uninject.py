"""kube-uninject: the exact inverse of inject, driven by the `sidecar.pymesh.dev/status`
annotation (what was added, and which maps and lists were created for it) and the proxy's
PYMESH_KUBE_APP_PROBERS (the probes as they were). A pod without the annotation is returned
as it is: pymesh did not inject it, so nothing in it is pymesh's to remove.
"""

from __future__ import annotations

import copy
import json

from pymesh.kube import app_probes
from pymesh.kube.inject import PROXY_NAME, STATUS, is_injected
from pymesh.kube.inject_settings import InjectError
from pymesh.kube.workloads import map_pods


def uninject_pod(pod: dict) -> dict:
    """`pod` (metadata+spec) as it was before inject_pod, as a new dict."""
    out = copy.deepcopy(pod)
    if not is_injected(out):
        return out
    metadata, annotations = out["metadata"], out["metadata"]["annotations"]
    status = _status(annotations[STATUS])
    spec = out.get("spec") if isinstance(out.get("spec"), dict) else {}
    init_containers = _named(spec, "initContainers")
    proxy = next((c for c in init_containers if c.get("name") == PROXY_NAME), {})
    env = proxy.get("env") if isinstance(proxy.get("env"), list) else []
    probers = next((e.get("value", "") for e in env if isinstance(e, dict) and e.get("name") == app_probes.PROBERS_ENV), "")
    try:
        app_probes.restore(_named(spec, "containers"), str(probers))
    except ValueError as error:
        raise InjectError(f"spec.initContainers[{PROXY_NAME}].env", str(error)) from None
    for key in ("initContainers", "volumes"):
        if isinstance(spec.get(key), list):
            spec[key] = [item for item in spec[key] if _name(item) not in status[key]]
    labels = metadata.get("labels") if isinstance(metadata.get("labels"), dict) else {}
    for key in status["labels"]:
        labels.pop(key, None)
    for key in [*status["annotations"], STATUS]:
        annotations.pop(key, None)
    for created in reversed(status["created"]):  # maps and lists inject made: back to absent or null
        path, _, was = created.partition(":")
        parent, _, key = path.rpartition(".")
        holder = out if not parent else out.get(parent)
        if isinstance(holder, dict) and not holder.get(key):
            if was == "null":
                holder[key] = None
            else:
                holder.pop(key, None)
    return out


def _status(text: object) -> dict[str, list[str]]:
    """The status annotation's lists of names; InjectError when it is not what inject writes."""
    where = f"metadata.annotations[{STATUS}]"
    try:
        status = json.loads(str(text))
    except ValueError as error:
        raise InjectError(where, f"not the JSON kube-inject writes: {error}") from None
    if not isinstance(status, dict):
        raise InjectError(where, "not the JSON object kube-inject writes")
    out = {}
    for key in ("initContainers", "volumes", "labels", "annotations", "created"):
        value = status.get(key) or []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise InjectError(f"{where}.{key}", "expected a list of names")
        out[key] = value
    return out


def _named(spec: dict, key: str) -> list[dict]:
    items = spec.get(key)
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _name(item: object) -> object:
    return item.get("name") if isinstance(item, dict) else None


def uninject_object(obj: object) -> object:
    """A manifest object with every pod it holds uninjected; other objects as they are."""
    return map_pods(obj, lambda pod, owner: uninject_pod(pod))
