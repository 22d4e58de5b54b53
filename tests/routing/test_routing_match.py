"""HTTP match kinds: each one routes when it should and not when it should not."""

from __future__ import annotations

import pytest

from pymesh.api import model as m
from pymesh.routing.match import CompiledRoute, CompiledRouteTable, LazyQuery, VirtualHost, string_matcher
from pymesh.routing.snapshot import Route
from routing_helpers import Req, compile_, dest, http, se, vs

SVC = se("reviews.default.svc.cluster.local")


def exact(v):
    return m.StringMatch("exact", v)


def prefix(v):
    return m.StringMatch("prefix", v)


def regex(v):
    return m.StringMatch("regex", v)


def matched(match: m.HTTPMatchRequest, req: Req):
    """(route name, matched prefix) for a VS whose only route has `match`, or None."""
    snap = compile_([SVC], [vs("r", "reviews", http(dest("reviews"), match=[match], name="hit"))])
    found = snap.captured_outbound[9080].route_table.match(req)
    return (found[0].name, found[1]) if found and found[0].name == "hit" else None


CASES = [
    # (id, match, request, should match)
    ("uri exact", m.HTTPMatchRequest(uri=exact("/a")), Req(path="/a"), True),
    ("uri exact other", m.HTTPMatchRequest(uri=exact("/a")), Req(path="/ab"), False),
    ("uri exact ignores query", m.HTTPMatchRequest(uri=exact("/a")), Req(path="/a?x=1"), True),
    ("uri exact case", m.HTTPMatchRequest(uri=exact("/A")), Req(path="/a"), False),
    ("uri exact ignoreUriCase", m.HTTPMatchRequest(uri=exact("/A"), ignore_uri_case=True), Req(path="/a"), True),
    ("uri prefix", m.HTTPMatchRequest(uri=prefix("/api/")), Req(path="/api/v1"), True),
    ("uri prefix miss", m.HTTPMatchRequest(uri=prefix("/api/")), Req(path="/apx"), False),
    ("uri prefix not in query", m.HTTPMatchRequest(uri=prefix("/a/")), Req(path="/b?/a/"), False),
    ("uri prefix ignoreUriCase", m.HTTPMatchRequest(uri=prefix("/API"), ignore_uri_case=True), Req(path="/api/x"), True),
    ("uri regex full", m.HTTPMatchRequest(uri=regex(r"/item/\d+")), Req(path="/item/42"), True),
    ("uri regex partial is no match", m.HTTPMatchRequest(uri=regex(r"/item/\d+")), Req(path="/item/42/x"), False),
    ("uri regex ignores ignoreUriCase", m.HTTPMatchRequest(uri=regex("/a"), ignore_uri_case=True), Req(path="/A"), False),
    ("method exact", m.HTTPMatchRequest(method=exact("POST")), Req(method="POST"), True),
    ("method exact miss", m.HTTPMatchRequest(method=exact("POST")), Req(method="GET"), False),
    ("method regex", m.HTTPMatchRequest(method=regex("GET|HEAD")), Req(method="HEAD"), True),
    ("authority exact", m.HTTPMatchRequest(authority=exact("reviews")), Req(authority="Reviews"), True),
    ("authority prefix miss", m.HTTPMatchRequest(authority=prefix("other")), Req(authority="reviews"), False),
    ("scheme", m.HTTPMatchRequest(scheme=exact("https")), Req(scheme="https"), True),
    ("scheme miss", m.HTTPMatchRequest(scheme=exact("https")), Req(scheme="http"), False),
    ("header exact", m.HTTPMatchRequest(headers={"end-user": exact("jason")}), Req(headers={"end-user": "jason"}), True),
    ("header exact other value", m.HTTPMatchRequest(headers={"end-user": exact("jason")}), Req(headers={"end-user": "bob"}), False),
    ("header absent", m.HTTPMatchRequest(headers={"end-user": exact("jason")}), Req(), False),
    ("header name case", m.HTTPMatchRequest(headers={"End-User": prefix("ja")}), Req(headers={"end-user": "jason"}), True),
    ("header regex", m.HTTPMatchRequest(headers={"x-v": regex("v[12]")}), Req(headers={"x-v": "v2"}), True),
    ("header empty prefix = present", m.HTTPMatchRequest(headers={"x-v": prefix("")}), Req(headers={"x-v": ""}), True),
    ("withoutHeaders absent", m.HTTPMatchRequest(without_headers={"x-test": exact("1")}), Req(), True),
    ("withoutHeaders other value", m.HTTPMatchRequest(without_headers={"x-test": exact("1")}), Req(headers={"x-test": "2"}), True),
    ("withoutHeaders matching", m.HTTPMatchRequest(without_headers={"x-test": exact("1")}), Req(headers={"x-test": "1"}), False),
    ("query exact", m.HTTPMatchRequest(query_params={"v": exact("2")}), Req(path="/p?a=1&v=2"), True),
    ("query first value counts", m.HTTPMatchRequest(query_params={"v": exact("2")}), Req(path="/p?v=1&v=2"), False),
    ("query decoded", m.HTTPMatchRequest(query_params={"q": exact("a b")}), Req(path="/p?q=a%20b"), True),
    ("query absent", m.HTTPMatchRequest(query_params={"v": exact("2")}), Req(path="/p"), False),
    ("query regex", m.HTTPMatchRequest(query_params={"id": regex(r"\d+")}), Req(path="/?id=123"), True),
    ("port same", m.HTTPMatchRequest(port=9080), Req(), True),
    ("port other", m.HTTPMatchRequest(port=9090), Req(), False),
    ("sourceLabels subset", m.HTTPMatchRequest(source_labels={"app": "web"}), Req(source_labels={"app": "web", "v": "1"}), True),
    ("sourceLabels differ", m.HTTPMatchRequest(source_labels={"app": "web"}), Req(source_labels={"app": "api"}), False),
    ("fields are ANDed", m.HTTPMatchRequest(uri=prefix("/a"), method=exact("GET")), Req(path="/a", method="PUT"), False),
    ("empty match block matches all", m.HTTPMatchRequest(), Req(path="/anything"), True),
    # pseudo-headers, which Istio lets headers and withoutHeaders name, read the request's own fields
    ("header :method", m.HTTPMatchRequest(headers={":method": exact("POST")}), Req(method="POST"), True),
    ("header :method miss", m.HTTPMatchRequest(headers={":method": exact("POST")}), Req(method="GET"), False),
    ("header :path", m.HTTPMatchRequest(headers={":path": prefix("/api?")}), Req(path="/api?x=1"), True),
    ("header :authority", m.HTTPMatchRequest(headers={":authority": exact("reviews:9080")}),
     Req(authority="reviews:9080"), True),
    ("header :scheme", m.HTTPMatchRequest(headers={":scheme": exact("http")}), Req(scheme="http"), True),
    ("header :status never on a request", m.HTTPMatchRequest(headers={":status": prefix("")}), Req(), False),
    ("withoutHeaders :method", m.HTTPMatchRequest(without_headers={":method": exact("GET")}), Req(method="GET"), False),
    ("withoutHeaders :status", m.HTTPMatchRequest(without_headers={":status": prefix("")}), Req(), True),
]


