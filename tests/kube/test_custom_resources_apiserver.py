"""Custom resources as a config source, end to end, against the STAND-IN API server
(tests/kube/apiserver.py: no kube-apiserver can run here): a real `pymesh control serve
--kubernetes` reads Istio's bookinfo VirtualService and DestinationRule as custom resources and
a real proxy routes by them; an invalid update is reported with the object's namespace/name and
field path (control status, a Warning Event, the object's status) while the last good version
keeps routing; deletion, a 410 Gone during a change, a CRD not installed, the Gateway API
HTTPRoute status and hostile objects."""

from __future__ import annotations

import copy
import subprocess

from bookinfo_crs import HOST, HTTP_ROUTE, INSTALLED, K8S_GATEWAY, VS, Bookinfo, sample
from mesh_harness import mesh, wait_until  # noqa: F401  (the fixture)
from proxy_harness import pymesh_command

from pymesh.kube.custom_resources import CRDS, CUSTOM_RESOURCES
from pymesh.kube.resources import EVENTS


def test_bookinfo_custom_resources_route_and_an_invalid_update_keeps_the_last_good(mesh, apiserver):
    bookinfo = Bookinfo(mesh, apiserver)
    assert bookinfo.versions() == {"v1"}
    apiserver.apply(sample("virtual-service-reviews-v3.yaml"))
    bookinfo.wait_versions({"v3"}, "reviews routed to v3 after the VirtualService custom resource changed")

    broken = sample("virtual-service-reviews-v3.yaml")
    broken["spec"]["http"][0]["route"][0]["destination"]["host"] = ""
    apiserver.apply(broken)
    status = bookinfo.control.wait_status(lambda s: s.get("rejected_resources"), "the invalid update reported")
    (entry,) = status["rejected_resources"]
    assert (entry["kind"], entry["namespace"], entry["name"]) == ("VirtualService", "default", "reviews")
    assert entry["errors"] == ["VirtualService default/reviews: spec.http[0].route[0].destination.host: "
                               "empty domain name is not allowed"]
    assert "VirtualService default/reviews" in bookinfo.control.status_text()
    # written to Kubernetes: a Warning Event regarding the object, Istio's status on it
    event = wait_until(lambda: next(iter(apiserver.objects(EVENTS)), None), what="the Warning Event")
    assert (event["type"], event["reason"], event["regarding"]["name"]) == ("Warning", "SchemaValidationError",
                                                                            "reviews")
    assert "spec.http[0].route[0].destination.host" in event["note"]
    held = wait_until(lambda: (apiserver.get(VS, "reviews", "default").get("status") or None), what="the status")
    assert held["validationMessages"][0]["type"]["code"] == "IST0106"
    assert held["conditions"][0]["type"] == "PassedAnalysis" and held["conditions"][0]["status"] == "False"
    assert "spec.http[0].route[0].destination.host" in held["conditions"][0]["message"]
    assert bookinfo.versions() == {"v3"}  # the last good version routes on
    version = bookinfo.control.status()["version"]

    # our own status write did not reload or push anything, and is not written twice
    writes = [r for r in apiserver.requests if r[0] == "PATCH"]
    assert len(writes) == 1 and bookinfo.control.status()["version"] == version

    apiserver.apply(sample("virtual-service-reviews-v2-v3.yaml"))  # fixed
    bookinfo.wait_versions({"v2", "v3"}, "the fixed VirtualService in force")
    bookinfo.control.wait_status(lambda s: s.get("rejected_resources") == [], "the rejection cleared")
    wait_until(lambda: "validationMessages" not in (apiserver.get(VS, "reviews", "default").get("status") or {}),
               what="our validation message removed from the status")

    apiserver.delete(VS, "reviews", "default")
    bookinfo.wait_versions({"v1", "v2", "v3"}, "every version answering once the VirtualService is deleted")


