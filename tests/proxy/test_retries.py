"""Retries as Istio configures Envoy's, against upstreams that fail on purpose: every retryOn value,
the host a retry goes to, x-envoy-attempt-count upstream and in the access log, Envoy's retry
stats, and a retry storm held within the retry budget."""

from __future__ import annotations

import threading

import pytest

from proxy_harness import (
    Client, Reply, curl, destination_rule, endpoint, free_port, http_mesh, inbound_mesh, samples, sequence, service_entry,
    sidecar, to_subset, virtual_service, wait_until,
)

pytestmark = pytest.mark.timeout(90)


def retrying(port: int, server, retries: dict) -> list[dict]:
    return http_mesh(port, {"v1": server}, [{"route": [to_subset("v1")], "retries": retries}])


def two_hosts(port: int, bad, good, retries: dict | None = None, traffic_policy: dict | None = None) -> list[dict]:
    """One service with two endpoints (no subsets), round robin unless told otherwise."""
    resources = [
        service_entry(port, [endpoint(bad), endpoint(good)]),
        destination_rule(traffic_policy=traffic_policy or {"loadBalancer": {"simple": "ROUND_ROBIN"}}),
        sidecar((port, "HTTP")),
    ]
    if retries is not None:
        resources.insert(2, virtual_service([{"route": [{"destination": {"host": "svc.local"}}], "retries": retries}]))
    return resources


OK = Reply(200, [], b"ok")
RETRY_HEADER_NAMES = ("-H", "x-envoy-retriable-header-names: X-Upstream-Retry, x-other")

# (retryOn, the failing answer, curl arguments): retried once, then 200.
RETRIED = [
    ("5xx", Reply(500, [], b"e"), ()),
    ("gateway-error", Reply(504, [], b"e"), ()),
    ("reset", Reply(action="reset"), ()),
    ("reset", Reply(action="close"), ()),
    ("retriable-4xx", Reply(409, [], b"conflict"), ()),
    ("retriable-status-codes,418", Reply(418, [], b"teapot"), ()),
    ("418", Reply(418, [], b"teapot"), ()),  # bare code: Istio adds retriable-status-codes
    ("retriable-headers", Reply(200, [("x-upstream-retry", "1")], b"try again"), RETRY_HEADER_NAMES),
    ("retriable-headers", Reply(500, [("x-other", "y")], b"try again"), RETRY_HEADER_NAMES),
    ("envoy-ratelimited", Reply(429, [("x-envoy-ratelimited", "true")], b"limited"), ()),
]


@pytest.mark.parametrize("retry_on, failure, args", RETRIED, ids=lambda v: v if isinstance(v, str) else None)
def test_each_retry_on_value_retries_its_failure(upstreams, proxies, via, retry_on, failure, args):
    up = upstreams("up", sequence(failure, then=OK))
    port = free_port()
    proxy = proxies(retrying(port, up, {"attempts": 2, "retryOn": retry_on, "backoff": "1ms"}))
    result = curl(port, "/", *via, *args)
    assert (result.status, result.body) == (200, b"ok")
    first, second = up.wait_requests(2)
    assert [first.header("x-envoy-attempt-count"), second.header("x-envoy-attempt-count")] == ["1", "2"]
    assert second.header("x-envoy-retriable-header-names") is None  # consumed, as Envoy's router does
    entry = proxy.wait_log(lambda e: e["path"] == "/")
    assert (entry["response_code"], entry["response_flags"], entry["upstream_request_attempt_count"]) == (200, "-", 2)
    assert proxy.stat("upstream_rq_retry") == 1
    assert proxy.stat("upstream_rq_retry_success") == 1
    assert proxy.stat("upstream_rq_retry_backoff_exponential") == 1


# (retryOn, answer, curl arguments): not retried; the answer stands.
NOT_RETRIED = [
    ("5xx", Reply(409, [], b"conflict"), ()),
    ("gateway-error", Reply(500, [], b"e"), ()),
    ("retriable-4xx", Reply(429, [], b"slow down"), ()),
    ("retriable-headers", Reply(500, [("x-upstream-retry", "1")], b"e"), ()),  # the request named no header
    ("envoy-ratelimited", Reply(429, [], b"limited"), ()),  # without x-envoy-ratelimited: true
    ("envoy-ratelimited,5xx", Reply(503, [], b"e"), ()),  # Envoy: this token alone decides responses
    ("connect-failure", Reply(503, [], b"e"), ()),
    ("http3-post-connect-failure", Reply(action="reset"), ()),  # accepted, never fires without HTTP/3
]


