"""Outlier detection on real sockets: one of three upstreams misbehaves, the proxy ejects it after
the configured consecutive failures, the client stops seeing its errors, and the host comes
back after the ejection time; with maxEjectionPercent, gateway errors, local-origin failures
(a closed port), minHealthPercent and a config reload in between.

Every wait polls the admin pages or the upstreams' counters, bounded in time and count."""

from __future__ import annotations

import pytest

from proxy_harness import HOST, Reply, curl, endpoint, free_port, http_mesh, service_entry, sidecar, wait_until
from proxy_harness import destination_rule

pytestmark = pytest.mark.timeout(90)

CLUSTER = "outbound|{port}||" + HOST
MAX_REQUESTS = 60  # bound on every request loop


def outlier(**fields) -> dict:
    # interval short so that returns are seen quickly; round robin so that every host gets turns
    fields.setdefault("interval", "50ms")
    fields.setdefault("baseEjectionTime", "30s")
    fields.setdefault("maxEjectionPercent", 100)
    return {"loadBalancer": {"simple": "ROUND_ROBIN"}, "outlierDetection": fields}


def flags(proxy, port: int, server_port: int) -> str:
    return proxy.clusters().get(f"{CLUSTER.format(port=port)}::127.0.0.1:{server_port}::health_flags", "")


def od_stat(proxy, port: int, name: str) -> int:
    return proxy.stats().get(f"cluster.{CLUSTER.format(port=port)}.outlier_detection.{name}", -1)


def statuses(port: int, n: int, via=("--http1.1",)) -> list[int]:
    return [curl(port, "/", *via).status for _ in range(n)]


def until_ejected(proxy, port: int, server_port: int, via=("--http1.1",)) -> list[int]:
    """Send requests until the host is ejected; the statuses the client saw on the way."""
    seen = []
    for _ in range(MAX_REQUESTS):
        if flags(proxy, port, server_port) == "/failed_outlier_check":
            return seen
        seen.append(curl(port, "/", *via).status)
    raise AssertionError(f"127.0.0.1:{server_port} not ejected after {MAX_REQUESTS} requests: {seen}")


@pytest.fixture
def three(upstreams):
    """Two good upstreams and one answering 500 to everything."""
    return upstreams("good1"), upstreams("good2"), upstreams("bad", lambda req: Reply(500, body=b"broken\n"))


def test_ejects_the_failing_host_and_takes_it_back_after_the_ejection_time(three, proxies, via):
    good1, good2, bad = three
    port = free_port()
    proxy = proxies(http_mesh(port, {"a": good1, "b": good2, "c": bad},
                              traffic_policy=outlier(consecutive5xxErrors=3, baseEjectionTime="1s")))
    seen = until_ejected(proxy, port, bad.port, via)
    assert bad.count() == 3  # ejected right at the third 500, not at a later sweep
    assert seen.count(500) == 3
    assert od_stat(proxy, port, "ejections_enforced_consecutive_5xx") == 1
    assert od_stat(proxy, port, "ejections_active") == 1

    assert statuses(port, 12, via) == [200] * 12  # the client's error rate is now zero
    assert bad.count() == 3

    wait_until(lambda: flags(proxy, port, bad.port) == "healthy", timeout=10, what="the host's return")
    assert od_stat(proxy, port, "ejections_active") == 0
    for _ in range(MAX_REQUESTS):  # back in the rotation
        if bad.count() > 3:
            break
        curl(port, "/", *via)
    assert bad.count() > 3
    assert "outlier detection: ejected 127.0.0.1:%d" % bad.port in proxy.stderr()
    assert "outlier detection: 127.0.0.1:%d returns" % bad.port in proxy.stderr()


def test_max_ejection_percent_limits_ejections(upstreams, proxies):
    good = upstreams("good")
    bad1, bad2 = (upstreams(n, lambda req: Reply(500)) for n in ("bad1", "bad2"))
    port = free_port()
    proxy = proxies(http_mesh(port, {"a": good, "b": bad1, "c": bad2},
                              traffic_policy=outlier(consecutive5xxErrors=2, maxEjectionPercent=50)))
    for _ in range(MAX_REQUESTS):
        if od_stat(proxy, port, "ejections_overflow") >= 1:
            break
        curl(port, "/")
    assert od_stat(proxy, port, "ejections_enforced_total") == 1  # a second would be 2 of 3 > 50%
    assert od_stat(proxy, port, "ejections_overflow") >= 1
    ejected = [flags(proxy, port, s.port) for s in (bad1, bad2)]
    assert sorted(ejected) == ["/failed_outlier_check", "healthy"]


def test_istios_default_ten_percent_ejects_none_of_three(three, proxies):
    """Envoy ejects only while (ejected + 1) / hosts <= maxEjectionPercent."""
    good1, good2, bad = three
    port = free_port()
    policy = outlier(consecutive5xxErrors=1)
    del policy["outlierDetection"]["maxEjectionPercent"]
    proxy = proxies(http_mesh(port, {"a": good1, "b": good2, "c": bad}, traffic_policy=policy))
    statuses(port, 9)
    assert bad.count() == 3
    assert flags(proxy, port, bad.port) == "healthy"
    assert od_stat(proxy, port, "ejections_overflow") == 3