def test_a_change_made_while_the_watch_is_gone_arrives_through_a_relist(mesh, apiserver):
    bookinfo = Bookinfo(mesh, apiserver)

    def lists() -> int:  # the informer's full lists of VirtualServices (not its watches)
        return sum(1 for method, query in list(apiserver.requests)
                   if method == "GET" and "/virtualservices" in query and "watch=" not in query)

    listed = lists()
    apiserver.pause_watches()
    apiserver.drop_watches()
    apiserver.apply(sample("virtual-service-reviews-v3.yaml"))
    apiserver.compact()  # the informers' resourceVersion is history now: 410 Gone, relist
    apiserver.resume_watches()
    bookinfo.wait_versions({"v3"}, "the change made during the outage in force after the relist")
    assert lists() > listed, "the change should have come through a relist after 410 Gone"


def test_kinds_whose_crd_is_not_installed_are_skipped(mesh, apiserver):
    bookinfo = Bookinfo(mesh, apiserver)
    status = bookinfo.control.status()
    missing = {(kind["resource"], kind.get("group")) for kind in status["kubernetes"] if kind["missing"]}
    assert {("telemetries", "telemetry.istio.io"), ("authorizationpolicies", "security.istio.io"),
            ("gateways", "networking.istio.io")} <= missing
    assert not {("virtualservices", "networking.istio.io"), ("gateways", "gateway.networking.k8s.io")} & missing
    assert "not served (CRD not installed?): " in bookinfo.control.status_text()
    assert "gateways.networking.istio.io" in bookinfo.control.status_text()


