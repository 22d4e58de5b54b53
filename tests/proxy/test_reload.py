"""Configuration reload under traffic: a rewritten file or SIGHUP moves the route from v1 to v2
without failing a request; a bad configuration is rejected with file:line and the old one keeps
serving."""

from __future__ import annotations

import os
import re
import signal
import threading

import pytest

from proxy_harness import Client, Load, Reply, curl, dump_yaml, free_port, http_mesh, to_subset, wait_until

pytestmark = pytest.mark.timeout(90)


def mesh_to(port: int, servers: dict, subset: str) -> list[dict]:
    return http_mesh(port, servers, [{"name": "main", "route": [to_subset(subset)]}])


@pytest.fixture
def v1_v2(upstreams):
    return {"v1": upstreams("v1"), "v2": upstreams("v2")}


def served_by(port: int) -> str:
    result = curl(port, "/")
    assert result.status == 200, result
    return result.header("x-upstream")


def run_switch(proxy, port: int, switch) -> None:
    """Keep-alive traffic on 4 connections; `switch()` once each client got 50 answers from v1;
    then traffic goes on until every client saw 20 answers from v2."""
    load = Load(port, clients=4, max_requests=20000).start()
    try:
        load.wait(lambda o: all(sum(x.upstream == "v1" for x in c) >= 50 for c in o) or any(x.error for c in o for x in c),
                  what="50 answers from v1 on every connection")
        switch()
        load.wait(lambda o: all(sum(x.upstream == "v2" for x in c) >= 20 for c in o) or any(x.error for c in o for x in c),
                  timeout=15, what="20 answers from v2 on every connection")
    finally:
        load.stop()
    outcomes = load.all()
    failed = [o for o in outcomes if o.status != 200]
    assert not failed, failed[:5]
    for per_client in load.outcomes:
        names = [o.upstream for o in per_client]
        first_v2 = names.index("v2")
        assert set(names[:first_v2]) == {"v1"}
        assert set(names[first_v2:]) == {"v2"}, "an old route answered after the new one"
    assert len(outcomes) >= 4 * 70


def test_file_change_reloads_without_failing_requests(proxies, v1_v2):
    port = free_port()
    proxy = proxies(mesh_to(port, v1_v2, "v1"))
    run_switch(proxy, port, lambda: proxy.write_config(mesh_to(port, v1_v2, "v2")))
    assert "configuration version" in proxy.stderr()


def test_sighup_reloads_without_failing_requests(proxies, v1_v2):
    """The file is rewritten with the same size and modification time, so only SIGHUP can
    make the proxy notice."""
    port = free_port()
    proxy = proxies(mesh_to(port, v1_v2, "v1"))
    before = os.stat(proxy.config_path)

    def switch():
        proxy.write_config(mesh_to(port, v1_v2, "v2"))
        os.utime(proxy.config_path, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert os.stat(proxy.config_path).st_size == before.st_size
        proxy.signal(signal.SIGHUP)

    run_switch(proxy, port, switch)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def _assert_rejected_then_recovers(proxy, port, servers, bad_text: str, line: int | None) -> None:
    load = Load(port, clients=2, max_requests=20000).start()
    try:
        load.wait(lambda o: all(len(c) >= 20 for c in o), what="traffic before the bad config")
        proxy.write_config(bad_text)
        wait_until(lambda: "configuration rejected" in proxy.stderr(), 10, what="the rejection in stderr")
        with load.cond:
            counts = [len(c) for c in load.outcomes]
        load.wait(lambda o: all(len(c) >= n + 20 for c, n in zip(o, counts)), what="traffic after the bad config")
    finally:
        load.stop()
    outcomes = load.all()
    assert all(o.status == 200 and o.upstream == "v1" for o in outcomes), [o for o in outcomes if o.status != 200][:5]
    stderr = proxy.stderr()
    location = re.escape(str(proxy.config_path)) + (f":{line}\\b" if line else r":\d+")
    assert re.search(location, stderr), stderr
    assert proxy.running()
    assert served_by(port) == "v1"
    # a good configuration afterwards is applied
    proxy.write_config(mesh_to(port, servers, "v2"))
    wait_until(lambda: served_by(port) == "v2", 10, 0.1, "the next good configuration to apply")


def test_invalid_yaml_is_rejected_and_old_config_keeps_serving(proxies, v1_v2):
    port = free_port()
    proxy = proxies(mesh_to(port, v1_v2, "v1"))
    bad = dump_yaml(mesh_to(port, v1_v2, "v2")).replace("hosts:\n", "hosts: [unclosed\n", 1)
    _assert_rejected_then_recovers(proxy, port, v1_v2, bad, None)


def test_invalid_field_is_rejected_with_its_line(proxies, v1_v2):
    port = free_port()
    proxy = proxies(mesh_to(port, v1_v2, "v1"))
    resources = mesh_to(port, v1_v2, "v2")
    resources[2]["spec"]["http"][0]["timeout"] = "banana"
    bad = dump_yaml(resources)
    _assert_rejected_then_recovers(proxy, port, v1_v2, bad, _line_of(bad, "timeout: banana"))


def test_reload_opens_and_closes_listeners(proxies, v1_v2):
    port, new_port = free_port(), free_port()
    proxy = proxies(mesh_to(port, v1_v2, "v1"))
    moved = mesh_to(new_port, v1_v2, "v1")
    proxy.write_config(moved)
    wait_until(lambda: _serves(new_port), 10, 0.1, f"a listener on the new port {new_port}")
    wait_until(lambda: not _serves(port), 10, 0.1, f"the old listener on {port} to close")


def _serves(port: int) -> bool:
    return curl(port, "/", timeout=2).status == 200  # status 0 when curl cannot connect


def test_in_flight_request_finishes_on_the_old_configuration(upstreams, proxies):
    arrived, release = threading.Event(), threading.Event()

    def slow_v1(req):
        if req.path == "/slow":
            arrived.set()
            release.wait(10)
        return Reply(200, [("x-upstream", "v1")], b"v1")

    servers = {"v1": upstreams("v1", slow_v1), "v2": upstreams("v2")}
    port = free_port()
    proxy = proxies(mesh_to(port, servers, "v1"))
    with Client(port, timeout=20) as busy:
        busy.send(b"GET /slow HTTP/1.1\r\nHost: svc.local\r\n\r\n")
        assert arrived.wait(10)
        proxy.write_config(mesh_to(port, servers, "v2"))
        wait_until(lambda: served_by(port) == "v2", 10, 0.1, "the new configuration")
        release.set()
        response = busy.read()
        assert (response.status, response.body) == (200, b"v1")
        assert busy.request("GET", "/next").header("x-upstream") == "v2"  # same connection, new config


def test_reload_closes_idle_connections_to_removed_endpoints(upstreams, proxies):
    old, new = upstreams("old"), upstreams("new")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": old}))
    assert served_by(port) == "old"
    assert old.open_connections() == 1
    proxy.write_config(http_mesh(port, {"v1": new}))
    wait_until(lambda: served_by(port) == "new", 10, 0.1, "the new endpoint")
    old.wait(lambda: 1 in old.peer_closed, what="the pooled connection to the removed endpoint to close")
