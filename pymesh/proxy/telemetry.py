"""The proxy's side of telemetry: turns a finished exchange or TCP connection into Istio metrics
and an access-log line. Recorders are looked up once per (direction, cluster, endpoint) and
cached, so a request costs one dict lookup plus the recorder's increments.
"""

from __future__ import annotations

import asyncio
import logging
import time

from pymesh.proxy.access_logs import ProviderLogs
from pymesh.proxy.attributes import lookup_for
from pymesh.routing.snapshot import Snapshot
from pymesh.telemetry.accesslog import AccessLog
from pymesh.telemetry.overrides import FAMILY_OF, MetricShaper
from pymesh.telemetry.policy import MetricOverride, MetricsPolicy
from pymesh.telemetry.peer_metadata import HEADER as PEER_HEADER, decode_peer
from pymesh.telemetry.metrics import MetricsContext, inbound_labels, outbound_labels, setup_metrics

FLUSH_INTERVAL = 1.0
_NO_TLS = (None, None, None)
MAX_RECORDERS = 4096
_STATUS_CLASS = {n: f"downstream_rq_{n}xx" for n in (1, 2, 3, 4, 5)}
log = logging.getLogger("pymesh.telemetry")


def _NO_ATTRIBUTES(attribute: str, key: str | None) -> None:
    """A TCP connection has no request attributes: tag values from them are "unknown"."""


