"""Kubernetes discovery, the pure part (pymesh.kube.discovery): Services, EndpointSlices, Pods and
Namespaces as the API server's JSON -> ServiceEntries and WorkloadEntries, by Istio's rules.
Table-driven, from the recorded bookinfo objects of tests/kube/recorded/."""

import copy
import json
from pathlib import Path

import pytest

from pymesh.api import model
from pymesh.kube.discovery import discover, port_protocol

RECORDED = Path(__file__).parent / "recorded"


def load(name: str) -> dict:
    return json.loads((RECORDED / name).read_text())


SERVICE = load("bookinfo-reviews-service.json")
SLICE = load("bookinfo-reviews-endpointslice.json")
POD_V1 = load("bookinfo-reviews-v1-pod.json")


def pod(name: str, ip: str, version: str, **extra) -> dict:
    obj = copy.deepcopy(POD_V1)
    obj["metadata"]["name"] = name
    obj["metadata"]["labels"]["version"] = version
    obj["status"]["podIP"] = ip
    for key, value in extra.items():
        obj.setdefault(key, {}).update(value)
    return obj


PODS = [POD_V1, pod("reviews-v2-5b667bcbf8-2nx7g", "10.244.0.13", "v2"),
        pod("reviews-v3-5b9bd44f4-8kq9l", "10.244.0.14", "v3"),
        pod("reviews-v1-5b5d6494f4-old01", "10.244.0.15", "v1")]


def test_bookinfo_reviews():
    """The recorded reviews Service and EndpointSlice: one MESH_INTERNAL STATIC entry for the
    FQDN at the ClusterIP; the two ready endpoints with their pods' labels, service account,
    zone; the unready and the terminating ones left out."""
    found = discover([SERVICE], [SLICE], PODS)
    (entry,) = found.service_entries
    assert entry.hosts == ("reviews.default.svc.cluster.local",)
    assert (entry.addresses, entry.location, entry.resolution) == (("10.96.112.53",), "MESH_INTERNAL", "STATIC")
    assert entry.ports == (model.ServicePort(number=9080, protocol="HTTP", name="http", target_port=9080),)
    assert [e.address for e in entry.endpoints] == ["10.244.0.12", "10.244.0.13"]
    first = entry.endpoints[0]
    assert first.ports == {"http": 9080} and first.service_account == "bookinfo-reviews"
    assert first.labels["version"] == "v1" and first.labels["security.istio.io/tlsMode"] == "istio"
    assert first.locality == "/us-west2-a" and first.workload == "reviews-v1"
    assert entry.workload_selector is None and entry.metadata.labels == {"app": "reviews", "service": "reviews"}


def slice_with(*endpoints, ports=None, **labels) -> dict:
    es = copy.deepcopy(SLICE)
    es["endpoints"] = list(endpoints)
    es["metadata"]["labels"].update(labels)
    if ports is not None:
        es["ports"] = ports
    return es


def endpoint(ip: str, pod_name: str | None = None, **conditions) -> dict:
    out = {"addresses": [ip], "conditions": {"ready": True, **conditions}}
    if pod_name:
        out["targetRef"] = {"kind": "Pod", "namespace": "default", "name": pod_name}
    return out


@pytest.mark.parametrize("endpoints, pods, expected", [
    ([endpoint("10.0.0.1")], [], ["10.0.0.1"]),  # no targetRef: sent without pod details
    ([endpoint("10.0.0.1", "missing")], [], []),  # a targetRef to a pod not known yet: waits
    ([{"addresses": ["10.0.0.1"]}], [], ["10.0.0.1"]),  # no conditions: ready (nil means ready)
    ([endpoint("10.0.0.1", ready=False)], [], []),
    ([endpoint("10.0.0.1", ready=False, serving=True, terminating=True)], [], []),
    ([endpoint("10.0.0.1"), endpoint("10.0.0.1")], [], ["10.0.0.1"]),  # deduplicated
    ([{"addresses": ["10.0.0.1", "10.0.0.2"], "conditions": {"ready": True}}], [], ["10.0.0.1", "10.0.0.2"]),
], ids=["no-target-ref", "pod-unknown", "no-conditions", "unready", "terminating", "duplicate", "two-addresses"])
def test_endpoint_rules(endpoints, pods, expected):
    (entry,) = discover([SERVICE], [slice_with(*endpoints)], pods).service_entries
    assert [e.address for e in entry.endpoints] == expected


