"""The services a proxy can reach: ServiceEntry hosts with their ports and endpoints.

Built once per snapshot; lookups by host follow Istio's naming so a VirtualService may say
"reviews" for "reviews.<ns>.svc.cluster.local", while a ServiceEntry that literally registers
"reviews" is still found by that exact string.
"""

from __future__ import annotations

from dataclasses import dataclass

from pymesh.api import model
from pymesh.routing.hosts import fqdn, is_wildcard
from pymesh.routing.scope import exported_to, selects
from pymesh.routing.snapshot import Endpoint


@dataclass(frozen=True)
class Service:
    host: str  # lower-cased, as the ServiceEntry wrote it
    namespace: str
    ports: tuple[model.ServicePort, ...]
    members: tuple[tuple[str, model.WorkloadEntrySpec], ...]  # (WorkloadEntry name or "", spec)
    resolution: str = "STATIC"
    addresses: tuple[str, ...] = ()  # virtual IPs: captured traffic to them reaches this service
    subject_alt_names: tuple[str, ...] = ()  # ServiceEntry.subjectAltNames
    mesh_external: bool = False  # location MESH_EXTERNAL (the ServiceEntry default): never auto mTLS

    def port(self, number: int) -> model.ServicePort | None:
        for p in self.ports:
            if p.number == number:
                return p
        return None

    def endpoints(self, port: model.ServicePort) -> tuple[Endpoint, ...]:
        """Endpoints for one service port: an endpoint's named port, else targetPort, else the
        port number. A DNS (or DNS_ROUND_ROBIN) service without endpoints resolves its own host,
        as in Istio; NONE and DYNAMIC_DNS services have none (their clusters are PASSTHROUGH)."""
        if self.resolution in ("NONE", "DYNAMIC_DNS"):
            return ()
        default = port.target_port if port.target_port is not None else port.number
        out = tuple(
            Endpoint(
                address=spec.address,
                port=spec.ports.get(port.name, default) if port.name else default,
                labels=spec.labels,
                weight=spec.weight,
                workload=spec.workload or workload,
                namespace=self.namespace,
                locality=spec.locality,
                service_account=spec.service_account,
            )
            for workload, spec in self.members
        )
        if not out and self.resolution in ("DNS", "DNS_ROUND_ROBIN") and not is_wildcard(self.host):
            out = (Endpoint(address=self.host, port=default, namespace=self.namespace),)
        return out


class ServiceIndex:
    """Services exported to one proxy's namespace, by host."""

    def __init__(self, services: tuple[Service, ...]):
        self.services = services
        self._by_host = {s.host: s for s in services}

    def find(self, host: str, namespace: str) -> Service | None:
        """Exact host first, then the short name expanded in `namespace`."""
        host = host.lower()
        return self._by_host.get(host) or self._by_host.get(fqdn(host, namespace))

    def canonical(self, host: str, namespace: str) -> str:
        """The registered host `host` refers to, or its expanded form when none is registered."""
        svc = self.find(host, namespace)
        return svc.host if svc else fqdn(host, namespace)

    @classmethod
    def from_config(cls, config: model.MeshConfig, proxy_namespace: str, warnings: list[str]) -> ServiceIndex:
        services: dict[str, Service] = {}
        for se in config.service_entries:
            meta = se.metadata
            if not exported_to(se.export_to, meta.namespace, proxy_namespace):
                continue
            members = [("", ep) for ep in se.endpoints]
            if se.workload_selector:
                members += [
                    (we.metadata.name, we.spec)
                    for we in config.workload_entries
                    if we.metadata.namespace == meta.namespace and selects(se.workload_selector, we.spec.labels)
                ]
            behind = sorted({spec.network for _, spec in members if not spec.address})
            if behind:  # only a network's gateway reaches them, and pymesh has no multi-network gateways
                warnings.append(f"ServiceEntry {meta.namespace}/{meta.name}: endpoints without an address on network "
                                f"{', '.join(behind)} are left out (pymesh does not route through network gateways)")
                members = [(name, spec) for name, spec in members if spec.address]
            for host in se.hosts:
                host = host.lower()
                if host in services:
                    warnings.append(f"ServiceEntry {meta.namespace}/{meta.name}: host {host} is already defined by another ServiceEntry; ignored")
                    continue
                services[host] = Service(host, meta.namespace, se.ports, tuple(members), se.resolution, se.addresses,
                                         se.subject_alt_names, se.location == "MESH_EXTERNAL")
        return cls(tuple(services.values()))