def test_an_http_routes_status_is_written_by_the_gateway_api_translation(mesh, apiserver):
    bookinfo = Bookinfo(mesh, apiserver)
    apiserver.delete(VS, "reviews", "default")  # Istio's and the Gateway API's routes for one host do not mix
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "reviews", "namespace": "default"},
             "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": bookinfo.port}],
                      "rules": [{"backendRefs": [{"name": "reviews", "port": bookinfo.port}]}]}}
    apiserver.apply(route)
    status = wait_until(lambda: (apiserver.get(HTTP_ROUTE, "reviews", "default").get("status") or None),
                        what="the HTTPRoute's status")
    (parent,) = status["parents"]
    assert parent["controllerName"] == "pymesh.dev/gateway-controller"
    assert parent["parentRef"] == route["spec"]["parentRefs"][0]
    accepted = next(c for c in parent["conditions"] if c["type"] == "Accepted")
    assert accepted["status"] == "True" and accepted["observedGeneration"] == 1 and accepted["lastTransitionTime"]

    # a Gateway of pymesh's class, and the route attached to it too: both statuses written
    apiserver.apply({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                     "metadata": {"name": "edge", "namespace": "default"},
                     "spec": {"gatewayClassName": "pymesh",
                              "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}})
    route["spec"]["parentRefs"].append({"name": "edge"})
    apiserver.apply(route)

    def gateway_listener():
        listeners = (apiserver.get(K8S_GATEWAY, "edge", "default").get("status") or {}).get("listeners") or []
        return listeners[0] if listeners and listeners[0]["attachedRoutes"] == 1 else None
    listener = wait_until(gateway_listener, what="the Gateway's listener status with the route attached")
    assert {c["type"]: c["status"] for c in listener["conditions"]}.get("Accepted") == "True"
    gateway_status = apiserver.get(K8S_GATEWAY, "edge", "default")["status"]
    assert {c["type"] for c in gateway_status["conditions"]} >= {"Accepted"}
    parents = wait_until(lambda: len(apiserver.get(HTTP_ROUTE, "reviews", "default")["status"]["parents"]) == 2
                         and apiserver.get(HTTP_ROUTE, "reviews", "default")["status"]["parents"],
                         what="the route's status for both parents")
    assert parents[1]["parentRef"] == {"name": "edge"}
    assert all(c["observedGeneration"] == 2 for p in parents for c in p["conditions"])


def test_hostile_objects_are_reported_and_never_crash_or_half_apply(mesh, apiserver):
    bookinfo = Bookinfo(mesh, apiserver, "--config-max-file-mb", "1")
    hostile = {
        "wrong-types": {"hosts": "reviews", "http": {"route": 7}},
        "unknown-fields": {"hosts": [HOST], "http": [{"route": [{"destination": {"host": HOST}}]}], "colour": "x"},
        # under the API server's limits (etcd's 1.5 MiB), over the control server's (1 MiB here)
        "huge": {"hosts": ["h" * 1_400_000], "http": [{"route": [{"destination": {"host": HOST}}]}]},
        "half-good": {"hosts": [HOST], "http": [{"route": [{"destination": {"host": HOST, "subset": "v3"}}]},
                                                {"route": [{"destination": {"host": ""}}]}]},
    }
    for name, spec in hostile.items():
        apiserver.apply({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                         "metadata": {"name": name, "namespace": "default"}, "spec": spec})
    status = bookinfo.control.wait_status(lambda s: len(s.get("rejected_resources", [])) == len(hostile),
                                          "every hostile object rejected", timeout=30)
    by_name = {entry["name"]: entry["errors"] for entry in status["rejected_resources"]}
    assert "spec.hosts: expected a list" in " ".join(by_name["wrong-types"])
    assert "spec.colour: unknown field" in " ".join(by_name["unknown-fields"])
    assert "limit" in " ".join(by_name["huge"])
    assert "spec.http[1].route[0].destination.host" in " ".join(by_name["half-good"])
    assert bookinfo.control.running() and bookinfo.versions() == {"v1"}  # nothing of them applied
    before = copy.deepcopy(status["version"])
    assert bookinfo.control.status()["version"] == before


def test_without_credentials_the_server_says_so_and_exits(tmp_path):
    (tmp_path / "config").mkdir()
    done = subprocess.run(pymesh_command() + ["control", "serve", "--config-dir", str(tmp_path / "config"),
                                              "--insecure", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                                              "--kubernetes", "--kubeconfig", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "cannot start: --kubernetes: cannot reach the API server: no kubeconfig at" in done.stderr


def test_a_cluster_whose_crd_serves_only_an_older_version_is_read_at_that_version(mesh, apiserver):
    """Istio's CRDs before 1.22 served v1beta1 and v1alpha3, not v1: the newest served is watched."""
    old = next(r for r in CUSTOM_RESOURCES if r.kind.name == "VirtualService").versions[-1]
    assert old.version == "v1alpha3"
    bookinfo = Bookinfo(mesh, apiserver, installed=[old, *INSTALLED[1:]])
    assert bookinfo.versions() == {"v1"}
    broken = bookinfo.sample("virtual-service-reviews-v3.yaml")
    assert broken["apiVersion"] == "networking.istio.io/v1alpha3"
    broken["spec"]["http"][0]["route"][0]["destination"]["host"] = ""
    apiserver.apply(broken)
    held = wait_until(lambda: (apiserver.get(old, "reviews", "default").get("status") or None),
                      what="the status written at the version served")
    assert held["validationMessages"][0]["type"]["code"] == "IST0106"
    kinds = {kind["resource"]: kind for kind in bookinfo.control.status()["kubernetes"]}
    assert kinds["virtualservices"]["version"] == "v1alpha3" and not kinds["virtualservices"]["missing"]
    assert bookinfo.versions() == {"v1"}


def test_a_crd_installed_later_is_read_at_once_not_at_the_next_slow_retry(mesh, apiserver):
    """The CRD watch notices it (Istio's CRD watcher): well before the 30 s retry of a kind not served."""
    bookinfo = Bookinfo(mesh, apiserver, installed=[CRDS, *[r for r in INSTALLED if r != VS]])
    assert bookinfo.versions(24) == {"v1", "v2", "v3"}  # no VirtualService kind: every version answers
    apiserver.serve(VS)
    apiserver.apply(sample("virtual-service-reviews-v3.yaml"))
    apiserver.apply({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "virtualservices.networking.istio.io"},
        "spec": {"group": "networking.istio.io", "scope": "Namespaced",
                 "names": {"plural": "virtualservices", "singular": "virtualservice", "kind": "VirtualService",
                           "listKind": "VirtualServiceList", "shortNames": ["vs"]},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}}}]}})
    bookinfo.wait_versions({"v3"}, "the VirtualService of the CRD installed later in force")
