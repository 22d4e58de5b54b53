"""Failures, timeouts and retries: the client's status and body, the upstream's view (how many
attempts reached it), the access log's response_flags and the istio_requests_total label."""

from __future__ import annotations

import threading

import pytest

from proxy_harness import (
    Client, Eof, Reply, curl, destination_rule, endpoint, free_port, http_mesh, service_entry, sequence, sidecar,
    to_subset,
)

pytestmark = pytest.mark.timeout(60)

RESET_BEFORE_HEADERS = "upstream connect error or disconnect/reset before headers. reset reason: "


def assert_reported(proxy, status: int, flags: str, path: str = "/") -> dict:
    """The access log line of the request to `path` has these flags and status, and so has
    its istio_requests_total sample."""
    entry = proxy.wait_log(lambda e: e["path"] == path, what=f"the access log line for {path}")
    assert (entry["response_code"], entry["response_flags"]) == (status, flags), entry
    found = proxy.wait_metric(lambda s: [x for x in s if x.labels.get("response_code") == str(status)],
                              what=f'istio_requests_total{{response_code="{status}"}}')
    assert [x.labels["response_flags"] for x in found] == [flags]
    return entry


def mesh_with_route(port: int, server, route: dict) -> list[dict]:
    """One service on `port` served by `server`, with one VirtualService route (retries, timeout, ...)."""
    return http_mesh(port, {"v1": server}, [dict({"route": [to_subset("v1")]}, **route)])


# --- local replies ------------------------------------------------------------------------------------


def test_no_route_is_404_nr(upstreams, proxies, via):
    up = upstreams("up")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    result = curl(port, "/nowhere", *via, host="unknown.example")
    assert result.status == 404
    assert result.body == b""
    assert_reported(proxy, 404, "NR", "/nowhere")
    assert up.count() == 0


def test_no_healthy_endpoint_is_503_uh(proxies, via):
    port = free_port()
    proxy = proxies([service_entry(port, []), sidecar((port, "HTTP"))])
    result = curl(port, "/", *via)
    assert result.status == 503
    assert result.body == b"no healthy upstream"
    assert_reported(proxy, 503, "UH")


def test_connect_failure_is_503(proxies, via):
    port, dead = free_port(), free_port()
    proxy = proxies([service_entry(port, [endpoint(dead)]), sidecar((port, "HTTP"))])
    result = curl(port, "/", *via)
    assert result.status == 503
    assert result.body.decode() == RESET_BEFORE_HEADERS + "connection failure"
    entry = proxy.wait_log(lambda e: e["path"] == "/")
    assert entry["response_code"] == 503
    assert entry["upstream_host"] == f"127.0.0.1:{dead}"


def test_connect_failure_flags_are_uf_urx(proxies, via):
    port, dead = free_port(), free_port()
    proxy = proxies([service_entry(port, [endpoint(dead)]), sidecar((port, "HTTP"))])
    assert curl(port, "/", *via).status == 503
    assert_reported(proxy, 503, "UF,URX")


def test_reset_retried_until_exhausted_is_uc_urx(upstreams, proxies, via):
    up = upstreams("up", lambda req: Reply(action="close"))
    port = free_port()
    proxy = proxies(mesh_with_route(port, up, {"retries": {"attempts": 2, "retryOn": "reset"}}))
    result = curl(port, "/", *via)
    assert result.status == 503
    assert up.count() == 3
    assert_reported(proxy, 503, "UC,URX")


@pytest.mark.parametrize("action", ["close", "reset", "partial"])
def test_upstream_gone_before_response_is_503_uc(upstreams, proxies, action, via):
    up = upstreams("up", lambda req: Reply(action=action))
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    result = curl(port, "/", *via)
    assert result.status == 503
    assert result.body.decode() == RESET_BEFORE_HEADERS + "connection termination"
    assert_reported(proxy, 503, "UC")
    assert up.count() == 1  # a reset after sending is not retried by the default policy


def test_upstream_gone_mid_body_aborts_the_client_connection(upstreams, proxies):
    up = upstreams("up", lambda req: Reply(200, [], b"z" * 20000, action="truncate"))
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    with Client(port) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: svc.local\r\n\r\n")
        with pytest.raises((Eof, ConnectionError)):
            client.read()  # a truncated body must not look complete
    assert_reported(proxy, 200, "UC")


def test_route_timeout_is_504_ut(upstreams, proxies, via):
    release = threading.Event()
    up = upstreams("up", lambda req: (release.wait(10), Reply(200, [], b"late"))[1])
    port = free_port()
    proxy = proxies(mesh_with_route(port, up, {"timeout": "0.3s"}))
    try:
        result = curl(port, "/slow", *via)
    finally:
        release.set()
    assert result.status == 504
    assert result.body == b"upstream request timeout"
    assert_reported(proxy, 504, "UT", "/slow")


