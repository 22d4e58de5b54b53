"""The span exporter on its own event loop against a real collector: a full batch is sent at
once, the queue never grows past its bound while the collector is slow (the excess is dropped
and counted), a partial batch waits for the timer, and a big OTLP/gRPC batch waits for HTTP/2's
flow control windows."""

from __future__ import annotations

import asyncio

import pytest

from pymesh.proxy import trace_export
from pymesh.telemetry.policy import TraceProvider
from pymesh.telemetry.spans import Resource, Span
from pymesh.telemetry.stats import TRACER_STATS
from trace_collector import Collector, GrpcCollector


def span(i: int, padding: int = 0) -> Span:
    return Span(trace_id=f"{i + 1:032x}", span_id=f"{i + 1:016x}", parent_id="", name="svc:80/*", kind="CLIENT",
                start_us=1_700_000_000_000_000 + i, duration_us=10,
                tags={"http.status_code": "200", **({"padding": "x" * padding} if padding else {})})


@pytest.fixture
def drive():
    """drive(sink, fill, done, **provider) -> the exporter, after fill(exporter) and then, bounded
    (400 ticks of 50 ms), until done(exporter); the loop and the sink are closed afterwards."""
    loop = asyncio.new_event_loop()
    sinks = []

    def run(sink, fill, done, kind: str = "opentelemetry", service: str = "127.0.0.1", **extra) -> trace_export.Exporter:
        sinks.append(sink)
        provider = TraceProvider(name="sink", kind=kind, service=service, port=sink.port, timeout=10.0, **extra)
        out = trace_export.Exporter(loop, provider, Resource("productpage.default"), dict.fromkeys(TRACER_STATS, 0))

        async def work() -> None:
            fill(out)
            for _ in range(400):
                if done(out):
                    return
                await asyncio.sleep(0.05)

        loop.run_until_complete(asyncio.wait_for(work(), 60))
        return out

    yield run
    loop.close()
    for sink in sinks:
        sink.stop()


def test_a_full_batch_goes_at_once_and_the_queue_stays_bounded(drive):
    sink = Collector(delay=0.2)
    sizes, extra, total = [], 500, trace_export.BATCH_SPANS + trace_export.QUEUE_LIMIT

    def fill(out) -> None:
        for i in range(total + extra):
            out.add(span(i))
            sizes.append(len(out.queue))
        assert out.sending  # the first full batch left without waiting for the timer

    out = drive(sink, fill, lambda out: not out.queue and not out.sending)  # drained batch by batch
    assert max(sizes) <= trace_export.QUEUE_LIMIT
    assert out.stats["spans_dropped"] == extra
    assert out.stats["spans_sent"] == total == len(sink.spans) and out.stats["reports_failed"] == 0
    assert out.stats["reports_sent"] == len(sink.posts) == total // trace_export.BATCH_SPANS


def test_the_timer_sends_a_partial_batch_in_zipkin_json_to_a_named_host(drive):
    sink = Collector()

    def fill(out) -> None:
        for i in range(3):
            out.add(span(i))
        assert not out.sending and out.timer is not None

    # localhost is resolved (the sink is on 127.0.0.1)
    out = drive(sink, fill, lambda out: out.stats["spans_sent"] == 3, kind="zipkin", service="localhost")
    assert out.stats["timer_flushed"] == 1 and out.stats["spans_sent"] == 3
    assert sink.posts == [("/api/v2/spans", "application/json")]
    assert [s["traceId"] for s in sink.spans] == [f"{i + 1:032x}" for i in range(3)]
    assert sink.spans[0]["localEndpoint"] == {"serviceName": "productpage.default"}


def test_a_big_batch_over_grpc_waits_for_the_flow_control_windows(drive):
    sink = GrpcCollector()

    def fill(out) -> None:
        for i in range(trace_export.BATCH_SPANS):  # ~300 KiB: several times HTTP/2's first window
            out.add(span(i, padding=1000))

    out = drive(sink, fill, lambda out: out.stats["spans_sent"] or out.stats["reports_failed"]
                or out.stats["reports_dropped"], transport="grpc")
    assert out.stats["spans_sent"] == trace_export.BATCH_SPANS == len(sink.spans)