@pytest.mark.parametrize("retry_on, answer, args", NOT_RETRIED, ids=lambda v: v if isinstance(v, str) else None)
def test_answers_a_retry_on_value_does_not_cover_stand(upstreams, proxies, via, retry_on, answer, args):
    up = upstreams("up", sequence(answer, then=OK))
    port = free_port()
    proxy = proxies(retrying(port, up, {"attempts": 2, "retryOn": retry_on}))
    result = curl(port, "/", *via, *args)
    assert result.status == (answer.status if answer.action is None else 503)
    entry = proxy.wait_log(lambda e: e["path"] == "/")
    assert entry["upstream_request_attempt_count"] == 1
    assert up.count() == 1
    assert proxy.stat("upstream_rq_retry") == 0


def test_reset_before_request_retries_a_connect_failure_but_not_a_reset_after_sending(upstreams, proxies, via):
    reset = upstreams("reset", lambda req: Reply(action="reset"))
    good = upstreams("good")
    port, dead = free_port(), free_port()
    proxy = proxies(two_hosts(port, dead, good, {"attempts": 1, "retryOn": "reset-before-request"}))
    assert curl(port, "/a", *via).status == 200  # round robin starts on the dead host: retried
    assert curl(port, "/b", *via).status == 200
    assert good.count() == 2
    port2 = free_port()
    proxy2 = proxies(retrying(port2, reset, {"attempts": 2, "retryOn": "reset-before-request"}))
    assert curl(port2, "/c", *via).status == 503
    assert reset.count() == 1  # the request went out: not "before request"
    assert proxy2.wait_log(lambda e: e["path"] == "/c")["response_flags"] == "UC"
    assert proxy.stat("upstream_cx_connect_fail") >= 1


def test_exhausted_retries_count_limit_exceeded(upstreams, proxies, via):
    up = upstreams("up", lambda req: Reply(503, [], b"down"))
    port = free_port()
    proxy = proxies(retrying(port, up, {"attempts": 3, "retryOn": "5xx", "backoff": "1ms"}))
    result = curl(port, "/", *via)
    assert (result.status, result.body) == (503, b"down")
    assert [r.header("x-envoy-attempt-count") for r in up.wait_requests(4)] == ["1", "2", "3", "4"]
    entry = proxy.wait_log(lambda e: e["path"] == "/")
    assert (entry["response_flags"], entry["upstream_request_attempt_count"]) == ("URX", 4)
    assert proxy.stat("upstream_rq_retry") == 3
    assert proxy.stat("upstream_rq_retry_limit_exceeded") == 1
    assert proxy.stat("upstream_rq_retry_success") == 0


def test_a_client_attempt_count_is_replaced_outbound(upstreams, proxies, via):
    up = upstreams("up")
    port = free_port()
    proxies(http_mesh(port, {"v1": up}))
    assert curl(port, "/", *via, "-H", "x-envoy-attempt-count: 7").status == 200
    assert up.wait_requests(1)[0].header_all("x-envoy-attempt-count") == ["1"]


# --- inbound: Istio's inbound routes carry no retry policy -----------------------------------------


def test_the_inbound_side_passes_the_apps_503_through_once(upstreams, proxies, via):
    """Istio builds inbound routes without a retry policy (BuildDefaultHTTPInboundRoute): the app's
    503 reaches the caller after one request; only the caller's (outbound) sidecar retries it."""
    app = upstreams("app", sequence(Reply(503, [], b"busy"), then=OK))
    inbound_port = free_port()
    inbound = proxies(inbound_mesh(inbound_port, app), labels="app=reviews")
    result = curl(inbound_port, "/once", *via)
    assert (result.status, result.body) == (503, b"busy")
    assert app.count() == 1 and inbound.stat("upstream_rq_retry") == 0
    # through the caller's sidecar: Istio's default outbound policy retries the 503 once, and the
    # inbound side forwards each attempt once
    port = free_port()
    outbound = proxies([service_entry(port, [endpoint(inbound_port)]), sidecar((port, "HTTP"))])
    app.handler = sequence(Reply(503, [], b"busy"), then=OK)
    assert curl(port, "/twice", *via).status == 200
    assert app.count() == 3 and outbound.stat("upstream_rq_retry") == 1 and inbound.stat("upstream_rq_retry") == 0


# --- which host a retry goes to -------------------------------------------------------------------


