"""Istio's standard metrics, all defined here, with recorders cheap enough for every request.

Names, label names and buckets are Istio's, so existing dashboards and alerts work unchanged.
Labels are split in two: the 22 that describe who talks to whom (reporter, source_*,
destination_*, request_protocol, connection_security_policy) are fixed when a recorder is made,
once per (reporter, cluster, endpoint); only response_code, grpc_response_status and
response_flags vary per request. A recorder caches one child per varying combination, and a
child is the list cells themselves, so `RequestMetrics.record` is a dict lookup plus four list
increments (~0.5 µs; see `store.py` for why this is not prometheus_client's multiprocess mode
and how workers share one view).

Startup: `ctx = setup_metrics(workers)` in the parent before forking; each worker calls
`ctx.flush()` about once a second and at exit; the parent calls `ctx.worker_exit(pid)` when it
reaps a worker and `ctx.close()` at exit; any process serves `ctx.render_prometheus()`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from bisect import bisect_left
from dataclasses import astuple, dataclass
from typing import Mapping

from prometheus_client.utils import floatToGoString

from pymesh.policy import flags
from pymesh.routing.snapshot import Cluster, Endpoint, ProxyIdentity
from pymesh.telemetry import envoy_prometheus, filter_metrics, stats
from pymesh.telemetry.envoy_prometheus import escape
from pymesh.telemetry.store import Store

UNKNOWN = "unknown"
NO_FLAGS = flags.NONE  # Envoy's response_flags when there are none

COMMON_LABELS = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_canonical_service",
    "source_canonical_revision",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_cluster",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "request_protocol",
    "connection_security_policy",
)
HTTP_LABELS = COMMON_LABELS + ("response_code", "grpc_response_status", "response_flags")
TCP_LABELS = COMMON_LABELS + ("response_flags",)

DURATION_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
                    300000, 600000, 1800000, 3600000)  # ms
BYTE_BUCKETS = (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000)


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[int, ...] = ()  # empty: a counter

    @property
    def cell_size(self) -> int:
        return len(self.buckets) + 2 if self.buckets else 1  # buckets, +Inf, sum


REQUESTS = Family("istio_requests_total", "Requests handled.", HTTP_LABELS)
DURATION = Family("istio_request_duration_milliseconds", "Request duration.", HTTP_LABELS,
                  DURATION_BUCKETS)
REQUEST_BYTES = Family("istio_request_bytes", "Request body size.", HTTP_LABELS, BYTE_BUCKETS)
RESPONSE_BYTES = Family("istio_response_bytes", "Response body size.", HTTP_LABELS, BYTE_BUCKETS)
TCP_SENT = Family("istio_tcp_sent_bytes_total", "Bytes sent downstream (response direction).",
                  TCP_LABELS)
TCP_RECEIVED = Family("istio_tcp_received_bytes_total",
                      "Bytes received from downstream (request direction).", TCP_LABELS)
TCP_OPENED = Family("istio_tcp_connections_opened_total", "TCP connections opened.", TCP_LABELS)
TCP_CLOSED = Family("istio_tcp_connections_closed_total", "TCP connections closed.", TCP_LABELS)
CONFIG_RELOADS = Family("pymesh_config_reloads_total",
                        "Configuration reloads by result: success, rejected (invalid or over a limit), "
                        "failure (timed out or crashed).", ("result",))
RELOAD_RESULTS = ("success", "rejected", "failure")
REQUEST_MESSAGES = Family("istio_request_messages_total", "gRPC messages the client sent.", HTTP_LABELS)
RESPONSE_MESSAGES = Family("istio_response_messages_total", "gRPC messages the server sent.", HTTP_LABELS)
FAMILIES = (REQUESTS, DURATION, REQUEST_BYTES, RESPONSE_BYTES, REQUEST_MESSAGES, RESPONSE_MESSAGES,
            TCP_SENT, TCP_RECEIVED, TCP_OPENED, TCP_CLOSED, CONFIG_RELOADS)
_PROTOCOL = COMMON_LABELS.index("request_protocol")


# --- labels: built once per recorder, from what the proxy knows -------------------------------


@dataclass(frozen=True)
class Peer:
    """One end of the traffic as Istio labels it; fields in the order of the *_ label names."""

    workload: str = UNKNOWN
    namespace: str = UNKNOWN
    principal: str = UNKNOWN
    app: str = UNKNOWN
    version: str = UNKNOWN
    canonical_service: str = UNKNOWN
    canonical_revision: str = "latest"
    cluster: str = UNKNOWN

    @classmethod
    def of(cls, workload: str, namespace: str, labels: Mapping[str, str],
           principal: str = UNKNOWN, cluster: str = UNKNOWN) -> Peer:
        """Istio's derivation: app/version labels; canonical name/revision labels, else
        app.kubernetes.io/name or app or the workload, and version or "latest"."""
        app, version = labels.get("app"), labels.get("version")
        return cls(
            workload=workload or UNKNOWN,
            namespace=namespace or UNKNOWN,
            principal=principal or UNKNOWN,
            app=app or UNKNOWN,
            version=version or UNKNOWN,
            canonical_service=labels.get("service.istio.io/canonical-name")
            or labels.get("app.kubernetes.io/name") or app or workload or UNKNOWN,
            canonical_revision=labels.get("service.istio.io/canonical-revision")
            or version or "latest",
            cluster=cluster or UNKNOWN,
        )

    @classmethod
    def from_identity(cls, identity: ProxyIdentity, principal: str = UNKNOWN) -> Peer:
        return cls.of(identity.workload, identity.namespace, identity.labels, principal)

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint | None, principal: str = UNKNOWN) -> Peer:
        if endpoint is None:
            return cls()
        return cls.of(endpoint.workload, endpoint.namespace, endpoint.labels, principal)


def metric_labels(reporter: str, source: Peer, destination: Peer, cluster: Cluster | None,
                  request_protocol: str, connection_security_policy: str) -> tuple[str, ...]:
    """Values for COMMON_LABELS; the service's are compiled into the cluster (ServiceLabels)."""
    service = astuple(cluster.service_labels) if cluster is not None else (UNKNOWN,) * 3
    return ((reporter,) + astuple(source) + astuple(destination) + service
            + (request_protocol, connection_security_policy))