@pytest.mark.parametrize("labels, address_type", [
    ({"kubernetes.io/service-name": "ratings"}, "IPv4"),  # another service's slice
    ({"multicluster.kubernetes.io/service-name": "reviews"}, "IPv4"),  # an MCS slice: not this cluster's
    ({}, "FQDN"),  # FQDN slices are not supported (istio/istio#34995)
])
def test_slices_that_do_not_count(labels, address_type):
    es = slice_with(endpoint("10.0.0.1"), **labels)
    es["addressType"] = address_type
    (entry,) = discover([SERVICE], [es]).service_entries
    assert entry.endpoints == ()


def test_slices_of_one_service_add_up():
    other = slice_with(endpoint("10.0.0.9"))
    other["metadata"]["name"] = "reviews-zzzzz"
    (entry,) = discover([SERVICE], [slice_with(endpoint("10.0.0.1")), other]).service_entries
    assert [e.address for e in entry.endpoints] == ["10.0.0.1", "10.0.0.9"]


@pytest.mark.parametrize("port, name, protocol, app_protocol, expected", [
    (9080, "http", "TCP", None, "HTTP"),
    (9080, "http-web", "TCP", None, "HTTP"),
    (9080, "HTTP2-x", "TCP", None, "HTTP2"),
    (9080, "grpc", "TCP", None, "GRPC"),
    (9080, "grpc-web", "TCP", None, "GRPC-WEB"),
    (9080, "grpc-web-ui", "TCP", None, "GRPC-WEB"),
    (443, "https", "TCP", None, "HTTPS"),
    (443, "tls-passthrough", "TCP", None, "TLS"),
    (27017, "mongo", "TCP", None, "MONGO"),
    (6379, "redis", "TCP", None, "REDIS"),
    (3306, "mysql", "TCP", None, "MYSQL"),
    (9000, "tcp-db", "TCP", None, "TCP"),
    (9080, "web", "TCP", None, ""),  # unknown: sniffed
    (9080, "", "TCP", None, ""),
    (3306, "db", "TCP", None, "TCP"),  # well-known ports are never sniffed
    (53, "", "TCP", None, "TCP"),
    (25, "mail", "TCP", None, "TCP"),
    (53, "dns", "UDP", None, "UDP"),
    (9080, "udp", "TCP", None, ""),  # a port named udp is not UDP
    (9080, "web", "TCP", "http", "HTTP"),  # appProtocol before the name
    (9080, "http", "TCP", "grpc", "GRPC"),
    (9080, "tcp", "TCP", "kubernetes.io/h2c", "HTTP2"),
    (9080, "tcp", "TCP", "kubernetes.io/ws", "HTTP"),
    (9080, "tcp", "TCP", "kubernetes.io/wss", "HTTPS"),
    (9080, "http", "TCP", "example.com/custom", ""),
    (9080, "http", "SCTP", None, ""),
])
def test_port_protocol(port, name, protocol, app_protocol, expected):
    assert port_protocol(port, name, protocol, app_protocol) == expected


def service_with(**spec) -> dict:
    service = copy.deepcopy(SERVICE)
    service["spec"].update(spec)
    return service


def test_headless_service_has_no_address_and_passes_through():
    (entry,) = discover([service_with(clusterIP="None", clusterIPs=["None"])], [SLICE], PODS).service_entries
    assert entry.addresses == () and entry.resolution == "NONE" and len(entry.endpoints) == 2


def test_external_name_service_is_dns_to_the_external_host():
    service = service_with(type="ExternalName", externalName="reviews.example.com", clusterIP="", clusterIPs=[])
    (entry,) = discover([service], [SLICE], PODS).service_entries
    assert (entry.location, entry.resolution, entry.addresses) == ("MESH_EXTERNAL", "DNS", ())
    assert [e.address for e in entry.endpoints] == ["reviews.example.com"]
    assert entry.hosts == ("reviews.default.svc.cluster.local",)


