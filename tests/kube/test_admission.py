"""The admission webhooks' pure part (pymesh/kube/admission.py): the AdmissionReview envelope,
the injection and validation answers, and the JSON patch, checked by APPLYING it with an
independent RFC 6902 implementation (the `jsonpatch` library)."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import jsonpatch
import pytest

from pymesh.control.kube.webhooks import known, validate
from pymesh.kube import admission
from pymesh.kube.admission import EnvelopeError

HERE = Path(__file__).parent
RECORDED = json.loads((HERE / "admission" / "deployment-pod-create.json").read_text())


def review(operation="CREATE", obj=None, kind=("", "v1", "Pod"), **request) -> dict:
    group, version, name = kind
    request = {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "operation": operation,
               "kind": {"group": group, "version": version, "kind": name}, "namespace": "default", **request}
    if obj is not None:
        request["object"] = obj
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def body(value) -> bytes:
    return json.dumps(value).encode()


# --- the JSON patch -------------------------------------------------------------------------------

PATCH_CASES = {
    "equal": ({"a": 1}, {"a": 1}),
    "key added": ({"a": 1}, {"a": 1, "b": {"c": [1]}}),
    "key removed": ({"a": 1, "b": 2}, {"a": 1}),
    "value replaced": ({"a": 1}, {"a": "1"}),
    "1 is not true": ({"a": 1}, {"a": True}),
    "1 is not 1.0": ({"a": [1]}, {"a": [1.0]}),
    "slash and tilde in keys": ({"metadata": {"annotations": {"a/b": "x"}}},
                                {"metadata": {"annotations": {"a/b": "y", "c~d/e": "z"}}}),
    "list appended": ({"l": [1, 2]}, {"l": [1, 2, 3, 4]}),
    "list prepended": ({"l": [{"name": "app"}]}, {"l": [{"name": "init"}, {"name": "proxy"}, {"name": "app"}]}),
    "list inserted in the middle": ({"l": [1, 2, 3]}, {"l": [1, 9, 2, 3]}),
    "list shortened in the middle": ({"l": [1, 2, 3, 4]}, {"l": [1, 4]}),
    "list emptied": ({"l": [1, 2]}, {"l": []}),
    "list element changed deep": ({"l": [{"a": {"b": 1}}, 2]}, {"l": [{"a": {"b": 2, "c": 3}}, 2]}),
    "list replaced by map": ({"l": [1]}, {"l": {"a": 1}}),
    "repeated elements": ({"l": [1, 1, 1]}, {"l": [1, 1, 2, 1, 1]}),
    "root scalar": (1, 2),
    "null to value": ({"a": None}, {"a": {}}),
}


@pytest.mark.parametrize("before,after", PATCH_CASES.values(), ids=PATCH_CASES.keys())
def test_json_patch_applied_by_jsonpatch_gives_the_target(before, after):
    patch = admission.json_patch(before, after)
    assert json.dumps(jsonpatch.apply_patch(copy.deepcopy(before), patch)) == json.dumps(after)
    assert {op["op"] for op in patch} <= {"add", "remove", "replace"}


def test_json_patch_of_prepended_containers_is_adds_not_a_rewrite():
    before = {"spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    after = {"spec": {"initContainers": [{"name": "pymesh-init"}], "containers": [{"name": "app", "image": "app:1"}]}}
    assert admission.json_patch(before, after) == [
        {"op": "add", "path": "/spec/initContainers", "value": [{"name": "pymesh-init"}]}]
    patch = admission.json_patch({"l": [{"name": "app"}]}, {"l": [{"name": "a"}, {"name": "b"}, {"name": "app"}]})
    assert patch == [{"op": "add", "path": "/l/0", "value": {"name": "a"}},
                     {"op": "add", "path": "/l/1", "value": {"name": "b"}}]


# --- the envelope --------------------------------------------------------------------------------

ENVELOPES = {
    "not JSON": (b"{not json", "not JSON"),
    "not UTF-8": (b"\xff\xfe{}", "not JSON"),
    "a JSON list": (b"[]", "not a JSON object"),
    "v2": (body({**review(obj={}), "apiVersion": "admission.k8s.io/v2"}), "admissionReviewVersions"),
    "no apiVersion": (body({"kind": "AdmissionReview", "request": {"uid": "u"}}), "admissionReviewVersions"),
    "wrong kind": (body({**review(obj={}), "kind": "TokenReview"}), "kind AdmissionReview"),
    "no request": (body({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}), "no request"),
    "request not an object": (body({**review(), "request": "x"}), "no request"),
    "no uid": (body(review(obj={}, uid="")), "request.uid is missing"),
    "uid not a string": (body(review(obj={}, uid=7)), "request.uid is missing"),
    "bad operation": (body(review(operation="PATCH", obj={})), "request.operation"),
    "CREATE without object": (body(review()), "request.object is missing"),
    "UPDATE with a list object": (body(review(operation="UPDATE", obj=[])), "request.object is missing"),
}


@pytest.mark.parametrize("data,message", ENVELOPES.values(), ids=ENVELOPES.keys())
def test_a_wrong_envelope_is_a_400_with_the_reason(data, message):
    with pytest.raises(EnvelopeError) as raised:
        admission.read_request(data).request
    assert raised.value.status == 400 and message in raised.value.message


def test_a_recorded_request_reads():
    request = admission.read_request(body(RECORDED)).request
    assert request["uid"] == "cb2373d5-7933-43a4-9ca7-0be7db7c6f33" and request["object"]["kind"] == "Pod"


def test_v1beta1_is_read_and_answered_in_v1beta1():
    read = admission.read_request(body({**review(obj={}), "apiVersion": "admission.k8s.io/v1beta1"}))
    assert read.api_version == "admission.k8s.io/v1beta1"
    answer = admission.in_version(admission.allowed(read.request["uid"]), read.api_version)
    assert answer["apiVersion"] == "admission.k8s.io/v1beta1" and answer["kind"] == "AdmissionReview"


def test_delete_needs_no_object():
    assert admission.read_request(body(review(operation="DELETE"))).request["operation"] == "DELETE"


# --- /inject's answer ----------------------------------------------------------------------------

def _sidecar(pod: dict, namespace: str) -> dict:
    out = copy.deepcopy(pod)
    out["spec"].setdefault("initContainers", []).insert(0, {"name": "pymesh-proxy", "restartPolicy": "Always"})
    out["metadata"].setdefault("annotations", {})["sidecar.pymesh.dev/status"] = namespace
    return out


def _decoded_patch(answer: dict) -> list:
    return json.loads(base64.b64decode(answer["response"]["patch"]))


def test_inject_answers_the_recorded_pod_with_a_patch_that_applies():
    request = admission.read_request(body(RECORDED)).request
    answer = admission.review_inject(request, _sidecar)
    response = answer["response"]
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert response["uid"] == RECORDED["request"]["uid"] and response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    patched = jsonpatch.apply_patch(RECORDED["request"]["object"], _decoded_patch(answer))
    assert patched == _sidecar(RECORDED["request"]["object"], "demo")


INJECT_PASSES = {
    "not required": (review(obj={"metadata": {}, "spec": {}}), lambda pod, ns: None),
    "an UPDATE": (review(operation="UPDATE", obj={"metadata": {}, "spec": {}}), _sidecar),
    "a DELETE": (review(operation="DELETE"), _sidecar),
    "not a pod": (review(obj={"metadata": {}, "spec": {}}, kind=("apps", "v1", "Deployment")), _sidecar),
}


@pytest.mark.parametrize("data,inject", INJECT_PASSES.values(), ids=INJECT_PASSES.keys())
def test_inject_allows_without_a_patch(data, inject):
    response = admission.review_inject(admission.read_request(body(data)).request, inject)["response"]
    assert response == {"uid": data["request"]["uid"], "allowed": True}


def test_inject_takes_the_namespace_from_the_request():
    seen = []
    request = admission.read_request(body(review(obj={"metadata": {}, "spec": {}}, namespace="shop"))).request
    admission.review_inject(request, lambda pod, ns: seen.append(ns))
    assert seen == ["shop"]


def test_inject_refusal_and_a_pod_without_spec_are_denied_with_the_reason():
    def refuse(pod, namespace):
        raise ValueError("a container is already named pymesh-proxy")

    answer = admission.review_inject(admission.read_request(body(RECORDED)).request, refuse)["response"]
    assert answer["allowed"] is False and answer["status"]["code"] == 400
    assert "pod demo/demo-crd-resource-76bf5f8695-sf4bt: a container is already named" in answer["status"]["message"]
    request = admission.read_request(body(review(obj={"metadata": {}}))).request
    answer = admission.review_inject(request, _sidecar)["response"]
    assert answer["allowed"] is False and "no spec" in answer["status"]["message"]


# --- /validate's answer --------------------------------------------------------------------------

def virtual_service(**spec) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "bookinfo", "uid": "1", "resourceVersion": "7",
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}], **spec}}


def validated(operation: str, obj: dict | None) -> dict:
    request = admission.read_request(body(review(operation, obj, kind=("networking.istio.io", "v1", "x")))).request
    return admission.review_validate(request, validate, known)["response"]


def test_a_valid_virtual_service_is_allowed():
    assert validated("CREATE", virtual_service()) == {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True}


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
def test_an_invalid_virtual_service_is_denied_naming_kind_namespace_name_and_field(operation):
    response = validated(operation, virtual_service(http=[{"timeout": "abc", "route": [{"destination": {}}]}]))
    assert response["allowed"] is False and response["status"]["code"] == 400
    message = response["status"]["message"]
    assert message.startswith("configuration is invalid: VirtualService bookinfo/reviews: spec.http[0].timeout: ")
    assert "VirtualService bookinfo/reviews: spec.http[0].route[0].destination" in message


ALLOWED_UNVALIDATED = {
    "DELETE": ("DELETE", None),
    "a kind pymesh does not read": ("CREATE", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"},
                                               "data": {"a": 1}}),
    "no kind": ("CREATE", {"spec": {"hosts": 7}}),
    # the Gateway API's are not ours to refuse (their CRDs validate themselves; another
    # controller may own the route), even when pymesh could not use them
    "an invalid Gateway API route": ("CREATE", {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                                                "metadata": {"name": "r", "namespace": "default"},
                                                "spec": {"rules": [{"backendRefs": [{"name": "s", "port": "80x"}]}]}}),
    "an invalid Gateway API Gateway": ("UPDATE", {"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "Gateway",
                                                  "metadata": {"name": "g"}, "spec": {"listeners": 7}}),
}


@pytest.mark.parametrize("operation,obj", ALLOWED_UNVALIDATED.values(), ids=ALLOWED_UNVALIDATED.keys())
def test_allowed_without_validation(operation, obj):
    assert validated(operation, obj)["allowed"] is True


def test_a_kind_pymesh_does_not_implement_is_allowed_with_a_warning():
    envoy_filter = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
                    "metadata": {"name": "f", "namespace": "istio-system"}, "spec": {}}
    response = validated("CREATE", envoy_filter)
    assert response["allowed"] is True
    assert any("EnvoyFilter istio-system/f" in w and "not applied" in w for w in response["warnings"])


def test_a_denial_message_is_bounded():
    errors = [admission.ConfigError("f", 0, f"spec.http[{i}]", "x" * 100) for i in range(200)]
    assert len(admission.validation_message("VirtualService", "ns", "n", errors)) <= admission.MAX_MESSAGE


# --- type-confused requests: an answer, never an exception -------------------------------------------

def _pod(**overrides) -> dict:
    pod = copy.deepcopy(RECORDED["request"]["object"])
    for path, value in overrides.items():
        target = pod
        *parents, last = path.split("__")
        for key in parents:
            target = target[key]
        target[last] = value
    return pod


CONFUSED_PODS = {
    "labels a list": _pod(metadata__labels=["a"]),
    "annotations a string": _pod(metadata__annotations="x"),
    "metadata a list": _pod(metadata=[]),
    "spec a list": _pod(spec=[]),
    "containers a map": _pod(spec__containers={"name": "x"}),
    "container a string": _pod(spec__containers=["app"]),
    "no containers": _pod(spec__containers=[]),
    "inject annotation a number": _pod(metadata__annotations={"sidecar.istio.io/inject": 1}),
    "bad capture annotation": _pod(metadata__annotations={"traffic.sidecar.istio.io/excludeOutboundPorts": "x"}),
    "volumes a string": _pod(spec__volumes="v"),
    "init containers null": _pod(spec__initContainers=None),
    "host network": _pod(spec__hostNetwork=True),
}


@pytest.mark.parametrize("pod", CONFUSED_PODS.values(), ids=CONFUSED_PODS.keys())
def test_inject_answers_type_confused_pods(pod):
    from pymesh.control.kube.webhooks import injector
    from pymesh.kube.inject_settings import InjectSettings

    data = review(obj=pod)
    answer = admission.review_inject(admission.read_request(body(data)).request, injector(InjectSettings))
    response = answer["response"]
    assert response["uid"] == data["request"]["uid"] and isinstance(response["allowed"], bool)
    if response["allowed"] and "patch" in response:  # what is patched is a whole, valid injection
        patched = jsonpatch.apply_patch(copy.deepcopy(pod), _decoded_patch(answer))
        assert [c["name"] for c in patched["spec"]["initContainers"]][:2] == ["pymesh-init", "pymesh-proxy"]
    if not response["allowed"]:
        assert response["status"]["message"].startswith("cannot inject")


CONFUSED_OBJECTS = {
    "kind a number": {"apiVersion": "networking.istio.io/v1", "kind": 7, "metadata": {}, "spec": {}},
    "metadata a list": {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": [], "spec": {}},
    "spec a string": {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "v"},
                      "spec": "x"},
    "deeply nested": {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "v"},
                      "spec": {"hosts": ["v"], "http": [{"headers": json.loads("[" * 200 + "]" * 200)}]}},
    "unknown field": {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "a"},
                      "spec": {"bogus": 1}},
    "a typo kind in Istio's group": {"apiVersion": "networking.istio.io/v1", "kind": "VirtualServce",
                                     "metadata": {"name": "v"}, "spec": {}},
}


@pytest.mark.parametrize("obj", CONFUSED_OBJECTS.values(), ids=CONFUSED_OBJECTS.keys())
def test_validate_answers_type_confused_objects(obj):
    response = validated("CREATE", obj)
    assert response["uid"] and isinstance(response["allowed"], bool)
    if not response["allowed"]:
        assert response["status"]["message"].startswith("configuration is invalid: ")


def test_the_settings_file_is_reloaded_and_a_bad_version_keeps_the_last_good(tmp_path, caplog):
    from pymesh.control.kube.settings_file import SettingsFile
    from pymesh.control.kube.webhooks import injector

    path = tmp_path / "settings"
    path.write_text("proxyImage: registry.local/pymesh:1\n")
    settings = SettingsFile(str(path))
    inject = injector(lambda: settings.settings)
    request = admission.read_request(body(RECORDED)).request

    def images() -> set:
        patched = jsonpatch.apply_patch(copy.deepcopy(request["object"]),
                                        _decoded_patch(admission.review_inject(request, inject)))
        return {c["image"] for c in patched["spec"]["initContainers"]}

    assert images() == {"registry.local/pymesh:1"}
    path.write_text("proxyImage: registry.local/pymesh:2\n")
    settings.reload()
    assert images() == {"registry.local/pymesh:2"}
    path.write_text("proxyImge: typo\n")
    settings.reload()
    assert images() == {"registry.local/pymesh:2"}
    assert any("does not load" in r.getMessage() and "proxyImge" in r.getMessage() for r in caplog.records)
    path.unlink()
    settings.reload()  # a ConfigMap volume mid-swap, or deleted: the last good stays
    assert images() == {"registry.local/pymesh:2"}
