"""Circuit breaking from DestinationRule connectionPool (Envoy's cluster circuit breakers), on real
sockets: an upstream that holds every request until the test lets it go, so what overflows is seen
to overflow at once (answered while the upstream still holds the others), over HTTP/1.1 and h2c."""

from __future__ import annotations

import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from proxy_harness import (HOST, LOCALHOST, Reply, curl, destination_rule, endpoint, free_port, free_ports, http_mesh,
                           service_entry, sidecar, total, wait_until)

pytestmark = pytest.mark.timeout(90)


class Gate:
    """An upstream handler holding each request until `open()`; `held` counts the ones waiting.
    A path under /fail is answered 503 at once the first time it arrives (then held: a retry)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.held = 0
        self.seen: dict[str, int] = {}
        self.opened = threading.Event()

    def __call__(self, request) -> Reply:
        with self.cond:
            seen = self.seen[request.path] = self.seen.get(request.path, 0) + 1
        if request.path.startswith("/fail") and seen == 1:
            return Reply(503, [], b"failing")
        with self.cond:
            self.held += 1
            self.cond.notify_all()
        self.opened.wait(60)
        return Reply(200, [], b"ok")

    def wait_held(self, n: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.held >= n, 20), f"{n} requests held at the upstream"

    def open(self) -> None:
        self.opened.set()


def pool(tcp: dict | None = None, http: dict | None = None) -> dict:
    return {"connectionPool": {k: v for k, v in (("tcp", tcp), ("http", http)) if v}}


def in_parallel(count: int, call) -> list:
    """`call(i)` on `count` threads at once; the futures, in order."""
    executor = ThreadPoolExecutor(count)
    futures = [executor.submit(call, i) for i in range(count)]
    executor.shutdown(wait=False)
    return futures


def test_istio_circuit_breaking_task(upstreams, proxies, via):
    """Istio's task: tcp.maxConnections 1, http1MaxPendingRequests 1, maxRequestsPerConnection 1,
    20 concurrent clients: one request at the upstream, one waiting, the other 18 are 503 UO
    at once, and the overflow counter says 18."""
    gate = Gate()
    up = upstreams("up", gate)
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}, traffic_policy=pool(
        {"maxConnections": 1}, {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1})))
    futures = in_parallel(20, lambda i: curl(port, f"/r{i}", *via))
    gate.wait_held(1)
    overflowed = wait_until(lambda: [f.result() for f in futures if f.done()] if sum(f.done() for f in futures) >= 18 else None,
                            timeout=30, what="18 overflowed requests answered while the upstream holds one")
    assert [r.status for r in overflowed] == [503] * 18
    assert all(b"overflow" in r.body for r in overflowed)
    assert gate.held == 1  # the other one waits for the connection: the limit is one
    gate.open()
    statuses = sorted(f.result().status for f in futures)
    assert statuses == [200] * 2 + [503] * 18
    assert proxy.stat("upstream_rq_pending_overflow") == 18
    assert up.open_connections() <= 1
    proxy.wait_metric(lambda s: total(s, response_flags="UO", response_code="503") == 18, what="18 UO in istio_requests_total")


def test_waiting_requests_are_served_in_turn_on_the_one_connection(upstreams, proxies):
    """maxConnections 1 and no pending limit: everything queues and everything is served, one
    at a time, on one connection (Istio's default pending limit is 2^32-1)."""
    gate = Gate()
    up = upstreams("up", gate)
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}, traffic_policy=pool({"maxConnections": 1})))
    futures = in_parallel(6, lambda i: curl(port, f"/q{i}"))
    gate.wait_held(1)
    wait_until(lambda: proxy.stat("upstream_rq_pending_active") == 5, what="5 requests pending")
    assert gate.held == 1
    gate.open()
    assert [f.result().status for f in futures] == [200] * 6
    assert len({r.conn for r in up.wait_requests(6)}) == 1
    assert proxy.stat("upstream_cx_overflow") >= 1
    assert proxy.stat("upstream_rq_pending_overflow") == 0


def test_http2_max_requests_limits_requests_in_flight(upstreams, proxies, via):
    gate = Gate()
    up = upstreams("up", gate)
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}, traffic_policy=pool(http={"http2MaxRequests": 2})))
    futures = in_parallel(2, lambda i: curl(port, f"/a{i}", *via))
    gate.wait_held(2)
    third = curl(port, "/third", *via)
    assert third.status == 503
    assert proxy.wait_log(lambda e: e["path"] == "/third")["response_flags"] == "UO"
    gate.open()
    assert [f.result().status for f in futures] == [200, 200]
    assert proxy.stat("upstream_rq_pending_overflow") == 1
    assert curl(port, "/after", *via).status == 200  # the count went back down


