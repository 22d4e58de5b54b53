"""Finished spans and their wire formats: OTLP/HTTP protobuf (ExportTraceServiceRequest, with
opentelemetry-proto's generated classes) and Zipkin v2 JSON (pure, no I/O).

One `Span` per request per proxy: CLIENT on an outbound listener (a sidecar's or a gateway's),
SERVER on an inbound one, tagged with Istio's tags (see pymesh.proxy.tracing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

CLIENT, SERVER = "CLIENT", "SERVER"


@dataclass(slots=True)
class Span:
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_id: str  # "" for a root span
    name: str
    kind: str  # CLIENT | SERVER
    start_us: int  # wall clock, microseconds since the epoch
    duration_us: int
    tags: dict[str, str] = field(default_factory=dict)
    remote: tuple[str, int] | None = None  # the peer this span talked to (Zipkin remoteEndpoint)
    local_ip: str = ""
    tracestate: str = ""


@dataclass(frozen=True)
class Resource:
    """Who reports: Zipkin's localEndpoint.serviceName, OTLP's resource service.name and the
    proxy's other resource attributes."""

    service_name: str
    attributes: tuple[tuple[str, str], ...] = ()


def otlp_request(resource: Resource, spans: list[Span]) -> bytes:
    """One ExportTraceServiceRequest (POST /v1/traces, application/x-protobuf)."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    _attributes(resource_spans.resource.attributes, (("service.name", resource.service_name), *resource.attributes))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "pymesh"
    for span in spans:
        out = scope_spans.spans.add()
        out.trace_id = bytes.fromhex(span.trace_id)
        out.span_id = bytes.fromhex(span.span_id)
        if span.parent_id:
            out.parent_span_id = bytes.fromhex(span.parent_id)
        if span.tracestate:
            out.trace_state = span.tracestate
        out.name = span.name
        out.kind = trace_pb2.Span.SPAN_KIND_CLIENT if span.kind == CLIENT else trace_pb2.Span.SPAN_KIND_SERVER
        out.start_time_unix_nano = span.start_us * 1000
        out.end_time_unix_nano = (span.start_us + span.duration_us) * 1000
        _attributes(out.attributes, span.tags.items())
        if span.tags.get("error") == "true":
            out.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    return request.SerializeToString()


def _attributes(target, items) -> None:
    for key, value in items:
        attribute = target.add()
        attribute.key = key
        attribute.value.string_value = value


def zipkin_json(resource: Resource, spans: list[Span]) -> bytes:
    """A Zipkin v2 span list (POST /api/v2/spans, application/json): ids in hex, timestamp and
    duration in microseconds, each span its own (shared false)."""
    out = []
    for span in spans:
        item = {
            "traceId": span.trace_id, "id": span.span_id, "name": span.name, "kind": span.kind,
            "timestamp": span.start_us, "duration": max(span.duration_us, 1),
            "localEndpoint": _endpoint(span.local_ip, None, resource.service_name),
            "tags": span.tags, "shared": False,
        }
        if span.parent_id:
            item["parentId"] = span.parent_id
        if span.remote is not None:
            item["remoteEndpoint"] = _endpoint(span.remote[0], span.remote[1])
        out.append(item)
    return json.dumps(out, separators=(",", ":")).encode()


def _endpoint(ip: str, port: int | None, service_name: str = "") -> dict:
    endpoint: dict = {"serviceName": service_name} if service_name else {}
    if ip:
        endpoint["ipv6" if ":" in ip else "ipv4"] = ip
    if port:
        endpoint["port"] = port
    return endpoint