def outbound_labels(identity: ProxyIdentity, cluster: Cluster, endpoint: Endpoint | None,
                    request_protocol: str, connection_security_policy: str = UNKNOWN,
                    ) -> tuple[str, ...]:
    """Reporter "source": this proxy is the client. Istio reports the security policy as
    "unknown" on the client side (the server decides it)."""
    return metric_labels("source", Peer.from_identity(identity), Peer.from_endpoint(endpoint),
                         cluster, request_protocol, connection_security_policy)


def inbound_labels(identity: ProxyIdentity, cluster: Cluster | None, request_protocol: str,
                   source: Peer = Peer(), connection_security_policy: str = "none",
                   destination_principal: str | None = None) -> tuple[str, ...]:
    """Reporter "destination": this proxy fronts the server; the source is known only from
    mTLS/peer metadata, else unknown. Policy "none" for plain text, "mutual_tls" with mTLS,
    when the destination principal is the SPIFFE URI of the certificate this proxy presented."""
    return metric_labels("destination", source, Peer.from_identity(identity, destination_principal or UNKNOWN),
                         cluster, request_protocol, connection_security_policy)


# --- recorders: the request path -------------------------------------------------------------


class _Recorder:
    """`shaper` (pymesh.telemetry.overrides.MetricShaper, with the request's `request_values`)
    applies Telemetry metric overrides when the cells are made; without one, none."""

    __slots__ = ("_store", "_labels", "_children", "_shaper", "_request_values")
    _families: tuple[Family, ...] = ()

    def __init__(self, store: Store, labels: tuple[str, ...], shaper=None, request_values: tuple[str, ...] = ()):
        if len(labels) != len(COMMON_LABELS):
            raise ValueError(f"expected {len(COMMON_LABELS)} label values, got {len(labels)}")
        self._store = store
        self._labels = labels
        self._children: dict = {}
        self._shaper = shaper
        self._request_values = request_values

    def _cells(self, key, varying: tuple[str, ...]) -> tuple[list, ...]:
        labels = self._labels + varying
        if self._shaper is None:
            cells = tuple(self._store.cell(f.name, labels, f.cell_size) for f in self._families)
        else:
            cells = tuple(self._shaped_cell(f, labels) for f in self._families)
        self._children[key] = cells
        return cells

    def _shaped_cell(self, family: Family, labels: tuple[str, ...]) -> list:
        key = self._shaper.labels(family, labels, self._request_values)
        if key is None:  # disabled: counted nowhere anyone reads
            return [0] * family.cell_size
        return self._store.cell(family.name, key, family.cell_size)