def test_a_retry_goes_to_the_other_host(upstreams, proxies, via):
    """Istio's default previous_hosts predicate: with one of two hosts failing, every request
    succeeds; without it a random retry would land on the failing host again half the time."""
    bad = upstreams("bad", lambda req: Reply(503, [], b"bad"))
    good = upstreams("good")
    port = free_port()
    proxy = proxies(two_hosts(port, bad, good, traffic_policy={"loadBalancer": {"simple": "RANDOM"}}),
                    extra_args=["--random-seed", "7"])
    with Client(port) as client:
        statuses = [client.request("GET", f"/{i}").status for i in range(40)]
    assert statuses == [200] * 40
    assert good.count() == 40
    assert bad.count() == proxy.stat("upstream_rq_retry") > 5  # each 503 retried once, elsewhere
    assert curl(port, "/last", *via).status == 200


def test_retry_ignore_previous_hosts_false_may_retry_the_same_host(upstreams, proxies):
    bad = upstreams("bad", lambda req: Reply(503, [], b"bad"))
    good = upstreams("good")
    port = free_port()
    proxies(two_hosts(port, bad, good, {"attempts": 1, "retryOn": "503", "retryIgnorePreviousHosts": False},
                      {"loadBalancer": {"simple": "RANDOM"}}), extra_args=["--random-seed", "7"])
    with Client(port) as client:
        statuses = [client.request("GET", f"/{i}").status for i in range(60)]
    assert 503 in statuses  # a retry on the same (bad) host: ~1/4 of the requests


# --- the retry budget -----------------------------------------------------------------------------


def test_retry_storm_stays_within_the_retry_budget(upstreams, proxies):
    """All endpoints failing, N concurrent requests: first attempts answer 503 once all N have
    arrived, retries hang until released. Retries in flight are bounded by the budget:
    r <= 20% of (N + r) requests in flight, so r <= 7 of 30 (Envoy's formula); without the
    budget every request would retry. Those refused are 503 UO and upstream_rq_retry_overflow."""
    n = 30
    arrived = threading.Barrier(n, timeout=20)
    release = threading.Event()

    def handler(req):
        if req.header("x-envoy-attempt-count") == "1":
            arrived.wait()
            return Reply(503, [], b"down")
        release.wait(30)
        return Reply(200, [], b"recovered")

    up = upstreams("up", handler)
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}, [{"route": [to_subset("v1")],
                                                "retries": {"attempts": 5, "retryOn": "5xx", "backoff": "1ms"}}],
                              traffic_policy={"retryBudget": {"percent": 20, "minRetryConcurrency": 3}}))
    results: list = [None] * n

    def call(i):
        with Client(port, timeout=40) as client:
            results[i] = client.request("GET", f"/storm/{i}").status

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    def settled():
        refused = sum(x.value for x in samples(proxy.prometheus(), "istio_requests_total")
                      if x.labels.get("response_flags") == "UO")
        retried = up.count() - n
        return (retried, int(refused)) if retried + refused >= n else None

    try:
        retries, refused = wait_until(settled, 30, 0.1, "every request retried or refused")
    finally:
        release.set()
        for t in threads:
            t.join(40)
    assert refused == n - retries
    assert 3 <= retries <= 7
    assert results.count(200) == retries and results.count(503) == n - retries
    assert proxy.stat("upstream_rq_retry_overflow") == n - retries
    assert proxy.stat("upstream_rq_retry") == retries
    assert len(up.requests) == n + retries  # no second round: the retries succeeded


def test_max_retries_without_a_budget_still_limits(upstreams, proxies, via):
    up = upstreams("up", lambda req: Reply(503, [], b"down"))
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}, [{"route": [to_subset("v1")], "retries": {"attempts": 2}}],
                              traffic_policy={"connectionPool": {"http": {"maxRetries": 0}}}))
    assert curl(port, "/", *via).status == 503
    assert up.count() == 3  # 0 is Istio's "unset": no limit
    entry = proxy.wait_log(lambda e: e["path"] == "/")
    assert entry["response_flags"] == "URX"


def test_the_passthrough_route_has_no_retry_policy():
    """Istio's allow_any route (buildCatchAllVirtualHost) retries nothing: a 503 from a host
    outside the registry is the caller's to see, not retried by the default policy."""
    from pymesh.proxy.exchange import PASSTHROUGH_ROUTE

    assert PASSTHROUGH_ROUTE.retries is not None and PASSTHROUGH_ROUTE.retries.attempts == 0
