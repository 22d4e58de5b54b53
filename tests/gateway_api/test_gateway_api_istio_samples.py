"""Istio's own Gateway API samples (samples/bookinfo/gateway-api, unchanged): bookinfo's Gateway
and HTTPRoute through `pymesh gateway`, and the GAMMA routes (route-all-v1, the 90/10 reviews
split) through a client's sidecar; their translation is Accepted with every reference resolved."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance_kit import client_sidecar, gateway_service, loopback_with_port, running
from ports import free_port
from proxy_harness import Proxy, Upstream, curl, dump_yaml, endpoint, service_entry
from pymesh.api.load import load_paths
from pymesh.routing.gateway_api import translate

pytestmark = pytest.mark.timeout(120)
SAMPLES = Path(__file__).parent / "istio_samples"


def bookinfo_services(apps: dict[str, Upstream]) -> list[dict]:
    """productpage, reviews (every version's pods) and each version's own Service, as
    bookinfo.yaml and bookinfo-versions.yaml define them."""
    out = []
    for name, versions in (("productpage", ("v1",)), ("reviews", ("v1", "v2")), ("details", ("v1",)),
                           ("ratings", ("v1",))):
        pods = [endpoint(apps[f"{name}-{v}"], {"app": name, "version": v}) for v in versions]
        out.append(service_entry(9080, pods, host=f"{name}.default.svc.cluster.local", name=name))
        for version, pod in zip(versions, pods):
            out.append(service_entry(9080, [pod], host=f"{name}-{version}.default.svc.cluster.local",
                                     name=f"{name}-{version}"))
    for entry in out:
        entry["spec"]["location"] = "MESH_INTERNAL"
    return out


@pytest.fixture
def apps():
    servers = {f"{n}-{v}": Upstream(f"{n}-{v}") for n, vs in (("productpage", ("v1",)), ("reviews", ("v1", "v2")),
                                                              ("details", ("v1",)), ("ratings", ("v1",))) for v in vs}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.mark.parametrize("routes, count", [("route-all-v1.yaml", 5), ("route-reviews-90-10.yaml", 2)])
def test_the_samples_are_accepted_and_resolved(tmp_path, apps, routes: str, count: int) -> None:
    """Each with the bookinfo Gateway sample (the two define `reviews` each: alternatives)."""
    services = tmp_path / "services.yaml"
    services.write_text(dump_yaml(bookinfo_services(apps)))
    result = load_paths([str(SAMPLES / "bookinfo-gateway.yaml"), str(SAMPLES / routes), str(services)])
    assert result.errors == []
    statuses = [s for s in translate(result.config).statuses if s.kind == "HTTPRoute"]
    assert len(statuses) == count
    for status in statuses:
        assert {(c.type, c.status) for p in status.parents for c in p.conditions} == {
            ("Accepted", True), ("ResolvedRefs", True)}, status


def test_bookinfo_through_a_gateway_api_gateway(tmp_path, apps) -> None:
    listen = free_port()
    config = dump_yaml(bookinfo_services(apps) + [gateway_service("bookinfo-gateway", "default", {80: listen})])
    config += "---\n" + (SAMPLES / "bookinfo-gateway.yaml").read_text()
    gateway = Proxy(tmp_path / "gw", config, subcommand="gateway", name="gateway",
                    labels="gateway.networking.k8s.io/gateway-name=bookinfo-gateway", extra_args=["--namespace", "default"])
    with running(gateway, []):
        for path in ("/productpage", "/static/css/style.css", "/login", "/api/v1/products/1"):
            result = curl(listen, path, host="bookinfo.example.com")
            assert (result.status, result.header("x-upstream")) == (200, "productpage-v1"), path
        assert curl(listen, "/reviews/0", host="bookinfo.example.com").status == 404
        assert curl(listen, "/productpage/extra", host="bookinfo.example.com").status == 404  # Exact


def test_gamma_reviews_split_90_10(tmp_path, apps) -> None:
    """The traffic shifting task's Gateway API step: the sidecar of a client (productpage) sends
    about 90% of reviews calls to reviews-v1 (200 calls; within 4 standard deviations)."""
    address = loopback_with_port(9080)
    config = dump_yaml(bookinfo_services(apps) + [client_sidecar("default", address, 9080)])
    config += "---\n" + (SAMPLES / "route-reviews-90-10.yaml").read_text()
    proxy = Proxy(tmp_path / "client", config, labels="app=productpage,version=v1", extra_args=["--namespace", "default"])
    with running(proxy, []):
        answers = [curl(9080, "/reviews/0", "--connect-to", f"127.0.0.1:9080:{address}:9080", host="reviews:9080")
                   .header("x-upstream") for _ in range(200)]
    assert set(answers) <= {"reviews-v1", "reviews-v2"}
    assert 163 <= answers.count("reviews-v1") <= 197, answers.count("reviews-v1")