def test_per_try_timeout_then_a_fast_second_attempt_succeeds(upstreams, proxies, via):
    up = upstreams("up", sequence(Reply(200, [], b"slow", delay=3.0), then=Reply(200, [], b"fast")))
    port = free_port()
    route = {"retries": {"attempts": 2, "perTryTimeout": "0.3s", "retryOn": "5xx"}}
    proxy = proxies(mesh_with_route(port, up, route))
    result = curl(port, "/", *via)
    assert result.status == 200
    assert result.body == b"fast"
    assert up.count() == 2
    assert_reported(proxy, 200, "-")


# Timeouts further away than two deadline sweeps get their loop timer from a sweep, not at once
# (Exchange.arm_due_timers). A request-headers timeout of 0.4 s makes the sweep 0.1 s, so these
# 0.5 s and 0.6 s timeouts take that path.
SWEEP_EVERY_100_MS = ["--request-headers-timeout", "0.4"]


def test_a_far_route_timeout_armed_by_the_sweep_is_504_ut(upstreams, proxies, via):
    release = threading.Event()
    up = upstreams("up", lambda req: (release.wait(10), Reply(200, [], b"late"))[1])
    port = free_port()
    proxy = proxies(mesh_with_route(port, up, {"timeout": "0.6s"}), extra_args=SWEEP_EVERY_100_MS)
    try:
        result = curl(port, "/slow", *via)
    finally:
        release.set()
    assert result.status == 504
    entry = proxy.wait_log(lambda e: e["path"] == "/slow")
    assert entry["response_flags"] == "UT" and entry["duration"] >= 599  # never early (whole ms clock)


def test_a_far_per_try_timeout_armed_by_the_sweep_retries(upstreams, proxies, via):
    up = upstreams("up", sequence(Reply(200, [], b"slow", delay=3.0), then=Reply(200, [], b"fast")))
    port = free_port()
    route = {"retries": {"attempts": 2, "perTryTimeout": "0.5s", "retryOn": "5xx"}}
    proxies(mesh_with_route(port, up, route), extra_args=SWEEP_EVERY_100_MS)
    result = curl(port, "/", *via)
    assert (result.status, result.body) == (200, b"fast")
    assert up.count() == 2


# --- retries --------------------------------------------------------------------------------------------


def test_per_try_timeout_is_not_retried_by_the_default_conditions(upstreams, proxies, via):
    """Envoy retries a per-try timeout only for 5xx, gateway-error or reset; Istio's default
    retryOn has none of them."""
    release = threading.Event()
    up = upstreams("up", lambda req: (release.wait(10), Reply(200, [], b"late"))[1])
    port = free_port()
    proxy = proxies(mesh_with_route(port, up, {"retries": {"attempts": 2, "perTryTimeout": "0.3s"}}))
    try:
        result = curl(port, "/", *via)
    finally:
        release.set()
    assert result.status == 504
    assert up.count() == 1
    assert_reported(proxy, 504, "UT")


def test_default_policy_retries_503_twice(upstreams, proxies, via):
    up = upstreams("up", lambda req: Reply(503, [], b"busy"))
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    result = curl(port, "/", *via)
    assert result.status == 503
    assert result.body == b"busy"  # the upstream's own answer, not a local reply
    assert up.count() == 3
    assert_reported(proxy, 503, "URX")


def test_retry_on_5xx_with_attempts(upstreams, proxies, via):
    up = upstreams("up", sequence(Reply(500, [], b"e1"), Reply(502, [], b"e2"), then=Reply(200, [], b"ok")))
    port = free_port()
    proxies(mesh_with_route(port, up, {"retries": {"attempts": 3, "retryOn": "5xx"}}))
    result = curl(port, "/", *via)
    assert result.status == 200
    assert result.body == b"ok"
    assert up.count() == 3


def test_retry_on_5xx_exhausted(upstreams, proxies, via):
    up = upstreams("up", lambda req: Reply(500, [], b"broken"))
    port = free_port()
    proxy = proxies(mesh_with_route(port, up, {"retries": {"attempts": 3, "retryOn": "5xx"}}))
    result = curl(port, "/", *via)
    assert result.status == 500
    assert up.count() == 4
    assert_reported(proxy, 500, "URX")


def test_post_is_not_retried_on_503(upstreams, proxies, via):
    up = upstreams("up", lambda req: Reply(503, [], b"busy"))
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    result = curl(port, "/order", *via, "--data-binary", "item=1")
    assert result.status == 503
    assert up.count() == 1
    entry = assert_reported(proxy, 503, "-", "/order")
    assert entry["method"] == "POST"


def test_post_with_idempotency_key_is_retried_on_503(upstreams, proxies, via):
    up = upstreams("up", lambda req: Reply(503, [], b"busy"))
    port = free_port()
    proxies(http_mesh(port, {"v1": up}))
    result = curl(port, "/order", *via, "--data-binary", "item=1", "-H", "Idempotency-Key: k-1")
    assert result.status == 503
    requests = up.wait_requests(3)
    assert len(requests) == 3
    assert all(r.body == b"item=1" for r in requests)


