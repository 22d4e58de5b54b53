"""Routing end to end: curl -> `pymesh proxy` -> the upstream a VirtualService picks.

One proxy serves the match-kind cases: every route sets `x-route: <name>` on the upstream
request, so the upstream's record says exactly which route matched, not just which server.
"""

from __future__ import annotations

import collections
import threading
import uuid
from types import SimpleNamespace

import pytest

from proxy_harness import (
    HOST, Client, Proxy, Reply, Upstream, curl, destination_rule, endpoint, free_port, http_mesh,
    service_entry, sidecar, to_subset, virtual_service,
)

pytestmark = pytest.mark.timeout(90)


def _tagged(name: str, matches: list[dict], subset: str = "b") -> dict:
    return {
        "name": name,
        "match": matches,
        "route": [to_subset(subset)],
        "headers": {"request": {"set": {"x-route": name}}},
    }


@pytest.fixture(scope="module")
def routed(tmp_path_factory):
    a, b = Upstream("a"), Upstream("b")
    port = free_port()
    other_port = free_port()
    http = [
        _tagged("exact", [{"uri": {"exact": "/exact"}}]),
        _tagged("prefix", [{"uri": {"prefix": "/pre/"}}]),
        _tagged("regex", [{"uri": {"regex": "/re/[0-9]+"}}]),
        _tagged("method", [{"uri": {"prefix": "/method"}, "method": {"exact": "PUT"}}]),
        _tagged("authority", [{"uri": {"prefix": "/authority"}, "authority": {"prefix": f"{HOST}:"}}]),
        _tagged("scheme-https", [{"uri": {"prefix": "/scheme"}, "scheme": {"exact": "https"}}]),
        _tagged("scheme-http", [{"uri": {"prefix": "/scheme"}, "scheme": {"exact": "http"}}]),
        _tagged("header-exact", [{"headers": {"x-exact": {"exact": "yes"}}}]),
        _tagged("header-prefix", [{"headers": {"x-pre": {"prefix": "ab"}}}]),
        _tagged("header-regex", [{"headers": {"x-re": {"regex": "v[0-9]+"}}}]),
        _tagged("without", [{"uri": {"prefix": "/without"}, "withoutHeaders": {"x-skip": {"exact": "1"}}}]),
        _tagged("pseudo-method", [{"uri": {"prefix": "/pseudo"}, "headers": {":method": {"exact": "PUT"}}}]),
        _tagged("dotted-header", [{"headers": {"x-jwt-claim.version": {"exact": "v2"}}}]),
        _tagged("query", [{"uri": {"prefix": "/query"}, "queryParams": {"q": {"exact": "1"}}}]),
        _tagged("port-other", [{"uri": {"prefix": "/port"}, "port": other_port}]),
        _tagged("port", [{"uri": {"prefix": "/port"}, "port": port}]),
        _tagged("source-other", [{"uri": {"prefix": "/source"}, "sourceLabels": {"app": "someone-else"}}]),
        _tagged("source", [{"uri": {"prefix": "/source"}, "sourceLabels": {"app": "client"}}]),
        _tagged("ignore-case", [{"uri": {"exact": "/CaseInsensitive"}, "ignoreUriCase": True}]),
        _tagged("first-a", [{"uri": {"prefix": "/first"}}]),
        _tagged("first-b", [{"uri": {"prefix": "/first"}}], subset="a"),
        {"name": "redirect", "match": [{"uri": {"exact": "/old"}}],
         "redirect": {"uri": "/new", "authority": "elsewhere.example", "redirectCode": 302}},
        {"name": "redirect-derive-port", "match": [{"uri": {"exact": "/old-port"}}],
         "redirect": {"authority": "elsewhere.example", "derivePort": "FROM_REQUEST_PORT"}},
        {"name": "redirect-protocol-default", "match": [{"uri": {"exact": "/old-default"}}],
         "redirect": {"authority": "elsewhere.example", "derivePort": "FROM_PROTOCOL_DEFAULT"}},
        {"name": "direct", "match": [{"uri": {"exact": "/direct"}}],
         "directResponse": {"status": 418, "body": {"string": "short and stout"}}},
        {"name": "rewrite-prefix", "match": [{"uri": {"prefix": "/api/v1/"}}], "rewrite": {"uri": "/v2/"},
         "route": [to_subset("b")]},
        {"name": "rewrite-authority", "match": [{"uri": {"prefix": "/rauth"}}],
         "rewrite": {"authority": "rewritten.example"}, "route": [to_subset("b")]},
        {"name": "header-ops", "match": [{"uri": {"prefix": "/hdr"}}], "route": [to_subset("b")],
         "headers": {
             "request": {"set": {"x-set": "route-value"}, "add": {"x-add": "added"}, "remove": ["x-remove"]},
             "response": {"set": {"x-resp-set": "yes"}, "add": {"x-resp-add": "also"}, "remove": ["x-upstream"]},
         }},
        _tagged("default", [], subset="a"),
    ]
    proxy = Proxy(tmp_path_factory.mktemp("routing"), http_mesh(port, {"a": a, "b": b}, http), labels="app=client")
    try:
        proxy.start()
        yield SimpleNamespace(proxy=proxy, port=port, a=a, b=b, servers={"a": a, "b": b})
    finally:
        proxy.kill()
        a.stop()
        b.stop()


