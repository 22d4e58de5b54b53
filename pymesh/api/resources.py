"""One YAML document -> one resource: the envelope (apiVersion, kind, metadata, spec) and the
table of kinds pymesh knows, which says which parser reads each spec."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from pymesh.api import common, model, shapes
from pymesh.api.authorization import authorization_policy
from pymesh.api.destinationrule import destination_rule
from pymesh.api.gateway import gateway
from pymesh.api.meshconfig import MESH_CONFIG_MAP, config_map
from pymesh.api.peer_authentication import peer_authentication
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


KINDS = {
    kind.name: kind
    for kind in (
        Kind("ServiceEntry", NETWORKING, shapes.SERVICE_ENTRY, service_entry, "service_entries"),
        Kind("WorkloadEntry", NETWORKING, shapes.WORKLOAD_ENTRY, workload_entry, "workload_entries"),
        Kind("VirtualService", NETWORKING, shapes.VIRTUAL_SERVICE, virtual_service, "virtual_services"),
        Kind("DestinationRule", NETWORKING, shapes.DESTINATION_RULE, destination_rule, "destination_rules"),
        Kind("Sidecar", NETWORKING, shapes.SIDECAR, sidecar, "sidecars"),
        Kind("Gateway", NETWORKING, shapes.GATEWAY, gateway, "gateways"),
        Kind("LocalRateLimit", PYMESH, shapes.LOCAL_RATE_LIMIT, local_rate_limit, "local_rate_limits"),
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
    named = root.get("kind")
    kind = KINDS.get(named) if isinstance(named, str) else None
    r = Reader(sink, root, "", kind.envelope if kind else shapes.RESOURCE)
    kind_name = r.get("kind", text(), required=True)
    api_version = r.get("apiVersion", text(), required=True)
    if kind is None:
        if kind_name is not None:
            r.error("kind", f"kind {kind_name} is not supported")
        return None
    if api_version is not None and api_version not in kind.api_versions():
        expected = or_list(kind.api_versions())
        r.error("apiVersion", f"apiVersion {api_version} is not valid for {kind.name} (expected {expected})")
    if kind.spec is None:
        r.error("kind", f"kind {kind.name} is not supported yet")
        return None
    source = model.Source(sink.file, r.line)
    read_metadata = message(shapes.METADATA, partial(common.metadata, source=source))
    metadata = r.get("metadata", read_metadata, required=True)
    if kind.name == "ConfigMap" and (metadata is None or (metadata.namespace, metadata.name) != MESH_CONFIG_MAP):
        return None  # not Istio's mesh config: not applied
    spec = r.slot(kind.body) or Slot(LineMap(r.line), r.line, kind.body)  # a missing spec reads as an empty one
    resource = message(kind.spec, partial(kind.build, metadata))(sink, spec)
    if metadata is not None and metadata.name:
        _check_unique(sink, seen, (kind.name, metadata.namespace, metadata.name), source, _name_line(root))
    return kind, resource


def _check_unique(sink: Sink, seen: dict, key: ResourceKey, source: model.Source, line: int) -> None:
    first = seen.setdefault(key, source)
    if first is not source:
        kind, namespace, name = key
        where = f"{first.file}:{first.line}"
        sink.add(line, "metadata.name", f"{kind} {namespace}/{name} is already defined at {where}")


def _name_line(root: LineMap) -> int:
    metadata = root.get("metadata")
    return metadata.key_lines.get("name", metadata.line) if isinstance(metadata, LineMap) else root.line
