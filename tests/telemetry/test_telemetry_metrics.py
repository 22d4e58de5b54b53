import pytest
from prometheus_client.parser import text_string_to_metric_families

from pymesh.routing.snapshot import ProxyIdentity
from pymesh.telemetry.metrics import (
    BYTE_BUCKETS,
    DURATION_BUCKETS,
    HTTP_LABELS,
    TCP_LABELS,
    MetricsContext,
    Peer,
    inbound_labels,
    outbound_labels,
    setup_metrics,
)

ISTIO_HTTP_LABELS = {
    "reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app",
    "source_version", "source_canonical_service", "source_canonical_revision", "source_cluster",
    "destination_workload", "destination_workload_namespace", "destination_principal",
    "destination_app", "destination_version", "destination_service", "destination_service_name",
    "destination_service_namespace", "destination_canonical_service",
    "destination_canonical_revision", "destination_cluster", "request_protocol", "response_code",
    "grpc_response_status", "response_flags", "connection_security_policy",
}
ISTIO_TCP_LABELS = ISTIO_HTTP_LABELS - {"response_code", "grpc_response_status"}


def parse(ctx: MetricsContext) -> dict:
    """{sample name: [(labels, value)]} from the rendered exposition."""
    samples: dict = {}
    for family in text_string_to_metric_families(ctx.render_prometheus().decode()):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def test_label_names_are_istios():
    assert set(HTTP_LABELS) == ISTIO_HTTP_LABELS and len(HTTP_LABELS) == len(ISTIO_HTTP_LABELS)
    assert set(TCP_LABELS) == ISTIO_TCP_LABELS and len(TCP_LABELS) == len(ISTIO_TCP_LABELS)


def test_http_exposition_names_and_labels(identity, cluster, endpoint):
    ctx = MetricsContext()
    rec = ctx.http(outbound_labels(identity, cluster, endpoint, "http"))
    rec.record(200, "-", 3.2, 120, 5400)
    rec.record(200, "", 4.0, 0, 10)

    samples = parse(ctx)
    assert set(samples) >= {
        "istio_requests_total",
        "istio_request_duration_milliseconds_bucket",
        "istio_request_duration_milliseconds_sum",
        "istio_request_duration_milliseconds_count",
        "istio_request_bytes_bucket", "istio_request_bytes_sum", "istio_request_bytes_count",
        "istio_response_bytes_bucket", "istio_response_bytes_sum", "istio_response_bytes_count",
    }
    [(labels, value)] = samples["istio_requests_total"]  # "" and "-" flags are one series
    assert value == 2
    assert set(labels) == ISTIO_HTTP_LABELS
    assert labels == {
        "reporter": "source",
        "source_workload": "productpage-v1",
        "source_workload_namespace": "default",
        "source_principal": "unknown",
        "source_app": "productpage",
        "source_version": "v1",
        "source_canonical_service": "productpage",
        "source_canonical_revision": "v1",
        "source_cluster": "unknown",
        "destination_workload": "reviews-v2",
        "destination_workload_namespace": "default",
        "destination_principal": "unknown",
        "destination_app": "reviews",
        "destination_version": "v2",
        "destination_service": "reviews.default.svc.cluster.local",
        "destination_service_name": "reviews",
        "destination_service_namespace": "default",
        "destination_canonical_service": "reviews",
        "destination_canonical_revision": "v2",
        "destination_cluster": "unknown",
        "request_protocol": "http",
        "response_code": "200",
        "grpc_response_status": "",
        "response_flags": "-",
        "connection_security_policy": "unknown",
    }
    [(_, total)] = samples["istio_request_duration_milliseconds_sum"]
    assert total == pytest.approx(7.2)


def test_varying_labels_make_separate_series(identity, cluster, endpoint):
    ctx = MetricsContext()
    rec = ctx.http(outbound_labels(identity, cluster, endpoint, "grpc"))
    rec.record(200, "-", 1, 1, 1, grpc_status="0")
    rec.record(503, "UF", 1, 1, 1, grpc_status="14")
    series = {(l["response_code"], l["response_flags"], l["grpc_response_status"]): v
              for l, v in parse(ctx)["istio_requests_total"]}
    assert series == {("200", "-", "0"): 1, ("503", "UF", "14"): 1}


