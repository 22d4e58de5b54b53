"""Sidecar injection, the pure part: which pods get a sidecar (Istio's injectRequired and the
default webhook's selectors) and what is added to one (the `pymesh-init` capture step and the
proxy as a native sidecar). `pymesh kube-inject` and the `/inject` webhook both call
`injection_required` and `inject_pod`; `inject_object` walks whole manifests.

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
import re
from typing import Any, Mapping

import yaml

from pymesh.api.duration import parse_duration
from pymesh.capture import settings as capture
from pymesh.capture.settings import CaptureConfigError, CaptureSettings
from pymesh.kube import app_probes
from pymesh.kube.inject_settings import InjectError, InjectSettings
from pymesh.kube.workloads import map_pods

STATUS = "sidecar.pymesh.dev/status"
INIT_NAME = "pymesh-init"
PROXY_NAME = "pymesh-proxy"
DATA_VOLUME, PODINFO_VOLUME, TOKEN_VOLUME, CA_VOLUME = "pymesh-data", "pymesh-podinfo", "pymesh-token", "pymesh-ca-root"
TOKEN_DIR, TOKEN_FILE, TOKEN_AUDIENCE = "/var/run/secrets/tokens", "pymesh-token", "pymesh-ca"
CA_DIR, PODINFO_DIR, DATA_DIR = "/var/run/secrets/pymesh/ca", "/etc/pymesh/pod", "/var/lib/pymesh"
PROXY_UID = 1337
HEALTH_PORT, STATS_PORT = app_probes.HEALTH_PORT, 15090

# Opt in/out, on the pod (label over annotation, as Istio) and the namespace; pymesh's name wins over Istio's.
INJECT_KEYS = ("sidecar.pymesh.dev/inject", "sidecar.istio.io/inject")
NAMESPACE_KEYS = ("pymesh-injection", "istio-injection")
REVISION_KEYS = ("pymesh.dev/rev", "istio.io/rev")
TRUE = ("y", "yes", "true", "on")  # Istio's reading of the inject annotation (YAML 1.1 booleans)

# Pod annotations -> capture flag of `pymesh iptables`, with the setting they override.
CAPTURE_ANNOTATIONS = (
    ("traffic.sidecar.istio.io/includeOutboundIPRanges", "-i", "include_outbound_ip_ranges", capture.parse_networks_or_all),
    ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "-x", "exclude_outbound_ip_ranges", capture.parse_networks),
    ("traffic.sidecar.istio.io/includeInboundPorts", "-b", "include_inbound_ports", capture.parse_ports_or_all),
    ("traffic.sidecar.istio.io/excludeInboundPorts", "-d", "exclude_inbound_ports", capture.parse_ports),
    ("traffic.sidecar.istio.io/includeOutboundPorts", "-q", "include_outbound_ports", capture.parse_ports),
    ("traffic.sidecar.istio.io/excludeOutboundPorts", "-o", "exclude_outbound_ports", capture.parse_ports),
)
_CAPTURE_FIELDS = {"-i": "outbound_ip_ranges_include", "-x": "outbound_ip_ranges_exclude", "-b": "inbound_ports_include",
                   "-d": "inbound_ports_exclude", "-q": "outbound_ports_include", "-o": "outbound_ports_exclude"}
RESOURCE_ANNOTATIONS = (  # annotation -> (section, resource, Resources field)
    ("sidecar.istio.io/proxyCPU", "requests", "cpu", "cpu"),
    ("sidecar.istio.io/proxyMemory", "requests", "memory", "memory"),
    ("sidecar.istio.io/proxyCPULimit", "limits", "cpu", "cpu_limit"),
    ("sidecar.istio.io/proxyMemoryLimit", "limits", "memory", "memory_limit"),
)
REWRITE_PROBES = "sidecar.istio.io/rewriteAppHTTPProbers"
PROXY_CONFIG = "proxy.istio.io/config"
PROXY_IMAGE = "sidecar.istio.io/proxyImage"
LOG_LEVEL = "sidecar.istio.io/logLevel"
INTERCEPTION_MODE = "sidecar.istio.io/interceptionMode"
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
READINESS_ANNOTATIONS = tuple((f"readiness.status.sidecar.istio.io/{key}", key)
                              for key in ("initialDelaySeconds", "periodSeconds", "failureThreshold"))
QUANTITY = re.compile(r"^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[kMGTPE]i?|m)?$")

# ProxyConfig (proxy.istio.io/config) fields: applied here, or accepted with nothing to do in pymesh.
PROXY_CONFIG_APPLIED = ("concurrency", "discoveryAddress", "terminationDrainDuration", "proxyMetadata", "interceptionMode")
PROXY_CONFIG_NOT_APPLICABLE = (
    "holdApplicationUntilProxyStarts",  # always so: the proxy is a native sidecar
    "drainDuration", "parentShutdownDuration", "configPath", "binaryPath", "serviceCluster", "proxyAdminPort",
    "statNameLength", "proxyBootstrapTemplatePath", "statusPort", "extraStatTags", "gatewayTopology", "meshId",
    "proxyStatsMatcher", "tracing", "image", "runtimeValues", "readinessProbe", "caCertificatesPem",
    "controlPlaneAuthPolicy", "customConfigFile", "envoyAccessLogService", "envoyMetricsService", "sds",
    "statsdUdpAddress", "zipkinAddress", "privateKeyProvider", "proxyHeaders", "fileFlushInterval", "fileFlushMinSize",
)


# --- which pods ---------------------------------------------------------------------------------


def _first(mapping: Mapping | None, keys: tuple[str, ...]) -> str | None:
    mapping = mapping if isinstance(mapping, Mapping) else {}
    return next((str(mapping[key]) for key in keys if key in mapping), None)


def _matches(labels: Mapping, selector: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def webhook_selects(pod_labels: Mapping, namespace_labels: Mapping, settings: InjectSettings) -> bool:
    """Whether one of the injector's MutatingWebhookConfiguration entries would be called for
    this pod: Istio's four default selectors (namespace label, namespace revision, object
    revision, object label), with pymesh's key names beside Istio's."""
    ns_injection = _first(namespace_labels, NAMESPACE_KEYS)
    ns_revision = _first(namespace_labels, REVISION_KEYS)
    pod_inject = _first(pod_labels, INJECT_KEYS)
    pod_revision = _first(pod_labels, REVISION_KEYS)
    if pod_inject == "false":
        return False
    if ns_revision == settings.revision_name and ns_injection is None:
        return True  # rev.namespace: the namespace asks for this revision
    if ns_revision is None and ns_injection is None and pod_revision == settings.revision_name:
        return True  # rev.object: the pod asks for this revision
    if settings.revision:
        return False  # a named revision answers only for itself; the two below are the default's
    if ns_injection == "enabled":
        return True  # namespace: istio-injection=enabled
    return ns_injection is None and ns_revision is None and pod_inject == "true" and pod_revision is None


def injection_required(pod: Mapping, namespace: Mapping | None, settings: InjectSettings,
                       *, namespace_name: str | None = None) -> bool:
    """Whether `pod` (metadata+spec: a Pod or a pod template) gets a sidecar: Istio's
    injectRequired. With `namespace` (the Namespace object) the webhook's namespace and object
    selectors are applied first; without one (kube-inject, or a webhook the API server already
    filtered) only the pod's own opinion and the policy decide. Host-network pods never."""
    metadata = pod.get("metadata") if isinstance(pod.get("metadata"), Mapping) else {}
    spec = pod.get("spec") if isinstance(pod.get("spec"), Mapping) else {}
    if spec.get("hostNetwork"):
        return False
    ns_meta = (namespace or {}).get("metadata") or {}
    name = namespace_name or metadata.get("namespace") or ns_meta.get("name")
    if name in settings.ignored_namespaces:
        return False
    labels = metadata.get("labels") if isinstance(metadata.get("labels"), Mapping) else {}
    if namespace is not None and not webhook_selects(labels, ns_meta.get("labels") or {}, settings):
        return False
    opinion = _first(labels, INJECT_KEYS) or _first(metadata.get("annotations"), INJECT_KEYS)
    if opinion:
        return opinion.lower() in TRUE
    if any(_matches(labels, selector) for selector in settings.never_inject_selector):
        return False
    if any(_matches(labels, selector) for selector in settings.always_inject_selector):
        return True
    return settings.policy == "enabled"


