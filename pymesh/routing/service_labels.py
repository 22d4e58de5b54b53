"""The service a cluster's metrics name (destination_service, _name, _namespace), compiled once
per snapshot, as Istio's stats filter reads it from the cluster's metadata.

Istio names a Kubernetes Service by its name and a ServiceEntry by its host. pymesh's
ServiceEntries stand for both, so a host shaped "<name>.<namespace>.svc[.<domain>]" in its own
namespace is named as the Service it stands for, any other host by itself (external services:
"httpbin.org"). On the server side Istio takes the first service whose port reaches this proxy's
inbound port, never the request's Host (disable_host_header_fallback, Istio's default inbound), so
a caller from outside the mesh cannot invent service names.
"""

from __future__ import annotations

from typing import Mapping

from pymesh.api import model
from pymesh.routing.scope import selects
from pymesh.routing.snapshot import ProxyIdentity, ServiceLabels


def service_labels(host: str, namespace: str) -> ServiceLabels:
    name, _, rest = host.partition(".")
    kubernetes = rest == f"{namespace}.svc" or rest.startswith(f"{namespace}.svc.")
    return ServiceLabels(host, name if kubernetes else host, namespace)


def inbound_service(config: model.MeshConfig, identity: ProxyIdentity, port: int) -> ServiceLabels:
    """The first ServiceEntry (file order) of this proxy's namespace that has it as an endpoint
    (by workloadSelector, or an endpoint at its address) with a port reaching `port`."""
    for se in config.service_entries:
        if se.metadata.namespace != identity.namespace or not se.hosts:
            continue
        own = _own_ports(se, config, identity)
        if own is not None and any(_reaches(p, own, port) for p in se.ports):
            return service_labels(se.hosts[0].lower(), se.metadata.namespace)
    return ServiceLabels()


def _own_ports(se: model.ServiceEntry, config: model.MeshConfig,
               identity: ProxyIdentity) -> list[Mapping[str, int]] | None:
    """The port maps of the entries standing for this proxy (None: it is no endpoint of `se`).
    A selected proxy without an entry of its own (static config) has the service's ports."""
    if se.workload_selector:
        if not selects(se.workload_selector, identity.labels):
            return None
        return [we.spec.ports for we in config.workload_entries
                if we.metadata.namespace == identity.namespace and selects(se.workload_selector, we.spec.labels)
                and (not identity.ip or we.spec.address == identity.ip)]
    mine = [ep.ports for ep in se.endpoints if identity.ip and ep.address == identity.ip]
    return mine or None


def _reaches(service_port: model.ServicePort, own: list[Mapping[str, int]], port: int) -> bool:
    """Whether traffic to `service_port` arrives at `port`: the endpoint's port of that name,
    else targetPort, else the number (pymesh.routing.registry.Service.endpoints's rule)."""
    default = service_port.target_port if service_port.target_port is not None else service_port.number
    if port in (default, service_port.number):
        return True
    return bool(service_port.name) and any(ports.get(service_port.name) == port for ports in own)
