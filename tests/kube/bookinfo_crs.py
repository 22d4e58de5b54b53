"""The bookinfo mesh of the custom resource tests (against the STAND-IN API server): reviews v1,
v2, v3 as real upstream apps behind a real client proxy, their ServiceEntry, Sidecar and Istio's
bookinfo DestinationRule and VirtualService as custom resources, and a real `pymesh control serve
--kubernetes` on the stand-in's kubeconfig."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

_MESH_TESTS = str(Path(__file__).resolve().parent.parent / "mesh")
if _MESH_TESTS not in sys.path:
    sys.path.insert(0, _MESH_TESTS)

from mesh_harness import CLIENT, answers_from, egress_sidecar, wait_until  # noqa: E402
from proxy_harness import endpoint, free_ports, service_entry  # noqa: E402

from pymesh.kube.custom_resources import CUSTOM_RESOURCES  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "api" / "data" / "istio_samples" / "bookinfo"
HOST = "reviews.default.svc.cluster.local"
TYPES = {(r.group, r.kind.name): r.versions[0] for r in CUSTOM_RESOURCES}
VS = TYPES[("networking.istio.io", "VirtualService")]
DR = TYPES[("networking.istio.io", "DestinationRule")]
HTTP_ROUTE = TYPES[("gateway.networking.k8s.io", "HTTPRoute")]
K8S_GATEWAY = TYPES[("gateway.networking.k8s.io", "Gateway")]
INSTALLED = [VS, DR, TYPES[("networking.istio.io", "ServiceEntry")], TYPES[("networking.istio.io", "Sidecar")],
             HTTP_ROUTE, K8S_GATEWAY]  # Telemetry, AuthorizationPolicy... are not: their CRDs are "not installed"


def sample(name: str, kind: str = "", resource_name: str = "", served=TYPES) -> dict:
    """One resource of an Istio bookinfo sample, in namespace default (as `kubectl apply -n default`),
    at the version `served` (the real API server converts between the versions a CRD serves; the
    stand-in serves one per kind)."""
    for doc in yaml.safe_load_all((SAMPLES / name).read_text()):
        if doc and (not kind or doc["kind"] == kind) and (not resource_name or doc["metadata"]["name"] == resource_name):
            doc["metadata"].setdefault("namespace", "default")
            doc["apiVersion"] = served[(doc["apiVersion"].split("/")[0], doc["kind"])].api_version
            return doc
    raise LookupError(f"{name}: no {kind} {resource_name}")


class Bookinfo:
    """reviews v1, v2, v3 (real upstream apps) behind a client sidecar; the ServiceEntry and the
    Sidecar as custom resources too; the control server on the stand-in's kubeconfig."""

    def __init__(self, mesh, apiserver, *options: str, installed=INSTALLED):
        for resource in installed:
            apiserver.serve(resource)
        self.served = {**TYPES, **{(r.group, r.kind): r for r in installed}}
        self.apiserver = apiserver
        self.port = free_ports(1)[0]
        self.apps = {v: mesh.app(v) for v in ("v1", "v2", "v3")}
        se = service_entry([(self.port, "http")], [endpoint(app, {"version": v}) for v, app in self.apps.items()],
                           host=HOST, name="reviews")
        apiserver.apply(se)
        apiserver.apply(egress_sidecar("productpage", CLIENT, self.port))
        apiserver.apply(self.sample("destination-rule-reviews.yaml", "DestinationRule", "reviews"))
        if any(r.kind == "VirtualService" for r in installed):  # else: its CRD is not installed (yet)
            apiserver.apply(self.sample("virtual-service-all-v1.yaml", "VirtualService", "reviews"))
        self.control = mesh.control(extra=("--kubernetes", "--kubeconfig", str(apiserver.kubeconfig),
                                           "--debounce", "0.05", *options))
        self.client = mesh.proxy(self.control.port, "productpage", CLIENT)
        self.control.wait_synced(self.client.node_id)

    def sample(self, name: str, kind: str = "", resource_name: str = "") -> dict:
        return sample(name, kind, resource_name, self.served)

    def versions(self, n: int = 12) -> set:
        answers = answers_from(self.port, HOST, n)
        assert all(status == 200 for status, _ in answers), answers
        return {upstream for _, upstream in answers}

    def wait_versions(self, expected: set, what: str) -> None:
        wait_until(lambda: self.versions() == expected, what=what)
