"""Sidecar injection, the pure part: what is added to a pod (the `pymesh-init` capture step and
the proxy as a native sidecar). Which pods is pymesh.kube.selection's `injection_required`, what
their annotations change pymesh.kube.pod_options'. `pymesh kube-inject` and the `/inject`
webhook both call `injection_required` and `inject_pod`; `inject_object` walks whole manifests.

The proxy is an init container with `restartPolicy: Always` (a Kubernetes native sidecar): the
kubelet starts it after pymesh-init and before the app, holds the app until its startupProbe
passes, and stops it once a Job's containers are done (istio/istio#11130, #6324).

What is added is recorded in the `sidecar.pymesh.dev/status` annotation, which makes a second
injection a no-op and lets kube-uninject remove exactly it. Nothing is half-done: every check
runs on a copy, and a bad annotation raises InjectError before anything is returned.
"""

from __future__ import annotations

import copy
import json
from typing import Mapping

from pymesh.kube import app_probes
from pymesh.kube.inject_settings import InjectError, InjectSettings
from pymesh.kube.pod_options import pod_options
from pymesh.kube.selection import injection_required
from pymesh.kube.workloads import map_pods, workload_name

STATUS = "sidecar.pymesh.dev/status"
INIT_NAME = "pymesh-init"
PROXY_NAME = "pymesh-proxy"
DATA_VOLUME, PODINFO_VOLUME, TOKEN_VOLUME, CA_VOLUME = "pymesh-data", "pymesh-podinfo", "pymesh-token", "pymesh-ca-root"
TOKEN_DIR, TOKEN_FILE, TOKEN_AUDIENCE = "/var/run/secrets/tokens", "pymesh-token", "pymesh-ca"
CA_DIR, PODINFO_DIR, DATA_DIR = "/var/run/secrets/pymesh/ca", "/etc/pymesh/pod", "/var/lib/pymesh"
PROXY_UID = 1337
HEALTH_PORT, STATS_PORT = app_probes.HEALTH_PORT, 15090
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"


# --- one pod ------------------------------------------------------------------------------------


def is_injected(pod: Mapping) -> bool:
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    return isinstance(annotations, Mapping) and STATUS in annotations


def inject_pod(pod: dict, namespace: dict | None, settings: InjectSettings, *, workload: str | None = None) -> dict:
    """`pod` (metadata+spec) with the sidecar added, as a new dict; an injected pod (its status
    annotation) or a host-network one comes back unchanged. `workload` names the workload for
    metrics and config selection (default: derived from the pod, as Istio's deploy meta).
    `namespace` (the Namespace object, when the caller has it) is part of the webhook's stable
    signature; nothing in the added containers depends on it yet.
    Raises InjectError, naming the annotation or field, when the pod cannot be injected."""
    spec = pod.get("spec")
    if is_injected(pod) or (isinstance(spec, dict) and spec.get("hostNetwork")):
        return copy.deepcopy(pod)
    out = copy.deepcopy(pod)
    created: list[str] = []
    metadata = _slot(out, "metadata", dict, "", created)
    spec = out.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("containers"), list) or not spec["containers"]:
        raise InjectError("spec.containers", "a pod needs at least one container")
    _check_containers(spec)
    annotations = _slot(metadata, "annotations", dict, "metadata.", created)
    labels = _slot(metadata, "labels", dict, "metadata.", created)
    init_containers = _slot(spec, "initContainers", list, "spec.", created)
    volumes = _slot(spec, "volumes", list, "spec.", created)
    options = pod_options(annotations, settings)
    workload = workload or workload_name(pod) or "unknown"

    probers = {}
    if options["rewrite_probes"]:
        probers = app_probes.rewrite(spec["containers"])
    added = [_proxy_container(options, settings, workload, probers)]
    if options["capture_mode"] != "NONE":
        added.insert(0, _init_container(options, settings))
    init_containers[:0] = added
    volumes.extend(_volumes(settings))

    added_labels = _add_missing(labels, _mesh_labels(labels, workload))
    added_annotations = _add_missing(annotations, {DEFAULT_CONTAINER: spec["containers"][0].get("name", "")})
    annotations[STATUS] = json.dumps({
        "initContainers": [container["name"] for container in added],
        "volumes": [DATA_VOLUME, PODINFO_VOLUME, TOKEN_VOLUME, CA_VOLUME],
        "labels": added_labels,
        "annotations": added_annotations,
        "created": created,
        "revision": settings.revision_name,
    }, separators=(",", ":"))
    return out