# --- one pod ------------------------------------------------------------------------------------


def is_injected(pod: Mapping) -> bool:
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    return isinstance(annotations, Mapping) and STATUS in annotations


def inject_pod(pod: dict, namespace: dict | None, settings: InjectSettings, *, workload: str | None = None) -> dict:
    """`pod` (metadata+spec) with the sidecar added, as a new dict; an injected pod (its status
    annotation) or a host-network one comes back unchanged. `workload` names the workload for
    metrics and config selection (default: derived from the pod, as Istio's deploy meta).
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
    options = _pod_options(annotations, settings)

    probers = {}
    if options["rewrite_probes"]:
        probers = app_probes.rewrite(spec["containers"])
    added = [_proxy_container(options, settings, _workload_name(pod, workload), probers)]
    if options["capture_mode"] != "NONE":
        added.insert(0, _init_container(options, settings))
    init_containers[:0] = added
    volumes.extend(_volumes(settings))

    added_labels = _add_missing(labels, _mesh_labels(labels, _workload_name(pod, workload)))
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


def _workload_name(pod: Mapping, given: str | None) -> str:
    """Istio's GetDeployMetaFromPod: a ReplicaSet's pod belongs to its Deployment (the name less
    the pod-template-hash), a Job's to its Job; else the pod's own name."""
    if given:
        return given
    metadata = pod.get("metadata") or {}
    hash_ = (metadata.get("labels") or {}).get("pod-template-hash")
    for owner in metadata.get("ownerReferences") or ():
        if isinstance(owner, dict) and owner.get("controller") and isinstance(owner.get("name"), str):
            if owner.get("kind") == "ReplicaSet" and hash_ and owner["name"].endswith(f"-{hash_}"):
                return owner["name"][: -len(hash_) - 1]
            return owner["name"]
    name = metadata.get("name") or str(metadata.get("generateName") or "").rstrip("-")
    return name or "unknown"


def _pod_options(annotations: Mapping, settings: InjectSettings) -> dict[str, Any]:
    """The settings as this pod's annotations change them, validated."""
    capture_args = {}
    for annotation, flag, field_name, parse in CAPTURE_ANNOTATIONS:
        value = str(annotations.get(annotation, getattr(settings, field_name)))
        try:
            capture_args[flag] = (value, parse(value))
        except ValueError as error:
            raise InjectError(f"metadata.annotations[{annotation}]", str(error)) from None
    try:
        CaptureSettings(proxy_port=settings.outbound_capture_port, inbound_capture_port=settings.inbound_capture_port,
                        **{_CAPTURE_FIELDS[flag]: parsed for flag, (_, parsed) in capture_args.items()})
    except CaptureConfigError as error:  # a combination: name the annotation of the field at fault
        flag = next((flag for flag, field_name in _CAPTURE_FIELDS.items() if field_name == error.field), "")
        annotation = next((a for a, f, _, _ in CAPTURE_ANNOTATIONS if f == flag), "traffic.sidecar.istio.io/*")
        raise InjectError(f"metadata.annotations[{annotation}]", error.message) from None
    resources = {"requests": {"cpu": settings.resources.cpu, "memory": settings.resources.memory},
                 "limits": {"cpu": settings.resources.cpu_limit, "memory": settings.resources.memory_limit}}
    for annotation, section, resource, _ in RESOURCE_ANNOTATIONS:
        if annotation in annotations:
            value = str(annotations[annotation])
            if not QUANTITY.match(value):
                raise InjectError(f"metadata.annotations[{annotation}]", f"{value!r} is not a quantity (like 100m, 128Mi)")
            resources[section][resource] = value
    rewrite = str(annotations.get(REWRITE_PROBES, "true" if settings.rewrite_app_probers else "false")).lower()
    if rewrite not in ("true", "false"):
        raise InjectError(f"metadata.annotations[{REWRITE_PROBES}]", f"expected true or false, got {rewrite!r}")
    log_level = str(annotations.get(LOG_LEVEL, settings.log_level)).lower()
    if log_level not in ("debug", "info", "warning", "error"):
        raise InjectError(f"metadata.annotations[{LOG_LEVEL}]", f"expected debug, info, warning or error, got {log_level!r}")
    options = {"capture": {flag: text for flag, (text, _) in capture_args.items()}, "resources": resources,
               "rewrite_probes": rewrite == "true", "log_level": log_level,
               "image": str(annotations.get(PROXY_IMAGE) or settings.proxy_image),
               "control": settings.control_address, "concurrency": None, "drain": None, "metadata": {}}
    options.update(_proxy_config(annotations.get(PROXY_CONFIG), options["control"]))
    mode = str(annotations.get(INTERCEPTION_MODE, options.pop("interception_mode", "REDIRECT"))).upper()
    if mode not in ("REDIRECT", "NONE"):
        raise InjectError(f"metadata.annotations[{INTERCEPTION_MODE}]", f"{mode!r}: the injector supports REDIRECT "
                          "and NONE (no capture, no pymesh-init) yet; TPROXY needs a privileged proxy")
    options["capture_mode"] = mode
    options["readiness"] = {}
    for annotation, key in READINESS_ANNOTATIONS:
        if annotation in annotations:
            value = str(annotations[annotation])
            least = 0 if key == "initialDelaySeconds" else 1
            if not value.isdigit() or not least <= int(value) < 2**31:
                raise InjectError(f"metadata.annotations[{annotation}]", f"expected an integer >= {least}, got {value!r}")
            options["readiness"][key] = int(value)
    return options