def _send(routed, via: tuple[str, ...], path: str, *args: str, host: str = HOST):
    """curl through the proxy with a unique x-test-id; returns (curl result, the upstream's record)."""
    test_id = uuid.uuid4().hex
    result = curl(routed.port, path, *via, "-H", f"x-test-id: {test_id}", *args, host=host)
    assert result.returncode == 0, result.stderr
    seen = None
    for server in routed.servers.values():
        with server.cond:
            for req in server.requests:
                if req.header("x-test-id") == test_id:
                    seen = (server.name, req)
    return result, seen


MATCH_CASES = [
    # (id, path, curl args, host, expected route)
    ("uri-exact", "/exact", (), HOST, "exact"),
    ("uri-exact-longer-misses", "/exact/more", (), HOST, "default"),
    ("pseudo-header-method", "/pseudo", ("-X", "PUT"), HOST, "pseudo-method"),
    ("pseudo-header-method-misses", "/pseudo", (), HOST, "default"),
    ("dotted-header-name", "/x", ("-H", "x-jwt-claim.version: v2"), HOST, "dotted-header"),
    ("uri-prefix", "/pre/x/y", (), HOST, "prefix"),
    ("uri-prefix-misses", "/pre", (), HOST, "default"),
    ("uri-regex", "/re/123", (), HOST, "regex"),
    ("uri-regex-is-full-match", "/re/123x", (), HOST, "default"),
    ("method", "/method", ("-X", "PUT"), HOST, "method"),
    ("method-other", "/method", (), HOST, "default"),
    ("authority", "/authority", (), "{HOST}:{port}", "authority"),
    ("authority-other", "/authority", (), HOST, "default"),
    ("scheme", "/scheme", (), HOST, "scheme-http"),
    ("header-exact", "/h", ("-H", "x-exact: yes"), HOST, "header-exact"),
    ("header-exact-other", "/h", ("-H", "x-exact: yess"), HOST, "default"),
    ("header-prefix", "/h", ("-H", "x-pre: abc"), HOST, "header-prefix"),
    ("header-prefix-other", "/h", ("-H", "x-pre: ba"), HOST, "default"),
    ("header-regex", "/h", ("-H", "x-re: v42"), HOST, "header-regex"),
    ("header-regex-other", "/h", ("-H", "x-re: v42a"), HOST, "default"),
    ("without-headers-absent", "/without", (), HOST, "without"),
    ("without-headers-other-value", "/without", ("-H", "x-skip: 2"), HOST, "without"),
    ("without-headers-present", "/without", ("-H", "x-skip: 1"), HOST, "default"),
    ("query-param", "/query?a=2&q=1", (), HOST, "query"),
    ("query-param-other", "/query?q=2", (), HOST, "default"),
    ("port", "/port", (), HOST, "port"),
    ("source-labels", "/source", (), HOST, "source"),
    ("ignore-uri-case", "/caseinsensitive", (), HOST, "ignore-case"),
    ("first-match-wins", "/first", (), HOST, "first-a"),
]