def test_dual_stack_addresses_and_export_to():
    service = service_with(clusterIPs=["10.96.112.53", "fd00::53"])
    service["metadata"]["annotations"]["networking.istio.io/exportTo"] = ".,istio-system"
    (entry,) = discover([service], []).service_entries
    assert entry.addresses == ("10.96.112.53", "fd00::53") and entry.export_to == (".", "istio-system")


def test_an_unnamed_port_takes_the_slices_port():
    """A single unnamed port whose targetPort is a container port's name: the number is in the slice."""
    service = service_with(ports=[{"protocol": "TCP", "port": 80, "targetPort": "web"}])
    es = slice_with(endpoint("10.0.0.1"), ports=[{"name": "", "protocol": "TCP", "port": 8080}])
    (entry,) = discover([service], [es]).service_entries
    assert entry.ports == (model.ServicePort(number=80, protocol="", name="", target_port=8080),)


def test_sidecar_and_network_and_locality_from_the_pod_and_namespace():
    injected = pod("reviews-v2-5b667bcbf8-2nx7g", "10.244.0.13", "v2",
                   spec={"initContainers": [{"name": "pymesh-proxy", "restartPolicy": "Always"}]})
    del injected["metadata"]["labels"]["security.istio.io/tlsMode"]
    injected["metadata"]["labels"]["istio-locality"] = "us-west2.us-west2-b"
    plain = pod("reviews-v1-5b5d6494f4-hk2vd", "10.244.0.12", "v1")
    del plain["metadata"]["labels"]["security.istio.io/tlsMode"]
    namespace = {"metadata": {"name": "default", "labels": {"topology.istio.io/network": "net-1"}}}
    (entry,) = discover([SERVICE], [SLICE], [plain, injected], [namespace]).service_entries
    by_ip = {e.address: e for e in entry.endpoints}
    assert "security.istio.io/tlsMode" not in by_ip["10.244.0.12"].labels
    assert by_ip["10.244.0.13"].labels["security.istio.io/tlsMode"] == "istio"
    assert by_ip["10.244.0.13"].locality == "us-west2/us-west2-b"
    assert {e.network for e in entry.endpoints} == {"net-1"}


def test_running_pods_without_the_sidecar_are_workload_entries():
    """Pods with the sidecar are in the mesh once their proxy registers: not twice."""
    pending = pod("reviews-v3-5b9bd44f4-8kq9l", "10.244.0.14", "v3", status={"phase": "Pending"})
    leaving = pod("reviews-v1-5b5d6494f4-old01", "10.244.0.15", "v1",
                  metadata={"deletionTimestamp": "2024-05-14T09:30:00Z"})
    no_ip = pod("reviews-v2-x", "", "v2")
    injected = pod("reviews-v2-y", "10.244.0.20", "v2", spec={"initContainers": [{"name": "pymesh-proxy"}]})
    found = discover([], [], [POD_V1, pending, leaving, no_ip, injected])
    (entry,) = found.workload_entries
    assert entry.metadata.name == "reviews-v1-5b5d6494f4-hk2vd" and entry.spec.address == "10.244.0.12"
    assert entry.spec.service_account == "bookinfo-reviews" and entry.spec.labels["app"] == "reviews"


@pytest.mark.parametrize("broken", [
    {"metadata": None}, {"metadata": {"name": "x"}}, {"spec": {"ports": "nope"}, "metadata": {"name": "x", "namespace": "y"}},
    {"metadata": {"name": "x", "namespace": "y"}, "spec": {"ports": [{"port": "80"}, None]}},
])
def test_malformed_objects_are_skipped_not_fatal(broken):
    found = discover([broken, SERVICE], [{"metadata": None}, SLICE, "junk"], [{"status": None}, POD_V1])
    assert "reviews.default.svc.cluster.local" in [e.hosts[0] for e in found.service_entries]
