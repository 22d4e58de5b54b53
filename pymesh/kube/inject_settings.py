"""The injector's settings: what `pymesh kube-inject` and the `/inject` webhook put in every pod.

One value for both, loadable from a YAML file or from a ConfigMap (its `data.settings` key holds
the same YAML), so a manifest edited by hand and the webhook's answer agree. Keys are camelCase,
as Istio's sidecar-injector values; an unknown key is an error naming it (a typo must not
silently fall back to a default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

from pymesh.capture import settings as capture

POLICIES = ("enabled", "disabled")
LOG_LEVELS = ("debug", "info", "warning", "error")
IGNORED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "local-path-storage")  # Istio's
MAX_SETTINGS_BYTES = 1 << 20


class InjectError(ValueError):
    """The pod (or the settings) cannot be injected; `where` names the field or annotation."""

    def __init__(self, where: str, message: str):
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message


@dataclass(frozen=True)
class Resources:
    """The proxy container's requests and limits (Istio's global.proxy.resources defaults)."""

    cpu: str = "100m"
    memory: str = "128Mi"
    cpu_limit: str = "2000m"
    memory_limit: str = "1024Mi"

    def as_kubernetes(self) -> dict:
        """The container's `resources`, a fresh dict each time (no object shared by two containers)."""
        return {"requests": {"cpu": self.cpu, "memory": self.memory},
                "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit}}


@dataclass(frozen=True)
class InjectSettings:
    proxy_image: str = "ghcr.io/pymesh/pymesh:latest"
    init_image: str = ""  # "": the proxy image (it carries `pymesh iptables` too)
    image_pull_policy: str = "IfNotPresent"
    control_address: str = "pymesh-control.pymesh-system.svc:15010"
    ca_root_config_map: str = "pymesh-ca-root-cert"  # ConfigMap with root-cert.pem, mounted for --ca-root
    resources: Resources = field(default_factory=Resources)
    init_resources: Resources = Resources(cpu="10m", memory="10Mi")  # pymesh-init's (Istio's proxy_init)
    log_level: str = "info"
    revision: str = ""  # "": the default revision (istio-injection=enabled, istio.io/rev=default)
    policy: str = "enabled"  # Istio's autoInject: pods without an opinion are injected when selected
    rewrite_app_probers: bool = True
    outbound_capture_port: int = 15001  # where `pymesh iptables` sends captured traffic, and the proxy listens
    inbound_capture_port: int = 15006
    include_outbound_ip_ranges: str = "*"
    exclude_outbound_ip_ranges: str = ""
    include_inbound_ports: str = "*"
    exclude_inbound_ports: str = ""
    include_outbound_ports: str = ""
    exclude_outbound_ports: str = ""
    ignored_namespaces: tuple[str, ...] = IGNORED_NAMESPACES
    never_inject_selector: tuple[Mapping[str, str], ...] = ()  # matchLabels maps: never inject these
    always_inject_selector: tuple[Mapping[str, str], ...] = ()  # inject these even under policy disabled

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise InjectError("policy", f"must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if self.log_level not in LOG_LEVELS:
            raise InjectError("logLevel", f"must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if not self.proxy_image:
            raise InjectError("proxyImage", "must not be empty")
        host, sep, port = self.control_address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InjectError("controlAddress", f"expected HOST:PORT, got {self.control_address!r}")
        for key, value in (("outboundCapturePort", self.outbound_capture_port),
                           ("inboundCapturePort", self.inbound_capture_port)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
                raise InjectError(key, f"expected a port number, got {value!r}")
        for key, parse in (("includeOutboundIPRanges", capture.parse_networks_or_all),
                           ("excludeOutboundIPRanges", capture.parse_networks),
                           ("includeInboundPorts", capture.parse_ports_or_all),
                           ("excludeInboundPorts", capture.parse_ports),
                           ("includeOutboundPorts", capture.parse_ports),
                           ("excludeOutboundPorts", capture.parse_ports)):
            try:
                parse(getattr(self, _FIELDS[key]))
            except ValueError as error:
                raise InjectError(key, str(error)) from None

    @property
    def init_container_image(self) -> str:
        return self.init_image or self.proxy_image

    @property
    def revision_name(self) -> str:
        """The revision as `istio.io/rev` names it: the default one is "default"."""
        return self.revision or "default"


_FIELDS = {  # YAML key -> field
    "proxyImage": "proxy_image", "initImage": "init_image", "imagePullPolicy": "image_pull_policy",
    "controlAddress": "control_address", "caRootConfigMap": "ca_root_config_map", "resources": "resources", "initResources": "init_resources",
    "logLevel": "log_level", "revision": "revision", "policy": "policy", "rewriteAppProbers": "rewrite_app_probers",
    "outboundCapturePort": "outbound_capture_port", "inboundCapturePort": "inbound_capture_port",
    "includeOutboundIPRanges": "include_outbound_ip_ranges", "excludeOutboundIPRanges": "exclude_outbound_ip_ranges",
    "includeInboundPorts": "include_inbound_ports", "excludeInboundPorts": "exclude_inbound_ports",
    "includeOutboundPorts": "include_outbound_ports", "excludeOutboundPorts": "exclude_outbound_ports",
    "ignoredNamespaces": "ignored_namespaces", "neverInjectSelector": "never_inject_selector",
    "alwaysInjectSelector": "always_inject_selector",
}
_RESOURCE_KEYS = {"requests": {"cpu": "cpu", "memory": "memory"}, "limits": {"cpu": "cpu_limit", "memory": "memory_limit"}}


def settings_from_mapping(data: Mapping[str, Any]) -> InjectSettings:
    """InjectSettings from the YAML mapping (camelCase keys); errors name the key."""
    if not isinstance(data, Mapping):
        raise InjectError("", "the injector settings must be a mapping")
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = _FIELDS.get(key)
        if name is None:
            raise InjectError(str(key), f"unknown setting (known: {', '.join(sorted(_FIELDS))})")
        values[name] = _convert(key, name, value)
    return InjectSettings(**values)


def _convert(key: str, name: str, value: Any) -> Any:
    if name in ("resources", "init_resources"):
        return _resources(key, value)
    if name == "ignored_namespaces":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InjectError(key, "expected a list of namespace names")
        return tuple(value)
    if name.endswith("_selector"):
        if not isinstance(value, list) or not all(_string_map(item.get("matchLabels") if isinstance(item, dict) else None)
                                                  for item in value):
            raise InjectError(key, "expected a list of {matchLabels: {key: value}} selectors")
        return tuple(dict(item["matchLabels"]) for item in value)
    if name.endswith("_capture_port"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InjectError(key, f"expected a port number, got {value!r}")
        return value
    if name == "rewrite_app_probers":
        if not isinstance(value, bool):
            raise InjectError(key, f"expected true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InjectError(key, f"expected a string, got {type(value).__name__}")
    return str(value)


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _resources(key: str, value: Any) -> Resources:
    if not isinstance(value, dict):
        raise InjectError(key, "expected {requests: {cpu, memory}, limits: {cpu, memory}}")
    values = {}
    for section, items in value.items():
        names = _RESOURCE_KEYS.get(section)
        if names is None or not isinstance(items, dict):
            raise InjectError(f"{key}.{section}", "expected requests or limits, a mapping of cpu and memory")
        for resource, quantity in items.items():
            if resource not in names or not isinstance(quantity, (str, int)) or isinstance(quantity, bool):
                raise InjectError(f"{key}.{section}.{resource}", "expected cpu or memory with a quantity")
            values[names[resource]] = str(quantity)
    return Resources(**values)


def load_settings(text: str) -> InjectSettings:
    """From a settings YAML document, or a ConfigMap whose `data.settings` holds one."""
    if len(text) > MAX_SETTINGS_BYTES:
        raise InjectError("", f"settings larger than {MAX_SETTINGS_BYTES} bytes")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InjectError("", f"settings are not YAML: {error}") from None
    if data is None:
        return InjectSettings()
    if isinstance(data, dict) and data.get("kind") == "ConfigMap":
        embedded = (data.get("data") or {}).get("settings")
        if not isinstance(embedded, str):
            raise InjectError("data.settings", "the ConfigMap needs a `settings` key holding the settings YAML")
        return load_settings(embedded)
    return settings_from_mapping(data)
