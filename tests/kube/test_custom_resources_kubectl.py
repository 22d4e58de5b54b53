"""Istio's bookinfo samples applied with the real `kubectl apply -f`, against the STAND-IN API
server (tests/kube/apiserver.py with kubectl's discovery documents, tests/kube/kubectl_standin.py:
no kube-apiserver can run here), route a real proxy through a real `pymesh control serve
--kubernetes`; an invalid edit is rejected with its namespace/name and field path and the last
good version keeps routing, and `kubectl get` shows the object's status and the Warning Event;
`kubectl delete` takes the route away."""

from __future__ import annotations

import json

import pytest

from bookinfo_crs import SAMPLES, Bookinfo
from kubectl_standin import KUBECTL, KubectlStandIn, kubectl
from mesh_harness import mesh, wait_until  # noqa: F401  (the fixture)

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


@pytest.fixture
def server(tmp_path):
    with KubectlStandIn(tmp_path / "apiserver-kubectl") as api:
        yield api


def istio_sample(name: str) -> str:
    """A bookinfo sample as kubectl sends it, at v1 (the version the stand-in serves; a real API
    server converts the samples' v1alpha3)."""
    return (SAMPLES / name).read_text().replace("networking.istio.io/v1alpha3", "networking.istio.io/v1")


def test_kubectl_apply_of_bookinfo_routes_and_an_invalid_edit_keeps_the_last_good(mesh, server, tmp_path):
    bookinfo = Bookinfo(mesh, server)
    cache = tmp_path / "kubectl-cache"

    def apply(text: str) -> str:
        done = kubectl(server, "apply", "--validate=false", "-f", "-", stdin=text, cache=cache)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "destinationrule.networking.istio.io/reviews configured" in apply(istio_sample("destination-rule-all.yaml"))
    assert "virtualservice.networking.istio.io/reviews configured" in apply(istio_sample("virtual-service-reviews-v3.yaml"))
    bookinfo.wait_versions({"v3"}, "reviews routed to v3 after kubectl apply")

    broken = istio_sample("virtual-service-reviews-v3.yaml").replace("subset: v3", "subset: v3\n      weight: -5")
    apply(broken)  # the stand-in has no validating webhook: the object is stored, pymesh rejects it
    status = bookinfo.control.wait_status(lambda s: s.get("rejected_resources"), "the invalid edit reported")
    (entry,) = status["rejected_resources"]
    assert (entry["namespace"], entry["name"]) == ("default", "reviews")
    assert any(e.startswith("VirtualService default/reviews: spec.http[0].route[0].weight: ") for e in entry["errors"])

    def status_code() -> str:
        done = kubectl(server, "get", "virtualservice", "reviews", "-o",
                       "jsonpath={.status.validationMessages[0].type.code}", cache=cache)
        return done.stdout if done.returncode == 0 else ""
    assert wait_until(status_code, what="IST0106 in kubectl get's status") == "IST0106"
    events = json.loads(kubectl(server, "get", "events.v1.events.k8s.io", "-o", "json", cache=cache).stdout)
    (event,) = [e for e in events["items"] if e["regarding"]["name"] == "reviews"]
    assert (event["type"], event["reason"]) == ("Warning", "SchemaValidationError")
    assert "spec.http[0].route[0].weight" in event["note"]
    assert bookinfo.versions() == {"v3"}  # the last good version routes on

    done = kubectl(server, "delete", "-f", "-", "--wait=false", stdin=broken, cache=cache)
    assert done.returncode == 0, done.stderr
    bookinfo.wait_versions({"v1", "v2", "v3"}, "every version answering once kubectl deleted the VirtualService")
    bookinfo.control.wait_status(lambda s: s.get("rejected_resources") == [], "the deleted object's rejection gone")