def test_histogram_buckets_are_istios_and_cumulative(identity, cluster, endpoint):
    ctx = MetricsContext()
    rec = ctx.http(outbound_labels(identity, cluster, endpoint, "http"))
    for duration in (0.5, 1, 1.5, 4000000):  # le is inclusive; the last one is past every bound
        rec.record(200, "-", duration, 10, 10_000_001)
    samples = parse(ctx)

    duration = {l["le"]: v for l, v in samples["istio_request_duration_milliseconds_bucket"]}
    assert [float(le) for le in duration if le != "+Inf"] == [float(b) for b in DURATION_BUCKETS]
    assert duration["1.0"] == 2 and duration["5.0"] == 3 and duration["3.6e+06"] == 3
    assert duration["+Inf"] == 4
    [(_, count)] = samples["istio_request_duration_milliseconds_count"]
    assert count == 4

    req = {l["le"]: v for l, v in samples["istio_request_bytes_bucket"]}
    assert [float(le) for le in req if le != "+Inf"] == [float(b) for b in BYTE_BUCKETS]
    assert req["1.0"] == 0 and req["10.0"] == 4
    resp = {l["le"]: v for l, v in samples["istio_response_bytes_bucket"]}
    assert resp["1e+07"] == 0 and resp["+Inf"] == 4


def test_recorders_and_children_are_cached(identity, cluster, endpoint):
    ctx = MetricsContext()
    labels = outbound_labels(identity, cluster, endpoint, "http")
    rec = ctx.http(labels)
    assert ctx.http(outbound_labels(identity, cluster, endpoint, "http")) is rec
    rec.record(200, "-", 1, 1, 1)
    [cells] = rec._children.values()
    rec.record(200, "-", 2, 2, 2)
    assert list(rec._children.values()) == [cells] and cells[0] == [2]
    # Two recorders with equal labels share the stored series.
    twin = type(rec)(ctx.store, labels)
    twin.record(200, "-", 1, 1, 1)
    assert cells[0] == [3]


def test_tcp_metrics(identity, cluster, endpoint):
    ctx = MetricsContext()
    tcp = ctx.tcp(outbound_labels(identity, cluster, endpoint, "tcp"))
    tcp.opened()
    tcp.transferred(sent=100, received=10)
    tcp.closed(sent=5, received=1)
    tcp.opened()
    tcp.closed(response_flags="UF")
    samples = parse(ctx)
    for name in ("istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total",
                 "istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total"):
        for labels, _ in samples[name]:
            assert set(labels) == ISTIO_TCP_LABELS and labels["request_protocol"] == "tcp"

    def by_flags(name):
        return {l["response_flags"]: v for l, v in samples[name]}

    assert by_flags("istio_tcp_connections_opened_total") == {"-": 2, "UF": 0}
    assert by_flags("istio_tcp_connections_closed_total") == {"-": 1, "UF": 1}
    assert by_flags("istio_tcp_sent_bytes_total") == {"-": 105, "UF": 0}
    assert by_flags("istio_tcp_received_bytes_total") == {"-": 11, "UF": 0}


def test_inbound_labels(identity):
    labels = dict(zip(HTTP_LABELS, inbound_labels(identity, None, "http")))
    assert labels["reporter"] == "destination"
    assert labels["destination_workload"] == "productpage-v1"
    assert labels["destination_app"] == "productpage"
    assert labels["source_workload"] == "unknown" and labels["source_app"] == "unknown"
    assert labels["destination_service"] == "unknown"
    assert labels["connection_security_policy"] == "none"


@pytest.mark.parametrize("workload,labels,expect", [
    ("w", {}, ("unknown", "unknown", "w", "latest")),
    ("", {}, ("unknown", "unknown", "unknown", "latest")),
    ("w", {"app": "a", "version": "v3"}, ("a", "v3", "a", "v3")),
    ("w", {"app": "a", "app.kubernetes.io/name": "k"}, ("a", "unknown", "k", "latest")),
    ("w", {"app": "a", "version": "v1", "service.istio.io/canonical-name": "c",
           "service.istio.io/canonical-revision": "r"}, ("a", "v1", "c", "r")),
])
def test_peer_derivation(workload, labels, expect):
    peer = Peer.of(workload, "", labels)
    assert (peer.app, peer.version, peer.canonical_service, peer.canonical_revision) == expect
    assert peer.namespace == "unknown"


def test_peer_for_unknown_endpoint():
    assert Peer.from_endpoint(None) == Peer()


def test_label_values_are_escaped(cluster):
    ctx = MetricsContext()
    odd = Peer.of('we"ird\\name\n', "ns", {})
    ctx.http(inbound_labels(ProxyIdentity(), cluster, "http", source=odd)).record(200, "-", 1, 1, 1)
    [(labels, _)] = parse(ctx)["istio_requests_total"]
    assert labels["source_workload"] == 'we"ird\\name\n'


def test_wrong_label_count_is_rejected():
    with pytest.raises(ValueError):
        MetricsContext().http(("source",))


def test_single_worker_needs_no_directory():
    ctx = setup_metrics(1)
    assert ctx.directory is None
    ctx.flush()
    ctx.worker_exit(12345)
    ctx.close()
    assert ctx.render_prometheus() == b""