def _slot(holder: dict, key: str, kind: type, where: str, created: list[str]):
    """holder[key], made (and noted in `created`, for uninject) when absent or null; a value of
    another type is refused rather than overwritten."""
    value = holder.get(key)
    if value is None:
        created.append(f"{where}{key}" + (":null" if key in holder else ""))
        value = holder[key] = kind()
    elif not isinstance(value, kind):
        raise InjectError(f"{where}{key}", f"expected {'a mapping' if kind is dict else 'a list'}, got {type(value).__name__}")
    return value


def _check_containers(spec: dict) -> None:
    """Every container a mapping with a name, none named like ours (without our status): refuse,
    rather than add a second one the API server rejects, or take the pod's for ours."""
    for key in ("containers", "initContainers"):
        items = spec.get(key) or []
        if not isinstance(items, list):
            raise InjectError(f"spec.{key}", f"expected a list, got {type(items).__name__}")
        for index, container in enumerate(items):
            if not isinstance(container, dict) or not isinstance(container.get("name"), str):
                raise InjectError(f"spec.{key}[{index}]", "expected a container with a name")
            if container["name"] in (INIT_NAME, PROXY_NAME):
                raise InjectError(f"spec.{key}", f"a container is already named {container['name']!r} but the pod "
                                  f"has no {STATUS} annotation: not injecting over it")
    for volume in spec.get("volumes") if isinstance(spec.get("volumes"), list) else ():
        if isinstance(volume, dict) and volume.get("name") in (DATA_VOLUME, PODINFO_VOLUME, TOKEN_VOLUME, CA_VOLUME):
            raise InjectError("spec.volumes", f"a volume is already named {volume['name']!r}")


def _add_missing(mapping: dict, values: dict[str, str]) -> list[str]:
    added = [key for key in values if key not in mapping]
    for key in added:
        mapping[key] = values[key]
    return added


def _mesh_labels(labels: Mapping, workload: str) -> dict[str, str]:
    """Istio's: mTLS-capable endpoint, and the canonical service name and revision."""
    return {
        "security.istio.io/tlsMode": "istio",
        "service.istio.io/canonical-name": labels.get("app.kubernetes.io/name") or labels.get("app") or workload,
        "service.istio.io/canonical-revision": labels.get("app.kubernetes.io/version") or labels.get("version") or "latest",
    }


# --- what is added ------------------------------------------------------------------------------


def _init_container(options: dict, settings: InjectSettings) -> dict:
    args = ["iptables", "-p", str(settings.outbound_capture_port), "-z", str(settings.inbound_capture_port),
            "-u", str(PROXY_UID), "-g", str(PROXY_UID), "-m", "REDIRECT"]
    for flag, value in options["capture"].items():
        if value or flag in ("-i", "-b"):  # an empty include means "none": it must be said
            args += [flag, value]
    return {
        "name": INIT_NAME,
        "image": settings.init_container_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["pymesh"],
        "args": args,
        "resources": settings.init_resources.as_kubernetes(),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "privileged": False,
            "readOnlyRootFilesystem": False,
            "runAsGroup": 0,
            "runAsNonRoot": False,
            "runAsUser": 0,
        },
    }


