"""The control server's Prometheus metrics, in a registry of its own (not the process default, so
tests and embedders can run several servers).

Besides pymesh's own names, istiod's (pilot/pkg/xds/monitoring.go) where pymesh does the same
thing, so Istio's control-plane dashboards and alerts read them unchanged: pilot_xds (connected
proxies), pilot_services and pilot_virt_services, pilot_xds_pushes and pilot_total_xds_rejects by xDS type, pilot_xds_push_time,
pilot_xds_config_size_bytes, pilot_proxy_convergence_time, pilot_total_xds_internal_errors,
istio_build, the admission webhooks' sidecar_injection_*_total and galley_validation_*, and the
process_* metrics. A snapshot carries listeners, routes, clusters and
endpoints, so one snapshot push (or NACK) counts once for each of lds, rds, cds and eds; an
endpoints message counts for eds.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

import pymesh
from pymesh.telemetry.envoy_prometheus import escape

CONVERGENCE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# istiod's buckets (pilot/pkg/xds/monitoring.go)
PILOT_CONVERGENCE_BUCKETS = (0.1, 0.5, 1, 3, 5, 10, 20, 30)
PUSH_TIME_BUCKETS = (0.01, 0.1, 0.5, 1, 3, 5, 10, 20, 30)
CONFIG_SIZE_BUCKETS = (1, 10000, 1000000, 4000000, 10000000, 40000000)
XDS_TYPES = {"snapshot": ("cds", "eds", "lds", "rds"), "endpoints": ("eds",)}  # message type -> xDS types


class Sum:
    """A counter exposed under its exact name: istiod's exporter adds no "_total"
    (WithoutCounterSuffixes, for OpenCensus compatibility), prometheus_client always would."""

    def __init__(self, name: str, help: str, labelnames: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.labelnames = name, help, labelnames
        self.values: dict[tuple[str, ...], float] = {} if labelnames else {(): 0.0}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(labels[name] for name in self.labelnames)
        self.values[key] = self.values.get(key, 0.0) + amount

    def render(self) -> str:
        lines = [f"# HELP {self.name} {self.help}\n# TYPE {self.name} counter\n"]
        for key, value in sorted(self.values.items()):
            labels = ",".join(f'{name}="{escape(v)}"' for name, v in zip(self.labelnames, key))
            lines.append(f"{self.name}{{{labels}}} {floatToGoString(value)}\n" if labels
                         else f"{self.name} {floatToGoString(value)}\n")
        return "".join(lines)


class ControlMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connected = Gauge("pymesh_control_connected_proxies", "Proxies with an open stream that said hello.", registry=r)
        self.pushes = Counter("pymesh_control_pushes", "Messages pushed to proxies, by type.", ["type"], registry=r)
        self.push_errors = Counter("pymesh_control_push_errors", "Pushes that could not be built or sent.", registry=r)
        self.refused = Counter("pymesh_control_refused_streams",
                               "Push streams refused at hello (identity mismatch, node id taken, limits).", registry=r)
        self.insecure = Counter("pymesh_control_insecure_connections",
                                "Proxies that registered without an identity (--insecure).", registry=r)
        self.csr = Counter("pymesh_control_certificate_requests",
                           "Certificate signing requests, by outcome.", ["outcome"], registry=r)
        self.nacks = Counter("pymesh_control_nacks", "NACKs received from proxies.", registry=r)
        self.rejections = Counter(
            "pymesh_control_config_rejections", "Configuration file versions rejected by validation.", registry=r
        )
        self.convergence = Histogram(
            "pymesh_control_convergence_seconds",
            "From the first change of a burst to the ACK of the last proxy it affected.",
            buckets=CONVERGENCE_BUCKETS,
            registry=r,
        )
        for kind in ("snapshot", "endpoints"):
            self.pushes.labels(type=kind)
        for outcome in ("signed", "unauthenticated", "denied", "invalid"):
            self.csr.labels(outcome=outcome)
        self.closed = Counter(
            "pymesh_control_connections_closed",
            "Connections refused or closed for a limit, by reason (too_many_connections, too_many_from_source, "
            "hello_timeout, message_timeout, over_buffer, over_bytes_before_hello).", ["reason"], registry=r,
        )
        # istiod's names (pilot/pkg/autoregistration)
        self.autoreg_success = Counter("auto_registration_success", "Total number of successful auto registrations.",
                                       registry=r)
        self.autoreg_errors = Counter("auto_registration_errors", "Total number of auto registration errors.",
                                      registry=r)
        self.autoreg_unregister = Counter("auto_registration_unregister", "Total number of unregistrations.",
                                          registry=r)
        self.autoreg_deletes = Counter("auto_registration_deletes",
                                       "Total number of auto registration cleaned up by periodic timer.", registry=r)
        # the Kubernetes informers (pymesh.control.kube.informer), by resource type (plural)
        self.kube_watch_restarts = Counter(
            "pymesh_control_kube_watch_restarts",
            "Watches of the API server started again, by resource and reason (ended, gone, error).",
            ["resource", "reason"], registry=r)
        self.kube_relists = Counter("pymesh_control_kube_relists",
                                    "Full lists of a resource from the API server (the first and after 410 Gone).",
                                    ["resource"], registry=r)
        self.kube_events = Counter("pymesh_control_kube_events",
                                   "Watch events applied to the caches, by resource and type (ADDED, MODIFIED, DELETED).",
                                   ["resource", "type"], registry=r)
        self.connections = Gauge("pymesh_control_connections", "Open connections, said hello or not.", registry=r)
        self.buffered = Gauge(
            "pymesh_control_buffered_bytes", "Bytes of partial messages held for all connections.", registry=r
        )
        # istiod's names (pilot/pkg/xds/monitoring.go, pkg/version)
        self.xds = Gauge("pilot_xds", "Number of endpoints connected to this pilot using XDS.", registry=r)
        self.xds_pushes = Sum("pilot_xds_pushes", "Pushes to proxies, by xDS type (lds, rds, cds, eds).", ("type",))
        self.xds_rejects = Sum("pilot_total_xds_rejects", "Total number of XDS responses from pilot rejected by proxy.",
                               ("type",))
        for kind in XDS_TYPES["snapshot"]:
            self.xds_pushes.inc(0, type=kind)
            self.xds_rejects.inc(0, type=kind)
        self.internal_errors = Sum("pilot_total_xds_internal_errors", "Total number of internal XDS errors in pilot.")
        # the admission webhooks, istiod's names (pkg/kube/inject/monitoring.go,
        # pkg/webhooks/validation/server/monitoring.go)
        self.injections = {outcome: Sum(f"sidecar_injection_{outcome}_total", help_text) for outcome, help_text in (
            ("requests", "Total number of sidecar injection requests."),
            ("success", "Total number of successful sidecar injection requests."),
            ("skip", "Total number of skipped sidecar injection requests."),
            ("failure", "Total number of failed sidecar injection requests."))}
        self.validation_passed = Sum("galley_validation_passed", "Resource is valid.", ("group", "version", "resource"))
        self.validation_failed = Sum("galley_validation_failed", "Resource validation failed.",
                                     ("group", "version", "resource", "reason"))
        self.validation_http_error = Sum("galley_validation_http_error", "Resource validation http serve errors.",
                                         ("status",))
        self._sums = (self.xds_pushes, self.xds_rejects, self.internal_errors, *self.injections.values(),
                      self.validation_passed, self.validation_failed, self.validation_http_error)
        self.push_time = Histogram("pilot_xds_push_time", "Total time in seconds Pilot takes to push lds, rds, cds and eds.",
                                   buckets=PUSH_TIME_BUCKETS, registry=r)
        self.config_size = Histogram("pilot_xds_config_size_bytes", "Distribution of configuration sizes pushed to clients",
                                     buckets=CONFIG_SIZE_BUCKETS, registry=r)
        self.pilot_convergence = Histogram(
            "pilot_proxy_convergence_time",
            "Delay in seconds between config change and a proxy receiving all required configuration "
            "(observed per proxy, at its answer).",
            buckets=PILOT_CONVERGENCE_BUCKETS, registry=r)
        self.services = Gauge("pilot_services", "Total services known to pilot.", registry=r)
        self.virtual_services = Gauge("pilot_virt_services", "Total virtual services known to pilot.", registry=r)
        build = Gauge("istio_build", "Istio component build info", ["component", "tag"], registry=r)
        build.labels(component="pilot", tag=pymesh.__version__).set(1)
        ProcessCollector(registry=r)

    def pushed(self, message_type: str, size: int, seconds: float) -> None:
        """A snapshot or endpoints message of `size` bytes went out, built and queued in `seconds`."""
        self.pushes.labels(type=message_type).inc()
        for kind in XDS_TYPES[message_type]:
            self.xds_pushes.inc(type=kind)
        self.push_time.observe(seconds)
        self.config_size.observe(size)

    def push_failed(self) -> None:
        self.push_errors.inc()
        self.internal_errors.inc()

    def rejected(self, message_type: str | None) -> None:
        """A proxy NACKed its last push, a message of that type."""
        self.nacks.inc()
        for kind in XDS_TYPES.get(message_type, ()):
            self.xds_rejects.inc(type=kind)

    def webhook(self, path: str, status: int, request: dict | None, answer: dict | None) -> None:
        """One answer of the admission webhooks (pymesh.control.kube.webhook): `request` and
        `answer` are the AdmissionReview's, None when the HTTP request was refused (`status`)."""
        response = (answer or {}).get("response") or {}
        if path == "/inject":
            self.injections["requests"].inc()
            outcome = "failure" if not response.get("allowed") else "success" if "patch" in response else "skip"
            self.injections[outcome].inc()
        elif answer is None:
            self.validation_http_error.inc(status=str(status))
        elif "status" in response or response.get("allowed") and request.get("operation") in ("CREATE", "UPDATE"):
            resource = request.get("resource") if isinstance(request.get("resource"), dict) else {}
            labels = {name: str(resource.get(name, "")) for name in ("group", "version", "resource")}
            if response.get("allowed"):
                self.validation_passed.inc(**labels)
            else:
                self.validation_failed.inc(reason="invalid_config", **labels)

    def watch_config(self, config: Callable[[], object]) -> None:
        """pilot_services (hosts of the ServiceEntries) and pilot_virt_services read the config
        in force at scrape time."""
        self.services.set_function(lambda: sum(len(entry.hosts) for entry in config().service_entries))
        self.virtual_services.set_function(lambda: len(config().virtual_services))

    def watch_proxies(self, count: Callable[[], int]) -> None:
        """pilot_xds reads the number of connected proxies at scrape time."""
        self.xds.set_function(count)

    def watch_connections(self, connections) -> None:
        """The connection gauges read the live set at scrape time."""
        self.connections.set_function(lambda: len(connections))
        self.buffered.set_function(lambda: sum(c.buffered for c in list(connections)))

    def render(self) -> bytes:
        return generate_latest(self.registry) + "".join(s.render() for s in self._sums).encode()
