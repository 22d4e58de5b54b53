"""The mesh page's service graph from scraped Istio metrics (pymesh.control.graph): edges, rates
between two scrapes, 5xx shares, quantiles as histogram_quantile computes them, mTLS from the
destination's series, registered entry names folded into their proxies' workloads."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest

from pymesh.api.wire import Node
from pymesh.control import scrape as scrape_module
from pymesh.control.graph import build, quantile
from pymesh.control.scrape import Round, Scraper, parse

PROXIES = [{"id": "productpage.demo", "workload": "productpage", "namespace": "demo", "state": "SYNCED"},
           {"id": "reviews-v1.demo", "workload": "reviews-v1", "namespace": "demo", "state": "SYNCED"}]
CLIENT, SERVICE, SERVER = "workload:demo/productpage", "service:reviews.demo", "workload:demo/reviews-v1"


def source(code: str = "200", destination: str = "reviews-v1.demo") -> dict:
    return {"reporter": "source", "source_workload": "productpage", "source_workload_namespace": "demo",
            "destination_service": "reviews.demo", "destination_workload": destination,
            "destination_workload_namespace": "demo", "response_code": code}


def destination(policy: str) -> dict:
    return {"reporter": "destination", "source_workload": "productpage", "source_workload_namespace": "demo",
            "destination_service": "unknown", "destination_workload": "reviews-v1",
            "destination_workload_namespace": "demo", "connection_security_policy": policy, "response_code": "200"}


def scrape(at: float, ok: float, failed: float = 0.0, policies: tuple[str, ...] = ("mutual_tls",),
           buckets: dict[str, float] | None = None) -> Round:
    samples = [("istio_requests_total", source(), ok), ("istio_requests_total", source("503"), failed)]
    samples += [("istio_requests_total", destination(p), ok) for p in policies]
    for le, count in (buckets or {}).items():
        samples.append(("istio_request_duration_milliseconds_bucket", {**source(), "le": le}, count))
    return Round(at, tuple(samples), ())


def edge(graph: dict, a: str, b: str) -> dict:
    return next(e for e in graph["edges"] if (e["source"], e["target"]) == (a, b))


def test_edges_join_the_client_the_service_and_the_registered_workload_by_its_proxys_name():
    graph = build([("reviews.demo", "demo")], PROXIES, scrape(10.0, 100), None)
    assert {n["id"] for n in graph["nodes"]} == {CLIENT, SERVICE, SERVER}
    assert {(e["source"], e["target"]) for e in graph["edges"]} == {(CLIENT, SERVICE), (SERVICE, SERVER)}
    first = edge(graph, CLIENT, SERVICE)
    assert first["requests_total"] == 100 and first["rps"] is None, "one scrape: totals, no rate"


@pytest.mark.parametrize("before, after, seconds, rps, error_rate", [
    ((100, 0), (300, 0), 2.0, 100.0, 0.0),
    ((100, 0), (180, 20), 4.0, 25.0, 0.2),
    ((500, 10), (40, 10), 2.0, 25.0, 0.2),  # counters went down (a proxy restarted): the totals
    ((100, 0), (100, 0), 2.0, 0.0, None),  # no requests in the window: no share
])
def test_rates_and_5xx_shares_are_over_the_time_between_two_scrapes(before, after, seconds, rps, error_rate):
    graph = build([], PROXIES, scrape(10.0 + seconds, *after), scrape(10.0, *before))
    found = edge(graph, CLIENT, SERVICE)
    assert found["rps"] == pytest.approx(rps) and found["error_rate"] == (
        None if error_rate is None else pytest.approx(error_rate))


@pytest.mark.parametrize("policies, shown", [
    (("mutual_tls",), "mutual_tls"),
    (("none",), "none"),
    (("mutual_tls", "none"), "partial"),
    ((), "unknown"),  # the destination reports nothing (no sidecar there)
])
def test_an_edge_is_mtls_as_the_destinations_series_say(policies, shown):
    graph = build([], PROXIES, scrape(1.0, 10, policies=policies), None)
    assert edge(graph, CLIENT, SERVICE)["mtls"] == shown
    assert edge(graph, SERVICE, SERVER)["mtls"] == shown


@pytest.mark.parametrize("q, buckets, expected", [
    (0.5, {"10": 50, "100": 100, "+Inf": 100}, 10.0),
    (0.99, {"10": 50, "100": 100, "+Inf": 100}, 98.2),
    (0.5, {"1": 0, "5": 10, "+Inf": 10}, 3.0),
    (0.99, {"10": 1, "+Inf": 100}, 10.0),  # in +Inf: the highest finite bound
    (0.5, {"10": 0, "+Inf": 0}, None),
    (0.5, {}, None),
])
def test_quantiles_interpolate_within_buckets_as_histogram_quantile(q, buckets, expected):
    result = quantile(q, {float(le): count for le, count in buckets.items()})
    assert result == (None if expected is None else pytest.approx(expected))


def test_latency_comes_from_the_duration_histograms_change():
    before = scrape(1.0, 100, buckets={"10": 100, "100": 100, "+Inf": 100})
    after = scrape(3.0, 200, buckets={"10": 100, "100": 200, "+Inf": 200})
    latency = edge(build([], PROXIES, after, before), CLIENT, SERVICE)["latency_ms"]
    assert 10 < latency["p50"] <= latency["p99"] <= 100, latency


def test_parse_keeps_istios_request_families_only():
    text = ('# TYPE istio_requests_total counter\nistio_requests_total{reporter="source",response_code="200"} 7\n'
            '# TYPE envoy_cluster_upstream_rq counter\nenvoy_cluster_upstream_rq{x="y"} 3\n'
            '# TYPE istio_request_duration_milliseconds histogram\n'
            'istio_request_duration_milliseconds_bucket{le="+Inf"} 7\nistio_request_duration_milliseconds_sum 9\n'
            'istio_request_duration_milliseconds_count 7\n')
    names = sorted(name for name, _, _ in parse(text))
    assert names == ["istio_request_duration_milliseconds_bucket", "istio_request_duration_milliseconds_count",
                     "istio_request_duration_milliseconds_sum", "istio_requests_total"]
    assert math.isinf(float(next(l["le"] for n, l, _ in parse(text) if n.endswith("_bucket"))))


HISTOGRAM = "# TYPE istio_request_duration_milliseconds histogram\n"


@pytest.mark.parametrize("text, problem", [
    ('istio_requests_total{reporter="source"} NaN\n', "nan is not a finite number"),
    ('istio_requests_total{reporter="source"} +Inf\n', "inf is not a finite number"),
    ('istio_requests_total{reporter="source"} -Inf\n', "-inf is not a finite number"),
    (HISTOGRAM + 'istio_request_duration_milliseconds_bucket{le="abc"} 1\n', "le='abc' is not a number"),
    (HISTOGRAM + 'istio_request_duration_milliseconds_bucket{le="NaN"} 1\n', "le='NaN' is not a number"),
])
def test_a_proxy_reporting_what_is_not_a_number_is_unparsable(text, problem):
    """NaN went into the graph's JSON (which browsers refuse) and a bad le raised while building it."""
    with pytest.raises(ValueError, match=problem):
        parse(text)


