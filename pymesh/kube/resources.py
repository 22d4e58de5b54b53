"""The Kubernetes resource types pymesh lists, watches or writes, with their REST paths, so that
the client, the informers and the stand-in API server in tests agree on one table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path: the collection across namespaces without `namespace`, one object with `name`."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        scope = f"/namespaces/{namespace}" if namespace and self.namespaced else ""
        return f"{root}{scope}/{self.plural}" + (f"/{name}" if name else "")


SERVICES = ResourceType("", "v1", "Service", "services")
PODS = ResourceType("", "v1", "Pod", "pods")
CONFIG_MAPS = ResourceType("", "v1", "ConfigMap", "configmaps")
NAMESPACES = ResourceType("", "v1", "Namespace", "namespaces", namespaced=False)
ENDPOINT_SLICES = ResourceType("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices")
EVENTS = ResourceType("events.k8s.io", "v1", "Event", "events")
TOKEN_REVIEWS = ResourceType("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", namespaced=False)
