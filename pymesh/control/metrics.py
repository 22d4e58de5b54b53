"""The control server's Prometheus metrics, in a registry of its own (not the process default, so
tests and embedders can run several servers)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONVERGENCE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


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
        self.connections = Gauge("pymesh_control_connections", "Open connections, said hello or not.", registry=r)
        self.buffered = Gauge(
            "pymesh_control_buffered_bytes", "Bytes of partial messages held for all connections.", registry=r
        )

    def watch_connections(self, connections) -> None:
        """The connection gauges read the live set at scrape time."""
        self.connections.set_function(lambda: len(connections))
        self.buffered.set_function(lambda: sum(c.buffered for c in list(connections)))

    def render(self) -> bytes:
        return generate_latest(self.registry)
