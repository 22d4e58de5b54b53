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

Export (pymesh.proxy.trace_export, one Exporter per provider per worker) never touches a request.
"""

from __future__ import annotations

import operator
import os
import time

from pymesh.proxy.random_source import HEX, RNG as _rng
from pymesh.proxy.trace_export import Exporter, collector_targets
from pymesh.telemetry import trace_context as tc
from pymesh.telemetry.metrics import Peer
from pymesh.telemetry.policy import TracingPolicy
from pymesh.telemetry.spans import CLIENT, SERVER, Resource, Span

DRAIN_TIMEOUT = 2.0  # at shutdown, how long the last spans may take to leave
MESH_ID = "cluster.local"  # Istio's default meshId (its trust domain)
# the format each provider kind writes when a request came without one
_NATIVE = {"opentelemetry": tc.W3C, "zipkin": tc.B3_MULTI}
_name = operator.itemgetter(0)  # a header's name (no dict of the headers per request)


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
        self.native = _NATIVE[policy.provider.kind]
        self.sampler = tc.Sampler(policy.sampling_percent, policy.use_request_id_for_trace_sampling)
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

    # request start: the Tracer is a request filter, right after ProxyHeaders (which settled the
    # request id) ------------------------------------------------------------------------------

    def on_request(self, exchange, request) -> None:
        """The common request, with no trace header: a decision, a new trace, the provider's
        header; an unsampled one (99% at Istio's default) stops there."""
        # the client's headers (fewer than the upstream request's, which has ours too): a trace
        # header the request lost on the way (a hop-by-hop one) takes the long way and finds nothing
        if not tc.READ.isdisjoint(map(_name, exchange.head.raw_headers)):
            return self._join(exchange, request)
        headers = request.headers
        reason = self.sampler.reason(exchange.request_id, _rng.random)
        stats = self._decision_stats.get(exchange.listener.name) or self._decisions(exchange.listener.name)
        stats[reason] += 1
        ids = HEX.take(32)
        if reason == tc.NOT_TRACEABLE:
            headers += tc.new_trace_headers(ids, False, self.native)
            return
        self._mark(exchange, request, reason)
        request.headers += tc.new_trace_headers(ids, True, self.native)
        if not self.policy.disable_span_reporting:
            trace_id = ids.decode()
            exchange.span = ActiveSpan(self, trace_id, trace_id[16:], "", "")

    def _join(self, exchange, request) -> None:
        """A request with trace headers: the caller's trace is joined (its decision honoured) and
        its headers replaced by ours, in each format it came in and the provider's."""
        found = {}
        for name, value in request.headers:
            if name in tc.READ:
                if name in found:  # a repeated header: the first counts, tracestate's are one list
                    if name == tc.TRACESTATE:
                        found[name] += b"," + value
                    continue
                found[name] = value
        incoming = tc.extract(found.get)
        reason = self._decide(exchange, tc.CLIENT_TRACE_ID in found, tc.FORCE_TRACE in found)
        request.headers = [(n, v) for n, v in request.headers if n not in tc.WRITTEN]
        if reason != tc.NOT_TRACEABLE:
            self._mark(exchange, request, reason)
        if incoming is not None and incoming.sampled is not None:
            sampled, debug = incoming.sampled, incoming.debug
        else:
            sampled, debug = reason != tc.NOT_TRACEABLE, False
        ids = HEX.take(32).decode()
        span_id = ids[16:]
        if incoming is None:  # only x-client-trace-id, x-envoy-force-trace or an invalid context
            trace_id, parent_id, state, formats, short_b3 = ids, "", "", self.native, False
        else:
            trace_id, parent_id = incoming.trace_id or ids, incoming.span_id
            state = incoming.tracestate.decode("latin-1") if incoming.tracestate else ""
            formats, short_b3 = incoming.formats | self.native, incoming.short_b3
        request.headers += tc.outbound_headers(trace_id, span_id, parent_id, sampled, debug, formats, short_b3)
        if sampled and not self.policy.disable_span_reporting:
            exchange.span = ActiveSpan(self, trace_id, span_id, parent_id, state)

    def _decide(self, exchange, client_trace_id: bool, force_trace: bool) -> str:
        reason = self.sampler.reason(exchange.request_id, _rng.random, client_trace_id, force_trace)
        stats = self._decision_stats.get(exchange.listener.name) or self._decisions(exchange.listener.name)
        stats[reason] += 1
        return reason

    def _mark(self, exchange, request, reason: str) -> None:
        """Envoy's setTraceReason: the next hops read the decision from x-request-id."""
        request_id = exchange.request_id
        if self.policy.use_request_id_for_trace_sampling and reason != tc.trace_reason(request_id):
            marked = tc.with_reason(request_id, reason)
            request.headers = [(n, marked.encode("latin-1") if n == b"x-request-id" else v) for n, v in request.headers]
            exchange.request_id = marked

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
    """Istio's route decorator (getRouteOperation): the one destination's `host:port` or, for a
    route split between several, the VirtualService's name and the listener's port, then the
    path the route matched; inbound, the host the caller asked for and `/*`."""
    route = exchange.route
    state = exchange.cluster_state
    path = _matched_path(exchange) if route is not None else "/*"
    if route is not None and len(route.clusters) > 1 and route.virtual_service:
        return f"{route.virtual_service.rpartition('/')[2]}:{exchange.listener.port}{path}"
    if exchange.listener.direction == "outbound" and state is not None and state.cluster.service_host:
        return f"{state.cluster.service_host}:{state.cluster.port}{path}"
    authority = exchange.head.authority or "-"
    host = authority.rpartition(":")[0] if authority.rpartition(":")[2].isdigit() else authority
    return f"{host}:{exchange.listener.port}/*"


def _matched_path(exchange) -> str:
    """A prefix match's prefix and `*`, an exact match's path, a regex match's regex (the first
    of the route's: which one matched is not kept), or `/*` when the route has no uri match."""
    if exchange.matched_prefix is not None:
        return exchange.matched_prefix + "*"
    path = exchange.head.path.partition("?")[0]
    uris = exchange.route.uri_matches
    exact = next((value for kind, value in uris if kind == "exact" and value.lower() == path.lower()), None)
    return exact or next((value for kind, value in uris if kind == "regex"), "/*")


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
        policy = snapshot.telemetry.tracing
        if policy.provider is None:
            self._retain(())
            return None
        key = (policy.provider, resource_of(snapshot.identity))
        self._retain((key,))
        exporter = self.exporters.get(key)
        if exporter is None:
            stats = self.metrics.tracer_stats(policy.provider.kind)
            exporter = self.exporters[key] = Exporter(self.loop, policy.provider, key[1], stats)
        exporter.targets = collector_targets(policy.provider, snapshot.clusters)
        return Tracer(policy, snapshot.identity, exporter, self.metrics)

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """The spans still queued, sent before the worker exits (each provider within `timeout`)."""
        for exporter in list(self.exporters.values()):
            await exporter.drain(timeout)

    def close(self) -> None:
        self._retain(())

    def _retain(self, keys: tuple) -> None:
        for key in [k for k in self.exporters if k not in keys]:
            self.exporters.pop(key).close()