@pytest.mark.parametrize("status, ejected", [(500, False), (502, True)])
def test_gateway_errors_count_502_503_504_only(upstreams, proxies, status, ejected):
    good = upstreams("good")
    bad = upstreams("bad", lambda req: Reply(status))
    port = free_port()
    proxy = proxies(http_mesh(port, {"a": good, "b": bad},
                              traffic_policy=outlier(consecutive5xxErrors=0, consecutiveGatewayErrors=2)))
    statuses(port, 8)
    assert bad.count() == (2 if ejected else 4)
    assert flags(proxy, port, bad.port) == ("/failed_outlier_check" if ejected else "healthy")
    assert od_stat(proxy, port, "ejections_enforced_consecutive_gateway_failure") == int(ejected)


def _closed_port_mesh(port: int, good, closed: int, policy: dict) -> list[dict]:
    return [
        service_entry(port, [endpoint(good, {"version": "a"}), endpoint(closed, {"version": "b"})]),
        destination_rule(traffic_policy=policy),
        sidecar((port, "HTTP")),
    ]


@pytest.mark.parametrize("split", [False, True])
def test_connect_failures_eject_a_closed_port(upstreams, proxies, split):
    """Local-origin failures: as 503s (5xx and gateway) without the split, on their own counter with it."""
    good = upstreams("good")
    closed = free_port()  # nothing listens: connection refused
    port = free_port()
    fields = {"consecutive5xxErrors": 2}
    if split:
        fields = {"consecutive5xxErrors": 0, "splitExternalLocalOriginErrors": True, "consecutiveLocalOriginFailures": 2}
    proxy = proxies(_closed_port_mesh(port, good, closed, outlier(**fields)))
    seen = until_ejected(proxy, port, closed)
    kind = "consecutive_local_origin_failure" if split else "consecutive_5xx"
    assert od_stat(proxy, port, f"ejections_enforced_{kind}") == 1
    assert set(seen) <= {200, 503}  # connect failures are retried on the good host by default
    assert statuses(port, 6) == [200] * 6


def test_below_min_health_percent_every_host_takes_traffic(upstreams, proxies):
    good = upstreams("good")
    bad1, bad2 = (upstreams(n, lambda req: Reply(500)) for n in ("bad1", "bad2"))
    port = free_port()
    proxy = proxies(http_mesh(port, {"a": good, "b": bad1, "c": bad2},
                              traffic_policy=outlier(consecutive5xxErrors=1, minHealthPercent=50)))
    for _ in range(MAX_REQUESTS):
        if od_stat(proxy, port, "ejections_active") == 2:
            break
        curl(port, "/")
    assert od_stat(proxy, port, "ejections_active") == 2  # 1 of 3 healthy: 33% < 50%: panic
    before = bad1.count() + bad2.count()
    assert 500 in statuses(port, 6)
    assert bad1.count() + bad2.count() > before


def test_ejection_survives_a_config_reload(three, proxies):
    good1, good2, bad = three
    port = free_port()
    versions = {"a": good1, "b": good2, "c": bad}
    proxy = proxies(http_mesh(port, versions, traffic_policy=outlier(consecutive5xxErrors=2)))
    until_ejected(proxy, port, bad.port)
    changed = outlier(consecutive5xxErrors=3)  # the cluster changes, its hosts stay
    proxy.write_config(http_mesh(port, versions, traffic_policy=changed))
    wait_until(lambda: '"consecutive_5xx": 3' in proxy.admin("/config_dump")[2].decode(), timeout=10,
               what="the new configuration")
    assert flags(proxy, port, bad.port) == "/failed_outlier_check"
    assert od_stat(proxy, port, "ejections_active") == 1
    assert statuses(port, 6) == [200] * 6
    assert bad.count() == 2


def test_a_subsets_outlier_detection_applies_to_its_cluster_only(three, proxies):
    good1, good2, bad = three
    port = free_port()
    resources = http_mesh(port, {"a": good1, "c": bad})
    rule = resources[1]["spec"]
    rule["subsets"][1]["trafficPolicy"] = {"outlierDetection": {"consecutive5xxErrors": 1, "maxEjectionPercent": 100}}
    proxy = proxies(resources)
    subset_cluster = f"outbound|{port}|c|{HOST}"
    clusters = proxy.clusters()
    assert clusters[f"{subset_cluster}::127.0.0.1:{bad.port}::health_flags"] == "healthy"
    assert f"cluster.{subset_cluster}.outlier_detection.ejections_active" in proxy.stats()
    assert not any(k.startswith(f"cluster.{CLUSTER.format(port=port)}.outlier") for k in proxy.stats())
