"""The Gateway API's conformance manifests at the edge: conformance/base/manifests.yaml's
Gateways and HTTPRoutes from conformance/tests, served by `pymesh gateway` labelled
gateway.networking.k8s.io/gateway-name=same-namespace (the label Istio gives the gateway it
deploys), with curl as the client and local echo servers as the backends' pods. The
expectations are the Go tests' (cited per table); each upstream request records which backend
answered and the path and headers it got."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from conformance_kit import documents, gateway_api, gateway_service, running, service_entry, services
from ports import free_port
from proxy_harness import Client, Proxy, Reply, Upstream, curl, dump_yaml

pytestmark = pytest.mark.timeout(120)
NS = "gateway-conformance-infra"
ROUTES = ("edge/httproute-rewrite-path.yaml", "edge/httproute-header-matching.yaml",
          "edge/httproute-request-header-modifier.yaml")
BACKENDS = ("infra-backend-v1", "infra-backend-v2", "infra-backend-v3")


@contextmanager
def edge_gateway(workdir, gateway: str, *routes: str, handler=None):
    """`pymesh gateway` for the Gateway `gateway` of the manifests and `routes`, the
    infra-backend pods as local servers (answering with `handler`); (listen port, pods)."""
    pods = {name: Upstream(name, handler(name) if handler else None) for name in BACKENDS}
    listen = free_port()
    docs = documents("edge/manifests.yaml", *routes)
    pod_ports = [({"app": name}, {"first-port": s.port, "port-8080": s.port}) for name, s in pods.items()]
    config = [service_entry(svc, pod_ports) for svc in services(docs) if svc["metadata"]["name"] in BACKENDS]
    config += gateway_api(docs) + [gateway_service(gateway, NS, {80: listen})]
    proxy = Proxy(workdir, dump_yaml(config), subcommand="gateway", name="gateway",
                  labels=f"gateway.networking.k8s.io/gateway-name={gateway}",
                  extra_args=["--namespace", NS, "--workload", f"{gateway}-pymesh"])
    with running(proxy, pods.values()):
        yield listen, pods


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    with edge_gateway(tmp_path_factory.mktemp("edge"), "same-namespace", *ROUTES) as started:
        yield started


@pytest.fixture(scope="module")
def intersection(tmp_path_factory):
    with edge_gateway(tmp_path_factory.mktemp("intersection"), "httproute-hostname-intersection",
                      "edge/httproute-hostname-intersection.yaml") as started:
        yield started


def request(edge, path: str, headers: dict[str, str] | None = None, host: str = "example.com"):
    """curl through the gateway; (status, the backend that got it or None, what it received)."""
    listen, pods = edge
    before = {name: len(s.requests) for name, s in pods.items()}
    args = [a for name, value in (headers or {}).items() for a in ("-H", f"{name}: {value}")]
    result = curl(listen, path, *args, host=host)
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


# From conformance/tests/httproute-hostname-intersection.go: (Host, path, backend or 404)
INTERSECTION = [
    ("very.specific.com", "/s1", "infra-backend-v1"),
    ("very.specific.com:1234", "/s1", "infra-backend-v1"),  # the Host's port is not considered
    ("non.matching.com", "/s1", 404), ("foo.nonmatchingwildcard.io", "/s1", 404), ("foo.wildcard.io", "/s1", 404),
    ("very.specific.com", "/non-matching-prefix", 404),
    ("foo.wildcard.io", "/s2", "infra-backend-v2"), ("bar.wildcard.io", "/s2", "infra-backend-v2"),
    ("foo.bar.wildcard.io", "/s2", "infra-backend-v2"),
    ("non.matching.com", "/s2", 404), ("wildcard.io", "/s2", 404), ("very.specific.com", "/s2", 404),
    ("foo.wildcard.io", "/non-matching-prefix", 404),
    ("very.specific.com", "/s3", "infra-backend-v3"),
    ("non.matching.com", "/s3", 404), ("foo.specific.com", "/s3", 404), ("foo.wildcard.io", "/s3", 404),
    ("foo.anotherwildcard.io", "/s4", "infra-backend-v1"), ("bar.anotherwildcard.io", "/s4", "infra-backend-v1"),
    ("foo.bar.anotherwildcard.io", "/s4", "infra-backend-v1"),
    ("anotherwildcard.io", "/s4", 404), ("foo.wildcard.io", "/s4", 404), ("very.specific.com", "/s4", 404),
    ("specific.but.wrong.com", "/s5", 404), ("wildcard.io", "/s5", 404),
]


@pytest.mark.parametrize("host, path, want", INTERSECTION, ids=[f"{h}{p}" for h, p, _ in INTERSECTION])
def test_hostname_intersection(intersection, host: str, path: str, want) -> None:
    status, backend, _ = request(intersection, path, host=host)
    assert (status, backend) == ((404, None) if want == 404 else (200, want))


def test_hostname_intersection_status() -> None:
    """The same Go test's status checks: no-intersecting-hosts is Accepted False
    NoMatchingListenerHostname, and each listener counts only the routes attached to it."""
    from pymesh.api.load import load_text
    from pymesh.routing.gateway_api import translate

    docs = documents("edge/httproute-hostname-intersection.yaml")
    t = translate(load_text(dump_yaml(docs)).config)
    (gateway,) = [s for s in t.statuses if s.kind == "Gateway"]
    assert {l.name: l.attached_routes for l in gateway.listeners} == {"listener-1": 2, "listener-2": 1, "listener-3": 1}
    (refused,) = [s for s in t.statuses if s.name == "no-intersecting-hosts"]
    assert [(c.type, c.status, c.reason) for c in refused.parents[0].conditions][0] == (
        "Accepted", False, "NoMatchingListenerHostname")


def test_weighted_backends(tmp_path) -> None:
    """conformance/tests/httproute-weight.yaml on its own gateway: 70/30/0. The Go test checks
    the split within a tolerance; here 200 requests, each picked on its own (one connection):
    none reaches the weight-0 backend and the shares are within 4 standard deviations."""
    with edge_gateway(tmp_path, "same-namespace", "edge/httproute-weight.yaml") as (listen, pods):
        client = Client(listen)
        try:
            statuses = [client.request(path="/", host="example.com").status for _ in range(200)]
        finally:
            client.sock.close()
        counts = {name: len(server.requests) for name, server in pods.items()}
    assert statuses == [200] * 200
    assert counts["infra-backend-v3"] == 0
    assert counts["infra-backend-v1"] + counts["infra-backend-v2"] == 200
    assert 113 <= counts["infra-backend-v1"] <= 167, counts  # 140 +- 4 sd (6.5)


def echo_headers(name: str):
    """The conformance echo server's behaviour these tests read: the request's headers come
    back as response headers (each value once per line), marked with the backend's name."""
    skip = {"host", "content-length", "connection", "transfer-encoding", "keep-alive", "te", "upgrade"}

    def handler(request) -> Reply:
        headers = [(n, v) for n, v in request.headers if n.lower() not in skip and not n.lower().startswith("x-envoy")]
        return Reply(200, headers + [("x-upstream", name)], b"ok\n")

    return handler


