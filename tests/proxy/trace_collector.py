"""A trace collector for the tracing tests: a real HTTP server that takes OTLP/HTTP protobuf
(`POST /v1/traces`, decoded with opentelemetry-proto's generated classes) and Zipkin v2 JSON
(`POST /api/v2/spans`) and keeps every span as a plain dict; knobs make it slow or failing.
Also builds the configuration that points proxies at it, as Istio's tracing tasks write it."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

import waiting

_KIND = {trace_pb2.Span.SPAN_KIND_CLIENT: "CLIENT", trace_pb2.Span.SPAN_KIND_SERVER: "SERVER"}


def _otlp_spans(body: bytes) -> list[dict]:
    request = ExportTraceServiceRequest.FromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append({
                    "traceId": span.trace_id.hex(), "id": span.span_id.hex(), "parentId": span.parent_span_id.hex(),
                    "name": span.name, "kind": _KIND.get(span.kind, str(span.kind)),
                    "service": resource.get("service.name"), "tracestate": span.trace_state,
                    "tags": {a.key: a.value.string_value for a in span.attributes},
                    "error": span.status.code == trace_pb2.Status.STATUS_CODE_ERROR,
                    "duration_ns": span.end_time_unix_nano - span.start_time_unix_nano,
                })
    return spans


def _zipkin_spans(body: bytes) -> list[dict]:
    spans = []
    for span in json.loads(body):
        assert isinstance(span["timestamp"], int) and isinstance(span["duration"], int)
        spans.append({**span, "parentId": span.get("parentId", ""), "service": span["localEndpoint"]["serviceName"]})
    return spans


class Collector:
    """`status` answers every POST; `delay` holds each answer that long; `down` closes the
    listening socket (connections are refused)."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.status, self.delay = status, delay
        self.spans: list[dict] = []
        self.posts: list[tuple[str, str]] = []  # (path, content type)
        self._lock = threading.Condition()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                time.sleep(collector.delay)
                spans = _otlp_spans(body) if self.path == "/v1/traces" else _zipkin_spans(body)
                with collector._lock:
                    collector.posts.append((self.path, self.headers.get("content-type")))
                    if collector.status < 300:
                        collector.spans.extend(spans)
                    collector._lock.notify_all()
                self.send_response(collector.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_spans(self, n: int, timeout: float = 15.0) -> list[dict]:
        """At least `n` spans (bounded wait), then the spans."""
        return waiting.wait_until(lambda: len(self.spans) >= n and list(self.spans), timeout, 0.05,
                                  f"{n} spans at the collector (have {len(self.spans)})")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class GrpcCollector:
    """An OTLP/gRPC collector (grpcio's server with opentelemetry-proto's TraceService); the
    spans in Collector's form."""

    def __init__(self) -> None:
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        collector = self
        self.spans: list[dict] = []
        self.metadata: list[dict] = []

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802
                collector.metadata.append(dict(context.invocation_metadata()))
                collector.spans.extend(_otlp_spans(request.SerializeToString()))
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def wait_spans(self, n: int, timeout: float = 15.0) -> list[dict]:
        return waiting.wait_until(lambda: len(self.spans) >= n and list(self.spans), timeout, 0.05,
                                  f"{n} spans at the gRPC collector (have {len(self.spans)})")

    def stop(self) -> None:
        self.server.stop(None)


def tracing_config(kind: str, port: int, sampling: float = 100.0, service: str = "127.0.0.1",
                   transport: str = "http", timeout: str | None = None, headers: dict[str, str] | None = None,
                   custom_tags: dict | None = None) -> list[dict]:
    """The resources that make a proxy trace to `service:port`, as Istio's tracing tasks configure
    it: the provider in the `istio` ConfigMap's extensionProviders (an opentelemetry one with an
    `http` block for OTLP/HTTP, without for OTLP/gRPC) and a mesh-wide Telemetry naming it."""
    provider: dict = {"service": service, "port": port}
    options = {**({"timeout": timeout} if timeout else {})}
    header_list = [{"name": k, "value": v} for k, v in (headers or {}).items()]
    if kind == "zipkin":
        provider.update(options, **({"headers": header_list} if header_list else {}))
    elif transport == "http":
        provider["http"] = {"path": "/v1/traces", **options, **({"headers": header_list} if header_list else {})}
    else:
        provider["grpc"] = {**options, **({"initialMetadata": header_list} if header_list else {})}
    mesh = {"extensionProviders": [{"name": kind, kind: provider}]}
    tracing = {"providers": [{"name": kind}], "randomSamplingPercentage": sampling,
               **({"customTags": custom_tags} if custom_tags else {})}
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "istio-system"},
             "data": {"mesh": json.dumps(mesh)}},
            {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
             "metadata": {"name": "mesh-default", "namespace": "istio-system"}, "spec": {"tracing": [tracing]}}]
