"""Issue 14's done-when point for the webhook: a recorded AdmissionReview of a Deployment's pod
(tests/kube/admission/, as the API server sent it: generateName, ownerReferences, managedFields,
the defaulted spec) is answered over real HTTPS by `pymesh control serve --webhook-listen` with a
JSON patch; the patch APPLIED by the `jsonpatch` library gives the pod spec `pymesh kube-inject`
gives the same Deployment, and the pod validates against the Kubernetes 1.30 schemas."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
from pathlib import Path

import jsonpatch
import kubernetes_validate
import pytest
import yaml

from webhook_harness import RECORDED, control, curl  # noqa: F401  (the fixture and the curl client)

KUBERNETES = "1.30"


def deployment_of(pod: dict) -> dict:
    """The Deployment the recorded pod came from, as its owner's name and template say."""
    metadata = pod["metadata"]
    name = metadata["ownerReferences"][0]["name"].rsplit("-", 1)[0]
    labels = {k: v for k, v in metadata["labels"].items() if k != "pod-template-hash"}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": metadata["namespace"]},
            "spec": {"selector": {"matchLabels": {"appSelector": labels["appSelector"]}},
                     "template": {"metadata": {"labels": labels, "annotations": metadata.get("annotations", {})},
                                  "spec": copy.deepcopy(pod["spec"])}}}


def kube_inject(manifest: dict) -> dict:
    done = subprocess.run([sys.executable, "-m", "pymesh", "kube-inject", "-f", "-"], input=yaml.safe_dump(manifest),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def schema_problem(obj: dict) -> str | None:
    try:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{error.message} at {list(error.path)}"
    return None


def test_the_webhook_patch_gives_kube_injects_pod_spec(control):
    review = json.loads(RECORDED)
    pod = review["request"]["object"]
    status, text = curl(control, "/inject", RECORDED)
    assert status == 200
    response = json.loads(text)["response"]
    assert response["uid"] == review["request"]["uid"] and response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    patched = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(response["patch"])))

    template = kube_inject(deployment_of(pod))["spec"]["template"]
    assert patched["spec"] == template["spec"]
    for key in ("labels", "annotations"):
        expected = dict(template["metadata"][key], **({"pod-template-hash": "76bf5f8695"} if key == "labels" else {}))
        assert patched["metadata"][key] == expected
    assert [c["name"] for c in patched["spec"]["initContainers"]] == ["pymesh-init", "pymesh-proxy"]
    assert patched["spec"]["initContainers"][1]["restartPolicy"] == "Always"  # a native sidecar
    assert schema_problem(patched) is None


def test_an_injected_pod_gets_no_second_patch(control):
    review = json.loads(RECORDED)
    status, text = curl(control, "/inject", RECORDED)
    patched = jsonpatch.apply_patch(review["request"]["object"],
                                    json.loads(base64.b64decode(json.loads(text)["response"]["patch"])))
    review["request"]["object"] = patched  # called again: a retried create, or another revision's webhook
    status, text = curl(control, "/inject", json.dumps(review).encode())
    assert status == 200 and json.loads(text)["response"] == {"uid": review["request"]["uid"], "allowed": True}


@pytest.mark.parametrize("where", ["labels", "annotations"])
def test_a_pod_that_opts_out_gets_no_patch(control, where):
    review = json.loads(RECORDED)
    review["request"]["object"]["metadata"].setdefault(where, {})["sidecar.istio.io/inject"] = "false"
    status, text = curl(control, "/inject", json.dumps(review).encode())
    assert status == 200 and "patch" not in json.loads(text)["response"]


def test_a_pod_with_a_container_named_like_ours_is_refused_with_the_reason(control):
    review = json.loads(RECORDED)
    review["request"]["object"]["spec"]["containers"][0]["name"] = "pymesh-proxy"
    status, text = curl(control, "/inject", json.dumps(review).encode())
    response = json.loads(text)["response"]
    assert status == 200 and response["allowed"] is False
    assert "pod demo/demo-crd-resource-76bf5f8695-sf4bt" in response["status"]["message"]
    assert "already named 'pymesh-proxy'" in response["status"]["message"]