class Telemetry:
    def __init__(self, metrics: MetricsContext, access_log: AccessLog | None, access_log_path: str = "") -> None:
        self.metrics = metrics
        self.access_log = access_log  # the proxy's own (--access-log)
        self._access_log_path = access_log_path
        self._own_log = access_log  # None while a Telemetry provider writes to the same path
        self.identity = None
        self._http: dict[tuple, object] = {}
        self._tcp: dict[tuple, object] = {}
        self._listener_stats: dict[str, dict[str, int]] = {}
        self._tls_inspector: dict[str, int] | None = None
        self.provider_logs = ProviderLogs()  # the Telemetry API's access logs
        self._provider_logging = False
        self._shapers: dict[str, MetricShaper] = {}  # direction -> Telemetry metrics overrides; {}: none

    @classmethod
    def create(cls, options, workers: int) -> Telemetry:
        access_log = None if options.access_log == "off" else AccessLog("json", options.access_log)
        return cls(setup_metrics(workers), access_log, options.access_log)

    def configure(self, snapshot: Snapshot) -> None:
        self.identity = snapshot.identity
        self._http = {}
        self._tcp = {}
        policy = snapshot.telemetry
        self._shapers = _shapers(policy.metrics)
        self.provider_logs.configure(policy.access_logging, policy.inbound_access_logging, snapshot.identity)
        self._provider_logging = bool(self.provider_logs)  # a plain flag: read per request
        paths = {p.path for a in (policy.access_logging, policy.inbound_access_logging) if a is not None
                 for p in a.providers}
        quiet = self.access_log is not None and self._access_log_path in paths
        if quiet != (self._own_log is None and self.access_log is not None):
            log.info("the proxy's own access log to %s is %s", self._access_log_path,
                     "off: a Telemetry access-log provider writes there" if quiet else "on again")
        # one format per output: Istio's lines (the Telemetry's) rather than two interleaved
        self._own_log = None if quiet else self.access_log

    # per request / connection ------------------------------------------------------------------

    def _labels(self, direction: str, cluster, endpoint, protocol: str, peer: bytes | None = None,
                connection=None) -> tuple[str, ...]:
        if direction == "inbound":
            if connection is not None and connection.tls:  # identities from the certificates
                return inbound_labels(self.identity, cluster, protocol,
                                      source=decode_peer(peer, connection.peer_identity),
                                      connection_security_policy="mutual_tls",
                                      destination_principal=connection.local_identity)
            return inbound_labels(self.identity, cluster, protocol, source=decode_peer(peer))
        return outbound_labels(self.identity, cluster, endpoint, protocol)

    def request_done(self, exchange) -> None:
        state = exchange.cluster_state
        cluster = state.cluster if state is not None else None
        endpoint = exchange.last_endpoint
        direction = exchange.listener.direction
        peer = exchange.head.header(PEER_HEADER) if direction == "inbound" else None
        protocol = "grpc" if exchange.grpc else "http"
        connection = exchange.head.connection
        key = (direction, cluster.name if cluster else "", endpoint.key if endpoint else "", peer, protocol,
               _security(connection))
        if self._shapers:  # Telemetry metrics overrides: their request values are part of the key
            shaper = self._shapers.get(direction)
            if shaper is not None:
                key += (shaper.request_values(lookup_for(exchange, self.identity)) if shaper.attributes else (),)
        recorder = self._http.get(key)
        if recorder is None:
            if len(self._http) >= MAX_RECORDERS:
                self._http.clear()  # peers come and go: keep the cache bounded
            labels = self._labels(direction, cluster, endpoint, protocol, peer, connection)
            shaper = self._shapers.get(direction)
            recorder = self._http[key] = self.metrics.http(labels, shaper, key[-1] if shaper is not None else ())
        listener_stats = self._listener(exchange.listener.name)
        listener_stats["downstream_rq_total"] += 1
        listener_stats[_STATUS_CLASS.get(exchange.status // 100, "downstream_rq_5xx")] += 1
        duration_ms = (exchange.runtime.loop.time() - exchange.start) * 1000.0
        grpc_status = "" if exchange.grpc_status is None else str(exchange.grpc_status)
        recorder.record(exchange.status, exchange.flags, duration_ms, exchange.request_bytes, exchange.response_bytes,
                        grpc_status)
        if exchange.grpc_messages is not None:
            sent, received = exchange.grpc_messages
            recorder.record_messages(exchange.status, exchange.flags, grpc_status, sent.count, received.count)
        if self._own_log is not None:
            head = exchange.head
            route = exchange.route
            connection = head.connection
            forwarded_for = user_agent = None
            for name, value in head.raw_headers:  # one pass for both; bytes, decoded once per value
                if name == b"user-agent":
                    if user_agent is None:
                        user_agent = value
                elif name == b"x-forwarded-for" and forwarded_for is None:
                    forwarded_for = value
            self._own_log.add(time.time() - duration_ms / 1000.0, exchange.request_bytes, exchange.response_bytes,
                              duration_ms, exchange.request_id, (
                head.method, head.authority, exchange.logged_path or head.path, "HTTP/" + head.http_version,
                exchange.status, exchange.flags, endpoint.key if endpoint else None, cluster.name if cluster else None,
                forwarded_for, user_agent, route.name if route else None, connection.source_ip, exchange.attempt_id,
                connection.sni, *((connection.peer_identity, connection.local_identity, connection.tls_version)
                                  if connection.tls else _NO_TLS)))
        if self._provider_logging:
            self.provider_logs.request(exchange, duration_ms)

    def protocol_error(self, connection, status: int, flag: str) -> None:
        """A request so malformed (or slow: 408) it never became an exchange: still counted
        and logged."""
        listener = connection.listener
        key = (listener.direction, "", "", None)
        recorder = self._http.get(key)
        if recorder is None:
            recorder = self._http[key] = self.metrics.http(self._labels(listener.direction, None, None, "http"))
        recorder.record(status, flag, 0.0, 0, 0)
        if self._own_log is not None:
            self._own_log.log(time.time(), None, None, None, None, status, flag, 0, 0, 0.0,
                                None, None, None, None, None, None, connection.info.source_ip)
        if self._provider_logging:
            self.provider_logs.protocol_error(listener.direction, connection.info, status, flag)

    def _listener(self, listener_name: str) -> dict[str, int]:
        stats = self._listener_stats.get(listener_name)
        if stats is None:
            stats = self._listener_stats[listener_name] = self.metrics.listener_stats(listener_name)
        return stats

    def tls_inspected(self, hello, too_large: bool) -> None:
        """Envoy's tls_inspector counters for one connection's first bytes (`hello` None: not TLS)."""
        if self._tls_inspector is None:
            self._tls_inspector = self.metrics.tls_inspector_stats()
        stats = self._tls_inspector
        if too_large:
            stats["client_hello_too_large"] += 1
        elif hello is None:
            stats["tls_not_found"] += 1
        else:
            stats["tls_found"] += 1
            stats["sni_found" if hello.server_name else "sni_not_found"] += 1
            stats["alpn_found" if hello.alpn else "alpn_not_found"] += 1

    def no_filter_chain_match(self, listener) -> None:
        self._listener(listener.name)["no_filter_chain_match"] += 1

    def _tcp_recorder(self, proxy):
        state = proxy.cluster_state
        cluster = state.cluster if state is not None else None
        key = (proxy.listener.direction, cluster.name if cluster else "", proxy.endpoint.key if proxy.endpoint else "",
               _security(proxy.info))
        recorder = self._tcp.get(key)
        if recorder is None:
            labels = self._labels(proxy.listener.direction, cluster, proxy.endpoint, "tcp", connection=proxy.info)
            shaper = self._shapers.get(proxy.listener.direction)
            values = shaper.request_values(_NO_ATTRIBUTES) if shaper is not None else ()
            recorder = self._tcp[key] = self.metrics.tcp(labels, shaper, values)
        return recorder

    def tcp_opened(self, proxy) -> None:
        proxy.recorder = self._tcp_recorder(proxy)
        proxy.recorder.opened()

    def tcp_closed(self, proxy) -> None:
        proxy.recorder.closed(proxy.received, proxy.sent, proxy.flags)
        if self._provider_logging:
            self.provider_logs.tcp(proxy, (proxy.runtime.loop.time() - proxy.start) * 1000.0)
        if self._own_log is not None:
            duration_ms = (proxy.runtime.loop.time() - proxy.start) * 1000.0
            cluster = proxy.cluster_state.cluster.name if proxy.cluster_state else None
            upstream = proxy.endpoint.key if proxy.endpoint else (f"{proxy.target[0]}:{proxy.target[1]}" if proxy.target else None)
            self._own_log.log_tcp(time.time() - duration_ms / 1000.0, upstream, cluster, proxy.info.source_ip,
                                    proxy.sent, proxy.received, duration_ms, proxy.flags, proxy.info.sni,
                                    proxy.info)

    # process-level ------------------------------------------------------------------------------

    def flush(self) -> None:
        if self.access_log is not None:
            self.access_log.flush()
        self.provider_logs.flush()
        self.metrics.flush()

    async def flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                self.flush()
            except OSError as error:  # e.g. the metrics directory vanished: keep serving
                log.warning("telemetry flush failed: %s", error)

    def worker_exit(self, pid: int) -> None:
        self.metrics.worker_exit(pid)

    def render_prometheus(self) -> bytes:
        self.metrics.flush()
        return self.metrics.render_prometheus()

    def render_stats(self) -> bytes:
        return self.metrics.render_stats()

    def close(self) -> None:
        self.flush()
        if self.access_log is not None:
            self.access_log.close()
        self.provider_logs.close()
        self.metrics.close()


def _shapers(policy: MetricsPolicy) -> dict[str, MetricShaper]:
    """Telemetry metrics overrides by direction (outbound is Istio's CLIENT mode, inbound SERVER);
    a disabled prometheus provider disables every metric."""
    overrides = policy.overrides
    if policy.disabled:
        overrides = tuple(MetricOverride(metric, mode, disabled=True) for metric in FAMILY_OF for mode in ("CLIENT", "SERVER"))
    shapers = {direction: MetricShaper.build(overrides, mode) for direction, mode in (("outbound", "CLIENT"), ("inbound", "SERVER"))}
    return {direction: shaper for direction, shaper in shapers.items() if shaper is not None}


def _security(connection) -> tuple | None:
    """The part of a recorder's key that mTLS decides: who the certificates said."""
    return (connection.peer_identity, connection.local_identity) if connection.tls else None

