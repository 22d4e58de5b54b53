"""A small Zipkin: the control server keeps the last traces its proxies (or anyone on the admin
port) POST to /api/v2/spans as Zipkin v2 JSON, so the mesh page can show the trace of a request
without a Jaeger.

Bounded: a body is at most MAX_BODY bytes and MAX_SPANS_PER_POST spans, a trace at most
MAX_SPANS spans, and only the `capacity` most recently updated traces are kept, fewer when their
spans hold more than `max_bytes` (an estimate of their memory: spans full of long tags would
otherwise take gigabytes). Spans are checked
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
MAX_BYTES = 32 * 1024 * 1024
SPAN_BYTES = 600  # a stored span's dict and its fixed fields, roughly, as CPython holds them
FIELD_BYTES = 120  # a dict entry and its two str objects, beyond their characters
_TRACE_ID = re.compile(r"[0-9a-f]{16}|[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
KINDS = frozenset({"CLIENT", "SERVER", "PRODUCER", "CONSUMER"})


class BadSpans(ValueError):
    pass


class TraceStore:
    def __init__(self, capacity: int = CAPACITY, max_bytes: int = MAX_BYTES):
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0  # the estimate (`_cost`) of every stored span
        self._traces: OrderedDict[str, dict[str, dict]] = OrderedDict()  # trace id -> span id -> span
        self._costs: dict[str, int] = {}  # trace id -> its spans' estimate

    def add(self, body: bytes) -> int:
        """Store a POSTed list of spans; BadSpans (with the first problem) rejects the whole body,
        as Zipkin's collector does. Returns how many spans were accepted."""
        try:
            spans = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadSpans(f"not JSON: {exc}") from None
        except RecursionError:  # the decoder nests as deep as the body does
            raise BadSpans("not JSON a collector accepts: nested too deep") from None
        if not isinstance(spans, list):
            raise BadSpans("expected a JSON list of spans")
        if len(spans) > MAX_SPANS_PER_POST:
            raise BadSpans(f"more than {MAX_SPANS_PER_POST} spans in one request")
        checked = [_span(s, f"[{i}]") for i, s in enumerate(spans)]
        for span in checked:
            trace_id = span["traceId"]
            trace = self._traces.pop(trace_id, None) or {}
            if len(trace) < MAX_SPANS or span["id"] in trace:
                old = trace.get(span["id"])
                merged = trace[span["id"]] = {**(old or {}), **span}  # Zipkin merges halves of a span
                change = _cost(merged) - (_cost(old) if old else 0)
                self._costs[trace_id] = self._costs.get(trace_id, 0) + change
                self.bytes += change
            self._traces[trace_id] = trace
            while len(self._traces) > self.capacity or (self.bytes > self.max_bytes and len(self._traces) > 1):
                self._evict()
        return len(checked)

    def _evict(self) -> None:
        """Drop the least recently updated trace."""
        trace_id, _ = self._traces.popitem(last=False)
        self.bytes -= self._costs.pop(trace_id, 0)

    def recent(self) -> list[dict]:
        """Newest first: each trace's id, root span, service count, start and duration."""
        return [_summary(trace_id, spans) for trace_id, spans in reversed(self._traces.items())]

    def trace(self, trace_id: str) -> list[dict] | None:
        spans = self._traces.get(_short(trace_id.lower()))
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
    span["traceId"] = _short(span["traceId"])
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
            port = endpoint.get("port")
            if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
                span[name]["port"] = port
    tags = value.get("tags")
    if tags is not None:
        if not isinstance(tags, dict) or len(tags) > MAX_TAGS:
            raise BadSpans(f"{where}.tags: an object of at most {MAX_TAGS} string values expected")
        span["tags"] = {_text(k, f"{where}.tags"): _text(v, f"{where}.tags.{k[:MAX_TEXT]}") for k, v in tags.items()}
    return span


def _short(trace_id: str) -> str:
    """Zipkin's own: a 128-bit id with a zero high half is the 64-bit one."""
    return trace_id[16:] if len(trace_id) == 32 and trace_id.startswith("0" * 16) else trace_id


def _cost(span: dict) -> int:
    """Roughly the bytes a stored span holds: its strings, a dict entry per field, and the
    endpoints' and tags' dicts."""
    size = SPAN_BYTES
    for value in span.values():
        if isinstance(value, str):
            size += len(value)
        elif isinstance(value, dict):
            size += SPAN_BYTES // 2 + sum(FIELD_BYTES + len(k) + (len(v) if isinstance(v, str) else 0)
                                          for k, v in value.items())
    return size


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