def _proxy_config(text: object, control: str) -> dict[str, Any]:
    """The ProxyConfig fields of `proxy.istio.io/config` (YAML or JSON) that change the proxy."""
    where = f"metadata.annotations[{PROXY_CONFIG}]"
    if text is None:
        return {}
    try:
        config = yaml.safe_load(str(text)) or {}
    except yaml.YAMLError as error:
        raise InjectError(where, f"not YAML: {error}") from None
    if not isinstance(config, dict):
        raise InjectError(where, "expected a ProxyConfig mapping")
    for key in config:
        if key not in PROXY_CONFIG_APPLIED and key not in PROXY_CONFIG_NOT_APPLICABLE:
            raise InjectError(f"{where}.{key}", "unknown ProxyConfig field")
    out: dict[str, Any] = {}
    if "concurrency" in config:
        value = config["concurrency"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InjectError(f"{where}.concurrency", f"expected a non-negative integer, got {value!r}")
        out["concurrency"] = value
    if "discoveryAddress" in config:
        value = str(config["discoveryAddress"])
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise InjectError(f"{where}.discoveryAddress", f"expected HOST:PORT, got {value!r}")
        out["control"] = value
    if "terminationDrainDuration" in config:
        try:
            out["drain"] = parse_duration(config["terminationDrainDuration"])
        except ValueError as error:
            raise InjectError(f"{where}.terminationDrainDuration", str(error)) from None
    if "proxyMetadata" in config:
        value = config["proxyMetadata"]
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise InjectError(f"{where}.proxyMetadata", "expected a mapping of strings")
        out["metadata"] = value
    if "interceptionMode" in config:
        out["interception_mode"] = str(config["interceptionMode"])
    return out


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
        "resources": copy.deepcopy(options["resources"]),
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
    ]
    if probers:
        env.append({"name": app_probes.PROBERS_ENV, "value": app_probes.encode(probers)})
    env += [{"name": key, "value": value} for key, value in options["metadata"].items()]
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
