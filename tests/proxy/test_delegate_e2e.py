"""VirtualService delegation end to end: curl -> `pymesh proxy` with a root VirtualService whose
routes delegate to hostless VirtualServices (one in another namespace), as istio/api's
virtual_service.proto example does. Each delegate route is narrowed by its root route's match;
the upstream's record says which route served the request."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ports import free_port
from proxy_harness import HOST, Proxy, Upstream, curl, http_mesh, to_subset

pytestmark = pytest.mark.timeout(90)


def _tagged(name: str, subset: str, **route) -> dict:
    return {"name": name, "route": [to_subset(subset)], "headers": {"request": {"set": {"x-route": name}}}, **route}


def _delegate(name: str, namespace: str, http: list[dict]) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"http": http}}


@pytest.fixture(scope="module")
def delegated(tmp_path_factory):
    servers = {v: Upstream(v) for v in ("a", "b", "c")}
    port = free_port()
    root = [
        {"name": "pp", "match": [{"uri": {"prefix": "/productpage"}}], "delegate": {"name": "productpage", "namespace": "shop"}},
        {"name": "reviews", "match": [{"uri": {"prefix": "/reviews"}}], "delegate": {"name": "reviews"}, "timeout": "7s"},
        {"name": "gone", "match": [{"uri": {"prefix": "/gone"}}], "delegate": {"name": "nothing-here"}},
        _tagged("default", "a"),
    ]
    config = http_mesh(port, servers, root) + [
        _delegate("productpage", "shop", [
            _tagged("pp-v1", "b", match=[{"uri": {"prefix": "/productpage/v1"}}]),
            _tagged("pp-rest", "c"),
        ]),
        _delegate("reviews", "default", [
            _tagged("outside", "b", match=[{"uri": {"prefix": "/other"}}]),  # not within /reviews: dropped
            _tagged("rv-jason", "b", match=[{"headers": {"end-user": {"exact": "jason"}}}]),
            _tagged("rv-rest", "c"),
        ]),
    ]
    proxy = Proxy(tmp_path_factory.mktemp("delegate"), config, labels="app=client")
    try:
        proxy.start()
        yield SimpleNamespace(port=port, servers=servers)
    finally:
        proxy.kill()
        for s in servers.values():
            s.stop()


CASES = [
    ("/productpage/v1/item", {}, "b", "pp-v1"),
    ("/productpage", {}, "c", "pp-rest"),
    ("/reviews/1", {"end-user": "jason"}, "b", "rv-jason"),
    ("/reviews/1", {}, "c", "rv-rest"),
    ("/other", {}, "a", "default"),  # the delegate's route outside its root's match is not merged
    ("/gone", {}, "a", "default"),  # a root route whose delegate does not exist is dropped
]


@pytest.mark.parametrize("path, headers, server, route", CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_delegated_routes(delegated, path, headers, server, route) -> None:
    before = {name: len(s.requests) for name, s in delegated.servers.items()}
    args = [a for name, value in headers.items() for a in ("-H", f"{name}: {value}")]
    result = curl(delegated.port, path, *args, host=HOST)
    assert result.status == 200, result
    got = [(name, s.requests[-1]) for name, s in delegated.servers.items() if len(s.requests) > before[name]]
    assert [name for name, _ in got] == [server]
    assert got[0][1].header("x-route") == route