@pytest.mark.parametrize("path,args,host,expected", [c[1:] for c in MATCH_CASES], ids=[c[0] for c in MATCH_CASES])
def test_match_kinds_reach_the_right_upstream(routed, via, path, args, host, expected):
    host = host.format(HOST=HOST, port=routed.port)
    result, seen = _send(routed, via, path, *args, host=host)
    assert result.status == 200, result
    assert seen is not None, "the upstream never received the request"
    server, request = seen
    assert request.header("x-route") == expected
    assert server == ("a" if expected in ("default", "first-b") else "b")
    assert result.body.startswith(f"{server} ".encode())


def test_redirect_answers_with_location_and_code(routed, via):
    result, seen = _send(routed, via, "/old?keep=1")
    assert result.status == 302
    assert result.header("location") == "http://elsewhere.example/new?keep=1"
    assert seen is None


def test_redirect_derive_port(routed, via):
    """derivePort FROM_REQUEST_PORT keeps the request's port on the new authority;
    FROM_PROTOCOL_DEFAULT (Istio's enum default, as if unset) leaves the scheme's default."""
    host = f"{HOST}:{routed.port}"
    result, seen = _send(routed, via, "/old-port", host=host)
    assert (result.status, result.header("location"), seen) == (301, f"http://elsewhere.example:{routed.port}/old-port", None)
    result, _ = _send(routed, via, "/old-default", host=host)
    assert (result.status, result.header("location")) == (301, "http://elsewhere.example/old-default")


def test_direct_response(routed, via):
    result, seen = _send(routed, via, "/direct")
    assert result.status == 418
    assert result.body == b"short and stout"
    assert seen is None


def test_prefix_rewrite_keeps_the_rest_and_the_query(routed, via):
    result, seen = _send(routed, via, "/api/v1/items/7?x=1&y=2")
    assert result.status == 200
    assert seen[1].target == "/v2/items/7?x=1&y=2"


def test_authority_rewrite(routed, via):
    result, seen = _send(routed, via, "/rauth/p")
    assert result.status == 200
    assert seen[1].header("host") == "rewritten.example"
    assert seen[1].target == "/rauth/p"


def test_route_header_operations(routed, via):
    result, seen = _send(routed, via, "/hdr", "-H", "x-set: client-value", "-H", "x-add: client", "-H", "x-remove: gone")
    assert result.status == 200
    request = seen[1]
    assert request.header_all("x-set") == ["route-value"]
    assert sorted(request.header_all("x-add")) == ["added", "client"]
    assert request.header("x-remove") is None
    assert result.header("x-resp-set") == "yes"
    assert result.header("x-resp-add") == "also"
    assert result.header("x-upstream") is None  # removed from the response


# --- traffic shifting and load balancing ---------------------------------------------------------------


def _serving(port: int, n: int, path: str = "/", headers: dict | None = None, source: str | None = None) -> list[str]:
    """n keep-alive requests on one connection; the name of the upstream that answered each."""
    names = []
    with Client(port) as client:
        for _ in range(n):
            response = client.request("GET", path, headers)
            assert response.status == 200, response
            names.append(response.header("x-upstream"))
    return names


def test_weighted_split_90_10(upstreams, proxies):
    v1, v2 = upstreams("v1"), upstreams("v2")
    port = free_port()
    http = [{"route": [to_subset("v1", weight=90), to_subset("v2", weight=10)]}]
    proxies(http_mesh(port, {"v1": v1, "v2": v2}, http))
    counts = collections.Counter()
    for _ in range(4):
        counts.update(_serving(port, 500))
    assert sum(counts.values()) == 2000
    share = counts["v1"] / 2000
    assert abs(share - 0.90) <= 0.03, counts
    assert v1.count() + v2.count() == 2000


