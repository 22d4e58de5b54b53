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
from trace_collector import Collector, tracing_env

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


def two_sidecars(tmp_path, upstreams, proxies, env, app_handler=None, http=None):
    """client -> outbound sidecar (app=productpage) -> inbound sidecar (app=reviews) -> app."""
    app = upstreams("app", app_handler)
    inbound_port = free_port()
    proxies(inbound_mesh(inbound_port, app), labels="app=reviews,version=v2", env=env)
    port = free_port()
    resources = [service_entry(port, [endpoint(inbound_port)]), sidecar((port, "HTTP"))]
    if http is not None:
        resources.append(virtual_service(http))
    client = proxies(resources, labels="app=productpage,version=v1", env=env)
    return port, app, client


@pytest.mark.parametrize("kind", ["opentelemetry", "zipkin"])
def test_a_retried_request_through_two_sidecars_is_one_trace(tmp_path, upstreams, proxies, collector, via, kind):
    sink = collector()
    env = tracing_env(tmp_path, kind, sink.port)
    port, app, _ = two_sidecars(tmp_path, upstreams, proxies, env,
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
def test_an_incoming_trace_is_joined(tmp_path, upstreams, proxies, collector, incoming, check):
    sink = collector()
    app = upstreams("app")
    port = free_port()
    proxies([service_entry(port, [endpoint(app)]), sidecar((port, "HTTP"))], labels="app=productpage",
            env=tracing_env(tmp_path, "opentelemetry", sink.port, sampling=0.0))
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


def test_sampling_zero_percent_and_forced(tmp_path, upstreams, proxies, collector):
    sink = collector()
    app = upstreams("app")
    port = free_port()
    proxy = proxies([service_entry(port, [endpoint(app)]), sidecar((port, "HTTP"))],
                    env=tracing_env(tmp_path, "zipkin", sink.port, sampling=0.0))
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


def test_sampling_all(tmp_path, upstreams, proxies, collector):
    sink = collector()
    app = upstreams("app")
    port = free_port()
    proxy = proxies([service_entry(port, [endpoint(app)]), sidecar((port, "HTTP"))],
                    env=tracing_env(tmp_path, "opentelemetry", sink.port, sampling=100.0))
    for i in range(10):
        assert curl(port, f"/n{i}").status == 200
    spans = sink.wait_spans(10)
    assert len({s["traceId"] for s in spans}) == 10
    assert stat(proxy, f"http.egress|127.0.0.1|{port}.tracing.random_sampling") == 10
    assert stat(proxy, "tracing.opentelemetry.spans_sent") == 10


@pytest.mark.parametrize("trouble", ["down", "slow", "error"])
def test_a_collector_in_trouble_costs_the_requests_nothing(tmp_path, upstreams, proxies, collector, trouble):
    if trouble == "down":
        port_of_collector = free_port()  # nothing listens there
    else:
        sink = collector(delay=3.0) if trouble == "slow" else collector(status=500)
        port_of_collector = sink.port
    app = upstreams("app")
    port = free_port()
    proxy = proxies([service_entry(port, [endpoint(app)]), sidecar((port, "HTTP"))],
                    env=tracing_env(tmp_path, "opentelemetry", port_of_collector, timeout=0.5))
    for i in range(30):
        assert curl(port, f"/n{i}").status == 200
    failed = "tracing.opentelemetry.reports_dropped" if trouble == "error" else "tracing.opentelemetry.reports_failed"
    wait_until(lambda: stat(proxy, failed) >= 1, what=failed)
    assert stat(proxy, "tracing.opentelemetry.spans_sent") == 0