class RequestMetrics(_Recorder):
    """istio_requests_total and the three HTTP histograms for one set of static labels."""

    __slots__ = ()
    _families = (REQUESTS, DURATION, REQUEST_BYTES, RESPONSE_BYTES)

    def record(self, response_code: int, response_flags: str, duration_ms: float,
               request_bytes: int, response_bytes: int, grpc_status: str = "") -> None:
        cells = self._children.get((response_code, response_flags, grpc_status))
        if cells is None:
            cells = self._cells((response_code, response_flags, grpc_status),
                                (str(response_code), grpc_status, response_flags or NO_FLAGS))
        count, duration, req, resp = cells[0], cells[1], cells[2], cells[3]
        count[0] += 1
        duration[bisect_left(DURATION_BUCKETS, duration_ms)] += 1
        duration[-1] += duration_ms
        req[bisect_left(BYTE_BUCKETS, request_bytes)] += 1
        req[-1] += request_bytes
        resp[bisect_left(BYTE_BUCKETS, response_bytes)] += 1
        resp[-1] += response_bytes


class GrpcRequestMetrics(RequestMetrics):
    """For request_protocol "grpc": the same, plus Istio's gRPC message counters."""

    __slots__ = ()
    _families = RequestMetrics._families + (REQUEST_MESSAGES, RESPONSE_MESSAGES)

    def record_messages(self, response_code: int, response_flags: str, grpc_status: str,
                        request_messages: int, response_messages: int) -> None:
        """After `record` of the same request (which made the child)."""
        cells = self._children[(response_code, response_flags, grpc_status)]
        cells[4][0] += request_messages
        cells[5][0] += response_messages


class TcpMetrics(_Recorder):
    """The four istio_tcp_* counters for one set of static labels (request_protocol "tcp")."""

    __slots__ = ()
    _families = (TCP_OPENED, TCP_CLOSED, TCP_SENT, TCP_RECEIVED)

    def _get(self, response_flags: str) -> tuple[list, ...]:
        cells = self._children.get(response_flags)
        return cells if cells is not None else self._cells(
            response_flags, (response_flags or NO_FLAGS,))

    def opened(self) -> None:
        self._get(NO_FLAGS)[0][0] += 1

    def transferred(self, sent: int, received: int, response_flags: str = NO_FLAGS) -> None:
        """Report bytes so far: call periodically on long connections (Istio: every 15 s)."""
        cells = self._get(response_flags)
        cells[2][0] += sent
        cells[3][0] += received

    def closed(self, sent: int = 0, received: int = 0, response_flags: str = NO_FLAGS) -> None:
        """Count the close plus the bytes not yet reported with `transferred`."""
        cells = self._get(response_flags)
        cells[1][0] += 1
        cells[2][0] += sent
        cells[3][0] += received


# --- the per-process context -----------------------------------------------------------------


