"""Route regexes that backtrack catastrophically under Python's `re` do not stall the proxy.

Each hostile request is sent with a bystander request to another route on a second connection,
to a proxy with one worker: both must be answered, and the hostile one by the route RE2 says. With
Python's `re` matching these values takes longer than the clients' timeout (2**64 steps), so the
worker never answers either. Times are not asserted here: benchmarks/regex.py measures them.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from proxy_harness import Client, Proxy, Upstream, free_port, http_mesh, request_bytes, to_subset

pytestmark = pytest.mark.timeout(90)


def answer(name: str, *matches: dict) -> dict:
    """A route that answers its own name, so the response says which route matched."""
    return {"name": name, "match": list(matches), "directResponse": {"status": 200, "body": {"string": name}}}


ROUTES = [
    answer("path", {"uri": {"regex": "/a/(a+)+$"}}),
    answer("header", {"headers": {"x-id": {"regex": "(x+x+)+y"}}}),
    answer("query", {"uri": {"prefix": "/q"}, "queryParams": {"p": {"regex": r"(\w+/?)*x"}}}),
    {"name": "bystander", "match": [{"uri": {"prefix": "/bystander/"}}], "route": [to_subset("v1")]},
    answer("default"),
]

# (path, headers, the route that answers)
REQUESTS = [
    ("/a/" + "a" * 64 + "!", {}, "default"),
    ("/a/" + "a" * 64, {}, "path"),
    ("/h", {"x-id": "x" * 64}, "default"),
    ("/h", {"x-id": "x" * 64 + "y"}, "header"),
    ("/q?p=" + "ab/" * 32, {}, "default"),
    ("/q?p=" + "ab/" * 32 + "x", {}, "query"),
]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    upstream = Upstream("v1")
    port = free_port()
    proxy = Proxy(tmp_path_factory.mktemp("redos"), http_mesh(port, {"v1": upstream}, ROUTES))
    try:
        proxy.start()
        yield SimpleNamespace(port=port, upstream=upstream)
    finally:
        proxy.kill()
        upstream.stop()


@pytest.mark.parametrize("path, headers, route", REQUESTS, ids=[f"{r[2]}-{i}" for i, r in enumerate(REQUESTS)])
def test_hostile_value_and_bystander_are_both_answered(mesh, path, headers, route):
    with Client(mesh.port) as hostile, Client(mesh.port) as bystander:
        hostile.send(request_bytes("GET", path, headers))
        bystander.send(request_bytes("GET", "/bystander/1"))
        served = bystander.read()
        assert (served.status, served.body) == (200, b"v1 GET /bystander/1\n")
        response = hostile.read()
        assert (response.status, response.body) == (200, route.encode())
