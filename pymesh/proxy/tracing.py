"""Distributed tracing in the proxy: join or start each request's trace, propagate it to the
next hop, and report one span per request per proxy to the snapshot's trace provider.

Only a snapshot whose `telemetry.tracing.provider` is set builds a `Tracer`; without one the
filter chains hold no tracing filter and an exchange's `span` stays None, so untraced proxies
pay one attribute check per request. With one, every request propagates a context (sampled or
not, as Envoy does); only sampled ones build a span, at the request's end.

Spans: the downstream span only (Istio's sidecars leave Envoy's `spawn_upstream_span` off), so
every attempt of a retried request carries the same parent span to the next hop, whose inbound
side makes one SERVER span per attempt it received. Names follow Istio's route decorator:
`<service host>:<port>/*`, or `<VirtualService name>:<port>/*` for a route to several
destinations.

Export (`Exporter`, one per provider per worker) never touches a request: finished spans wait
in a bounded queue (full: dropped and counted), a batch is POSTed when it is full or when the
flush timer fires, one POST at a time; a collector that is down or slow only costs spans.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
from collections import deque

from pymesh.api import codec
from pymesh.proxy.random_source import RNG as _rng
from pymesh.telemetry import trace_context as tc
from pymesh.telemetry.metrics import Peer
from pymesh.telemetry.policy import TelemetryPolicy, TraceProvider, TracingPolicy
from pymesh.telemetry.spans import CLIENT, SERVER, Resource, Span, otlp_request, zipkin_json

log = logging.getLogger("pymesh.tracing")

FLUSH_INTERVAL = 1.0  # seconds a finished span waits at most before its batch is sent
BATCH_SPANS = 256  # a full batch is sent at once
QUEUE_LIMIT = 4096  # spans waiting per provider per worker; past it they are dropped
LOG_INTERVAL = 10.0  # export failures are logged at most this often
MESH_ID = "cluster.local"  # Istio's default meshId (its trust domain)
# the provider kind's default path, content type and the format it writes when a request came without one
_KINDS = {
    "opentelemetry": ("/v1/traces", b"application/x-protobuf", tc.W3C, otlp_request),
    "zipkin": ("/api/v2/spans", b"application/json", tc.B3_MULTI, zipkin_json),
}
# a test (or a benchmark) that sets the policy before the Telemetry API's compiler sets it: a JSON
# file of a TelemetryPolicy (pymesh.api.codec's form)
OVERRIDE_ENV = "PYMESH_TEST_TELEMETRY"


@functools.cache
def _override(path: str) -> TelemetryPolicy:
    with open(path, encoding="utf-8") as file:
        return codec.decode(TelemetryPolicy, json.load(file))


def tracing_policy(snapshot) -> TracingPolicy:
    path = os.environ.get(OVERRIDE_ENV)
    return _override(path).tracing if path else snapshot.telemetry.tracing


class ActiveSpan:
    """What a sampled request carries until it ends: its ids and its tracer."""

    __slots__ = ("tracer", "trace_id", "span_id", "parent_id", "tracestate")

    def __init__(self, tracer, trace_id: str, span_id: str, parent_id: str, tracestate: str) -> None:
        self.tracer = tracer
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.tracestate = tracestate


class Tracer:
    """One snapshot's tracing policy on one worker (shared by all its listeners)."""

    def __init__(self, policy: TracingPolicy, identity, exporter: Exporter, metrics) -> None:
        self.policy = policy
        self.exporter = exporter
        self.metrics = metrics
        self.native = _KINDS[policy.provider.kind][2]
        peer = Peer.from_identity(identity)
        zone = identity.locality.split("/")[1] if identity.locality.count("/") >= 1 else ""
        self.proxy_tags = {
            "istio.canonical_service": peer.canonical_service, "istio.canonical_revision": peer.canonical_revision,
            "istio.mesh_id": MESH_ID, "istio.namespace": identity.namespace, "component": "proxy",
            "node_id": f"{identity.kind}~{identity.ip}~{identity.workload}.{identity.namespace}~"
                       f"{identity.namespace}.svc.{MESH_ID}",
            **({"zone": zone} if zone else {}),
        }
        self.local_ip = identity.ip
        self._decision_stats: dict[str, dict[str, int]] = {}

    # request start (the TraceHeaders filter) ----------------------------------------------------

    def start(self, exchange, request) -> None:
        found = None  # the trace headers the request came with: most come with none
        for name, value in exchange.head.raw_headers:
            if name in tc.READ:
                if found is None:
                    found = {}
                found.setdefault(name, value)
        policy = self.policy
        request_id = exchange.request_id
        incoming = tc.extract(found.get) if found is not None else None
        reason = tc.decide(request_id, found is not None and tc.CLIENT_TRACE_ID in found,
                           found is not None and tc.FORCE_TRACE in found,
                           policy.sampling_percent, policy.use_request_id_for_trace_sampling, _rng.random())
        self._decisions(exchange.listener.name)[reason] += 1
        headers = request.headers
        if found is not None:
            headers = [(n, v) for n, v in headers if n not in tc.WRITTEN]
        if reason != tc.NOT_TRACEABLE and policy.use_request_id_for_trace_sampling \
                and reason != tc.trace_reason(request_id):
            marked = tc.with_reason(request_id, reason)
            headers = [(n, marked.encode() if n == b"x-request-id" else v) for n, v in headers]
            exchange.request_id = marked
        if incoming is not None and incoming.sampled is not None:
            sampled, debug = incoming.sampled, incoming.debug
        else:
            sampled, debug = reason != tc.NOT_TRACEABLE, False
        ids = "%032x" % _rng.getrandbits(128)  # ids need to be unique, not secret: the fast generator
        span_id = ids[16:]
        if incoming is None:
            headers += tc.outbound_headers(ids, span_id, "", sampled, False, self.native, False)
            trace_id, parent_id, state = ids, "", ""
        else:
            trace_id = incoming.trace_id or ids
            parent_id = incoming.span_id
            state = incoming.tracestate.decode("latin-1") if incoming.tracestate else ""
            headers += tc.outbound_headers(trace_id, span_id, parent_id, sampled, debug, incoming.formats | self.native,
                                           incoming.short_b3)
        request.headers = headers
        if sampled and not policy.disable_span_reporting:
            exchange.span = ActiveSpan(self, trace_id, span_id, parent_id, state)

    def _decisions(self, listener_name: str) -> dict[str, int]:
        stats = self._decision_stats.get(listener_name)
        if stats is None:
            stats = self._decision_stats[listener_name] = self.metrics.tracing_stats(listener_name)
        return stats

    # request end (Runtime.observe) --------------------------------------------------------------

    def finish(self, exchange) -> None:
        active = exchange.span
        exchange.span = None
        loop_now = exchange.runtime.loop.time()
        duration = loop_now - exchange.start
        outbound = exchange.listener.direction == "outbound"
        endpoint = exchange.last_endpoint
        if outbound:
            remote = (endpoint.address, endpoint.port) if endpoint is not None else None
        else:
            remote = (exchange.head.connection.source_ip, exchange.head.connection.source_port)
        self.exporter.add(Span(
            trace_id=active.trace_id, span_id=active.span_id, parent_id=active.parent_id,
            name=operation_name(exchange), kind=CLIENT if outbound else SERVER,
            start_us=int((time.time() - duration) * 1e6), duration_us=int(duration * 1e6),
            tags=self.tags(exchange), remote=remote, local_ip=self.local_ip, tracestate=active.tracestate,
        ))

    def tags(self, exchange) -> dict[str, str]:
        """Istio's and Envoy's span tags, then the policy's custom tags."""
        head = exchange.head
        state = exchange.cluster_state
        cluster = state.cluster.name if state is not None else "-"
        url = f"{head.scheme}://{head.authority}{exchange.logged_path or head.path}"
        tags = {
            **self.proxy_tags,
            "http.url": url[:self.policy.provider.max_tag_length],
            "http.method": head.method, "http.protocol": "HTTP/" + head.http_version,
            "http.status_code": str(exchange.status),
            "response_flags": exchange.flags or "-",
            "response_size": str(exchange.response_bytes), "request_size": str(exchange.request_bytes),
            "upstream_cluster": cluster, "upstream_cluster.name": cluster,
            "peer.address": head.connection.source_ip,
            "guid:x-request-id": exchange.request_id,
            "user_agent": _text(head.header(b"user-agent")) or "-",
            "downstream_cluster": _text(head.header(b"x-envoy-downstream-service-cluster")) or "-",
        }
        if exchange.grpc_status is not None:
            tags["grpc.status_code"] = str(exchange.grpc_status)
        if exchange.status >= 500 or exchange.status == 0:
            tags["error"] = "true"
        for tag in self.policy.custom_tags:
            tags[tag.name] = _custom(tag, head)
        return tags


