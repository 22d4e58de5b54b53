"""GAMMA routes with backends, through a client's real sidecar: an HTTPRoute on the Service
`echo` splits by path to echo-v1 and echo-v2 (the mesh conformance Services, with local
servers as their pods), modifies headers, and answers 500 for a backend that does not exist.
(Producer and consumer routes' scoping is in tests/routing/test_gateway_api_translation.py.)"""

from __future__ import annotations

import pytest

from conformance_kit import client_sidecar, documents, loopback_with_port, running, service_entry, services
from proxy_harness import Proxy, Upstream, curl, dump_yaml

pytestmark = pytest.mark.timeout(120)
NS = "gateway-conformance-mesh"


def producer_route() -> dict:
    backend = lambda name: {"name": name, "port": 80}  # noqa: E731
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "split", "namespace": NS},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "echo", "port": 80}], "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}], "backendRefs": [backend("echo-v1")],
             "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "X-Route", "value": "v1"}]}},
                         {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "X-Answered", "value": "gamma"}]}}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}],
             "backendRefs": [backend("echo-v2"), {**backend("echo-v1"), "weight": 0}]},
            {"matches": [{"path": {"type": "Exact", "value": "/missing"}}], "backendRefs": [backend("nowhere")]},
            {"matches": [{"path": {"type": "Exact", "value": "/mirrored"}}], "backendRefs": [backend("echo-v1")],
             "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": backend("echo-v2")}}]},
        ]},
    }


@pytest.fixture(scope="module")
def gamma(tmp_path_factory):
    pods = {"echo-v1": Upstream("echo-v1"), "echo-v2": Upstream("echo-v2")}
    address = loopback_with_port(80)
    docs = documents("mesh/manifests.yaml")
    pod_ports = [({"app": "echo", "version": name[-2:]}, {"http": s.port}) for name, s in pods.items()]
    config = [service_entry(svc, pod_ports) for svc in services(docs)] + [producer_route(), client_sidecar(NS, address, 80)]
    proxy = Proxy(tmp_path_factory.mktemp("gamma-routes"), dump_yaml(config), labels="app=client",
                  extra_args=["--namespace", NS])
    with running(proxy, pods.values()):
        yield address, pods


def get(address: str, path: str):
    return curl(80, path, "--connect-to", f"127.0.0.1:80:{address}:80", host="echo")


def test_paths_pick_the_backends(gamma) -> None:
    address, pods = gamma
    for _ in range(4):
        v1, v2 = get(address, "/v1/a"), get(address, "/v2/b")
        assert (v1.status, v1.header("x-upstream"), v1.header("x-answered")) == (200, "echo-v1", "gamma")
        assert (v2.status, v2.header("x-upstream")) == (200, "echo-v2")  # the weight-0 backend gets nothing
    assert pods["echo-v1"].requests[-1].header("x-route") == "v1"


def test_a_backend_that_does_not_exist_is_a_500(gamma) -> None:
    address, _ = gamma
    assert get(address, "/missing").status == 500


def test_a_path_no_rule_matches_is_a_404(gamma) -> None:
    """A path no rule matches: Istio's VirtualService for the host has no catch-all, so 404."""
    address, _ = gamma
    assert get(address, "/elsewhere").status == 404


def test_request_mirror(gamma) -> None:
    """The mirror gets a copy (Host with -shadow, as Envoy's), the answer is the backend's."""
    address, pods = gamma
    result = get(address, "/mirrored")
    assert (result.status, result.header("x-upstream")) == (200, "echo-v1")
    shadow = pods["echo-v2"]
    shadow.wait(lambda: any(r.path == "/mirrored" for r in shadow.requests), what="the mirrored copy")
    (copy,) = [r for r in shadow.requests if r.path == "/mirrored"]
    assert copy.header("host").endswith("-shadow")
