"""VirtualService delegation merged as Istio's mergeVirtualServicesIfNeeded does: which delegate
routes survive under a root route, their merged matches, and what they inherit."""

from __future__ import annotations

import pytest

from pymesh.api import model
from pymesh.routing import delegation


def sm(kind: str, value: str) -> model.StringMatch:
    return model.StringMatch(kind, value)


def uri(kind: str, value: str, **more) -> model.HTTPMatchRequest:
    return model.HTTPMatchRequest(uri=sm(kind, value), **more)


D = model.Destination("d")
ROUTE = (model.HTTPRouteDestination(D),)


@pytest.mark.parametrize("root, leaf, merged", [
    ((), (uri("prefix", "/a"),), (uri("prefix", "/a"),)),  # a root without matches takes the delegate's
    ((uri("prefix", "/a"),), (), (uri("prefix", "/a"),)),  # a delegate without matches takes the root's
    ((uri("prefix", "/a"),), (uri("prefix", "/a/b"),), (uri("prefix", "/a/b"),)),
    ((uri("prefix", "/a"),), (uri("exact", "/a/x"),), (uri("exact", "/a/x"),)),
    ((uri("prefix", "/a/b"),), (uri("prefix", "/a"),), None),  # wider than the root
    ((uri("exact", "/a"),), (uri("prefix", "/a"),), None),
    ((uri("exact", "/a"),), (uri("exact", "/a"),), (uri("exact", "/a"),)),
    ((uri("regex", "/a.*"),), (uri("prefix", "/a"),), None),  # any regex conflicts
    # the delegate's match fills in from the root's, header maps join
    ((model.HTTPMatchRequest(uri=sm("prefix", "/a"), method=sm("exact", "GET"), headers={"x": sm("exact", "1")}, port=80),),
     (model.HTTPMatchRequest(headers={"y": sm("exact", "2")}),),
     (model.HTTPMatchRequest(uri=sm("prefix", "/a"), method=sm("exact", "GET"),
                             headers={"x": sm("exact", "1"), "y": sm("exact", "2")}, port=80),)),
    ((model.HTTPMatchRequest(headers={"x": sm("exact", "1")}),), (model.HTTPMatchRequest(headers={"x": sm("exact", "2")}),),
     None),
    ((uri("prefix", "/a", port=80),), (uri("prefix", "/a", port=81),), None),
    ((uri("prefix", "/a"),), (uri("prefix", "/a", ignore_uri_case=True),), None),
    # each delegate match is narrowed by every root match it fits in
    ((uri("prefix", "/a"), uri("prefix", "/b")), (model.HTTPMatchRequest(method=sm("exact", "PUT")),),
     (uri("prefix", "/a", method=sm("exact", "PUT")), uri("prefix", "/b", method=sm("exact", "PUT")))),
    ((uri("prefix", "/a", name="r"),), (uri("prefix", "/a/b", name="l"),), (uri("prefix", "/a/b", name="r-l"),)),
])
def test_merge_matches(root, leaf, merged) -> None:
    assert delegation.merge_matches(root, leaf) == merged


def test_delegate_routes_inherit_what_they_do_not_set() -> None:
    root = model.HTTPRoute(name="root", match=(uri("prefix", "/a"),), timeout=7.0, delegate=model.Delegate("c"),
                           retries=model.HTTPRetry(attempts=5))
    own = model.HTTPRoute(name="own", route=ROUTE, timeout=1.0)
    bare = model.HTTPRoute(route=ROUTE)
    merged_own, merged_bare = (delegation.merge_route(root, r) for r in (own, bare))
    assert (merged_own.name, merged_own.timeout, merged_own.retries, merged_own.delegate) == ("root-own", 1.0, root.retries, None)
    assert (merged_bare.name, merged_bare.timeout, merged_bare.match) == ("root", 7.0, root.match)


def vs(name: str, namespace: str, hosts: tuple[str, ...], *http: model.HTTPRoute, export_to=()) -> model.VirtualService:
    return model.VirtualService(model.Metadata(name, namespace), hosts, http=http, export_to=export_to)


def test_roots_get_their_delegates_routes_and_delegates_go() -> None:
    child = model.HTTPRoute(name="c", route=ROUTE)
    config = model.MeshConfig(virtual_services=(
        vs("root", "ns", ("h",), model.HTTPRoute(delegate=model.Delegate("child")),  # namespace: the root's
           model.HTTPRoute(delegate=model.Delegate("private", "other")),  # not exported to ns: dropped
           model.HTTPRoute(delegate=model.Delegate("missing")), model.HTTPRoute(name="own", route=ROUTE)),
        vs("child", "ns", (), child),
        vs("private", "other", (), child, export_to=(".",)),
        vs("plain", "ns", ("p",), model.HTTPRoute(route=ROUTE)),
    ))
    out = delegation.apply(config).virtual_services
    assert [(v.metadata.name, [r.name for r in v.http]) for v in out] == [("root", ["c", "own"]), ("plain", [""])]


def test_nothing_to_merge_is_the_same_config() -> None:
    config = model.MeshConfig(virtual_services=(vs("plain", "ns", ("p",), model.HTTPRoute(route=ROUTE)),))
    assert delegation.apply(config) is config