def _custom(tag, head) -> str:
    if tag.kind == "literal":
        return tag.value
    if tag.kind == "header":
        return _text(head.header(tag.value.lower().encode("latin-1"))) or tag.default
    return os.environ.get(tag.value, tag.default)


def _text(value: bytes | None) -> str:
    return value.decode("latin-1") if value is not None else ""


def operation_name(exchange) -> str:
    """Istio's route decorator (getRouteOperation) without the match's path: the one
    destination's `host:port/*`, or the VirtualService's name and the listener's port when the
    route splits between several; inbound, the host the caller asked for."""
    route = exchange.route
    state = exchange.cluster_state
    port = exchange.listener.port
    if route is not None and len(route.clusters) > 1 and route.virtual_service:
        return f"{route.virtual_service.rpartition('/')[2]}:{port}/*"
    if exchange.listener.direction == "outbound" and state is not None and state.cluster.service_host:
        return f"{state.cluster.service_host}:{state.cluster.port}/*"
    host = (exchange.head.authority or "").rpartition(":")[0] or exchange.head.authority or "-"
    return f"{host}:{port}/*"


class TraceHeaders:
    """The request filter (right after ProxyHeaders, which settled the request id) that joins
    the caller's trace and writes the next hop's trace headers."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def on_request(self, exchange, request) -> None:
        self.tracer.start(exchange, request)


class Exporter:
    """Batches one provider's spans off the request path and POSTs them to its collector."""

    def __init__(self, loop, provider: TraceProvider, resource: Resource, stats: dict[str, int]) -> None:
        self.loop = loop
        self.provider = provider
        self.resource = resource
        self.stats = stats
        default_path, self.content_type, _, self.encode = _KINDS[provider.kind]
        self.path = provider.path or default_path
        self.queue: deque[Span] = deque()
        self.timer = None
        self.sending = False
        self._logged = -LOG_INTERVAL
        self._extra = b"".join(b"%s: %s\r\n" % (n.encode("latin-1"), v.encode("latin-1")) for n, v in provider.headers
                               if not any(c in n + v for c in "\r\n\0"))
        self.closed = False

    def add(self, span: Span) -> None:
        if len(self.queue) >= QUEUE_LIMIT:
            self.stats["spans_dropped"] += 1
            return
        self.queue.append(span)
        if self.sending:
            return
        if len(self.queue) >= BATCH_SPANS:
            self._send()
        elif self.timer is None:
            self.timer = self.loop.call_later(FLUSH_INTERVAL, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        if self.queue and not self.sending:
            self.stats["timer_flushed"] += 1
            self._send()

    def _send(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch = [self.queue.popleft() for _ in range(min(BATCH_SPANS, len(self.queue)))]
        self.sending = True
        self.loop.create_task(self._post(batch))

    async def _post(self, batch: list[Span]) -> None:
        try:
            status = await asyncio.wait_for(self._request(self.encode(self.resource, batch)), self.provider.timeout)
        except (OSError, asyncio.TimeoutError, ValueError) as error:
            self.stats["reports_failed"] += 1
            self._log_failure(f"{type(error).__name__}: {error}", len(batch))
        else:
            if 200 <= status < 300:
                self.stats["reports_sent"] += 1
                self.stats["spans_sent"] += len(batch)
            else:
                self.stats["reports_dropped"] += 1
                self._log_failure(f"status {status}", len(batch))
        finally:
            self.sending = False
        if self.closed:
            return
        if len(self.queue) >= BATCH_SPANS:
            self._send()
        elif self.queue and self.timer is None:
            self.timer = self.loop.call_later(FLUSH_INTERVAL, self._on_timer)

    async def _request(self, body: bytes) -> int:
        """One POST on its own connection; the status code of the answer."""
        provider = self.provider
        reader, writer = await asyncio.open_connection(provider.service, provider.port)
        try:
            host = provider.service if ":" not in provider.service else f"[{provider.service}]"
            writer.write(b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n%s\r\n" % (self.path.encode("latin-1"), host.encode("idna"),
                                                            provider.port, self.content_type, len(body), self._extra))
            writer.write(body)
            await writer.drain()
            line = await reader.readline()
            parts = line.split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
                raise ValueError(f"not an HTTP response: {line[:80]!r}")
            return int(parts[1])
        finally:
            writer.close()

    def _log_failure(self, why: str, spans: int) -> None:
        now = self.loop.time()
        if now - self._logged >= LOG_INTERVAL:
            self._logged = now
            log.warning("trace export to %s:%d%s failed (%s): %d spans dropped (stats tracing.%s.*)",
                        self.provider.service, self.provider.port, self.path, why, spans, self.provider.kind)

    def close(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def resource_of(identity) -> Resource:
    """Istio names a proxy's spans `<canonical service>.<namespace>` (its service cluster)."""
    peer = Peer.from_identity(identity)
    return Resource(f"{peer.canonical_service}.{identity.namespace}", (
        ("service.namespace", identity.namespace), ("service.version", peer.canonical_revision),
        ("k8s.pod.name", identity.workload), ("istio.mesh_id", MESH_ID)))


class Tracing:
    """The worker's tracers across snapshots: a new snapshot gets a new Tracer, an unchanged
    provider keeps its Exporter (and its queue)."""

    def __init__(self, loop, metrics) -> None:
        self.loop = loop
        self.metrics = metrics
        self.exporters: dict[tuple, Exporter] = {}

    def tracer_for(self, snapshot) -> Tracer | None:
        policy = tracing_policy(snapshot)
        if policy.provider is None:
            self._retain(())
            return None
        key = (policy.provider, resource_of(snapshot.identity))
        self._retain((key,))
        exporter = self.exporters.get(key)
        if exporter is None:
            stats = self.metrics.tracer_stats(policy.provider.kind)
            exporter = self.exporters[key] = Exporter(self.loop, policy.provider, key[1], stats)
        return Tracer(policy, snapshot.identity, exporter, self.metrics)

    def _retain(self, keys: tuple) -> None:
        for key in [k for k in self.exporters if k not in keys]:
            self.exporters.pop(key).close()
