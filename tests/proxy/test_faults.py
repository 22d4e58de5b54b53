"""Fault injection (VirtualService `fault`) end to end: real upstreams, curl and grpcio as clients,
over HTTP/1.1 and h2c. Statuses, response flags (DI, FI), Envoy's fault.* stats and what reached
the upstream are asserted; the proxy's random source is seeded where percentages are measured."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from grpc_echo import SERVICE
from proxy_harness import (HOST, Client, curl, destination_rule, dump_yaml, free_port, http_mesh, service_entry, endpoint,
                           sidecar, to_subset, wait_until)
from test_grpc import channel_to, echo, grpc_mesh  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(90)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "faults"


def faulty(fault: dict, **extra) -> list[dict]:
    return [{"fault": fault, "route": [to_subset("v1")], **extra}]


def fault_stats(proxy) -> dict[str, int]:
    """The listener's fault.* stats (a scope appears once a fault fired: zeros before)."""
    _, _, body = proxy.admin("/stats")
    found = {"aborts_injected": 0, "delays_injected": 0}
    for line in body.decode().splitlines():
        if line.startswith("http.egress|127.0.0.1|") and ".fault." in line:
            name, value = line.split(": ")
            found[name.rsplit(".", 1)[1]] = int(value)
    return found


def test_abort_answers_locally_with_flag_fi(upstreams, proxies, via):
    up = upstreams("v1")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}, faulty({"abort": {"httpStatus": 418}})))
    result = curl(port, "/abort", *via)
    assert (result.status, result.body) == (418, b"fault filter abort")
    entry = proxy.wait_log(lambda e: e["path"] == "/abort")
    assert (entry["response_code"], entry["response_flags"]) == (418, "FI")
    assert up.count() == 0
    assert fault_stats(proxy) == {"aborts_injected": 1, "delays_injected": 0}


def test_delay_holds_the_request_then_forwards_it_with_flag_di(upstreams, proxies, via):
    up = upstreams("v1")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}, faulty({"delay": {"fixedDelay": "200ms", "percentage": {"value": 100}}})))
    started = time.monotonic()
    result = curl(port, "/slow", *via)
    elapsed = time.monotonic() - started
    assert result.status == 200 and result.body == b"v1 GET /slow\n"
    assert elapsed >= 0.2  # the lower bound only: speed belongs in benchmarks/
    entry = proxy.wait_log(lambda e: e["path"] == "/slow")
    assert entry["response_flags"] == "DI" and entry["duration"] >= 199  # the loop clock ticks in whole ms
    assert fault_stats(proxy)["delays_injected"] == 1


def test_delay_then_abort_as_envoy_orders_them(upstreams, proxies, via):
    up = upstreams("v1")
    port = free_port()
    fault = {"delay": {"fixedDelay": "50ms"}, "abort": {"httpStatus": 503}}  # no percentage: all requests
    proxy = proxies(http_mesh(port, {"v1": up}, faulty(fault)))
    assert curl(port, "/both", *via).status == 503
    entry = proxy.wait_log(lambda e: e["path"] == "/both")
    assert entry["response_flags"] == "DI,FI" and entry["duration"] >= 49  # the loop clock ticks in whole ms
    assert up.count() == 0


def test_a_zero_percentage_never_fires(upstreams, proxies):
    up = upstreams("v1")
    port = free_port()
    fault = {"abort": {"httpStatus": 503, "percentage": {"value": 0}}, "delay": {"fixedDelay": "5s", "percent": 0}}
    proxy = proxies(http_mesh(port, {"v1": up}, faulty(fault)))
    with Client(port) as client:
        assert [client.request(path=f"/{i}").status for i in range(50)] == [200] * 50
    assert fault_stats(proxy) == {"aborts_injected": 0, "delays_injected": 0}


def test_abort_at_50_percent_over_4000_requests(upstreams, proxies):
    up = upstreams("v1")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}, faulty({"abort": {"httpStatus": 503, "percentage": {"value": 50}}})),
                    extra_args=["--random-seed", "10"])
    with Client(port) as client:
        statuses = [client.request(path="/half").status for _ in range(4000)]
    aborted = statuses.count(503)
    assert statuses.count(200) + aborted == 4000
    assert 0.47 <= aborted / 4000 <= 0.53, aborted
    assert fault_stats(proxy)["aborts_injected"] == aborted
    assert up.count() == 4000 - aborted


def test_the_seed_makes_a_run_reproducible(upstreams, proxies):
    up = upstreams("v1")
    port_a, port_b = free_port(), free_port()
    fault = faulty({"abort": {"httpStatus": 503, "percentage": {"value": 30}}})
    runs = []
    for port in (port_a, port_b):
        proxies(http_mesh(port, {"v1": up}, fault), extra_args=["--random-seed", "3"])
        with Client(port) as client:
            runs.append([client.request(path="/r").status for _ in range(60)])
    assert runs[0] == runs[1] and 503 in runs[0] and 200 in runs[0]


def test_client_leaving_during_a_delay_cleans_up(upstreams, proxies):
    up = upstreams("v1")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}, faulty({"delay": {"fixedDelay": "30s"}})))
    client = Client(port)
    client.send(b"GET /gone HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST.encode())
    wait_until(lambda: fault_stats(proxy)["delays_injected"] == 1, what="the delay to start")
    client.abort()  # RST: the client is gone while the request waits
    entry = proxy.wait_log(lambda e: e["path"] == "/gone")  # logged now, not after 30 s
    assert entry["response_flags"] == "DI,DC"
    assert up.count() == 0  # the abandoned request never went upstream


def test_bookinfo_abort_sample_behaves_as_istio_documents(upstreams, proxies):
    """Istio's virtual-service-ratings-test-abort.yaml, unchanged: jason gets 500, others v1."""
    up = upstreams("v1")
    port = free_port()
    host = "ratings.default.svc.cluster.local"
    resources = [service_entry(port, [endpoint(up, {"version": "v1"})], host), destination_rule(host, ["v1"]),
                 sidecar((port, "HTTP"))]
    sample = (EXAMPLES / "virtual-service-ratings-test-abort.yaml").read_text()
    proxy = proxies("\n---\n".join([sample, dump_yaml(resources)]))
    assert curl(port, "/ratings/0", "-H", "end-user: jason", host="ratings").status == 500
    assert curl(port, "/ratings/0", "-H", "end-user: someone", host="ratings").status == 200
    assert proxy.wait_log(lambda e: e["response_code"] == 500)["response_flags"] == "FI"
    assert up.count() == 1


@pytest.mark.parametrize("abort, code", [({"grpcStatus": "UNAVAILABLE"}, grpc.StatusCode.UNAVAILABLE),
                                         ({"grpcStatus": "PERMISSION_DENIED"}, grpc.StatusCode.PERMISSION_DENIED),
                                         ({"httpStatus": 503}, grpc.StatusCode.UNAVAILABLE)])
def test_grpc_abort_is_a_grpc_error(echo, proxies, channel_to, abort, code):
    port = free_port()
    proxy = proxies(grpc_mesh(port, echo, [{"fault": {"abort": abort}, "route": [{"destination": {"host": HOST}}]}]))
    with pytest.raises(grpc.RpcError) as error:
        channel_to(port).unary_unary(f"/{SERVICE}/Unary")(b"hi", timeout=10)
    assert error.value.code() == code and error.value.details() == "fault filter abort"
    entry = proxy.wait_log(lambda e: e["path"] == f"/{SERVICE}/Unary")
    assert (entry["response_code"], entry["response_flags"]) == (200, "FI")