class MetricsContext:
    """Owns the store; hands out recorders and stats scopes; renders the merged view."""

    def __init__(self, directory: str | None = None):
        self.directory = directory
        self.store = Store(directory)
        self._owner_pid = os.getpid()
        self._http: dict[tuple, RequestMetrics] = {}
        self._tcp: dict[tuple, TcpMetrics] = {}
        self._filter_scopes: dict[tuple[str, str], dict[str, int]] = {}

    def http(self, labels: tuple[str, ...], shaper=None, request_values: tuple[str, ...] = ()) -> RequestMetrics:
        """Recorder for these static labels (from outbound_labels/inbound_labels); the same
        object for equal labels. Keep it with the cluster/endpoint: do not call per request.
        With a `shaper` (Telemetry overrides) a new recorder, which the caller keeps."""
        kind = GrpcRequestMetrics if labels[_PROTOCOL:_PROTOCOL + 1] == ("grpc",) else RequestMetrics
        if shaper is not None:
            return kind(self.store, labels, shaper, request_values)
        rec = self._http.get(labels)
        if rec is None:
            rec = self._http[labels] = kind(self.store, labels)
        return rec

    def tcp(self, labels: tuple[str, ...], shaper=None, request_values: tuple[str, ...] = ()) -> TcpMetrics:
        if shaper is not None:
            return TcpMetrics(self.store, labels, shaper, request_values)
        rec = self._tcp.get(labels)
        if rec is None:
            rec = self._tcp[labels] = TcpMetrics(self.store, labels)
        return rec

    def cluster_stats(self, cluster_name: str, tls: bool = False) -> dict[str, int]:
        """The cluster's scope; with `tls`, the upstream TLS stats too (as Envoy adds them with a
        TLS transport socket)."""
        return self.store.scope(stats.cluster_scope(cluster_name), stats.CLUSTER_STATS + (stats.TLS_STATS if tls else ()))

    def outlier_stats(self, cluster_name: str, tls: bool = False) -> dict[str, int]:
        """The cluster's scope with the outlier detection stats added (the same dict)."""
        return self.store.scope(stats.cluster_scope(cluster_name), stats.CLUSTER_STATS + stats.OUTLIER_DETECTION_STATS
                                + (stats.TLS_STATS if tls else ()))

    def listener_stats(self, listener_name: str) -> dict[str, int]:
        return self.store.scope(stats.listener_scope(listener_name), stats.LISTENER_STATS)

    def filter_stats(self, listener_name: str, filter_name: str) -> dict[str, int]:
        """A filter's scope on a listener; filters ask per request, so the dict is kept."""
        key = (listener_name, filter_name)
        scope = self._filter_scopes.get(key)
        if scope is None:
            scope = self._filter_scopes[key] = self.store.scope(stats.filter_scope(listener_name, filter_name),
                                                                stats.FILTER_STATS[filter_name])
        return scope

    def tracing_stats(self, listener_name: str) -> dict[str, int]:
        return self.store.scope(stats.tracing_scope(listener_name), stats.TRACING_DECISION_STATS)

    def tracer_stats(self, provider_kind: str) -> dict[str, int]:
        return self.store.scope(stats.tracer_scope(provider_kind), stats.TRACER_STATS)

    def tls_inspector_stats(self) -> dict[str, int]:
        return self.store.scope(stats.TLS_INSPECTOR_SCOPE, stats.TLS_INSPECTOR_STATS)

    def tcp_rbac_stats(self) -> dict[str, int]:
        """The TCP authorization counters: Envoy's network RBAC filter as Istio names it, tcp.rbac."""
        return self.store.scope(stats.TCP_RBAC_SCOPE, stats.FILTER_STATS["rbac"])

    def config_reload_stats(self) -> dict[str, int]:
        return self.store.scope(stats.CONFIG_RELOAD_SCOPE, stats.CONFIG_RELOAD_STATS)

    def config_reloads(self) -> dict[str, list]:
        """pymesh_config_reloads_total's cell for each result, all present from the start."""
        return {result: self.store.cell(CONFIG_RELOADS.name, (result,), 1) for result in RELOAD_RESULTS}

    def flush(self) -> None:
        """Publish this worker's values to the others (about once a second, and at exit)."""
        self.store.flush()

    def render_prometheus(self) -> bytes:
        """Prometheus text exposition of all workers' metrics: Istio's, then Envoy's cluster and
        listener stats."""
        state = self.store.collect()
        return (exposition(state["f"]) + envoy_prometheus.exposition(state["s"]).encode()
                + filter_metrics.exposition(state["f"]))

    def render_stats(self) -> bytes:
        return stats.render_stats(self.store.collect()["s"])

    def worker_exit(self, pid: int) -> None:
        """Parent, on reaping worker `pid`: keep its counters in the totals."""
        self.store.worker_exit(pid)

    def close(self) -> None:
        """At process exit: a worker publishes its last values; the parent removes the dir."""
        if self.directory is None:
            return
        if os.getpid() == self._owner_pid:
            shutil.rmtree(self.directory, ignore_errors=True)
        else:
            self.flush()


def setup_metrics(workers: int = 1) -> MetricsContext:
    """Call in the parent before forking workers. One worker needs no shared directory."""
    if workers <= 1:
        return MetricsContext()
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # tmpfs: no disk writes
    return MetricsContext(tempfile.mkdtemp(prefix="pymesh-metrics-", dir=shm))


def exposition(families: dict[str, dict[tuple, list]]) -> bytes:
    """Prometheus text format 0.0.4. Written here rather than with prometheus_client's
    generate_latest, which took ~2 ms for three series: /metrics runs on a worker's loop."""
    out = []
    for family in FAMILIES:
        series = families.get(family.name)
        if not series:
            continue
        name = family.name
        out.append(f"# HELP {name} {family.help}\n"
                   f"# TYPE {name} {'histogram' if family.buckets else 'counter'}\n")
        bounds = [floatToGoString(b) for b in family.buckets] + ["+Inf"]
        for labels, cell in series.items():
            # a series shaped by Telemetry overrides is keyed by (name, value) pairs
            pairs = labels if labels and isinstance(labels[0], tuple) else zip(family.labels, labels)
            lbl = ",".join(f'{k}="{escape(v)}"' for k, v in pairs)
            if not family.buckets:
                out.append(f"{name}{{{lbl}}} {cell[0]}\n")
                continue
            total = 0
            for le, n in zip(bounds, cell):
                total += n
                out.append(f'{name}_bucket{{{lbl},le="{le}"}} {total}\n')
            out.append(f"{name}_sum{{{lbl}}} {cell[-1]}\n{name}_count{{{lbl}}} {total}\n")
    return "".join(out).encode()
