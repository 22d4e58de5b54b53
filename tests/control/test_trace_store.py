"""The control server's small Zipkin (pymesh.control.traces): Zipkin v2 JSON checked as its
schema says, whole bodies rejected on the first bad span, bounded in traces and spans, halves of
a span merged, and the recent list with each trace's root."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from pymesh.control.traces import MAX_SPANS, MAX_SPANS_PER_POST, BadSpans, TraceStore

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def span(span_id: str, parent: str | None = None, trace: str = TRACE, **extra) -> dict:
    out = {"traceId": trace, "id": span_id, "name": "get", "timestamp": 1000, "duration": 50,
           "localEndpoint": {"serviceName": "productpage.demo"}, **extra}
    if parent:
        out["parentId"] = parent
    return out


def post(store: TraceStore, spans) -> int:
    return store.add(json.dumps(spans).encode())


@pytest.mark.parametrize("body, problem", [
    (b"{", "not JSON"),
    (b'{"traceId": "x"}', "a JSON list"),
    (json.dumps([span("zz" * 8)]).encode(), "[0].id"),
    (json.dumps([span("a" * 16, trace="abc")]).encode(), "[0].traceId"),
    (json.dumps([span("a" * 16, parent="1")]).encode(), "[0].parentId"),
    (json.dumps([span("a" * 16, timestamp=-1)]).encode(), "[0].timestamp"),
    (json.dumps([span("a" * 16, duration=1.5)]).encode(), "[0].duration"),
    (json.dumps([span("a" * 16, kind="SIDEWAYS")]).encode(), "[0].kind"),
    (json.dumps([span("a" * 16, tags={"k": 1})]).encode(), "[0].tags.k"),
    (json.dumps([span("a" * 16), "x"]).encode(), "[1]"),
    (json.dumps([span("a" * 16)] * (MAX_SPANS_PER_POST + 1)).encode(), "more than"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),  # RecursionError in the decoder, not an answer
    (b'["\xff"]', "not JSON"),
])
def test_a_bad_body_is_rejected_whole_with_the_first_problem(body, problem):
    store = TraceStore()
    with pytest.raises(BadSpans, match=problem.replace("[", r"\[").replace("]", r"\]")):
        store.add(body)
    assert store.recent() == []


def test_an_error_names_a_long_tag_cut():
    with pytest.raises(BadSpans) as error:
        post(TraceStore(), [span("a" * 16, tags={"k" * 100_000: 1})])
    assert str(error.value) == f"[0].tags.{'k' * 256}: a string expected"


def test_spans_form_traces_and_the_recent_list_names_each_root():
    store = TraceStore()
    post(store, [span("a" * 16, kind="CLIENT"), span("b" * 16, parent="a" * 16, timestamp=1010, duration=30)])
    post(store, [span("c" * 16, trace="1" * 16)])
    recent = store.recent()
    assert [t["traceId"] for t in recent] == ["1" * 16, TRACE], "newest first"
    assert recent[1]["spans"] == 2 and recent[1]["duration"] == 50 and recent[1]["rootService"] == "productpage.demo"
    assert [s["id"] for s in store.trace(TRACE.upper())] == ["a" * 16, "b" * 16]
    assert store.trace("f" * 32) is None


def test_the_halves_of_a_span_are_merged_and_zero_high_trace_ids_are_the_64_bit_ones():
    store = TraceStore()
    post(store, [span("a" * 16, trace="0" * 16 + "2" * 16, kind="CLIENT")])
    post(store, [{"traceId": "2" * 16, "id": "a" * 16, "tags": {"http.status_code": "200"}}])
    (merged,) = store.trace("2" * 16)
    assert merged["kind"] == "CLIENT" and merged["tags"] == {"http.status_code": "200"}


def test_it_keeps_the_last_traces_and_at_most_max_spans_of_each():
    store = TraceStore(capacity=3)
    for i in range(5):
        post(store, [span("a" * 16, trace=f"{i:016x}")])
    assert [t["traceId"] for t in store.recent()] == [f"{i:016x}" for i in (4, 3, 2)]
    for start in range(0, MAX_SPANS + 10, 100):
        post(store, [span(f"{i:016x}", trace="9" * 16) for i in range(start, start + 100)])
    assert len(store.trace("9" * 16)) == MAX_SPANS


def test_long_text_is_cut():
    store = TraceStore()
    post(store, [span("a" * 16, name="n" * 10_000)])
    assert len(store.trace(TRACE)[0]["name"]) == 256


def _heavy(trace: int, count: int) -> list[dict]:
    """Spans as big as the checks let them be: 64 tags of 256-character keys and values."""
    return [span(f"{trace * 1000 + i:016x}", trace=f"{trace:016x}", name="n" * 256,
                 tags={f"{j:02d}" + "k" * 254: "v" * 256 for j in range(64)}) for i in range(count)]


def test_the_store_holds_at_most_max_bytes_of_spans_and_drops_the_oldest_traces():
    """Capacity in traces alone let 100 traces of 500 such spans hold over a gigabyte."""
    budget = 2 * 1024 * 1024
    tracemalloc.start()
    try:
        store = TraceStore(max_bytes=budget)
        before = tracemalloc.get_traced_memory()[0]
        for trace in range(20):
            post(store, _heavy(trace, 20))  # 20 traces of ~0.5 MB each
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert store.bytes <= budget and held <= budget, (store.bytes, held)
    kept = [t["traceId"] for t in store.recent()]
    assert kept and kept[0] == f"{19:016x}" and len(kept) < 20, "the newest kept, the oldest dropped"
    assert f"{0:016x}" not in kept


def test_a_trace_alone_over_the_budget_is_kept_and_replacing_a_span_costs_nothing_more():
    store = TraceStore(max_bytes=1000)
    post(store, _heavy(1, 2))
    assert [t["traceId"] for t in store.recent()] == [f"{1:016x}"], "the newest trace stays, whatever its size"
    size = store.bytes
    post(store, _heavy(1, 2))
    assert store.bytes == size


def test_endpoint_ports_outside_1_to_65535_are_left_out_and_ids_with_a_zero_high_half_are_found():
    store = TraceStore()
    post(store, [span("a" * 16, remoteEndpoint={"ipv4": "10.0.0.1", "port": 10**30}),
                 span("b" * 16, remoteEndpoint={"ipv4": "10.0.0.1", "port": True}),
                 span("c" * 16, remoteEndpoint={"ipv4": "10.0.0.1", "port": 8080})])
    assert [s["remoteEndpoint"].get("port") for s in store.trace(TRACE)] == [None, None, 8080]
    post(store, [span("a" * 16, trace="3" * 16)])
    assert store.trace("0" * 16 + "3" * 16) == store.trace("3" * 16)
