"""Istio's bookinfo on the ingress gateway: samples/bookinfo/networking/bookinfo-gateway.yaml with
the bookinfo DestinationRules and VirtualServices, unchanged, served by `pymesh gateway` in
front of stand-in bookinfo services (ServiceEntries written here), reached with curl."""

from __future__ import annotations

from pathlib import Path

import pytest

from ports import free_port
from proxy_harness import Proxy, curl, dump_yaml, endpoint, gateway_service, service_entry

SAMPLES = Path(__file__).parents[1] / "api" / "data" / "istio_samples" / "bookinfo"
BOOKINFO = ("bookinfo-gateway.yaml", "destination-rule-all.yaml", "virtual-service-all-v1.yaml")
SERVICES = ("productpage", "reviews", "ratings", "details")


def bookinfo_config(apps: dict, listen: int) -> str:
    """The samples as Istio ships them, then the stand-in services and the gateway's service."""
    entries = [service_entry(9080, [endpoint(apps[name], {"app": name, "version": "v1"})],
                             host=f"{name}.default.svc.cluster.local", name=name) for name in SERVICES]
    samples = "---\n".join((SAMPLES / file).read_text() for file in BOOKINFO)
    return samples + "\n---\n" + dump_yaml(entries + [gateway_service({80: listen})])


@pytest.fixture
def bookinfo(tmp_path, upstreams):
    apps = {name: upstreams(name) for name in SERVICES}
    listen = free_port()
    gateway = Proxy(tmp_path / "gw", bookinfo_config(apps, listen), name="gateway", subcommand="gateway")
    try:
        gateway.start()
        yield gateway, listen, apps
    finally:
        gateway.kill()
        print(gateway.stderr()[-4000:])


@pytest.mark.parametrize("path", ["/productpage", "/static/x", "/login", "/logout", "/api/v1/products",
                                  "/api/v1/products/1/reviews"])
def test_productpage_routes_through_the_gateway(bookinfo, path):
    gateway, listen, apps = bookinfo
    result = curl(listen, path, host="bookinfo.example.com")
    assert result.status == 200, result
    assert result.header("server") == "istio-envoy"  # as Istio's gateways answer
    (request,) = apps["productpage"].wait_requests(1)
    assert request.path == path
    assert request.header("x-forwarded-for") == "127.0.0.1"
    assert request.header("x-forwarded-proto") == "http"
    assert request.header("x-envoy-internal") == "true"  # a loopback client: internal, as Envoy's default
    assert request.header("x-envoy-external-address") is None
    assert request.header("x-request-id")


@pytest.mark.parametrize("path", ["/", "/reviews/1", "/productpagex", "/loginx"])
def test_other_paths_get_404(bookinfo, path):
    gateway, listen, apps = bookinfo
    result = curl(listen, path)
    assert result.status == 404
    assert result.header("server") == "istio-envoy"
    assert apps["productpage"].count() == 0


def test_a_forwarded_request_is_external(bookinfo):
    gateway, listen, apps = bookinfo
    result = curl(listen, "/productpage", "-H", "X-Forwarded-For: 203.0.113.7",
                  "-H", "X-Envoy-External-Address: 203.0.113.9", "-H", "X-Envoy-Internal: true",
                  "-H", "X-Envoy-Retry-On: 5xx", "-H", "X-Forwarded-Proto: https")
    assert result.status == 200
    (request,) = apps["productpage"].wait_requests(1)
    assert request.header("x-forwarded-for") == "203.0.113.7, 127.0.0.1"
    # forwarded from elsewhere: external, and what only the mesh may say is dropped
    assert request.header_all("x-envoy-external-address") == ["127.0.0.1"]
    assert request.header("x-envoy-internal") is None and request.header("x-envoy-retry-on") is None
    assert request.header_all("x-forwarded-proto") == ["http"]