def test_parse_reads_lines_as_the_exposition_format_splits_them():
    text = 'other{a="x"} NaN\nistio_requests_total{reporter="source",destination_service="a\u2028b"} 3\n'
    assert parse(text) == [("istio_requests_total", {"reporter": "source", "destination_service": "a\u2028b"}, 3.0)]


def test_a_round_parses_in_a_thread_while_the_event_loop_runs(monkeypatch):
    """The parser is slow Python: on the event loop it stalled the control server's pushes."""
    started, released = threading.Event(), threading.Event()

    def blocking(text: str):
        started.set()
        assert released.wait(5), "the event loop did not run while parsing"
        return [("istio_requests_total", {"reporter": "source"}, 1.0)]

    monkeypatch.setattr(scrape_module, "parse", blocking)

    async def stats(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nistio_requests_total 1\n")
        writer.close()

    async def body():
        server = await asyncio.start_server(stats, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        node = Node(id="a.demo", namespace="demo", stats_address=f"127.0.0.1:{port}")
        scraper = Scraper(lambda: [node])
        try:
            refresh = asyncio.ensure_future(scraper.refresh())
            for _ in range(500):  # bounded: 5 s
                if started.is_set() or refresh.done():
                    break
                await asyncio.sleep(0.01)
            released.set()  # reached while parsing only if the loop is free meanwhile
            await refresh
        finally:
            server.close()
        assert scraper.latest.samples == (("istio_requests_total", {"reporter": "source"}, 1.0),)

    asyncio.run(asyncio.wait_for(body(), 30))


def test_only_the_busiest_edges_are_drawn_and_the_rest_are_counted():
    """A proxy reporting thousands of services would have the page draw thousands of edges."""
    from pymesh.control.graph import MAX_EDGES

    samples = tuple(("istio_requests_total", {**source(), "destination_service": f"s{i}.demo",
                                              "destination_workload": "unknown"}, float(i))
                    for i in range(MAX_EDGES + 50))
    graph = build([], PROXIES, Round(1.0, samples, ()), None)
    assert len(graph["edges"]) == MAX_EDGES and graph["edges_left_out"] == 50
    assert f"service:s{MAX_EDGES + 49}.demo" in {e["target"] for e in graph["edges"]}, "the busiest are kept"
    assert "service:s0.demo" not in {n["id"] for n in graph["nodes"]}, "nor a node for an edge left out"
