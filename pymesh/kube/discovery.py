"""Kubernetes discovery, the pure part: Services, EndpointSlices, Pods and Namespaces (as the API
server's JSON) -> the ServiceEntries and WorkloadEntries pymesh's routing already compiles, by
the rules of Istio's kube registry (pilot/pkg/serviceregistry/kube/conversion.go,
controller/endpointslice.go, pkg/config/kube/conversion.go):

- a Service is a MESH_INTERNAL ServiceEntry for `<name>.<namespace>.svc.<domain>`, its ClusterIPs
  as addresses, resolution STATIC, exportTo from `networking.istio.io/exportTo`; a headless one
  (clusterIP None) has no address and resolution NONE (passthrough to the pod addresses); an
  ExternalName one is MESH_EXTERNAL, resolution DNS, its one endpoint the external name
- a port's protocol: UDP as declared; else `appProtocol`, else the port name's prefix before
  "-" (http, http2, grpc, grpc-web, tcp, tls, https, mongo, mysql, redis: Istio's names); an
  unknown name is sniffed, except on the well-known ports 25, 53, 3306, 27017 (TCP)
- the endpoints are the addresses of the Service's EndpointSlices (label kubernetes.io/service-name,
  not the multi-cluster ones, not FQDN slices); an endpoint whose `ready` is false is not sent
  (terminating ones are not ready); one whose targetRef names a Pod not known (yet) is left out,
  as Istio waits for the pod; an address in two slices counts once
- an endpoint carries its pod's labels (with `security.istio.io/tlsMode: istio` when the pod has
  the sidecar), service account, locality (the pod's `istio-locality` label, else the
  endpoint's zone) and network (`topology.istio.io/network` of the pod, else of its namespace)
- every running pod with an IP and without the sidecar is also a WorkloadEntry (labels, service
  account, locality), so a ServiceEntry's workloadSelector selects pods, as in Istio; a pod with
  the sidecar is one when its proxy registers, not twice
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

from pymesh.api import model
from pymesh.kube.workloads import workload_name

DOMAIN = "cluster.local"
SOURCE = "<kubernetes>"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MULTI_CLUSTER_LABEL = "multicluster.kubernetes.io/service-name"
EXPORT_TO = "networking.istio.io/exportTo"
TLS_MODE = "security.istio.io/tlsMode"
LOCALITY_LABEL = "istio-locality"  # region.zone.subzone, overriding the node's
NETWORK_LABEL = "topology.istio.io/network"
SIDECAR_CONTAINERS = ("pymesh-proxy", "istio-proxy")  # the injected sidecar's container name, pymesh's and Istio's
WELL_KNOWN_PORTS = frozenset({25, 53, 3306, 27017})  # SMTP, DNS, MySQL, MongoDB: TCP, never sniffed
PROTOCOLS = {"http": "HTTP", "http2": "HTTP2", "grpc": "GRPC", "grpc-web": "GRPC-WEB", "tcp": "TCP", "tls": "TLS",
             "https": "HTTPS", "mongo": "MONGO", "mysql": "MYSQL", "redis": "REDIS"}
APP_PROTOCOLS = {"kubernetes.io/h2c": "HTTP2", "kubernetes.io/ws": "HTTP", "kubernetes.io/wss": "HTTPS"}


@dataclass(frozen=True)
class Discovered:
    service_entries: tuple[model.ServiceEntry, ...] = ()
    workload_entries: tuple[model.WorkloadEntry, ...] = ()


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _labels(value) -> dict[str, str]:
    return {str(k): str(v) for k, v in _dict(value).items()}


def port_protocol(port: int, name: str, protocol: str = "TCP", app_protocol: str | None = None) -> str:
    """Istio's ConvertProtocol: pymesh's protocol name, "" for sniffed."""
    if protocol == "UDP":
        return "UDP"
    if protocol == "SCTP":
        return ""  # Istio: unsupported
    if app_protocol:
        if app_protocol in APP_PROTOCOLS:
            return APP_PROTOCOLS[app_protocol]
        name = app_protocol
    lowered = name.lower()
    if lowered.startswith("grpc-web"):
        return "GRPC-WEB"
    found = PROTOCOLS.get(lowered.split("-", 1)[0], "")
    return found or ("TCP" if port in WELL_KNOWN_PORTS else "")


def service_host(name: str, namespace: str, domain: str = DOMAIN) -> str:
    return f"{name}.{namespace}.svc.{domain}"


@dataclass(frozen=True)
class _Pod:
    labels: dict[str, str]
    service_account: str
    locality: str
    network: str
    workload: str


def _has_sidecar(pod: dict) -> bool:
    spec = _dict(pod.get("spec"))
    return any(_dict(c).get("name") in SIDECAR_CONTAINERS
               for c in _list(spec.get("initContainers")) + _list(spec.get("containers")))


def _locality(labels: dict[str, str], zone: str = "") -> str:
    if labels.get(LOCALITY_LABEL):
        return labels[LOCALITY_LABEL].replace(".", "/")
    return f"/{zone}" if zone else ""  # no Node watched: the region is unknown, as Istio's "" region


def _pod_view(pod: dict, namespaces: dict[str, dict[str, str]]) -> _Pod:
    metadata, spec = _dict(pod.get("metadata")), _dict(pod.get("spec"))
    labels = _labels(metadata.get("labels"))
    if TLS_MODE not in labels and _has_sidecar(pod):
        labels[TLS_MODE] = "istio"
    namespace = str(metadata.get("namespace") or "")
    network = labels.get(NETWORK_LABEL) or namespaces.get(namespace, {}).get(NETWORK_LABEL, "")
    return _Pod(labels, str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"),
                _locality(labels), network, workload_name(pod))


def _ports(service: dict) -> tuple[model.ServicePort, ...]:
    out = []
    for raw in _list(_dict(service.get("spec")).get("ports")):
        port = _dict(raw)
        number = port.get("port")
        if not isinstance(number, int):
            continue
        name = str(port.get("name") or "")
        target = port.get("targetPort")
        out.append(model.ServicePort(
            number=number, name=name, target_port=target if isinstance(target, int) else None,
            protocol=port_protocol(number, name, str(port.get("protocol") or "TCP"), port.get("appProtocol"))))
    return tuple(out)


def _slices_by_service(slices: Iterable[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for es in slices:
        metadata = _dict(es.get("metadata"))
        labels = _labels(metadata.get("labels"))
        if MULTI_CLUSTER_LABEL in labels or SERVICE_NAME_LABEL not in labels or es.get("addressType") == "FQDN":
            continue
        out.setdefault((str(metadata.get("namespace") or ""), labels[SERVICE_NAME_LABEL]), []).append(es)
    for group in out.values():
        group.sort(key=lambda es: str(_dict(es.get("metadata")).get("name") or ""))
    return out


def _endpoints(slices: list[dict], pods: dict[tuple[str, str], dict],
               by_ip: dict[tuple[str, str], dict], namespaces: dict[str, dict[str, str]]
               ) -> tuple[tuple[model.WorkloadEntrySpec, ...], dict[str, int]]:
    """The ready endpoints of a Service's slices (an endpoint names its ports by the service
    port's name); and the unnamed port's number in the slices, if any."""
    seen: set[str] = set()
    out: list[model.WorkloadEntrySpec] = []
    unnamed: dict[str, int] = {}
    for es in slices:
        namespace = str(_dict(es.get("metadata")).get("namespace") or "")
        slice_ports = {str(_dict(p).get("name") or ""): p["port"] for p in _list(es.get("ports"))
                       if isinstance(_dict(p).get("port"), int)}
        if "" in slice_ports:
            unnamed.setdefault("", slice_ports[""])
        named = {name: number for name, number in slice_ports.items() if name}
        for raw in _list(es.get("endpoints")):
            endpoint = _dict(raw)
            if _dict(endpoint.get("conditions")).get("ready") is False:
                continue  # not ready, terminating included (Istio without SEND_UNHEALTHY_ENDPOINTS)
            ref = _dict(endpoint.get("targetRef"))
            for address in _list(endpoint.get("addresses")):
                if not isinstance(address, str) or address in seen:
                    continue
                if ref.get("kind") == "Pod":
                    pod = pods.get((str(ref.get("namespace") or namespace), str(ref.get("name") or "")))
                    if pod is None:
                        continue  # the pod is not known yet: Istio waits for it
                else:
                    pod = by_ip.get((namespace, address))
                view = _pod_view(pod, namespaces) if pod is not None else None
                seen.add(address)
                zone = str(endpoint.get("zone") or "")
                out.append(model.WorkloadEntrySpec(
                    address=address, ports=named, labels=view.labels if view else {},
                    service_account=view.service_account if view else "",
                    locality=(view.locality or _locality({}, zone)) if view else _locality({}, zone),
                    network=view.network if view else namespaces.get(namespace, {}).get(NETWORK_LABEL, ""),
                    workload=view.workload if view else ""))
    return tuple(out), unnamed


def _service_entry(service: dict, slices: list[dict], pods, by_ip, namespaces, domain: str) -> model.ServiceEntry | None:
    metadata, spec = _dict(service.get("metadata")), _dict(service.get("spec"))
    name, namespace = str(metadata.get("name") or ""), str(metadata.get("namespace") or "")
    if not name or not namespace:
        return None
    ports = _ports(service)
    meta = model.Metadata(name=name, namespace=namespace, labels=_labels(metadata.get("labels")),
                          source=model.Source(file=f"{SOURCE} Service {namespace}/{name}"))
    export_to = tuple(p.strip() for p in str(_dict(metadata.get("annotations")).get(EXPORT_TO) or "").split(",")
                      if p.strip())
    host = service_host(name, namespace, domain)
    if spec.get("type") == "ExternalName" and spec.get("externalName"):
        external = model.WorkloadEntrySpec(address=str(spec["externalName"]))
        return model.ServiceEntry(metadata=meta, hosts=(host,), ports=ports, location="MESH_EXTERNAL",
                                  resolution="DNS", endpoints=(external,), export_to=export_to)
    endpoints, unnamed = _endpoints(slices, pods, by_ip, namespaces)
    if "" in unnamed:  # a single unnamed port: its endpoints' port is the slices' (a named targetPort resolved)
        ports = tuple(replace(p, target_port=unnamed[""]) if not p.name else p for p in ports)
    cluster_ips = [ip for ip in _list(spec.get("clusterIPs")) or [spec.get("clusterIP")] if isinstance(ip, str) and ip]
    headless = spec.get("clusterIP") == "None"
    return model.ServiceEntry(
        metadata=meta, hosts=(host,), addresses=() if headless else tuple(cluster_ips), ports=ports,
        location="MESH_INTERNAL", resolution="NONE" if headless else "STATIC", endpoints=endpoints,
        export_to=export_to)


def _workload_entry(pod: dict, namespaces: dict[str, dict[str, str]]) -> model.WorkloadEntry | None:
    metadata, status = _dict(pod.get("metadata")), _dict(pod.get("status"))
    address = status.get("podIP")
    if not isinstance(address, str) or not address or status.get("phase") != "Running" \
            or metadata.get("deletionTimestamp") or _dict(pod.get("spec")).get("hostNetwork") or _has_sidecar(pod):
        return None  # a pod with the sidecar is in the mesh as its proxy registers (pymesh.control.registry)
    view = _pod_view(pod, namespaces)
    name, namespace = str(metadata.get("name") or ""), str(metadata.get("namespace") or "")
    return model.WorkloadEntry(
        metadata=model.Metadata(name=name, namespace=namespace, labels=view.labels,
                                source=model.Source(file=f"{SOURCE} Pod {namespace}/{name}")),
        spec=model.WorkloadEntrySpec(address=address, labels=view.labels, service_account=view.service_account,
                                     locality=view.locality, network=view.network, workload=view.workload))


def discover(services: Iterable[dict], endpoint_slices: Iterable[dict], pods: Iterable[dict] = (),
             namespaces: Iterable[dict] = (), domain: str = DOMAIN) -> Discovered:
    """The registry part of the mesh from the four kinds' current objects (order does not matter)."""
    namespace_labels = {str(_dict(n.get("metadata")).get("name") or ""): _labels(_dict(n.get("metadata")).get("labels"))
                        for n in namespaces}
    pod_list = [p for p in pods if isinstance(p, dict)]
    by_name = {(str(_dict(p.get("metadata")).get("namespace") or ""), str(_dict(p.get("metadata")).get("name") or "")): p
               for p in pod_list}
    by_ip = {(str(_dict(p.get("metadata")).get("namespace") or ""), str(_dict(p.get("status")).get("podIP"))): p
             for p in pod_list if _dict(p.get("status")).get("podIP")}
    slices = _slices_by_service(es for es in endpoint_slices if isinstance(es, dict))
    entries = []
    for service in services:
        if not isinstance(service, dict):
            continue
        metadata = _dict(service.get("metadata"))
        key = (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
        entry = _service_entry(service, slices.get(key, []), by_name, by_ip, namespace_labels, domain)
        if entry is not None:
            entries.append(entry)
    entries.sort(key=lambda e: (e.metadata.namespace, e.metadata.name))
    workloads = sorted((w for w in (_workload_entry(p, namespace_labels) for p in pod_list) if w is not None),
                       key=lambda w: (w.metadata.namespace, w.metadata.name))
    return Discovered(tuple(entries), tuple(workloads))