@pytest.mark.parametrize("match,req,hit", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_match_kind(match, req, hit):
    assert (matched(match, req) is not None) is hit


def test_prefix_match_reports_the_prefix_for_rewrites():
    assert matched(m.HTTPMatchRequest(uri=prefix("/api/")), Req(path="/api/x")) == ("hit", "/api/")
    assert matched(m.HTTPMatchRequest(uri=exact("/api")), Req(path="/api")) == ("hit", None)


def test_match_blocks_are_ored_and_report_their_own_prefix():
    route = http(dest("reviews"), match=[m.HTTPMatchRequest(uri=prefix("/a")), m.HTTPMatchRequest(uri=prefix("/b"))], name="ab")
    table = compile_([SVC], [vs("r", "reviews", route)]).captured_outbound[9080].route_table
    assert table.match(Req(path="/b/1"))[1] == "/b"
    assert table.match(Req(path="/a/1"))[1] == "/a"
    assert table.match(Req(path="/c")) is None


def test_first_match_wins_and_no_match_is_none():
    routes = [
        http(dest("reviews", "v1"), match=[m.HTTPMatchRequest(headers={"end-user": exact("jason")})], name="jason"),
        http(dest("reviews", "v2"), match=[m.HTTPMatchRequest(uri=prefix("/"))], name="everyone"),
        http(dest("reviews", "v3"), name="never"),
    ]
    table = compile_([SVC], [vs("r", "reviews", *routes)]).captured_outbound[9080].route_table
    assert table.match(Req(headers={"end-user": "jason"}))[0].name == "jason"
    assert table.match(Req())[0].name == "everyone"
    only_jason = compile_([SVC], [vs("r", "reviews", routes[0])]).captured_outbound[9080].route_table
    assert only_jason.match(Req()) is None


def test_route_whose_matches_all_name_another_port_is_dropped():
    routes = [
        http(dest("reviews", "v1"), match=[m.HTTPMatchRequest(port=9090)], name="other-port"),
        http(dest("reviews", "v2"), name="rest"),
    ]
    table = compile_([SVC], [vs("r", "reviews", *routes)]).captured_outbound[9080].route_table
    assert [r.route.name for r in table.virtual_host("reviews").routes] == ["rest"]


def test_query_string_is_parsed_once_and_only_when_needed(monkeypatch):
    calls = []
    import pymesh.routing.match as match_mod

    real = match_mod.parse_qsl
    monkeypatch.setattr(match_mod, "parse_qsl", lambda *a, **k: calls.append(a) or real(*a, **k))
    q = lambda name, v: m.HTTPMatchRequest(query_params={name: exact(v)})  # noqa: E731
    routes = [http(dest("reviews"), match=[q("a", "1")], name="a"), http(dest("reviews"), match=[q("b", "2")], name="b")]
    table = compile_([SVC], [vs("r", "reviews", *routes)]).captured_outbound[9080].route_table
    assert table.match(Req(path="/?b=2"))[0].name == "b"
    assert len(calls) == 1
    plain = compile_([SVC]).captured_outbound[9080].route_table
    plain.match(Req(path="/?b=2"))
    assert len(calls) == 1


def test_lazy_query_and_string_matcher_directly():
    q = LazyQuery("a=1&b=&a=2")
    assert (q.get("a"), q.get("b"), q.get("c")) == ("1", "", None)
    with pytest.raises(ValueError):
        string_matcher(m.StringMatch("suffix", "x"))


def test_route_table_can_be_built_by_hand():
    route = Route(name="r", virtual_service="")
    vh = VirtualHost("h", ("example.com",), (CompiledRoute(route, (), ()),))
    table = CompiledRouteTable(80, [vh])
    assert table.match(Req(authority="EXAMPLE.com:80")) == (route, None)
    assert table.match(Req(authority="example.org")) is None
