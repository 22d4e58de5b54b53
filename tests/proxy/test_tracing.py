"""Distributed tracing through real sidecars: spans reported to a real collector over
OTLP/HTTP protobuf and Zipkin v2 JSON, the caller's W3C and B3 contexts joined, sampling at
0%, 100% and forced by x-client-trace-id, and a collector that is down or slow costing the
requests nothing."""

from __future__ import annotations

import re

import pytest

from ports import free_port
from proxy_harness import (Reply, curl, endpoint, http_get, inbound_mesh, sequence, service_entry, sidecar, virtual_service,
                           wait_until)
from trace_collector import Collector, tracing_config

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
RETRY = [{"route": [{"destination": {"host": "svc.local"}}],
          "retries": {"attempts": 2, "retryOn": "5xx", "perTryTimeout": "5s"}}]


@pytest.fixture
def collector():
    started = []

    def start(**knobs) -> Collector:
        server = Collector(**knobs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def one_sidecar(upstreams, proxies, kind: str, collector_port: int, **policy):
    """client -> outbound sidecar (app=productpage) tracing to the collector -> app."""
    app = upstreams("app")
    port = free_port()
    proxy = proxies([service_entry(port, [endpoint(app)]), sidecar((port, "HTTP")),
                     *tracing_config(kind, collector_port, **policy)], labels="app=productpage")
    return port, app, proxy


def two_sidecars(upstreams, proxies, tracing, app_handler=None, http=None):
    """client -> outbound sidecar (app=productpage) -> inbound sidecar (app=reviews) -> app."""
    app = upstreams("app", app_handler)
    inbound_port = free_port()
    proxies(inbound_mesh(inbound_port, app) + tracing, labels="app=reviews,version=v2")
    port = free_port()
    resources = [service_entry(port, [endpoint(inbound_port)]), sidecar((port, "HTTP")), *tracing]
    if http is not None:
        resources.append(virtual_service(http))
    client = proxies(resources, labels="app=productpage,version=v1")
    return port, app, client


@pytest.mark.parametrize("kind", ["opentelemetry", "zipkin"])
def test_a_retried_request_through_two_sidecars_is_one_trace(upstreams, proxies, collector, via, kind):
    sink = collector()
    port, app, _ = two_sidecars(upstreams, proxies, tracing_config(kind, sink.port),
                                sequence(Reply(500, body=b"first"), then=Reply(200, body=b"ok")), http=RETRY)
    result = curl(port, "/reviews/1", *via, "-H", "user-agent: trace-test")
    assert result.status == 200, result
    spans = sink.wait_spans(3)
    assert len(spans) == 3
    client = [s for s in spans if s["kind"] == "CLIENT"]
    servers = sorted((s for s in spans if s["kind"] == "SERVER"), key=lambda s: s["tags"]["http.status_code"])
    assert len(client) == 1 and len(servers) == 2, spans
    root = client[0]
    assert {s["traceId"] for s in spans} == {root["traceId"]} and re.fullmatch("[0-9a-f]{32}", root["traceId"])
    assert root["parentId"] == ""
    # each attempt reached the server side with the client span as its parent
    assert [s["parentId"] for s in servers] == [root["id"], root["id"]]
    assert [s["tags"]["http.status_code"] for s in servers] == ["200", "500"]
    assert servers[1]["tags"]["error"] == "true" and "error" not in servers[0]["tags"]
    assert root["service"] == "productpage.default" and servers[0]["service"] == "reviews.default"
    assert root["name"] == "svc.local:%d/*" % port
    tags = root["tags"]
    assert tags["http.method"] == "GET" and tags["http.status_code"] == "200"
    assert tags["http.url"] == "http://svc.local/reviews/1"
    assert tags["upstream_cluster"] == tags["upstream_cluster.name"] == f"outbound|{port}||svc.local"
    assert tags["istio.canonical_service"] == "productpage" and tags["istio.canonical_revision"] == "v1"
    assert tags["istio.mesh_id"] == "cluster.local" and tags["istio.namespace"] == "default"
    assert tags["component"] == "proxy" and tags["user_agent"] == "trace-test"
    assert tags["response_flags"] == "-" and tags["response_size"] == "2"
    assert tags["http.protocol"] == ("HTTP/2" if "--http2-prior-knowledge" in via else "HTTP/1.1")
    # the app saw the same trace and request id; the request id says it was sampled (Envoy's 'a')
    last = app.requests[-1]
    request_id = last.header("x-request-id")
    assert request_id[14] == "a" and tags["guid:x-request-id"] == request_id
    assert all(s["tags"]["guid:x-request-id"] == request_id for s in spans)
    if kind == "opentelemetry":
        assert last.header("traceparent") == f"00-{root['traceId']}-{servers[0]['id']}-01"
        assert sink.posts[0] == ("/v1/traces", "application/x-protobuf")
    else:
        assert last.header("x-b3-traceid") == root["traceId"] and last.header("x-b3-sampled") == "1"
        assert last.header("x-b3-spanid") == servers[0]["id"] and last.header("x-b3-parentspanid") == root["id"]
        assert sink.posts[0] == ("/api/v2/spans", "application/json")
        assert root["remoteEndpoint"]["port"] and root["shared"] is False


def test_without_a_provider_headers_pass_untouched(upstreams, proxies):
    app = upstreams("app")
    port = free_port()
    proxies([service_entry(port, [endpoint(app)]), sidecar((port, "HTTP"))])
    assert curl(port, "/", "-H", "b3: 0").status == 200
    [request] = app.requests
    assert request.header("b3") == "0" and request.header("traceparent") is None
    assert request.header("x-request-id")[14] == "4"


@pytest.mark.parametrize("incoming, check", [
    ({"traceparent": f"00-{TRACE}-{PARENT}-01", "tracestate": "congo=t61rcWkgMzE"},
     lambda req, span: (req.header("traceparent") == f"00-{TRACE}-{span}-01"
                        and req.header("tracestate") == "congo=t61rcWkgMzE")),
    ({"x-b3-traceid": TRACE[16:], "x-b3-spanid": PARENT, "x-b3-sampled": "1"},
     lambda req, span: (req.header("x-b3-traceid") == TRACE[16:] and req.header("x-b3-spanid") == span
                        and req.header("x-b3-parentspanid") == PARENT and req.header("x-b3-sampled") == "1"
                        and req.header("traceparent") == f"00-{'0' * 16}{TRACE[16:]}-{span}-01")),
    ({"b3": f"{TRACE}-{PARENT}-1"},
     lambda req, span: req.header("b3") == f"{TRACE}-{span}-1-{PARENT}"),
], ids=["w3c", "b3-multi-64bit", "b3-single"])
def test_an_incoming_trace_is_joined(upstreams, proxies, collector, incoming, check):
    sink = collector()
    port, app, _ = one_sidecar(upstreams, proxies, "opentelemetry", sink.port, sampling=0.0)
    args = [a for name, value in incoming.items() for a in ("-H", f"{name}: {value}")]
    assert curl(port, "/", *args).status == 200
    [span] = sink.wait_spans(1)  # sampled by the caller, though this proxy samples 0%
    trace = TRACE if "x-b3-traceid" not in incoming else TRACE[16:].rjust(32, "0")
    assert span["traceId"] == trace and span["parentId"] == PARENT and span["kind"] == "CLIENT"
    if "tracestate" in incoming:
        assert span["tracestate"] == "congo=t61rcWkgMzE"
    assert check(app.requests[0], span["id"]), app.requests[0].headers


def stat(proxy, name: str) -> int:
    _, _, body = http_get(proxy.admin_port, "/stats")
    match = re.search(rb"^%s: (\d+)$" % re.escape(name.encode()), body, re.M)
    return int(match.group(1)) if match else -1


def test_sampling_zero_percent_and_forced(upstreams, proxies, collector):
    sink = collector()
    port, app, proxy = one_sidecar(upstreams, proxies, "zipkin", sink.port, sampling=0.0)
    for i in range(20):
        assert curl(port, f"/n{i}").status == 200
    # unsampled requests still carry a context, marked unsampled, to the next hop
    assert all(r.header("x-b3-sampled") == "0" and r.header("x-request-id")[14] == "4" for r in app.requests)
    assert curl(port, "/forced", "-H", "x-client-trace-id: abc").status == 200
    [span] = sink.wait_spans(1)
    assert span["tags"]["http.url"].endswith("/forced")
    assert app.requests[-1].header("x-request-id")[14] == "b" and app.requests[-1].header("x-b3-sampled") == "1"
    listener = f"http.egress|127.0.0.1|{port}.tracing"
    assert stat(proxy, f"{listener}.not_traceable") == 20 and stat(proxy, f"{listener}.client_enabled") == 1
    # an unsampled caller is honoured even with x-client-trace-id
    assert curl(port, "/parent-says-no", "-H", f"traceparent: 00-{TRACE}-{PARENT}-00",
                "-H", "x-client-trace-id: abc").status == 200
    assert app.requests[-1].header("traceparent").endswith("-00")


def test_sampling_all_with_custom_tags(upstreams, proxies, collector):
    sink = collector()
    tags = {"team": {"literal": {"value": "reviews"}}, "tenant": {"header": {"name": "x-tenant", "defaultValue": "none"}},
            "home": {"environment": {"name": "HOME", "defaultValue": "?"}}}
    port, app, proxy = one_sidecar(upstreams, proxies, "opentelemetry", sink.port, sampling=100.0,
                                   custom_tags=tags)
    for i in range(10):
        assert curl(port, f"/n{i}", *(("-H", "x-tenant: acme") if i == 0 else ())).status == 200
    spans = sink.wait_spans(10)
    assert len({s["traceId"] for s in spans}) == 10
    by_path = {s["tags"]["http.url"].rpartition("/")[2]: s["tags"] for s in spans}
    assert by_path["n0"]["tenant"] == "acme" and by_path["n1"]["tenant"] == "none"
    assert by_path["n0"]["team"] == "reviews" and by_path["n0"]["home"] not in ("", "?")
    assert stat(proxy, f"http.egress|127.0.0.1|{port}.tracing.random_sampling") == 10
    assert stat(proxy, "tracing.opentelemetry.spans_sent") == 10


@pytest.mark.parametrize("trouble", ["down", "slow", "error"])
def test_a_collector_in_trouble_costs_the_requests_nothing(upstreams, proxies, collector, trouble):
    if trouble == "down":
        port_of_collector = free_port()  # nothing listens there
    else:
        sink = collector(delay=3.0) if trouble == "slow" else collector(status=500)
        port_of_collector = sink.port
    port, _, proxy = one_sidecar(upstreams, proxies, "opentelemetry", port_of_collector, timeout="0.5s")
    for i in range(30):
        assert curl(port, f"/n{i}").status == 200
    failed = "tracing.opentelemetry.reports_dropped" if trouble == "error" else "tracing.opentelemetry.reports_failed"
    wait_until(lambda: stat(proxy, failed) >= 1, what=failed)
    assert stat(proxy, "tracing.opentelemetry.spans_sent") == 0


def test_the_bookinfo_gateway_reports_client_spans_named_by_its_routes(tmp_path, upstreams, collector):
    from proxy_harness import Proxy, dump_yaml
    from test_gateway_bookinfo import SERVICES, bookinfo_config

    sink = collector()
    apps = {name: upstreams(name) for name in SERVICES}
    listen = free_port()
    config = bookinfo_config(apps, listen) + "\n---\n" + dump_yaml(tracing_config("zipkin", sink.port))
    gateway = Proxy(tmp_path / "gw", config, name="gateway", subcommand="gateway")
    try:
        gateway.start()
        for path in ("/productpage", "/static/app.css", "/api/v1/products/1"):
            assert curl(listen, path, host="bookinfo.example.com").status == 200
        names = sorted(s["name"] for s in sink.wait_spans(3))
        assert names == ["productpage.default.svc.cluster.local:9080/api/v1/products*",
                         "productpage.default.svc.cluster.local:9080/productpage",
                         "productpage.default.svc.cluster.local:9080/static*"]
        assert {s["kind"] for s in sink.spans} == {"CLIENT"}
        request = apps["productpage"].requests[0]
        assert request.header("x-b3-sampled") == "1" and request.header("x-b3-parentspanid") is None
    finally:
        gateway.kill()


def test_the_provider_service_is_found_in_the_mesh_registry(upstreams, proxies, collector):
    """Istio's extensionProviders name a mesh service (`zipkin.istio-system.svc.cluster.local`,
    port 9411): spans go to that service's endpoints, here a ServiceEntry's."""
    sink = collector()
    app = upstreams("app")
    port = free_port()
    zipkin = service_entry(9411, [endpoint(sink.port)], host="zipkin.istio-system.svc.cluster.local", name="zipkin")
    proxies([service_entry(port, [endpoint(app)]), zipkin, sidecar((port, "HTTP")),
             *tracing_config("zipkin", 9411, service="istio-system/zipkin.istio-system.svc.cluster.local")])
    assert curl(port, "/").status == 200
    [span] = sink.wait_spans(1)
    assert span["kind"] == "CLIENT"


def test_otlp_over_grpc_as_istio_defaults_it(upstreams, proxies):
    """Istio's opentelemetry provider without an `http` block exports OTLP/gRPC (port 4317)."""
    from trace_collector import GrpcCollector

    sink = GrpcCollector()
    try:
        port, app, _ = one_sidecar(upstreams, proxies, "opentelemetry", sink.port, transport="grpc",
                                   headers={"x-tenant": "acme"})
        for i in range(3):
            assert curl(port, f"/g{i}").status == 200
        spans = sink.wait_spans(3)
        assert {s["kind"] for s in spans} == {"CLIENT"} and spans[0]["service"] == "productpage.default"
        assert sink.metadata[0]["x-tenant"] == "acme"
    finally:
        sink.stop()


def test_the_last_spans_leave_when_the_proxy_stops(upstreams, proxies, collector):
    sink = collector()
    port, _, proxy = one_sidecar(upstreams, proxies, "zipkin", sink.port)
    assert curl(port, "/last").status == 200
    assert proxy.stop() == 0  # before the flush timer fired
    [span] = sink.wait_spans(1)
    assert span["tags"]["http.url"].endswith("/last")


ISTIO_TRACING_TASKS = {
    # istio.io docs/tasks/observability/distributed-tracing: zipkin, and opentelemetry (OTLP/gRPC on 4317)
    "zipkin": ("zipkin", "zipkin.istio-system.svc.cluster.local", 9411,
               "- name: zipkin\n  zipkin:\n    service: zipkin.istio-system.svc.cluster.local\n    port: 9411\n"),
    "otel-grpc": ("opentelemetry", "opentelemetry-collector.observability.svc.cluster.local", 4317,
                  "- name: otel-tracing\n  opentelemetry:\n    port: 4317\n"
                  "    service: opentelemetry-collector.observability.svc.cluster.local\n"),
    "otel-http": ("opentelemetry", "opentelemetry-collector.observability.svc.cluster.local", 4318,
                  "- name: otel-tracing\n  opentelemetry:\n    port: 4318\n"
                  "    service: opentelemetry-collector.observability.svc.cluster.local\n"
                  "    http:\n      path: /v1/traces\n      timeout: 5s\n"),
}


@pytest.mark.parametrize("task", sorted(ISTIO_TRACING_TASKS))
def test_istio_mesh_config_and_telemetry_turn_tracing_on(upstreams, proxies, collector, task):
    """The tasks' resources as Istio takes them: the provider in the istio ConfigMap's
    extensionProviders, a mesh-wide Telemetry naming it at 100%; the collector is a mesh
    service (a ServiceEntry to the local collector)."""
    from trace_collector import GrpcCollector

    kind, host, service_port, provider = ISTIO_TRACING_TASKS[task]
    sink = GrpcCollector() if task == "otel-grpc" else collector()
    try:
        name = provider.split("\n")[0].split(": ")[1]
        mesh = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "istio-system"},
                "data": {"mesh": "extensionProviders:\n" + provider}}
        telemetry = {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
                     "metadata": {"name": "mesh-default", "namespace": "istio-system"},
                     "spec": {"tracing": [{"providers": [{"name": name}], "randomSamplingPercentage": 100.0}]}}
        app = upstreams("app")
        port = free_port()
        proxies([service_entry(port, [endpoint(app)]), service_entry(service_port, [endpoint(sink.port)], host=host,
                                                                    name="collector"),
                 sidecar((port, "HTTP")), mesh, telemetry], labels="app=productpage")
        assert curl(port, "/productpage").status == 200
        [span] = sink.wait_spans(1)
        assert span["kind"] == "CLIENT" and span["service"] == "productpage.default"
        assert (app.requests[0].header("traceparent") if kind == "opentelemetry"
                else app.requests[0].header("x-b3-sampled")) is not None
    finally:
        if task == "otel-grpc":
            sink.stop()
