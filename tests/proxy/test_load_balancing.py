"""Load balancing end to end: generated hash cookies, LEAST_REQUEST around a slow host,
locality (distribute, failover) and PASSTHROUGH, on real upstreams and real sockets."""

from __future__ import annotations

import re
import threading
from collections import Counter

import pytest

from proxy_harness import (
    Reply, curl, default_reply, destination_rule, endpoint, free_port, http_mesh, service_entry, sidecar,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)


def served_by(result) -> str:
    return result.header("x-upstream") or ""


# --- httpCookie: the proxy generates the cookie -----------------------------------------------------


def test_generated_cookie_makes_a_client_stick_to_one_host(upstreams, proxies, via, tmp_path):
    ups = {name: upstreams(name) for name in ("a", "b", "c", "d")}
    port = free_port()
    policy = {"loadBalancer": {"consistentHash": {"httpCookie": {
        "name": "sticky", "ttl": "60s", "path": "/", "attributes": [{"name": "SameSite", "value": "Lax"}]}}}}
    proxy = proxies(http_mesh(port, ups, traffic_policy=policy))
    jar = tmp_path / "jar"
    first = curl(port, "/", *via, "-c", str(jar), "-b", str(jar))
    assert first.status == 200
    cookie = first.header("set-cookie")
    assert re.fullmatch(r'sticky="[0-9a-f]{16}"; Max-Age=60; Path=/; SameSite=Lax; HttpOnly', cookie), cookie
    hosts = {served_by(curl(port, "/", *via, "-c", str(jar), "-b", str(jar))) for _ in range(12)}
    assert hosts == {served_by(first)}  # every later request (new connections) went to the same host
    again = curl(port, "/", *via, "-b", str(jar))
    assert again.header("set-cookie") is None  # the request carried the cookie: nothing to set
    # Fresh clients (new connections, new source ports) get their own cookies and spread out.
    spread = {served_by(curl(port, "/", *via)) for _ in range(24)}
    assert len(spread) >= 2
    proxy.wait_log(lambda e: e["response_code"] == 200)


def test_cookie_without_ttl_is_not_generated(upstreams, proxies):
    up = upstreams("a")
    port = free_port()
    policy = {"loadBalancer": {"consistentHash": {"httpCookie": {"name": "sticky"}}}}
    proxies(http_mesh(port, {"a": up}, traffic_policy=policy))
    result = curl(port, "/")
    assert result.status == 200 and result.header("set-cookie") is None  # Envoy: no ttl, no cookie


# --- LEAST_REQUEST ----------------------------------------------------------------------------------


def test_least_request_avoids_the_host_that_is_still_busy(upstreams, proxies, via):
    release = threading.Event()

    def slow(req):
        release.wait(30)  # holds this request until the test lets go
        return Reply(200, [("x-upstream", "slow")], b"slow\n")

    ups = {"slow": upstreams("slow", slow), "fast": upstreams("fast")}
    port = free_port()
    proxies(http_mesh(port, ups, traffic_policy={"loadBalancer": {"simple": "LEAST_REQUEST"}}))
    held = []
    try:
        for _ in range(40):  # until one request is held by the slow host (each try ~50% likely)
            thread = threading.Thread(target=curl, args=(port, "/", *via))
            thread.start()
            held.append(thread)
            wait_until(lambda: ups["slow"].count() >= 1 or not thread.is_alive())
            if ups["slow"].count():
                break
            thread.join()
        assert ups["slow"].count() == 1
        # Two hosts: power of two choices compares both every time; slow has one active request.
        answers = Counter(served_by(curl(port, "/", *via)) for _ in range(20))
        assert answers == {"fast": 20}
        assert ups["slow"].count() == 1
    finally:
        release.set()
        for thread in held:
            thread.join(30)


# --- locality ---------------------------------------------------------------------------------------


def locality_mesh(port: int, local, remote, load_balancer: dict, extra_policy: dict | None = None) -> list[dict]:
    endpoints = [dict(endpoint(local, {"version": "local"}), locality="r1/z1/s1"),
                 dict(endpoint(remote, {"version": "remote"}), locality="r2/z1/s1")]
    policy = dict({"loadBalancer": load_balancer}, **(extra_policy or {}))
    return [service_entry(port, endpoints), destination_rule(traffic_policy=policy), sidecar((port, "HTTP"))]


@pytest.mark.parametrize("to, expected", [("r1/z1/*", "local"), ("r2/*", "remote")])
def test_distribute_sends_the_proxys_locality_where_it_says(upstreams, proxies, to, expected):
    local, remote = upstreams("local"), upstreams("remote")
    port = free_port()
    lb = {"localityLbSetting": {"distribute": [{"from": "r1/z1/*", "to": {to: 100}}]}}
    proxies(locality_mesh(port, local, remote, lb), extra_args=["--locality", "r1/z1/s1"])
    assert Counter(served_by(curl(port, "/")) for _ in range(12)) == {expected: 12}


def test_without_outlier_detection_locality_does_not_prioritise(upstreams, proxies):
    """Istio enables locality failover only with outlierDetection: here both hosts share traffic."""
    local, remote = upstreams("local"), upstreams("remote")
    port = free_port()
    proxies(locality_mesh(port, local, remote, {"simple": "ROUND_ROBIN"}),
            labels="topology.kubernetes.io/region=r1,topology.kubernetes.io/zone=z1,topology.istio.io/subzone=s1")
    assert set(served_by(curl(port, "/")) for _ in range(8)) == {"local", "remote"}


def test_locality_failover_when_local_hosts_fail(upstreams, proxies):
    failing = threading.Event()
    serve_local = default_reply("local")

    def local_handler(req):
        return Reply(503, [("x-upstream", "local")], b"down\n") if failing.is_set() else serve_local(req)

    local, remote = upstreams("local", local_handler), upstreams("remote")
    port = free_port()
    outlier = {"outlierDetection": {"consecutive5xxErrors": 1, "interval": "1s", "baseEjectionTime": "30s",
                                    "maxEjectionPercent": 100}}
    proxies(locality_mesh(port, local, remote, {"simple": "ROUND_ROBIN"}, outlier),
            extra_args=["--locality", "r1/z1/s1"])
    assert Counter(served_by(curl(port, "/")) for _ in range(8)) == {"local": 8}  # priority 0 only
    failing.set()
    curl(port, "/")  # one 503 ejects the local host
    assert Counter(served_by(curl(port, "/")) for _ in range(8)) == {"remote": 8}


# --- PASSTHROUGH ------------------------------------------------------------------------------------


def test_passthrough_without_a_captured_destination_is_503_uh(upstreams, proxies):
    up = upstreams("a")
    port = free_port()
    proxy = proxies(http_mesh(port, {"a": up}, traffic_policy={"loadBalancer": {"simple": "PASSTHROUGH"}}))
    result = curl(port, "/")
    assert result.status == 503
    assert proxy.wait_log(lambda e: e["response_code"] == 503)["response_flags"] == "UH"
    assert up.count() == 0