def test_max_retries_bounds_the_retries_in_flight(upstreams, proxies):
    """maxRetries 1: the first failing request's retry is held upstream; the second request's
    retry would be a second in flight, so its 503 stands, at once (upstream_rq_retry_overflow)."""
    gate = Gate()
    up = upstreams("up", gate)
    port = free_port()
    retry = {"attempts": 2, "retryOn": "5xx"}
    routes = [{"match": [{"uri": {"prefix": "/fail"}}], "route": [{"destination": {"host": "svc.local", "subset": "v1"}}],
               "retries": retry}]
    proxy = proxies(http_mesh(port, {"v1": up}, http=routes, traffic_policy=pool(http={"maxRetries": 1})))
    first = in_parallel(1, lambda i: curl(port, "/fail/retried"))[0]
    gate.wait_held(1)  # /fail/retried: its retry (the second attempt) is held
    second = curl(port, "/fail/once")
    assert second.status == 503 and second.body == b"failing"
    assert proxy.stat("upstream_rq_retry_overflow") == 1
    gate.open()
    assert first.result().status == 200


def test_max_connection_duration_replaces_old_connections(upstreams, proxies):
    up = upstreams("up")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}, traffic_policy=pool({"maxConnectionDuration": "200ms"})))

    def on_a_new_connection():
        assert curl(port, "/d").status == 200
        return len({r.conn for r in up.requests}) >= 2
    wait_until(on_a_new_connection, timeout=10, interval=0.05, what="a request on a second upstream connection")
    assert proxy.stat("upstream_cx_max_duration_reached") >= 1


def test_tcp_keepalive_is_set_on_upstream_connections(upstreams, proxies):
    up = upstreams("up")
    port = free_port()
    proxies(http_mesh(port, {"v1": up}, traffic_policy=pool({"tcpKeepalive": {"time": "7s", "interval": "3s", "probes": 4}})))
    assert curl(port, "/k").status == 200
    ss = subprocess.run(["ss", "-tnoH", "state", "established", f"dport = :{up.port}"], capture_output=True, text=True)
    assert "keepalive" in ss.stdout, ss.stdout  # the kernel's keepalive timer runs on it


def test_no_limits_by_default(upstreams, proxies):
    gate = Gate()
    up = upstreams("up", gate)
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    futures = in_parallel(8, lambda i: curl(port, f"/n{i}"))
    gate.wait_held(8)  # all eight at the upstream at once, each on its own connection
    gate.open()
    assert [f.result().status for f in futures] == [200] * 8
    assert proxy.stat("upstream_rq_pending_overflow") == 0


def test_refused_connections_give_their_slot_back(proxies):
    """A refused connect counts as a connection while it is tried, and not after: with
    maxConnections 1 the next request is tried again (503 UF, not UO)."""
    port, dead = free_port(), free_port()
    proxy = proxies([service_entry(port, [endpoint(dead)]), sidecar((port, "HTTP")),
                     destination_rule(traffic_policy=pool({"maxConnections": 1}))])
    for _ in range(3):
        assert curl(port, "/").status == 503
    assert proxy.stat("upstream_cx_active") == 0
    assert proxy.stat("upstream_rq_pending_overflow") == 0
    entries = wait_until(lambda: len(proxy.log_entries()) >= 3 and proxy.log_entries(), what="3 access log lines")
    assert {e["response_flags"] for e in entries} == {"UF,URX"}


def test_port_level_settings_give_each_port_its_own_pool(upstreams, proxies, via):
    """One service, two ports on one upstream: portLevelSettings limits the first port to one
    connection and one pending request; the second port keeps the rule's (no limits)."""
    gate = Gate()
    up = upstreams("up", gate)
    limited, free = free_ports(2)
    dr = destination_rule(traffic_policy={
        "loadBalancer": {"simple": "RANDOM"},
        "portLevelSettings": [{"port": {"number": limited}, **pool({"maxConnections": 1}, {"http1MaxPendingRequests": 1})}],
    })
    service = service_entry([(limited, "http-limited"), (free, "http-free")],
                            [{"address": LOCALHOST, "ports": {"http-limited": up.port, "http-free": up.port}}])
    proxy = proxies([service, dr, sidecar((limited, "HTTP"), (free, "HTTP"))])
    futures = in_parallel(5, lambda i: curl(limited, f"/l{i}", *via))
    gate.wait_held(1)
    wait_until(lambda: sum(f.done() for f in futures) >= 3, timeout=30, what="3 overflowed requests answered")
    on_free = in_parallel(5, lambda i: curl(free, f"/f{i}", *via))
    gate.wait_held(6)  # all five of the other port at the upstream at once
    gate.open()
    assert sorted(f.result().status for f in futures) == [200] * 2 + [503] * 3
    assert [f.result().status for f in on_free] == [200] * 5
    stats = proxy.stats()
    assert stats[f"cluster.outbound|{limited}||{HOST}.upstream_rq_pending_overflow"] == 3
    assert stats[f"cluster.outbound|{free}||{HOST}.upstream_rq_pending_overflow"] == 0
