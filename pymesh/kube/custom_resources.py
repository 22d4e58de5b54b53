"""Istio's, pymesh's and the Gateway API's custom resources -> the config loader's input, so that
an object read from the API server is validated exactly like a file (`pymesh analyze`'s rules)
and its errors name it the way Istio's do: `VirtualService default/reviews: spec.http[0]...`.

Each object is loaded on its own, as one unit: the caller keeps the last good version of each.
`load_object(obj)` is also what the validating webhook runs on an AdmissionReview's object.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import yaml

from pymesh.api import limits as input_limits, model
from pymesh.api.errors import ConfigError, ConfigWarning
from pymesh.api.limits import Limits
from pymesh.api.load import LoadResult, load_text
from pymesh.api.resources import ALL_KINDS, CORE, GATEWAY_API_GROUP, Kind
from pymesh.kube.resources import ResourceType

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
# Kubernetes' bookkeeping: it changes on every write (ours to the status subresource included)
# without changing what the object configures, so it is left out of what is loaded and compared
_VOLATILE_METADATA = ("resourceVersion", "managedFields", "generation", "uid", "selfLink")


def plural(kind: str) -> str:
    """The REST resource name Kubernetes' default pluralization gives a CRD's kind (the one
    Istio's and the Gateway API's CRDs declare): VirtualService -> virtualservices,
    AuthorizationPolicy -> authorizationpolicies, GatewayClass -> gatewayclasses."""
    name = kind.lower()
    if name.endswith("y") and name[-2:-1] not in "aeiou":
        return name[:-1] + "ies"
    if name.endswith(("s", "x", "ch", "sh")):
        return name + "es"
    return name + "s"


@dataclass(frozen=True)
class CustomResource:
    """One config kind as the API server serves it: `versions` newest first; the first served
    one is watched (the API server converts every stored object to it), the others are tried in
    turn when a cluster's CRD is older and does not serve it."""

    kind: Kind
    versions: tuple[ResourceType, ...]

    @property
    def group(self) -> str:
        return self.kind.api[0]


CLUSTER_SCOPED = frozenset({(GATEWAY_API_GROUP, "GatewayClass")})


def _custom_resource(kind: Kind) -> CustomResource:
    group, versions = kind.api
    namespaced = (group, kind.name) not in CLUSTER_SCOPED
    return CustomResource(kind, tuple(ResourceType(group, version, kind.name, plural(kind.name), namespaced)
                                      for version in versions))


# every kind the loader implements, except the core ConfigMap (Istio's mesh config, not a CRD)
CUSTOM_RESOURCES = tuple(_custom_resource(kind) for kind in ALL_KINDS if kind.spec is not None and kind.api != CORE)

# watched to notice a CRD installed or upgraded at once, as Istio's CRD watcher does
CRDS = ResourceType("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
                    namespaced=False)


def crd_serves(crd: object, resource: CustomResource) -> bool:
    """Whether a CustomResourceDefinition (as the API server returns it) serves `resource` at
    one of the versions pymesh reads."""
    spec = crd.get("spec") if isinstance(crd, dict) else None
    if not isinstance(spec, dict) or spec.get("group") != resource.group:
        return False
    names = spec.get("names") if isinstance(spec.get("names"), dict) else {}
    if names.get("plural") != resource.versions[0].plural:
        return False
    ours = {version.version for version in resource.versions}
    return any(isinstance(v, dict) and v.get("served") and v.get("name") in ours for v in spec.get("versions") or [])


def source_name(obj: object) -> str:
    """`<kind> <namespace>/<name>`, as Istio names a resource in its messages; readable for
    any input (a hostile object may have no metadata, or not be a mapping at all)."""
    if not isinstance(obj, dict):
        return "(not an object)"
    kind = obj.get("kind") if isinstance(obj.get("kind"), str) and obj.get("kind") else "(no kind)"
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    name = metadata.get("name") if isinstance(metadata.get("name"), str) and metadata.get("name") else "(unnamed)"
    namespace = metadata.get("namespace")
    return f"{kind} {namespace}/{name}" if isinstance(namespace, str) and namespace else f"{kind} {name}"


def configured(obj: dict) -> dict:
    """The object without what the API server changes on its own (status, resourceVersion,
    managedFields...): two versions with the same `configured` configure the same thing, so a
    status-only update (ours) is not a change."""
    out = {key: value for key, value in obj.items() if key != "status"}
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        out["metadata"] = {key: value for key, value in metadata.items() if key not in _VOLATILE_METADATA}
    return out


def load_object(obj: object, limits: Limits = input_limits.DEFAULT) -> LoadResult:
    """One object (as the API server's JSON decodes) through the config loader: its resource
    if it is valid, else every error, each naming the object and the field path (no line: the
    object has no file). Never raises for any input."""
    name = source_name(obj)
    if not isinstance(obj, dict):
        return _failed(name, "expected an object with apiVersion, kind, metadata and spec")
    try:
        text = yaml.dump(configured(obj), Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    except RecursionError:
        return _failed(name, f"nested more than {limits.max_depth} levels deep")
    except yaml.YAMLError as exc:  # a value JSON cannot hold (only a caller's bug gets here)
        return _failed(name, f"cannot be read: {exc}")
    result = load_text(text, name, limits)
    return replace(result, files=(), errors=[_lineless(e) for e in result.errors],
                   warnings=tuple(_lineless(w) for w in result.warnings))


@dataclass(frozen=True)
class ObjectError(ConfigError):
    """An error in an object read from the API server: no file and no line, so it reads as
    Istio's validation writes it: `VirtualService default/reviews: spec.hosts: ...`."""

    def where(self) -> str:
        return f"{self.file}: {self.path}" if self.path else self.file


def _lineless(error: ConfigError) -> ConfigError:
    if isinstance(error, ConfigWarning):
        return replace(error, line=0)
    return ObjectError(error.file, 0, error.path, error.message)


def _failed(name: str, message: str) -> LoadResult:
    return LoadResult(model.MeshConfig(), [ObjectError(name, 0, "", message)])
