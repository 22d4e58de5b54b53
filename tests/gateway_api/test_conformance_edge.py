"""The Gateway API's conformance manifests at the edge: conformance/base/manifests.yaml's
Gateways and HTTPRoutes from conformance/tests, served by `pymesh gateway` labelled
gateway.networking.k8s.io/gateway-name=same-namespace (the label Istio gives the gateway it
deploys), with curl as the client and local echo servers as the backends' pods. The
expectations are the Go tests' (cited per table); each upstream request records which backend
answered and the path and headers it got."""

from __future__ import annotations

import pytest

from conformance_kit import documents, gateway_api, gateway_service, running, service_entry, services
from ports import free_port
from proxy_harness import Proxy, Upstream, curl, dump_yaml

pytestmark = pytest.mark.timeout(120)
NS = "gateway-conformance-infra"
ROUTES = ("edge/httproute-rewrite-path.yaml", "edge/httproute-header-matching.yaml",
          "edge/httproute-request-header-modifier.yaml")
BACKENDS = ("infra-backend-v1", "infra-backend-v2", "infra-backend-v3")


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    pods = {name: Upstream(name) for name in BACKENDS}
    listen = free_port()
    docs = documents("edge/manifests.yaml", *ROUTES)
    pod_ports = [({"app": name}, {"first-port": s.port, "port-8080": s.port}) for name, s in pods.items()]
    config = [service_entry(svc, pod_ports) for svc in services(docs) if svc["metadata"]["name"] in BACKENDS]
    config += gateway_api(docs) + [gateway_service("same-namespace", NS, {80: listen})]
    gateway = Proxy(tmp_path_factory.mktemp("edge"), dump_yaml(config), subcommand="gateway", name="gateway",
                    labels="gateway.networking.k8s.io/gateway-name=same-namespace",
                    extra_args=["--namespace", NS, "--workload", "same-namespace-pymesh"])
    with running(gateway, pods.values()):
        yield listen, pods


def request(edge, path: str, headers: dict[str, str] | None = None):
    """curl through the gateway; (status, the backend that got it or None, what it received)."""
    listen, pods = edge
    before = {name: len(s.requests) for name, s in pods.items()}
    args = [a for name, value in (headers or {}).items() for a in ("-H", f"{name}: {value}")]
    result = curl(listen, path, *args, host="example.com")
    got = [(name, s.requests[-1]) for name, s in pods.items() if len(s.requests) > before[name]]
    assert len(got) <= 1
    return result.status, (got[0][0] if got else None), (got[0][1] if got else None)


# From conformance/tests/httproute-header-matching.go: (request headers, backend or 404)
HEADER_MATCHING = [
    ({"Version": "one"}, "infra-backend-v1"),
    ({"Version": "two"}, "infra-backend-v2"),
    ({"Version": "two", "Color": "orange"}, "infra-backend-v1"),
    ({"Version": "two", "Color": "blue"}, "infra-backend-v2"),
    ({"Color": "orange"}, 404),
    ({"Some-Other-Header": "one"}, 404),
    ({"Color": "blue"}, "infra-backend-v1"),
    ({"Color": "green"}, "infra-backend-v1"),
    ({"Color": "red"}, "infra-backend-v2"),
    ({"Color": "yellow"}, "infra-backend-v2"),
    ({"Color": "purple"}, 404),
]


@pytest.mark.parametrize("headers, want", HEADER_MATCHING, ids=[str(h) for h, _ in HEADER_MATCHING])
def test_header_matching(edge, headers: dict, want) -> None:
    status, backend, _ = request(edge, "/", headers)
    if want == 404:
        assert (status, backend) == (404, None)
    else:
        assert (status, backend) == (200, want)


# From conformance/tests/httproute-rewrite-path.go: (path, the path the backend gets)
REWRITES = [
    ("/prefix/one/two", "/one/two"),
    ("/full/one/two", "/one"),
    ("/full/rewrite-path-and-modify-headers/test", "/test"),
    ("/prefix/rewrite-path-and-modify-headers/one", "/prefix/one"),
    # the prefix match is element-wise, and "/" strips it (the spec's examples)
    ("/strip-prefix/three", "/three"),
    ("/strip-prefix", "/"),
]


@pytest.mark.parametrize("path, upstream_path", REWRITES, ids=[r[0] for r in REWRITES])
def test_rewrite_path(edge, path: str, upstream_path: str) -> None:
    status, backend, received = request(edge, path)
    assert (status, backend) == (200, "infra-backend-v1")
    assert received.path == upstream_path


def test_rewrite_path_and_modify_headers(edge) -> None:
    sent = {"X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1", "X-Header-Set": "set-val"}
    for path, upstream_path in (("/full/rewrite-path-and-modify-headers/test", "/test"),
                                ("/prefix/rewrite-path-and-modify-headers/one", "/prefix/one")):
        _, _, received = request(edge, path, sent)
        assert received.path == upstream_path
        assert received.header("x-header-add") == "header-val-1"
        assert ",".join(received.header_all("x-header-add-append")) == "append-val-1,header-val-2"
        assert received.header_all("x-header-set") == ["set-overwrites-values"]
        assert received.header("x-header-remove") is None


# From conformance/tests/httproute-request-header-modifier.go: (path, sent, expected, absent)
HEADER_MODIFIER = [
    ("/set", {"Some-Other-Header": "val"}, {"some-other-header": "val", "x-header-set": "set-overwrites-values"}, ()),
    ("/set", {"Some-Other-Header": "val", "X-Header-Set": "some-other-value"},
     {"some-other-header": "val", "x-header-set": "set-overwrites-values"}, ()),
    ("/add", {"Some-Other-Header": "val"}, {"some-other-header": "val", "x-header-add": "add-appends-values"}, ()),
    ("/add", {"Some-Other-Header": "val", "X-Header-Add": "some-other-value"},
     {"some-other-header": "val", "x-header-add": "some-other-value,add-appends-values"}, ()),
    ("/remove", {"X-Header-Remove": "val"}, {}, ("x-header-remove",)),
    ("/multiple", {"X-Header-Set-2": "set-val-2", "X-Header-Add-2": "add-val-2", "X-Header-Remove-2": "remove-val-2",
                   "Another-Header": "another-header-val"},
     {"x-header-set-1": "header-set-1", "x-header-set-2": "header-set-2", "x-header-add-1": "header-add-1",
      "x-header-add-2": "add-val-2,header-add-2", "x-header-add-3": "header-add-3",
      "another-header": "another-header-val"}, ("x-header-remove-1", "x-header-remove-2")),
]


@pytest.mark.parametrize("path, sent, expected, absent", HEADER_MODIFIER, ids=[f"{c[0]}-{i}" for i, c in enumerate(HEADER_MODIFIER)])
def test_request_header_modifier(edge, path: str, sent: dict, expected: dict, absent: tuple) -> None:
    status, backend, received = request(edge, path, sent)
    assert (status, backend, received.path) == (200, "infra-backend-v1", path)
    for name, value in expected.items():
        assert ",".join(received.header_all(name)) == value, name
    for name in absent:
        assert received.header(name) is None
