"""The first-segment index must never change which route matches: random route tables with every
uri match kind, matched with the index and with a plain walk, must agree on every path."""

import random

import pytest

from pymesh.api import model as m
from pymesh.routing import segment_index
from pymesh.routing.match import CompiledRoute, CompiledRouteTable, VirtualHost
from pymesh.routing.segment_index import literal_segment, path_segment
from pymesh.routing.snapshot import Route
from routing_helpers import Req

SEGMENTS = ["api", "apix", "ap", "v1", "static", "API", ""]
PATHS = ["/", "/api", "/api/", "/api/v1", "/apix", "/apix/y", "/ap", "/apple", "/API/v1", "/v1/api",
         "/static/a.css", "/Static/a.css", "http://x/api/v1", "*", "/api?x=1", "//api"]


def random_match(rng: random.Random) -> m.HTTPMatchRequest:
    segment = rng.choice(SEGMENTS)
    kind = rng.choice(["exact", "prefix", "prefix", "regex", "none"])
    value = rng.choice([f"/{segment}", f"/{segment}/", f"/{segment}/v1", f"/{segment[:2]}"])
    uri = None if kind == "none" else m.StringMatch(kind, value if kind != "regex" else f"/{segment}.*")
    headers = {"x-canary": m.StringMatch("exact", "1")} if rng.random() < 0.2 else {}
    return m.HTTPMatchRequest(uri=uri, headers=headers, ignore_uri_case=rng.random() < 0.1)


def table(routes: list[tuple[str, tuple[m.HTTPMatchRequest, ...]]]) -> CompiledRouteTable:
    compiled = [CompiledRoute.build(Route(name=name, virtual_service=""), matches, 80) for name, matches in routes]
    return CompiledRouteTable(80, [VirtualHost("vh", ("*",), tuple(compiled))])


@pytest.mark.parametrize("seed", range(40))
def test_index_picks_the_same_route_as_a_plain_walk(seed, monkeypatch):
    rng = random.Random(seed)
    routes = [(f"r{i}", tuple(random_match(rng) for _ in range(rng.choice([0, 1, 1, 2]))))
              for i in range(rng.randint(segment_index.MIN_ROUTES, 80))]
    indexed = table(routes)
    monkeypatch.setattr(segment_index, "MIN_ROUTES", 10**9)
    plain = table(routes)
    assert plain._any[3] is None and (indexed._any[3] is not None or not any(
        segment_index.route_segments(ms) for _, ms in routes))
    for path in PATHS:
        for headers in ({}, {"x-canary": "1"}):
            request = Req(path=path, headers=headers)
            got, want = indexed.match(request), plain.match(request)
            assert (got and got[0].name, got and got[1]) == (want and want[0].name, want and want[1]), path


def test_the_index_skips_routes_that_cannot_match():
    routes = [(f"r{i}", (m.HTTPMatchRequest(uri=m.StringMatch("prefix", f"/svc{i}/")),)) for i in range(100)]
    compiled = table(routes)
    index, rest = compiled._any[3]
    assert [route.name for route, _ in index["svc99"]] == ["r99"] and rest == ()
    assert compiled.match(Req(path="/svc99/x"))[0].name == "r99"
    assert compiled.match(Req(path="/nothing")) is None


@pytest.mark.parametrize("match, segment", [
    (m.HTTPMatchRequest(uri=m.StringMatch("exact", "/api")), "api"),
    (m.HTTPMatchRequest(uri=m.StringMatch("exact", "/api/v1")), "api"),
    (m.HTTPMatchRequest(uri=m.StringMatch("prefix", "/api/")), "api"),
    (m.HTTPMatchRequest(uri=m.StringMatch("prefix", "/api")), None),  # also /apix
    (m.HTTPMatchRequest(uri=m.StringMatch("regex", "/api/.*")), None),
    (m.HTTPMatchRequest(uri=m.StringMatch("prefix", "/api/"), ignore_uri_case=True), None),
    (m.HTTPMatchRequest(), None),
])
def test_literal_segment(match, segment):
    assert literal_segment(match) == segment


@pytest.mark.parametrize("path, segment", [("/", ""), ("/api", "api"), ("/api/v1/x", "api"), ("//x", "")])
def test_path_segment(path, segment):
    assert path_segment(path) == segment
