"""The span exporter on its own event loop against a real collector: a full batch is sent at
once, the queue never grows past its bound while the collector is slow (the excess is dropped
and counted), and one POST is in flight at a time."""

from __future__ import annotations

import asyncio

from pymesh.proxy import tracing
from pymesh.telemetry.policy import TraceProvider
from pymesh.telemetry.spans import Resource, Span
from pymesh.telemetry.stats import TRACER_STATS
from trace_collector import Collector


def span(i: int) -> Span:
    return Span(trace_id=f"{i + 1:032x}", span_id=f"{i + 1:016x}", parent_id="", name="svc:80/*", kind="CLIENT",
                start_us=1_700_000_000_000_000 + i, duration_us=10, tags={"http.status_code": "200"})


def exporter(loop, collector: Collector, kind: str = "opentelemetry") -> tracing.Exporter:
    provider = TraceProvider(name="sink", kind=kind, service="127.0.0.1", port=collector.port, timeout=10.0)
    return tracing.Exporter(loop, provider, Resource("productpage.default"), dict.fromkeys(TRACER_STATS, 0))


def test_a_full_batch_goes_at_once_and_the_queue_stays_bounded():
    sink = Collector(delay=0.2)
    loop = asyncio.new_event_loop()
    try:
        out = exporter(loop, sink)
        sizes = []

        async def run() -> None:
            extra = 500
            for i in range(tracing.BATCH_SPANS + tracing.QUEUE_LIMIT + extra):
                out.add(span(i))
                sizes.append(len(out.queue))
            assert out.sending  # the first full batch left without waiting for the timer
            assert max(sizes) <= tracing.QUEUE_LIMIT
            assert out.stats["spans_dropped"] == extra
            for _ in range(400):  # bounded: the slow collector drains the queue batch by batch
                if not out.queue and not out.sending:
                    break
                await asyncio.sleep(0.05)

        loop.run_until_complete(asyncio.wait_for(run(), 60))
        assert out.stats["spans_sent"] == tracing.BATCH_SPANS + tracing.QUEUE_LIMIT
        assert len(sink.spans) == out.stats["spans_sent"] and out.stats["reports_failed"] == 0
        assert out.stats["reports_sent"] == len(sink.posts) == (tracing.BATCH_SPANS + tracing.QUEUE_LIMIT) // tracing.BATCH_SPANS
    finally:
        loop.close()
        sink.stop()


def test_the_timer_sends_a_partial_batch_in_zipkin_json():
    sink = Collector()
    loop = asyncio.new_event_loop()
    try:
        out = exporter(loop, sink, "zipkin")

        async def run() -> None:
            for i in range(3):
                out.add(span(i))
            assert not out.sending and out.timer is not None
            for _ in range(200):
                if out.stats["spans_sent"] == 3:
                    break
                await asyncio.sleep(0.05)

        loop.run_until_complete(asyncio.wait_for(run(), 30))
        assert out.stats["timer_flushed"] == 1 and out.stats["spans_sent"] == 3
        assert sink.posts == [("/api/v2/spans", "application/json")]
        assert [s["traceId"] for s in sink.spans] == [f"{i + 1:032x}" for i in range(3)]
        assert sink.spans[0]["localEndpoint"] == {"serviceName": "productpage.default"}
    finally:
        loop.close()
        sink.stop()
