"""kube-uninject: the exact inverse of inject, driven by the `sidecar.pymesh.dev/status`
annotation (what was added, and which maps and lists were created for it) and the proxy's
PYMESH_KUBE_APP_PROBERS (the probes as they were). A pod without the annotation is returned
as it is: pymesh did not inject it, so nothing in it is pymesh's to remove.
"""

from __future__ import annotations

import copy
import json

from pymesh.kube import app_probes
from pymesh.kube.inject import PROXY_NAME, STATUS
from pymesh.kube.inject_settings import InjectError
from pymesh.kube.workloads import map_pods


def uninject_pod(pod: dict) -> dict:
    """`pod` (metadata+spec) as it was before inject_pod, as a new dict."""
    out = copy.deepcopy(pod)
    metadata = out.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    if STATUS not in annotations:
        return out
    try:
        status = json.loads(annotations[STATUS])
        if not isinstance(status, dict):
            raise ValueError("not an object")
    except ValueError as error:
        raise InjectError(f"metadata.annotations[{STATUS}]", f"not the JSON kube-inject writes: {error}") from None
    spec = out.get("spec") or {}
    init_names = set(status.get("initContainers") or ())
    proxy = next((c for c in spec.get("initContainers") or () if isinstance(c, dict) and c.get("name") == PROXY_NAME), None)
    probers = next((e.get("value", "") for e in (proxy or {}).get("env") or () if e.get("name") == app_probes.PROBERS_ENV), "")
    try:
        app_probes.restore(spec.get("containers") or [], probers)
    except ValueError as error:
        raise InjectError(f"spec.initContainers[{PROXY_NAME}].env", str(error)) from None
    spec["initContainers"] = [c for c in spec.get("initContainers") or () if c.get("name") not in init_names]
    volume_names = set(status.get("volumes") or ())
    spec["volumes"] = [v for v in spec.get("volumes") or () if v.get("name") not in volume_names]
    for key in status.get("labels") or ():
        metadata.get("labels", {}).pop(key, None)
    for key in [*(status.get("annotations") or ()), STATUS]:
        annotations.pop(key, None)
    for created in reversed(status.get("created") or ()):  # maps and lists that inject made: remove if empty
        parent, _, key = created.rpartition(".")
        holder = out if not parent else out.get(parent)
        if isinstance(holder, dict) and not holder.get(key):
            holder.pop(key, None)
    return out


def uninject_object(obj: object) -> object:
    """A manifest object with every pod it holds uninjected; other objects as they are."""
    return map_pods(obj, lambda pod, owner: uninject_pod(pod))