def test_post_is_retried_on_connect_failure(upstreams, proxies):
    live = upstreams("live")
    port, dead = free_port(), free_port()
    proxies([
        service_entry(port, [endpoint(live), endpoint(dead)]),
        destination_rule(traffic_policy={"loadBalancer": {"simple": "ROUND_ROBIN"}}),
        sidecar((port, "HTTP")),
    ])
    with Client(port) as client:
        for i in range(6):
            response = client.request("POST", f"/order/{i}", {"content-type": "text/plain"}, f"body-{i}".encode())
            assert response.status == 200, response
    requests = live.wait_requests(6)
    assert [r.body for r in requests] == [f"body-{i}".encode() for i in range(6)]


# --- the client goes away ---------------------------------------------------------------------------------


def test_downstream_reset_while_waiting_is_dc(upstreams, proxies):
    arrived, release = threading.Event(), threading.Event()

    def handler(req):
        arrived.set()
        release.wait(10)
        return Reply(200, [], b"too late")

    up = upstreams("up", handler)
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    try:
        client = Client(port)
        client.send(b"GET /abandoned HTTP/1.1\r\nHost: svc.local\r\n\r\n")
        assert arrived.wait(10)
        client.abort()
        entry = proxy.wait_log(lambda e: e["path"] == "/abandoned")
    finally:
        release.set()
    assert entry["response_flags"] == "DC"
    up.wait(lambda: 1 in up.peer_closed, what="the proxy to drop the upstream request")
    proxy.wait_metric(lambda s: any(x.labels.get("response_flags") == "DC" for x in s))


def _disconnect_mid_body(upstreams, proxies, how: str):
    up = upstreams("up")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    client = Client(port)
    client.send(b"POST /half HTTP/1.1\r\nHost: svc.local\r\nContent-Length: 1000\r\n\r\n" + b"a" * 100)
    up.wait(lambda: up.heads, what="the request head to reach the upstream")
    client.abort() if how == "reset" else client.close()
    entry = proxy.wait_log(lambda e: e["path"] == "/half", timeout=5)
    assert entry["response_flags"] == "DC"
    assert entry["bytes_received"] == 100
    up.wait(lambda: 1 in up.peer_closed, what="the proxy to drop the upstream request")
    assert up.count() == 0  # the upstream never got a complete request


def test_downstream_reset_mid_request_body_is_dc(upstreams, proxies):
    _disconnect_mid_body(upstreams, proxies, "reset")


def test_downstream_close_mid_request_body_is_dc(upstreams, proxies):
    _disconnect_mid_body(upstreams, proxies, "close")


def test_invalid_upstream_response_is_502_upe(upstreams, proxies, via):
    up = upstreams("up", lambda req: Reply(raw=b"this is not HTTP\r\n\r\n"))
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    result = curl(port, "/", *via)
    assert result.status == 502
    assert_reported(proxy, 502, "UPE")


def test_retry_replays_a_chunked_body_with_trailers(upstreams, proxies):
    up = upstreams("up", sequence(Reply(503, [], b"busy"), then=Reply(200, [], b"ok")))
    port = free_port()
    proxies(http_mesh(port, {"v1": up}))
    with Client(port) as client:
        client.send(b"PUT /doc HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"4\r\nbody\r\n4\r\n-two\r\n0\r\nx-sum: 8\r\n\r\n")
        assert client.read().status == 200
    first, second = up.wait_requests(2)
    assert first.body == second.body == b"body-two"
    assert second.trailers == [("x-sum", "8")]


def test_body_beyond_the_replay_buffer_is_not_retried(upstreams, proxies):
    """Retries replay at most 64 KiB of request body; a PUT with more is answered with the
    upstream's 503 after one attempt."""
    up = upstreams("up", lambda req: Reply(503, [], b"busy"))
    port = free_port()
    proxies(http_mesh(port, {"v1": up}))
    with Client(port) as client:
        response = client.request("PUT", "/big", body=b"b" * (256 * 1024))
    assert response.status == 503
    assert up.count() == 1


def test_unusual_upstream_status_is_relayed_and_counted(upstreams, proxies, via):
    """llhttp accepts any three-digit status: the proxy relays a 999 and keeps counting, rather
    than failing while filing it under a status class."""
    up = upstreams("up", lambda req: Reply(999, [], b"odd", close=True))
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    assert curl(port, "/odd", *via).status == 999
    assert curl(port, "/after", *via).status == 999  # the proxy is still serving
    assert_reported(proxy, 999, "-", "/odd")


def test_switching_protocols_without_an_upgrade_request_is_502_upe(upstreams, proxies, via):
    """101 answers only a request that asked to upgrade; otherwise it is an upstream protocol
    error (Envoy's 502 too), and the client gets a clean answer."""
    up = upstreams("up", lambda req: Reply(101, [], b"", close=True))
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    assert curl(port, "/odd", *via).status == 502
    assert_reported(proxy, 502, "UPE", "/odd")
