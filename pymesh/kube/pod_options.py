"""A pod's annotations read into the injector's options: Istio's traffic.sidecar.istio.io/*,
sidecar.istio.io/* and proxy.istio.io/config over the InjectSettings defaults, every value
checked (with the annotation's name in the error) before anything is added to the pod.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import yaml

from pymesh.api.duration import parse_duration
from pymesh.capture import settings as capture
from pymesh.capture.settings import CaptureConfigError, CaptureSettings
from pymesh.kube.inject_settings import InjectError, InjectSettings

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
RESOURCE_ANNOTATIONS = (  # annotation -> (section, resource)
    ("sidecar.istio.io/proxyCPU", "requests", "cpu"),
    ("sidecar.istio.io/proxyMemory", "requests", "memory"),
    ("sidecar.istio.io/proxyCPULimit", "limits", "cpu"),
    ("sidecar.istio.io/proxyMemoryLimit", "limits", "memory"),
)
REWRITE_PROBES = "sidecar.istio.io/rewriteAppHTTPProbers"
PROXY_CONFIG = "proxy.istio.io/config"
PROXY_IMAGE = "sidecar.istio.io/proxyImage"
LOG_LEVEL = "sidecar.istio.io/logLevel"
INTERCEPTION_MODE = "sidecar.istio.io/interceptionMode"
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



def pod_options(annotations: Mapping, settings: InjectSettings) -> dict[str, Any]:
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
    resources = settings.resources.as_kubernetes()
    for annotation, section, resource in RESOURCE_ANNOTATIONS:
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
    options.update(_proxy_config(annotations.get(PROXY_CONFIG)))
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


def _proxy_config(text: object) -> dict[str, Any]:
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
