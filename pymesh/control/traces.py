"""A small Zipkin: the control server keeps the last traces its proxies (or anyone on the admin
port) POST to /api/v2/spans as Zipkin v2 JSON, so the mesh page can show the trace of a request
without a Jaeger.

Bounded: a body is at most MAX_BODY bytes and MAX_SPANS_PER_POST spans, a trace at most
MAX_SPANS spans, and only the `capacity` most recently updated traces are kept. Spans are checked
as the Zipkin v2 schema says (traceId 16 or 32 hex, id 16 hex, parentId 16 hex, timestamp and
duration in microseconds) and only the fields the page shows are kept, each cut to a length.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict

MAX_BODY = 1024 * 1024
MAX_SPANS_PER_POST = 1000
MAX_SPANS = 500
MAX_TEXT = 256
MAX_TAGS = 64
CAPACITY = 100
_TRACE_ID = re.compile(r"[0-9a-f]{16}|[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
KINDS = frozenset({"CLIENT", "SERVER", "PRODUCER", "CONSUMER"})


class BadSpans(ValueError):
    pass


class TraceStore:
    def __init__(self, capacity: int = CAPACITY):
        self.capacity = capacity
        self._traces: OrderedDict[str, dict[str, dict]] = OrderedDict()  # trace id -> span id -> span

    def add(self, body: bytes) -> int:
        """Store a POSTed list of spans; BadSpans (with the first problem) rejects the whole body,
        as Zipkin's collector does. Returns how many spans were accepted."""
        try:
            spans = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadSpans(f"not JSON: {exc}") from None
        if not isinstance(spans, list):
            raise BadSpans("expected a JSON list of spans")
        if len(spans) > MAX_SPANS_PER_POST:
            raise BadSpans(f"more than {MAX_SPANS_PER_POST} spans in one request")
        checked = [_span(s, f"[{i}]") for i, s in enumerate(spans)]
        for span in checked:
            trace = self._traces.pop(span["traceId"], None) or {}
            if len(trace) < MAX_SPANS or span["id"] in trace:
                trace[span["id"]] = {**trace.get(span["id"], {}), **span}  # Zipkin merges halves of a span
            self._traces[span["traceId"]] = trace
            while len(self._traces) > self.capacity:
                self._traces.popitem(last=False)
        return len(checked)

    def recent(self) -> list[dict]:
        """Newest first: each trace's id, root span, service count, start and duration."""
        return [_summary(trace_id, spans) for trace_id, spans in reversed(self._traces.items())]

    def trace(self, trace_id: str) -> list[dict] | None:
        spans = self._traces.get(trace_id.lower())
        return None if spans is None else sorted(spans.values(), key=lambda s: s.get("timestamp", 0))


def _span(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise BadSpans(f"{where}: a span is a JSON object")
    span = {}
    for name, pattern in (("traceId", _TRACE_ID), ("id", _SPAN_ID), ("parentId", _SPAN_ID)):
        field = value.get(name)
        if field is None and name == "parentId":
            continue
        if not isinstance(field, str) or not pattern.fullmatch(field.lower()):
            raise BadSpans(f"{where}.{name}: {'16 or 32' if name == 'traceId' else '16'} lower-hex characters expected")
        span[name] = field.lower()
    if span["traceId"] and len(span["traceId"]) == 32 and span["traceId"].startswith("0" * 16):
        span["traceId"] = span["traceId"][16:]  # Zipkin's own: a 128-bit id with a zero high half is the 64-bit one
    for name in ("timestamp", "duration"):
        field = value.get(name)
        if field is not None:
            if not isinstance(field, int) or isinstance(field, bool) or field < 0:
                raise BadSpans(f"{where}.{name}: microseconds as a non-negative integer expected")
            span[name] = field
    kind = value.get("kind")
    if kind is not None:
        if kind not in KINDS:
            raise BadSpans(f"{where}.kind: one of {', '.join(sorted(KINDS))} expected")
        span["kind"] = kind
    if value.get("name") is not None:
        span["name"] = _text(value["name"], f"{where}.name")
    for name in ("localEndpoint", "remoteEndpoint"):
        endpoint = value.get(name)
        if endpoint is not None:
            if not isinstance(endpoint, dict):
                raise BadSpans(f"{where}.{name}: an object expected")
            span[name] = {k: _text(endpoint[k], f"{where}.{name}.{k}")
                          for k in ("serviceName", "ipv4", "ipv6") if endpoint.get(k) is not None}
            if isinstance(endpoint.get("port"), int):
                span[name]["port"] = endpoint["port"]
    tags = value.get("tags")
    if tags is not None:
        if not isinstance(tags, dict) or len(tags) > MAX_TAGS:
            raise BadSpans(f"{where}.tags: an object of at most {MAX_TAGS} string values expected")
        span["tags"] = {_text(k, f"{where}.tags"): _text(v, f"{where}.tags.{k}") for k, v in tags.items()}
    return span


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise BadSpans(f"{where}: a string expected")
    return value[:MAX_TEXT]


def _summary(trace_id: str, spans: dict[str, dict]) -> dict:
    ids = set(spans)
    roots = [s for s in spans.values() if s.get("parentId") not in ids]
    root = min(roots or spans.values(), key=lambda s: s.get("timestamp", 0))
    starts = [s["timestamp"] for s in spans.values() if "timestamp" in s]
    ends = [s["timestamp"] + s.get("duration", 0) for s in spans.values() if "timestamp" in s]
    services = {s.get("localEndpoint", {}).get("serviceName") for s in spans.values()} - {None}
    return {"traceId": trace_id, "root": root.get("name", ""),
            "rootService": root.get("localEndpoint", {}).get("serviceName", ""),
            "spans": len(spans), "services": sorted(services),
            "timestamp": min(starts) if starts else None, "duration": max(ends) - min(starts) if starts else None}
