"""The pure part of custom resources: REST paths of every config kind, objects as the API server
returns them -> the loader's resources and errors (what the validating webhook reads too)."""

import copy

import pytest

from pymesh.api.limits import Limits
from pymesh.kube.custom_resources import (
    CUSTOM_RESOURCES, configured, crd_serves, load_object, plural, source_name,
)

REVIEWS = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {
        "name": "reviews", "namespace": "default", "uid": "6b0c4a3e-1111-4c39-9f3b-5f3f0ad3a1e2",
        "resourceVersion": "4711", "generation": 2, "creationTimestamp": "2026-12-01T10:00:00Z",
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update",
                           "apiVersion": "networking.istio.io/v1", "fieldsType": "FieldsV1",
                           "fieldsV1": {"f:spec": {".": {}, "f:hosts": {}}}}],
    },
    "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]},
    "status": {"validationMessages": [{"level": "ERROR", "type": {"code": "IST0106"}}]},
}


def with_spec(**spec):
    obj = copy.deepcopy(REVIEWS)
    obj["spec"] = spec
    return obj


@pytest.mark.parametrize("kind, expected", [
    ("VirtualService", "virtualservices"), ("ServiceEntry", "serviceentries"),
    ("AuthorizationPolicy", "authorizationpolicies"), ("Telemetry", "telemetries"),
    ("GatewayClass", "gatewayclasses"), ("HTTPRoute", "httproutes"), ("Sidecar", "sidecars"),
    ("ProxyConfig", "proxyconfigs"), ("Gateway", "gateways"),
])
def test_plural_is_the_crds_resource_name(kind, expected):
    assert plural(kind) == expected


def test_every_config_kind_is_watched_at_its_newest_version_first():
    paths = {(c.group, c.kind.name): [v.path() for v in c.versions] for c in CUSTOM_RESOURCES}
    assert paths[("networking.istio.io", "VirtualService")] == [
        "/apis/networking.istio.io/v1/virtualservices", "/apis/networking.istio.io/v1beta1/virtualservices",
        "/apis/networking.istio.io/v1alpha3/virtualservices"]
    assert paths[("gateway.networking.k8s.io", "HTTPRoute")][0] == "/apis/gateway.networking.k8s.io/v1/httproutes"
    assert paths[("security.istio.io", "AuthorizationPolicy")][0] == "/apis/security.istio.io/v1/authorizationpolicies"
    assert paths[("telemetry.istio.io", "Telemetry")][0] == "/apis/telemetry.istio.io/v1/telemetries"
    # both Gateways, and nothing that is not a CRD (Istio's mesh ConfigMap)
    assert ("networking.istio.io", "Gateway") in paths and ("gateway.networking.k8s.io", "Gateway") in paths
    assert all(c.group for c in CUSTOM_RESOURCES)
    namespaced = {c.kind.name: c.versions[0].namespaced for c in CUSTOM_RESOURCES}
    assert namespaced["GatewayClass"] is False and namespaced["HTTPRoute"] and namespaced["VirtualService"]


def test_an_object_as_the_api_server_returns_it_loads():
    result = load_object(REVIEWS)
    assert result.errors == []
    (vs,) = result.config.virtual_services
    assert (vs.metadata.namespace, vs.metadata.name) == ("default", "reviews")
    assert vs.metadata.source.file == "VirtualService default/reviews"


@pytest.mark.parametrize("api_version", ["networking.istio.io/v1", "networking.istio.io/v1beta1",
                                         "networking.istio.io/v1alpha3"])
def test_every_served_version_is_accepted(api_version):
    assert load_object({**REVIEWS, "apiVersion": api_version}).errors == []


