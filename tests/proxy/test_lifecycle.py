"""Process lifecycle: SIGTERM drains without losing a request that reached the upstream, an
in-flight request finishes, and --concurrency N runs N workers that all serve and all stop."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from proxy_harness import (
    Client, Load, Reply, children, free_port, http_get, http_mesh, samples, tcp_mesh, total, wait_until,
)

pytestmark = pytest.mark.timeout(90)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_under_load_answers_every_request_that_reached_the_upstream(upstreams, proxies):
    up = upstreams("up", lambda req: Reply(200, [("x-upstream", "up")], req.header("x-request-id").encode()))
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}), drain_timeout=5)
    load = Load(port, clients=6, max_requests=20000).start()
    try:
        load.wait(lambda o: all(len(c) >= 30 for c in o), what="traffic on every connection")
        proxy.signal(signal.SIGTERM)
        assert proxy.wait_exit(15) == 0
    finally:
        load.stop()
    answered = {o.request_id for o in load.all() if o.status == 200}
    failed = [o for o in load.all() if o.status != 200]
    assert all(o.error for o in failed), failed  # only transport errors, never an error status
    with up.cond:
        reached = {r.header("x-request-id") for r in up.requests}
    lost = reached - answered
    assert not lost, f"{len(lost)} requests reached the upstream but got no response: {sorted(lost)[:5]}"
    assert answered <= reached
    assert len(answered) >= 6 * 30


def test_sigterm_lets_an_in_flight_request_finish(upstreams, proxies):
    arrived, release = threading.Event(), threading.Event()

    def handler(req):
        if req.path == "/slow":
            arrived.set()
            release.wait(10)
            return Reply(200, [], b"slow but complete")
        return Reply(200, [], b"fast")

    up = upstreams("up", handler)
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}), drain_timeout=10)
    with Client(port) as idle, Client(port, timeout=20) as busy:
        assert idle.request("GET", "/").status == 200  # an idle keep-alive connection
        busy.send(b"GET /slow HTTP/1.1\r\nHost: svc.local\r\n\r\n")
        assert arrived.wait(10)
        proxy.signal(signal.SIGTERM)
        assert idle.closed_by_peer(), "an idle connection stays open while draining"
        wait_until(lambda: http_get(proxy.admin_port, "/ready")[0] == 503, 5, what="/ready to report draining")
        assert proxy.running()
        release.set()
        response = busy.read()
        assert response.status == 200
        assert response.body == b"slow but complete"
        assert response.header("connection") == "close"
    assert proxy.wait_exit(10) == 0


def test_concurrency_two_workers_serve_count_and_stop(upstreams, proxies):
    up = upstreams("up")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}), concurrency=2)
    workers = wait_until(lambda: children(proxy.pid) if len(children(proxy.pid)) == 2 else None, 10,
                         what="two worker processes")
    sent = 200
    for i in range(sent):  # a new connection each time: the kernel spreads them over the workers
        with Client(port) as client:
            assert client.request("GET", f"/r{i}").status == 200
    up.wait_requests(sent)
    # each worker keeps its own pooled upstream connection: two connections = both served
    assert up.accepted == 2
    requests_total = proxy.wait_metric(lambda s: total(s) == sent and s, what=f"istio_requests_total == {sent}")
    assert total(requests_total, response_code="200") == sent
    # the admin port serves the same total
    assert total(samples(proxy.prometheus(proxy.admin_port), "istio_requests_total")) == sent
    assert proxy.stop(15) == 0
    for pid in workers:
        wait_until(lambda: not alive(pid), 5, what=f"worker {pid} to exit")


def test_concurrency_two_sigterm_under_load(upstreams, proxies):
    up = upstreams("up", lambda req: Reply(200, [("x-upstream", "up")], b"ok"))
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}), concurrency=2, drain_timeout=5)
    load = Load(port, clients=4, max_requests=20000).start()
    try:
        load.wait(lambda o: all(len(c) >= 20 for c in o), what="traffic on every connection")
        assert proxy.stop(15) == 0
    finally:
        load.stop()
    with up.cond:
        reached = {r.header("x-request-id") for r in up.requests}
    answered = {o.request_id for o in load.all() if o.status == 200}
    assert reached <= answered


def test_drain_timeout_bounds_a_stuck_request(upstreams, proxies):
    release = threading.Event()
    arrived = threading.Event()

    def handler(req):
        arrived.set()
        release.wait(30)
        return Reply(200, [], b"never seen")

    up = upstreams("up", handler)
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}), drain_timeout=1)
    try:
        with Client(port, timeout=20) as client:
            client.send(b"GET /stuck HTTP/1.1\r\nHost: svc.local\r\n\r\n")
            assert arrived.wait(10)
            proxy.signal(signal.SIGTERM)
            assert proxy.wait_exit(15) == 0
            assert client.closed_by_peer(5)
    finally:
        release.set()


def test_sigterm_with_an_open_tcp_connection(upstreams, proxies):
    server = upstreams.tcp("echo")
    port = free_port()
    proxy = proxies(tcp_mesh(port, server), drain_timeout=1)
    with Client(port) as client:
        client.send(b"ping")
        assert client.reader.read_exact(4) == b"ping"
        proxy.signal(signal.SIGTERM)
        assert proxy.wait_exit(15) == 0
        assert client.closed_by_peer(5)


def test_concurrency_restarts_a_dead_worker(upstreams, proxies):
    up = upstreams("up")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}), concurrency=2)
    workers = wait_until(lambda: children(proxy.pid) if len(children(proxy.pid)) == 2 else None, 10,
                         what="two worker processes")
    victim = sorted(workers)[0]
    os.kill(victim, signal.SIGKILL)
    replaced = wait_until(lambda: (lambda now: now if len(now) == 2 and victim not in now else None)(children(proxy.pid)),
                          10, what="a new worker in place of the killed one")
    assert replaced != workers
    for _ in range(20):
        with Client(port) as client:
            assert client.request("GET", "/").status == 200
    assert proxy.stop(15) == 0
