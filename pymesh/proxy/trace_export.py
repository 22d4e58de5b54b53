"""Span export, off the request path: finished spans wait in a bounded queue per provider per
worker (full: dropped and counted), a batch leaves when it is full or when the flush timer
fires, one at a time, as OTLP/HTTP protobuf, OTLP/gRPC (pymesh.proxy.otlp_grpc) or Zipkin v2
JSON; a collector that is down or slow only costs spans, counted in Envoy's tracer stats and
logged at most every LOG_INTERVAL seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from pymesh.proxy import otlp_grpc
from pymesh.routing.clusters import outbound_name
from pymesh.telemetry.policy import TraceProvider
from pymesh.telemetry.spans import Resource, Span, otlp_request, zipkin_json

log = logging.getLogger("pymesh.tracing")

FLUSH_INTERVAL = 1.0  # seconds a finished span waits at most before its batch is sent
BATCH_SPANS = 256  # a full batch is sent at once
QUEUE_LIMIT = 4096  # spans waiting per provider per worker; past it they are dropped
LOG_INTERVAL = 10.0  # export failures are logged at most this often
# the provider kind's default path, content type and encoder
_KINDS = {
    "opentelemetry": ("/v1/traces", b"application/x-protobuf", otlp_request),
    "zipkin": ("/api/v2/spans", b"application/json", zipkin_json),
}


class Exporter:
    """Batches one provider's spans off the request path and POSTs them to its collector."""

    def __init__(self, loop, provider: TraceProvider, resource: Resource, stats: dict[str, int]) -> None:
        self.loop = loop
        self.provider = provider
        self.resource = resource
        self.stats = stats
        default_path, self.content_type, self.encode = _KINDS[provider.kind]
        self.path = provider.path or default_path
        self.grpc = provider.kind == "opentelemetry" and provider.transport == "grpc"
        self.targets: tuple[tuple[str, int], ...] = ((provider.service, provider.port),)  # see collector_targets
        self._batches = 0
        self.queue: deque[Span] = deque()
        self.timer = None
        self.sending = False
        self.task: asyncio.Task | None = None  # the POST in flight
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
        self.task = self.loop.create_task(self._post(batch))

    async def _post(self, batch: list[Span]) -> None:
        try:
            status = await asyncio.wait_for(self._request(self.encode(self.resource, batch)), self.provider.timeout)
        except (OSError, asyncio.TimeoutError, ValueError) as error:
            self.stats["reports_failed"] += 1
            self._log_failure(f"{type(error).__name__}: {error}", len(batch))
        except otlp_grpc.GrpcError as error:  # the collector answered, and not OK
            self.stats["reports_dropped"] += 1
            self._log_failure(str(error), len(batch))
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
        """One POST on its own connection (or one gRPC Export call); the status code of the answer."""
        provider = self.provider
        self._batches += 1
        address, port = self.targets[self._batches % len(self.targets)]
        name = provider.service.rpartition("/")[2]
        host = name if ":" not in name else f"[{name}]"
        if self.grpc:
            await otlp_grpc.export(address, port, f"{host}:{provider.port}", body, self._extra)
            return 200
        reader, writer = await asyncio.open_connection(address, port)
        try:
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

    async def drain(self, timeout: float) -> None:
        """At shutdown: what is queued goes out now, batch by batch, within `timeout`."""
        deadline = self.loop.time() + timeout
        while self.queue or self.sending:
            if not self.sending:
                self._send()
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(asyncio.shield(self.task), remaining)
            except asyncio.TimeoutError:
                return

    def close(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def collector_targets(provider: TraceProvider, clusters) -> tuple[tuple[str, int], ...]:
    """Where a provider's spans go. Istio looks its `service` (`[namespace/]host`) up in the
    mesh's registry and sends to that service's cluster: here, the endpoints of the snapshot's
    outbound cluster for the host and port (a ServiceEntry's, say); a host the registry does not
    know is resolved by DNS as the last resort."""
    host = provider.service.rpartition("/")[2]
    cluster = clusters.get(outbound_name(provider.port, "", host))
    if cluster is not None and cluster.endpoints:
        return tuple((e.address, e.port) for e in cluster.endpoints)
    return ((host, provider.port),)