def test_subset_selects_endpoints_by_label(upstreams, proxies):
    old, new1, new2 = upstreams("old"), upstreams("new1"), upstreams("new2")
    port = free_port()
    resources = [
        service_entry(port, [endpoint(old, {"version": "v1"}), endpoint(new1, {"version": "v2", "track": "x"}),
                             endpoint(new2, {"version": "v2"})]),
        destination_rule(subsets={"v1": {"version": "v1"}, "v2": {"version": "v2"}}),
        virtual_service([{"route": [to_subset("v2")]}]),
        sidecar((port, "HTTP")),
    ]
    proxies(resources)
    counts = collections.Counter(_serving(port, 20))
    assert set(counts) == {"new1", "new2"}
    assert old.count() == 0


def _balanced_mesh(port: int, servers: list[Upstream], load_balancer: dict) -> list[dict]:
    return [
        service_entry(port, [endpoint(s) for s in servers]),
        destination_rule(traffic_policy={"loadBalancer": load_balancer}),
        sidecar((port, "HTTP")),
    ]


def test_round_robin_alternates(upstreams, proxies):
    servers = [upstreams("e1"), upstreams("e2")]
    port = free_port()
    proxies(_balanced_mesh(port, servers, {"simple": "ROUND_ROBIN"}))
    names = _serving(port, 12)
    assert all(names[i] != names[i + 1] for i in range(len(names) - 1)), names
    assert collections.Counter(names) == {"e1": 6, "e2": 6}


def test_least_request_avoids_the_busy_endpoint(upstreams, proxies):
    release = threading.Event()
    arrived = threading.Event()
    busy = []

    def handler_for(name):
        def handler(req):
            if req.path == "/slow":
                busy.append(name)
                arrived.set()
                release.wait(20)
            return Reply(200, [("x-upstream", name)], name.encode())
        return handler

    servers = [upstreams("e1", handler_for("e1")), upstreams("e2", handler_for("e2"))]
    port = free_port()
    proxies(_balanced_mesh(port, servers, {"simple": "LEAST_REQUEST"}))
    slow_result = {}

    def slow():
        with Client(port, timeout=30) as client:
            slow_result["response"] = client.request("GET", "/slow")

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        assert arrived.wait(10), "the slow request never reached an upstream"
        idle = "e2" if busy == ["e1"] else "e1"
        assert _serving(port, 10) == [idle] * 10
    finally:
        release.set()
        thread.join(20)
    assert slow_result["response"].status == 200


HASH_CASES = {
    "header": ({"httpHeaderName": "x-user"}, lambda key: ({"x-user": key}, "/")),
    "cookie": ({"httpCookie": {"name": "session"}}, lambda key: ({"cookie": f"a=b; session={key}"}, "/")),
    "query": ({"httpQueryParameterName": "user"}, lambda key: ({}, f"/?other=1&user={key}")),
}


@pytest.mark.parametrize("kind", list(HASH_CASES))
def test_consistent_hash_keeps_a_key_on_one_endpoint(upstreams, proxies, kind):
    policy, request_for = HASH_CASES[kind]
    servers = [upstreams(f"e{i}") for i in range(4)]
    port = free_port()
    proxies(_balanced_mesh(port, servers, {"consistentHash": policy}))
    chosen = {}
    with Client(port) as client:
        for key_index in range(16):
            key = f"user-{key_index}"
            headers, path = request_for(key)
            names = {client.request("GET", path, headers).header("x-upstream") for _ in range(8)}
            assert len(names) == 1, (key, names)
            chosen[key] = names.pop()
    assert len(set(chosen.values())) >= 2, chosen


def test_consistent_hash_on_source_ip(upstreams, proxies):
    servers = [upstreams(f"e{i}") for i in range(4)]
    port = free_port()
    proxies(_balanced_mesh(port, servers, {"consistentHash": {"useSourceIp": True}}))
    chosen = {}
    for i in range(2, 18):
        source = f"127.0.0.{i}"
        names = set()
        for _ in range(3):  # a new connection each time: the key is the address, not the connection
            with Client(port, source=source) as client:
                names.update(client.request("GET", "/").header("x-upstream") for _ in range(3))
        assert len(names) == 1, (source, names)
        chosen[source] = names.pop()
    assert len(set(chosen.values())) >= 2, chosen