# From conformance/tests/httproute-response-header-modifier.go: (path, sent, response headers, absent)
RESPONSE_MODIFIER = [
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
    ("/case-insensitivity", {"x-header-set": "original-val-set", "x-header-add": "original-val-add",
                             "x-header-remove": "original-val-remove", "Another-Header": "another-header-val"},
     {"x-header-set": "header-set", "x-header-add": "original-val-add,header-add",
      "another-header": "another-header-val"}, ("x-header-remove",)),
]


@pytest.fixture(scope="module")
def response_modifier(tmp_path_factory):
    with edge_gateway(tmp_path_factory.mktemp("response"), "same-namespace", "edge/httproute-response-header-modifier.yaml",
                      handler=echo_headers) as started:
        yield started


@pytest.mark.parametrize("path, sent, expected, absent", RESPONSE_MODIFIER,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(RESPONSE_MODIFIER)])
def test_response_header_modifier(response_modifier, path: str, sent: dict, expected: dict, absent: tuple) -> None:
    listen, _ = response_modifier
    args = [a for name, value in sent.items() for a in ("-H", f"{name}: {value}")]
    result = curl(listen, path, *args, host="example.com")
    assert (result.status, result.header("x-upstream")) == (200, "infra-backend-v1")
    for name, value in expected.items():
        assert ",".join(result.header_all(name)) == value, (name, result.headers)
    for name in absent:
        assert result.header(name) is None


