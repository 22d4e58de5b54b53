"""Span wire formats: OTLP protobuf decoded by opentelemetry-proto's own classes, Zipkin v2 JSON
taken by the control server's Zipkin store (what the mesh page shows)."""

from __future__ import annotations

import json

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from pymesh.control.traces import TraceStore
from pymesh.telemetry.spans import CLIENT, SERVER, Resource, Span, otlp_request, zipkin_json

RESOURCE = Resource("productpage.default", (("service.namespace", "default"),))
ROOT = Span("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "", "reviews:9080/*", CLIENT,
            1_700_000_000_000_000, 1500, {"http.status_code": "503", "error": "true"}, ("10.0.0.2", 9080),
            "10.0.0.1", "congo=t61rcWkgMzE")
CHILD = Span(ROOT.trace_id, "1111111111111111", ROOT.span_id, "reviews:9080/*", SERVER,
             1_700_000_000_000_100, 1200, {"http.status_code": "200"}, ("10.0.0.1", 40000), "::1")


def test_otlp():
    request = ExportTraceServiceRequest.FromString(otlp_request(RESOURCE, [ROOT, CHILD]))
    [resource_spans] = request.resource_spans
    attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert attributes == {"service.name": "productpage.default", "service.namespace": "default"}
    root, child = resource_spans.scope_spans[0].spans
    assert root.trace_id.hex() == ROOT.trace_id and root.span_id.hex() == ROOT.span_id and root.parent_span_id == b""
    assert child.parent_span_id.hex() == ROOT.span_id
    assert root.kind == trace_pb2.Span.SPAN_KIND_CLIENT and child.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert root.start_time_unix_nano == ROOT.start_us * 1000
    assert root.end_time_unix_nano - root.start_time_unix_nano == 1_500_000
    assert root.status.code == trace_pb2.Status.STATUS_CODE_ERROR and child.status.code == trace_pb2.Status.STATUS_CODE_UNSET
    assert root.trace_state == "congo=t61rcWkgMzE" and root.name == "reviews:9080/*"


def test_zipkin_json_is_what_a_zipkin_store_takes():
    body = zipkin_json(RESOURCE, [ROOT, CHILD])
    root, child = json.loads(body)
    assert root["localEndpoint"] == {"serviceName": "productpage.default", "ipv4": "10.0.0.1"}
    assert root["remoteEndpoint"] == {"ipv4": "10.0.0.2", "port": 9080} and "parentId" not in root
    assert child["localEndpoint"]["ipv6"] == "::1" and child["parentId"] == ROOT.span_id
    assert (root["timestamp"], root["duration"], root["kind"], root["shared"]) == (ROOT.start_us, 1500, "CLIENT", False)
    store = TraceStore()
    assert store.add(body) == 2
    assert {s["id"] for s in store.trace(ROOT.trace_id)} == {ROOT.span_id, CHILD.span_id}
