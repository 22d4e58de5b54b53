"""One YAML document -> one resource: the envelope (apiVersion, kind, metadata, spec) and the
table of kinds pymesh knows, which says which parser reads each spec."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from pymesh.api import common, model, shapes
from pymesh.api.authorization import authorization_policy
from pymesh.api.destinationrule import destination_rule
from pymesh.api import gateway_api
from pymesh.api.gateway import gateway
from pymesh.api.meshconfig import MESH_CONFIG_MAP, config_map
from pymesh.api.peer_authentication import peer_authentication
from pymesh.api.python_filter import python_filter
from pymesh.api.reader import Reader, Sink, Slot, message, or_list, text
from pymesh.api.ratelimit import local_rate_limit
from pymesh.api.request_authentication import request_authentication
from pymesh.api.serviceentry import service_entry, workload_entry
from pymesh.api.shapes import Shape
from pymesh.api.sidecar import sidecar
from pymesh.api.telemetry import telemetry
from pymesh.api.virtualservice import virtual_service
from pymesh.api.workloadgroup import proxy_config, workload_group
from pymesh.api.yamltree import Document, LineMap

NETWORKING = ("networking.istio.io", ("v1", "v1beta1", "v1alpha3"))
SECURITY = ("security.istio.io", ("v1", "v1beta1"))
PYMESH = ("pymesh.dev", ("v1alpha1",))
TELEMETRY = ("telemetry.istio.io", ("v1", "v1alpha1"))
CORE = ("", ("v1",))
GATEWAY_API_GROUP = "gateway.networking.k8s.io"


@dataclass(frozen=True)
class Kind:
    name: str
    api: tuple[str, tuple[str, ...]]  # group, accepted versions
    spec: Shape | None = None  # None: an Istio kind pymesh does not support yet
    build: Callable[[model.Metadata, Reader], Any] | None = None
    collection: str = ""  # the MeshConfig field its resources go into
    body: str = "spec"  # the envelope field the parser reads (a ConfigMap's is `data`)
    envelope: Shape = shapes.RESOURCE

    def api_versions(self) -> list[str]:
        group, versions = self.api
        return [f"{group}/{version}" if group else version for version in versions]


# Istio's and pymesh's kinds, by (API group, kind)
KINDS = {
    (kind.api[0], kind.name): kind
    for kind in (
        Kind("ServiceEntry", NETWORKING, shapes.SERVICE_ENTRY, service_entry, "service_entries"),
        Kind("WorkloadEntry", NETWORKING, shapes.WORKLOAD_ENTRY, workload_entry, "workload_entries"),
        Kind("VirtualService", NETWORKING, shapes.VIRTUAL_SERVICE, virtual_service, "virtual_services"),
        Kind("DestinationRule", NETWORKING, shapes.DESTINATION_RULE, destination_rule, "destination_rules"),
        Kind("Sidecar", NETWORKING, shapes.SIDECAR, sidecar, "sidecars"),
        Kind("Gateway", NETWORKING, shapes.GATEWAY, gateway, "gateways"),
        Kind("LocalRateLimit", PYMESH, shapes.LOCAL_RATE_LIMIT, local_rate_limit, "local_rate_limits"),
        Kind("PythonFilter", PYMESH, shapes.PYTHON_FILTER, python_filter, "python_filters"),
        Kind("PeerAuthentication", SECURITY, shapes.PEER_AUTHENTICATION, peer_authentication,
             "peer_authentications"),
        Kind("AuthorizationPolicy", SECURITY, shapes.AUTHORIZATION_POLICY, authorization_policy,
             "authorization_policies"),
        Kind("WorkloadGroup", NETWORKING, shapes.WORKLOAD_GROUP, workload_group, "workload_groups"),
        Kind("ProxyConfig", ("networking.istio.io", ("v1beta1",)), shapes.PROXY_CONFIG, proxy_config, "proxy_configs"),
        Kind("RequestAuthentication", SECURITY, shapes.REQUEST_AUTHENTICATION, request_authentication,
             "request_authentications"),
        Kind("Telemetry", TELEMETRY, shapes.TELEMETRY, telemetry, "telemetries"),
        # only istio-system/istio is read (Istio's mesh config); other ConfigMaps are not applied
        Kind("ConfigMap", CORE, shapes.CONFIG_MAP_DATA, config_map, "mesh_configs", body="data",
             envelope=shapes.CONFIG_MAP),
    )
}

# Every kind of Istio's own API groups, implemented or not: a kind outside these lists, in one
# of these groups, is a typo (kubectl would refuse it too) and an error; a kind of these lists
# pymesh does not implement, or any kind of another group (Namespace, Deployment, Secret...
# found in a real mesh's config directory), is reported as not applied and the rest loads.
ISTIO_GROUP_KINDS = {
    "networking.istio.io": frozenset({
        "DestinationRule", "EnvoyFilter", "Gateway", "ProxyConfig", "ServiceEntry", "Sidecar",
        "VirtualService", "WorkloadEntry", "WorkloadGroup",
    }),
    "security.istio.io": frozenset({"AuthorizationPolicy", "PeerAuthentication", "RequestAuthentication"}),
    "telemetry.istio.io": frozenset({"Telemetry"}),
    "extensions.istio.io": frozenset({"WasmPlugin"}),
    PYMESH[0]: frozenset({"LocalRateLimit", "PythonFilter"}),
}

# What to use instead of an Istio kind pymesh does not implement, where pymesh has something
ALTERNATIVES = {
    ("extensions.istio.io", "WasmPlugin"): "; write the filter as a Python class and configure it with a PythonFilter "
    "(pymesh.dev/v1alpha1: the same selector, targetRefs, phase, priority, match, pluginConfig and failStrategy)",
}

# The Gateway API's kinds, looked up by apiVersion group first: its Gateway is not Istio's. The
# older versions are the same schema for what pymesh reads, and real manifests still carry them.
GATEWAY_API_VERSIONS = (GATEWAY_API_GROUP, ("v1", "v1beta1", "v1alpha2"))
GATEWAY_API_KINDS = {
    kind.name: kind
    for kind in (
        Kind("GatewayClass", GATEWAY_API_VERSIONS, shapes.GATEWAY_CLASS, gateway_api.gateway_class,
             "gateway_classes"),
        Kind("Gateway", GATEWAY_API_VERSIONS, shapes.K8S_GATEWAY, gateway_api.kubernetes_gateway,
             "kubernetes_gateways"),
        Kind("HTTPRoute", GATEWAY_API_VERSIONS, shapes.K8S_HTTP_ROUTE, gateway_api.http_route,
             "http_routes"),
        Kind("GRPCRoute", (GATEWAY_API_GROUP, ("v1", "v1alpha2")), shapes.K8S_GRPC_ROUTE, gateway_api.grpc_route,
             "grpc_routes"),
        Kind("TCPRoute", (GATEWAY_API_GROUP, ("v1alpha2",)), shapes.K8S_TCP_ROUTE, gateway_api.tcp_route, "tcp_routes"),
        Kind("TLSRoute", (GATEWAY_API_GROUP, ("v1alpha2", "v1alpha3")), shapes.K8S_TLS_ROUTE, gateway_api.tls_route,
             "tls_routes"),
        Kind("ReferenceGrant", (GATEWAY_API_GROUP, ("v1", "v1beta1", "v1alpha2")), shapes.REFERENCE_GRANT,
             gateway_api.reference_grant, "reference_grants"),
    )
}
ALL_KINDS = (*KINDS.values(), *GATEWAY_API_KINDS.values())


def lookup(kind_name: str, api_version: str) -> Kind | None:
    """The kind a document names, by its apiVersion's group: the Gateway API's kinds for
    gateway.networking.k8s.io, Istio's and pymesh's for theirs; None for any other."""
    group = _group(api_version)
    if group == GATEWAY_API_GROUP:
        return GATEWAY_API_KINDS.get(kind_name)
    return KINDS.get((group, kind_name))


ResourceKey = tuple[str, str, str]  # kind, namespace, name
_RESOURCE_HINT = "a resource with apiVersion, kind, metadata and spec"


def parse_document(
    document: Document, sink: Sink, seen: dict[ResourceKey, model.Source]
) -> tuple[Kind, Any] | None:
    """The document's kind and resource (None when it cannot be read at all). Problems go to
    `sink`; the caller drops the resource when there are any. `seen` holds every resource
    already loaded, to report the same name defined twice."""
    for problem in document.problems:
        sink.add(problem.line, problem.path, problem.message)
    root = document.root
    if not isinstance(root, LineMap):
        sink.add(document.line, "", f"expected a mapping ({_RESOURCE_HINT})")
        return None
    kind_name = _scalar(root, "kind")
    api_version = _scalar(root, "apiVersion")
    group = _group(api_version) if api_version else None
    kind = lookup(kind_name, api_version) if kind_name and api_version else None
    if kind_name and api_version and (kind is None or kind.spec is None):
        _not_implemented(sink, root, kind_name, api_version, group)
        return None
    r = Reader(sink, root, "", kind.envelope if kind else shapes.RESOURCE)
    r.get("kind", text(), required=True)
    r.get("apiVersion", text(), required=True)
    if kind is None:
        return None
    if api_version is not None and api_version not in kind.api_versions():
        expected = or_list(kind.api_versions())
        r.error("apiVersion", f"apiVersion {api_version} is not valid for {kind.name} (expected {expected})")
    source = model.Source(sink.file, r.line)
    read_metadata = message(shapes.METADATA, partial(common.metadata, source=source))
    metadata = r.get("metadata", read_metadata, required=True)
    if kind.name == "ConfigMap" and (metadata is None or (metadata.namespace, metadata.name) != MESH_CONFIG_MAP):
        if metadata is not None:  # not Istio's mesh config
            sink.not_applied(r.line, "kind", f"ConfigMap {metadata.namespace}/{metadata.name} not applied: "
                             "of ConfigMaps pymesh reads only istio-system/istio (Istio's mesh config)")
        return None
    spec = r.slot(kind.body) or Slot(LineMap(r.line), r.line, kind.body)  # a missing spec reads as an empty one
    # metadata that is not a mapping is an error already; the spec is still read for its own errors
    # (its builders may read the namespace: Telemetry's targetRefs did, and raised on None)
    resource = message(kind.spec, partial(kind.build, metadata or model.Metadata("", source=source)))(sink, spec)
    if metadata is not None and metadata.name:
        key_kind = f"{kind.api[0]}/{kind.name}" if kind.api[0] == GATEWAY_API_GROUP else kind.name
        _check_unique(sink, seen, (key_kind, metadata.namespace, metadata.name), source, _name_line(root))
    return kind, resource


def _group(api_version: str) -> str:
    """"networking.istio.io/v1" -> "networking.istio.io"; Kubernetes' core "v1" -> ""; a group
    written without its version stays itself (so its kinds report the version as wrong)."""
    if "/" in api_version:
        return api_version.rpartition("/")[0]
    return api_version if "." in api_version else ""


def _scalar(root: LineMap, key: str) -> str | None:
    value = root.get(key)
    return value if isinstance(value, str) and value else None


def _not_implemented(sink: Sink, root: LineMap, kind: str, api_version: str, group: str | None) -> None:
    """A resource of a kind pymesh does not implement: named, not applied, the rest loads. In one
    of Istio's groups, a kind that group does not have is an error (a typo, not a foreign kind)."""
    line = root.key_lines.get("kind", root.line)
    known = ISTIO_GROUP_KINDS.get(group or "")
    if known is not None and kind not in known:
        sink.add(line, "kind", f"{api_version} has no kind {kind} (expected {or_list(sorted(known))})")
        return
    metadata = root.get("metadata")
    name = namespace = None
    if isinstance(metadata, LineMap):
        name, namespace = _scalar(metadata, "name"), _scalar(metadata, "namespace")
    who = f"{kind} {namespace + '/' if namespace else ''}{name or '(unnamed)'}"
    hint = ALTERNATIVES.get((group or "", kind), "")
    sink.not_applied(line, "kind", f"{who} ({api_version}) not applied: pymesh does not implement {kind}{hint}")


def identity(resource: Any) -> tuple[str, str, model.Source]:
    """Any loaded resource's namespace, name and source. The mesh config keeps no metadata: the
    loader admits only the istio-system/istio ConfigMap, so that is its name."""
    if isinstance(resource, model.IstioMeshConfig):
        return (*MESH_CONFIG_MAP, resource.source)
    meta = resource.metadata
    return meta.namespace, meta.name, meta.source


def _check_unique(sink: Sink, seen: dict, key: ResourceKey, source: model.Source, line: int) -> None:
    first = seen.setdefault(key, source)
    if first is not source:
        kind, namespace, name = key
        where = f"{first.file}:{first.line}"
        sink.add(line, "metadata.name", f"{kind} {namespace}/{name} is already defined at {where}")


def _name_line(root: LineMap) -> int:
    metadata = root.get("metadata")
    return metadata.key_lines.get("name", metadata.line) if isinstance(metadata, LineMap) else root.line
