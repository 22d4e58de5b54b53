"""Discovery from the API server as a source of the control server's mesh: informers on
Services, EndpointSlices, Pods and Namespaces (in the namespaces given, or all), and the registry
part they make (pymesh.kube.discovery), merged into the configuration before the mesh update.
Every change calls `notify` (the control server's watcher gathers bursts); the translation is
redone only after a change, not per push."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Callable, Sequence

from pymesh.api import model
from pymesh.control.kube.informer import Informer
from pymesh.kube import discovery
from pymesh.kube.resources import ENDPOINT_SLICES, NAMESPACES, PODS, SERVICES

log = logging.getLogger("pymesh.control.kube")

SYNC_LOG_INTERVAL = 10.0  # seconds between "still waiting for the first list" messages


class KubernetesDiscovery:
    """The cluster's services and workloads, kept current by informers."""

    def __init__(self, client, notify: Callable[[], None], namespaces: Sequence[str] = (), metrics=None,
                 domain: str = discovery.DOMAIN, **informer_options) -> None:
        self._notify, self._domain = notify, domain
        scopes = tuple(namespaces) or (None,)
        options = {"metrics": metrics, **informer_options}
        # each type named in its call: the RBAC test (tests/kube/test_manifests.py) reads them
        self._by_resource = {
            SERVICES: [Informer(client, SERVICES, self._changed, namespace=ns, **options) for ns in scopes],
            ENDPOINT_SLICES: [Informer(client, ENDPOINT_SLICES, self._changed, namespace=ns, **options) for ns in scopes],
            PODS: [Informer(client, PODS, self._changed, namespace=ns, **options) for ns in scopes],
        }
        if not namespaces:  # namespace labels (the network) need the cluster-wide list; with --namespace, none
            self._by_resource[NAMESPACES] = [Informer(client, NAMESPACES, self._changed, **options)]
        self.informers = [i for group in self._by_resource.values() for i in group]
        self._discovered: discovery.Discovered | None = None
        self._merged: tuple[model.MeshConfig, model.MeshConfig] | None = None  # (store config, merged)

    def _changed(self) -> None:
        self._discovered = None
        self._merged = None
        self._notify()

    def _objects(self, resource) -> list[dict]:
        return [obj for informer in self._by_resource.get(resource, ()) for obj in informer.objects()]

    def discovered(self) -> discovery.Discovered:
        if self._discovered is None:
            self._discovered = discovery.discover(self._objects(SERVICES), self._objects(ENDPOINT_SLICES),
                                                  self._objects(PODS), self._objects(NAMESPACES), self._domain)
        return self._discovered

    def merged(self, config: model.MeshConfig) -> model.MeshConfig:
        """`config` with the cluster's services first (a host both define is the Kubernetes
        Service's, as Istio's Kubernetes registry wins) and its pods' WorkloadEntries."""
        if self._merged is not None and self._merged[0] is config:
            return self._merged[1]
        found = self.discovered()
        merged = replace(config, service_entries=found.service_entries + config.service_entries,
                         workload_entries=found.workload_entries + config.workload_entries)
        self._merged = (config, merged)
        return merged

    @property
    def synced(self) -> bool:
        return all(i.synced.is_set() for i in self.informers)

    async def start(self) -> None:
        """Start the informers and return once each has listed: the first configuration served
        is the cluster's, never an empty registry that would take every endpoint away."""
        for informer in self.informers:
            informer.start()
        waiting = asyncio.gather(*(i.synced.wait() for i in self.informers))
        while True:
            try:
                await asyncio.wait_for(asyncio.shield(waiting), SYNC_LOG_INTERVAL)
                break
            except asyncio.TimeoutError:
                late = [f"{i.resource.plural}{' in ' + i.namespace if i.namespace else ''}"
                        f"{' (' + i.last_error + ')' if i.last_error else ''}" for i in self.informers
                        if not i.synced.is_set()]
                log.warning("kubernetes: still waiting for the first list of %s; not serving proxies yet",
                            ", ".join(late))
        found = self.discovered()
        log.info("kubernetes: discovered %d services, %d workloads without a sidecar",
                 len(found.service_entries), len(found.workload_entries))

    async def stop(self) -> None:
        for informer in self.informers:
            await informer.stop()

    def status(self) -> list[dict]:
        return [informer.status() for informer in self.informers]