# From conformance/tests/httproute-cors.go: (path, method, request headers, answered by the
# gateway (a preflight) or the backend, response headers wanted (a set: any of them), absent)
_ORIGIN_FOO, _REQUEST = {"Origin": "https://www.foo.com"}, {"access-control-request-method": "GET",
                                                           "access-control-request-headers": "x-header-1, x-header-2"}
_PREFLIGHT_1 = {"access-control-allow-methods": {"GET,OPTIONS"}, "access-control-allow-headers": {"x-header-1,x-header-2"},
                "access-control-expose-headers": {"x-header-3,x-header-4"}, "access-control-max-age": {"3600"},
                "access-control-allow-credentials": {"true"}}
CORS = [
    ("/cors-1", "OPTIONS", {**_ORIGIN_FOO, **_REQUEST}, "gateway",
     {"access-control-allow-origin": {"https://www.foo.com"}, **_PREFLIGHT_1}, ()),
    ("/cors-1", "OPTIONS", {"Origin": "https://www.bar.com", **_REQUEST}, "gateway",
     {"access-control-allow-origin": {"https://www.bar.com"}, **_PREFLIGHT_1}, ()),
    ("/cors-1", "OPTIONS", {"Origin": "https://xpto.www.bar.com", **_REQUEST}, "gateway",
     {"access-control-allow-origin": {"https://xpto.www.bar.com"}, **_PREFLIGHT_1}, ()),
    ("/cors-1", "OPTIONS", {"Origin": "https://foobar.com", "access-control-request-method": "GET"}, "backend", {},
     ("access-control-allow-origin",)),
    ("/cors-1", "GET", {**_ORIGIN_FOO, **_REQUEST}, "backend", {"access-control-allow-origin": {"https://www.foo.com"}}, ()),
    ("/cors-1", "GET", {"Origin": "https://www.bar.com", **_REQUEST}, "backend",
     {"access-control-allow-origin": {"https://www.bar.com"}}, ()),
    ("/cors-1", "GET", {"Origin": "https://foobar.com", "access-control-request-method": "GET"}, "backend", {},
     ("access-control-allow-origin",)),
    ("/cors-2", "OPTIONS", {**_ORIGIN_FOO, "access-control-request-method": "POST"}, "gateway",
     {"access-control-allow-methods": {"POST", "*"}, "access-control-allow-origin": {"https://www.foo.com"}},
     ("access-control-allow-credentials",)),
]


@pytest.fixture(scope="module")
def cors(tmp_path_factory):
    with edge_gateway(tmp_path_factory.mktemp("cors"), "same-namespace", "edge/httproute-cors.yaml") as started:
        yield started


@pytest.mark.parametrize("path, method, sent, answered_by, expected, absent", CORS,
                         ids=[f"{c[0]}-{c[1]}-{c[2]['Origin']}" for c in CORS])
def test_cors_filter(cors, path, method, sent, answered_by, expected, absent) -> None:
    listen, pods = cors
    before = len(pods["infra-backend-v1"].requests)
    args = ["-X", method, *[a for name, value in sent.items() for a in ("-H", f"{name}: {value}")]]
    result = curl(listen, path, *args, host="example.com")
    assert result.status in (200, 204)
    assert len(pods["infra-backend-v1"].requests) - before == (answered_by == "backend")
    for name, values in expected.items():
        got = ",".join(result.header_all(name)).replace(" ", "")
        assert got in values, (name, result.headers)
    for name in absent:
        assert result.header(name) is None, (name, result.headers)