def _field_env(name: str, path: str) -> dict:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _proxy_container(options: dict, settings: InjectSettings, workload: str, probers: dict) -> dict:
    args = ["proxy", "--control", options["control"]]
    if options["capture_mode"] != "NONE":
        args += ["--capture", "--outbound-capture-port", str(settings.outbound_capture_port),
                 "--inbound-capture-port", str(settings.inbound_capture_port)]
    args += ["--health-address", "0.0.0.0", "--stats-address", "0.0.0.0",
            "--labels-file", f"{PODINFO_DIR}/labels", "--token-file", f"{TOKEN_DIR}/{TOKEN_FILE}",
            "--ca-root", f"{CA_DIR}/root-cert.pem", "--data-dir", DATA_DIR, "--log-level", options["log_level"]]
    if options["concurrency"] is not None:
        args += ["--concurrency", str(options["concurrency"])]
    if options["drain"] is not None:
        args += ["--drain-timeout", f"{options['drain']:g}"]
    env = [
        {"name": "PYMESH_WORKLOAD", "value": workload},
        _field_env("PYMESH_POD_NAME", "metadata.name"),
        _field_env("PYMESH_NAMESPACE", "metadata.namespace"),
        _field_env("PYMESH_SERVICE_ACCOUNT", "spec.serviceAccountName"),
        _field_env("PYMESH_ADDRESSES", "status.podIP"),
        {"name": "PYMESH_NODE_ID", "value": "$(PYMESH_POD_NAME).$(PYMESH_NAMESPACE)"},
        # the root filesystem is read-only: temporary files (the TLS key pair on its way into
        # ssl) go to the in-memory data volume, as the control server's Deployment mounts /tmp
        {"name": "TMPDIR", "value": DATA_DIR},
    ]
    if probers:
        env.append({"name": app_probes.PROBERS_ENV, "value": app_probes.encode(probers)})
    metadata = options["metadata"]  # proxyMetadata: the pod's own values win over ours (no duplicate names)
    env = [item for item in env if item["name"] not in metadata] + [{"name": k, "value": v} for k, v in metadata.items()]
    ready = {"httpGet": {"path": "/healthz/ready", "port": HEALTH_PORT}, "timeoutSeconds": 3}
    return {
        "name": PROXY_NAME,
        "image": options["image"],
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["pymesh"],
        "args": args,
        "restartPolicy": "Always",  # the native sidecar
        "env": env,
        "ports": [{"containerPort": STATS_PORT, "name": "http-envoy-prom", "protocol": "TCP"}],
        "startupProbe": {**copy.deepcopy(ready), "periodSeconds": 1, "failureThreshold": 600},
        "readinessProbe": {**copy.deepcopy(ready), "periodSeconds": 15, "failureThreshold": 4, **options["readiness"]},
        "resources": copy.deepcopy(options["resources"]),  # no object shared between containers
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsGroup": PROXY_UID,
            "runAsNonRoot": True,
            "runAsUser": PROXY_UID,
        },
        "volumeMounts": [
            {"name": DATA_VOLUME, "mountPath": DATA_DIR},
            {"name": PODINFO_VOLUME, "mountPath": PODINFO_DIR, "readOnly": True},
            {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
            {"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True},
        ],
    }


def _volumes(settings: InjectSettings) -> list[dict]:
    return [
        {"name": DATA_VOLUME, "emptyDir": {"medium": "Memory"}},
        {"name": PODINFO_VOLUME, "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        ]}},
        {"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": {
            "audience": TOKEN_AUDIENCE, "expirationSeconds": 43200, "path": TOKEN_FILE}}]}},
        {"name": CA_VOLUME, "configMap": {"name": settings.ca_root_config_map}},
    ]


# --- manifests ----------------------------------------------------------------------------------


def inject_object(obj: object, settings: InjectSettings, namespace: dict | None = None) -> object:
    """A manifest object with every pod it holds injected where `injection_required` says so;
    objects without pods (Services, ConfigMaps, unknown kinds) come back as they are."""

    def change(pod: dict, owner: dict) -> dict:
        owner_meta = owner.get("metadata") or {}
        if not injection_required(pod, namespace, settings, namespace_name=owner_meta.get("namespace")):
            return pod
        workload = owner_meta.get("name") if owner is not pod else None
        return inject_pod(pod, namespace, settings, workload=workload)

    return map_pods(obj, change)
