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


@dataclass(frozen=True)
class Access:
    """One permission the control server's code uses, declared beside the calls that need it when
    the resource is not a constant at the call (a loop over types): a verb on a resource type, on
    its `subresource` ("status") or only on the objects `names`. tests/kube/test_manifests.py
    compares these and the calls it can read with kube/base/rbac.yaml, both ways."""

    resource: ResourceType
    verb: str
    subresource: str = ""
    names: tuple[str, ...] = ()


SERVICES = ResourceType("", "v1", "Service", "services")
PODS = ResourceType("", "v1", "Pod", "pods")
CONFIG_MAPS = ResourceType("", "v1", "ConfigMap", "configmaps")
NAMESPACES = ResourceType("", "v1", "Namespace", "namespaces", namespaced=False)
ENDPOINT_SLICES = ResourceType("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices")
EVENTS = ResourceType("events.k8s.io", "v1", "Event", "events")
TOKEN_REVIEWS = ResourceType("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", namespaced=False)
MUTATING_WEBHOOK_CONFIGURATIONS = ResourceType("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
                                               "mutatingwebhookconfigurations", namespaced=False)
VALIDATING_WEBHOOK_CONFIGURATIONS = ResourceType("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration",
                                                 "validatingwebhookconfigurations", namespaced=False)
