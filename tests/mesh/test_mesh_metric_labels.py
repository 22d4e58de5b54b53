"""Istio's metric labels on both sides of one call, read from the real proxies' /stats/prometheus:
the client's sidecar (reporter "source") and the server's (reporter "destination") name the same
service (the ServiceEntry selecting the server, by its Kubernetes-shaped host and short name) and
the same workload (the server's --workload, as Istio reports the Deployment on both sides)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from mesh_harness import (  # noqa: F401  (mesh: the fixture)
    CLIENT, LOCALHOST, egress_sidecar, free_ports, get, ingress_sidecar, mesh, selected_service, wait_until,
)

REVIEWS = "reviews.default.svc.cluster.local"


def requests_series(proxy, reporter: str) -> list[dict[str, str]]:
    """The label sets of istio_requests_total samples of `reporter` the proxy serves."""
    return [sample.labels for family in text_string_to_metric_families(proxy.prometheus())
            for sample in family.samples
            if sample.name == "istio_requests_total" and sample.labels.get("reporter") == reporter]


def test_both_sides_of_a_call_name_the_same_service_and_workload(mesh):
    port, ingress = free_ports(2)
    app = mesh.app("reviews")
    labels = {"app": "reviews"}
    mesh.write("service.yaml", [selected_service(REVIEWS, port, labels, "reviews")])
    mesh.write("sidecars.yaml", [egress_sidecar("productpage", CLIENT, port),
                                 ingress_sidecar("reviews", labels, ingress, app.port)])
    control = mesh.control()
    client = mesh.proxy(control.port, "productpage-v1", {**CLIENT, "version": "v1"})
    server = mesh.proxy(control.port, "reviews-v1", {**labels, "version": "v1"}, address=LOCALHOST,
                        ports={"http": ingress})
    wait_until(lambda: f"{LOCALHOST}:{ingress}" in client.endpoints(), what="the reviews sidecar as an endpoint")
    assert get(port, REVIEWS).status == 200

    (source,) = wait_until(lambda: requests_series(client, "source"), what="the client's series")
    (destination,) = wait_until(lambda: requests_series(server, "destination"), what="the server's series")
    expected = {
        "destination_service": REVIEWS, "destination_service_name": "reviews",
        "destination_service_namespace": "default",
        "destination_workload": "reviews-v1", "destination_workload_namespace": "default",
        "destination_app": "reviews", "destination_version": "v1",
        "source_workload": "productpage-v1", "source_app": "productpage", "response_code": "200",
    }
    for side in (source, destination):
        assert {k: side[k] for k in expected} == expected, side
