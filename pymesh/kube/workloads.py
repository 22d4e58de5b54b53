"""Workloads and their pods: where a Kubernetes object keeps its pod template (the one table
kube-inject and kube-uninject walk, so they agree on which kinds carry pods: Istio's kube-inject
list, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob, Pod; a
List's items in turn), and which workload a pod belongs to (one rule for the injected proxy's
PYMESH_WORKLOAD and discovery's WorkloadEntry, so their metrics name the same workload).
"""

from __future__ import annotations

from typing import Callable, Mapping

from pymesh.kube.inject_settings import InjectError

TEMPLATE_PATHS: dict[tuple[str, str], tuple[str, ...]] = {  # (apiVersion group, kind) -> path to the pod
    ("apps", "Deployment"): ("spec", "template"),
    ("apps", "StatefulSet"): ("spec", "template"),
    ("apps", "DaemonSet"): ("spec", "template"),
    ("apps", "ReplicaSet"): ("spec", "template"),
    ("", "ReplicationController"): ("spec", "template"),
    ("batch", "Job"): ("spec", "template"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template"),
    ("", "Pod"): (),
}
MAX_LIST_DEPTH = 4  # a List of Lists nests; deeper is refused rather than recursed into


def group_of(obj: dict) -> str:
    api_version = obj.get("apiVersion")
    return api_version.rpartition("/")[0] if isinstance(api_version, str) else ""


def workload_name(pod: object) -> str:
    """Istio's GetDeployMetaFromPod: a ReplicaSet's pod belongs to its Deployment (the owner's
    name less the pod-template-hash), another controller's (a Job's, a StatefulSet's) to that
    controller; else the pod's own name (or generateName). "" for none; any input is read safely
    (a pod from the API server or a webhook request may be type-confused)."""
    metadata = pod.get("metadata") if isinstance(pod, Mapping) else None
    metadata = metadata if isinstance(metadata, Mapping) else {}
    labels = metadata.get("labels") if isinstance(metadata.get("labels"), Mapping) else {}
    template_hash = labels.get("pod-template-hash")
    owners = metadata.get("ownerReferences")
    for owner in owners if isinstance(owners, list) else ():
        if isinstance(owner, Mapping) and owner.get("controller") and isinstance(owner.get("name"), str) and owner["name"]:
            name = owner["name"]
            if owner.get("kind") == "ReplicaSet" and isinstance(template_hash, str) and template_hash \
                    and name.endswith(f"-{template_hash}"):
                return name[: -len(template_hash) - 1]
            return name
    for key in ("name", "generateName"):
        if isinstance(metadata.get(key), str) and metadata[key].rstrip("-"):
            return metadata[key].rstrip("-") if key == "generateName" else metadata[key]
    return ""


def map_pods(obj: object, change: Callable[[dict, dict], dict], depth: int = 0) -> object:
    """`obj` with `change(pod, owner)` applied to each pod (metadata+spec) it holds, as a new
    object; kinds without pods are returned as they are. `owner` is the object holding the pod."""
    if not isinstance(obj, dict):
        return obj
    kind = obj.get("kind")
    if isinstance(kind, str) and (kind == "List" or kind.endswith("List")) and isinstance(obj.get("items"), list):
        if depth >= MAX_LIST_DEPTH:
            raise InjectError("items", f"Lists nested deeper than {MAX_LIST_DEPTH}")
        return {**obj, "items": [map_pods(item, change, depth + 1) for item in obj["items"]]}
    path = TEMPLATE_PATHS.get((group_of(obj), kind))
    if path is None:
        return obj
    return _replace(obj, path, lambda pod: change(pod, obj), ".".join(path))


def _replace(node: dict, path: tuple[str, ...], change: Callable[[dict], dict], where: str) -> dict:
    if not path:
        if not isinstance(node.get("spec"), dict) or not isinstance(node["spec"].get("containers"), list):
            raise InjectError(f"{where + '.' if where else ''}spec.containers", "a pod needs a list of containers")
        return change(node)
    child = node.get(path[0])
    if not isinstance(child, dict):
        raise InjectError(where, f"missing {path[0]} (the pod template)")
    return {**node, path[0]: _replace(child, path[1:], change, where)}