@pytest.mark.parametrize("obj, expected", [
    (with_spec(hosts=["reviews"], http=[{"route": [{"destination": {"host": ""}}]}]),
     "VirtualService default/reviews: spec.http[0].route[0].destination.host: empty domain name is not allowed"),
    (with_spec(hosts=5, http=[]), "VirtualService default/reviews: spec.hosts: expected a list, got 5"),
    (with_spec(hosts=["reviews"], http=[{"route": [{"destination": {"host": "r"}}]}], colour="blue"),
     "VirtualService default/reviews: spec.colour: unknown field"),
    ({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "spec": {"hosts": ["r"]}},
     "VirtualService (unnamed): metadata: required field is missing"),
    ({"apiVersion": "networking.istio.io/v1", "kind": "VirtualSrvice", "metadata": {"name": "x", "namespace": "d"}},
     "VirtualSrvice d/x: kind: networking.istio.io/v1 has no kind VirtualSrvice"),
    (["not", "an", "object"], "(not an object): expected an object with apiVersion, kind, metadata and spec"),
    ({**REVIEWS, "metadata": "reviews"}, "VirtualService (unnamed): metadata: expected a mapping"),
])
def test_invalid_objects_are_errors_naming_the_object_and_the_field(obj, expected):
    errors = [str(e) for e in load_object(obj).errors]
    assert any(e.startswith(expected) for e in errors), errors
    assert load_object(obj).config.virtual_services == ()


def test_a_huge_or_deep_object_is_refused_by_the_limits():
    huge = with_spec(hosts=["a" * 2048], http=[{"route": [{"destination": {"host": "r"}}]}])
    (error,) = load_object(huge, Limits(max_file_bytes=1024)).errors
    assert error.file == "VirtualService default/reviews" and "over the 1024 bytes limit" in error.message
    deep: dict = {}
    inner = deep
    for _ in range(3000):
        inner["a"] = {}
        inner = inner["a"]
    (error,) = load_object(with_spec(hosts=["r"], http=[deep])).errors
    assert "nested" in error.message


def test_a_kind_pymesh_does_not_read_is_not_an_error():
    assert load_object({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}).errors == []
    envoy_filter = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
                    "metadata": {"name": "x", "namespace": "d"}, "spec": {}}
    assert load_object(envoy_filter).errors == [] and load_object(envoy_filter).warnings


def test_configured_ignores_status_and_bookkeeping():
    updated = copy.deepcopy(REVIEWS)
    updated["status"] = {"conditions": []}
    updated["metadata"].update(resourceVersion="4712", managedFields=[])
    assert configured(updated) == configured(REVIEWS)
    updated["metadata"]["labels"] = {"app": "reviews"}
    assert configured(updated) != configured(REVIEWS)


@pytest.mark.parametrize("obj, expected", [
    (REVIEWS, "VirtualService default/reviews"),
    ({"kind": "GatewayClass", "metadata": {"name": "pymesh"}}, "GatewayClass pymesh"),
    ({"kind": 3, "metadata": {"name": ["x"]}}, "(no kind) (unnamed)"),
    ("text", "(not an object)"),
])
def test_source_name(obj, expected):
    assert source_name(obj) == expected


def crd(group="networking.istio.io", plural="virtualservices", versions=(("v1", True),)):
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "names": {"plural": plural, "kind": "VirtualService"}, "scope": "Namespaced",
                     "versions": [{"name": name, "served": served, "storage": True} for name, served in versions]}}


VIRTUAL_SERVICES = next(c for c in CUSTOM_RESOURCES if c.kind.name == "VirtualService")


@pytest.mark.parametrize("obj, serves", [
    (crd(), True),
    (crd(versions=(("v1", False), ("v1alpha3", True))), True),  # an older Istio's CRD
    (crd(versions=(("v1", False),)), False),
    (crd(versions=(("v2", True),)), False),  # a version pymesh does not read
    (crd(group="networking.example.com"), False),
    (crd(plural="destinationrules"), False),
    ({"spec": "nonsense"}, False),
    ("not a CRD", False),
])
def test_crd_serves(obj, serves):
    assert crd_serves(obj, VIRTUAL_SERVICES) is serves
