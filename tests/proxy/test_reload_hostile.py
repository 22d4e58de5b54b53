"""Hostile configuration reloads: a 50 MB file, an alias bomb, 1000-deep nesting and a file that
takes longer than the load time limit are each rejected with a clear error while a concurrent
stream of requests keeps being answered; the watcher survives and the next valid edit applies.
Each rejection is in the log, in /config_dump's config_status and in the reload counters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hostile_config import MIB, alias_bomb, deep_nesting, many_services, padded
from proxy_harness import Client, Load, dump_yaml, free_port, samples, total, wait_until
from test_reload import mesh_to, served_by

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def v1_v2(upstreams):
    return {"v1": upstreams("v1"), "v2": upstreams("v2")}


def config_status(proxy) -> dict:
    status, _, body = proxy.admin("/config_dump")
    assert status == 200, body
    return json.loads(body)["config_status"]


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def reject_under_traffic(proxy, port: int, servers: dict, bad_text: str, expected: str, result: str,
                         while_loading=None) -> None:
    """Write `bad_text` under keep-alive traffic; it must be rejected with `expected` among its
    errors while every request is answered by the old configuration (v1); then a valid edit
    (to v2) applies through the same watcher."""
    load = Load(port, clients=2, max_requests=50000).start()
    try:
        load.wait(lambda o: all(len(c) >= 20 for c in o), what="traffic before the bad config")
        proxy.write_config(bad_text)
        if while_loading is not None:
            while_loading()
        last = wait_until(lambda: (config_status(proxy)["last_attempt"] or {}).get("result") == result
                          and config_status(proxy)["last_attempt"], 60, 0.05, f"the reload to end as {result}")
        with load.cond:
            counts = [len(c) for c in load.outcomes]
        load.wait(lambda o: all(len(c) >= n + 20 for c, n in zip(o, counts)), what="traffic after the bad config")
    finally:
        load.stop()
    failed = [o for o in load.all() if o.status != 200 or o.upstream != "v1"]
    assert not failed, failed[:5]
    assert expected in last["errors"], last
    assert expected in proxy.stderr()
    stats = proxy.admin("/stats")[2].decode()
    assert f"config_reload.update_{result}: 1\n" in stats, stats
    assert total(samples(proxy.prometheus(), "pymesh_config_reloads_total"), result=result) == 1

    proxy.write_config(mesh_to(port, servers, "v2"))
    wait_until(lambda: served_by(port) == "v2", 20, 0.1, "the next valid edit to apply")
    status = config_status(proxy)
    assert status["last_attempt"]["result"] == "success"
    assert status["version_in_force"] == status["last_attempt"]["version"]
    assert "config_reload.update_success: 1\n" in proxy.admin("/stats")[2].decode()


def test_a_50_mb_file_is_refused_by_its_size(proxies, v1_v2):
    port = free_port()
    proxy = proxies(mesh_to(port, v1_v2, "v1"))
    big = padded(dump_yaml(mesh_to(port, v1_v2, "v2")), 50 * MIB)
    reject_under_traffic(proxy, port, v1_v2, big, f"{proxy.config_path}: file is 50.0 MiB, over the 8 MiB limit",
                         "rejected")


def test_an_alias_bomb_is_rejected(proxies, v1_v2):
    port = free_port()
    proxy = proxies(mesh_to(port, v1_v2, "v1"))
    expected = f"{proxy.config_path}:6: YAML aliases expand to more than 400000 nodes (the limit)"
    reject_under_traffic(proxy, port, v1_v2, alias_bomb(), expected, "rejected")


def test_1000_deep_nesting_is_rejected(proxies, v1_v2):
    port = free_port()
    proxy = proxies(mesh_to(port, v1_v2, "v1"))
    text = dump_yaml(mesh_to(port, v1_v2, "v2")) + "---\n" + deep_nesting(1000)
    line = text.count("\n") - 1000 + 101
    reject_under_traffic(proxy, port, v1_v2, text, f"{proxy.config_path}:{line}: YAML nesting deeper than 100",
                         "rejected")


def test_a_load_over_the_time_limit_is_stopped_while_requests_are_answered(proxies, v1_v2):
    """The loading child is seen alive, and requests are answered while it still is: the event
    loop is not the one parsing."""
    port = free_port()
    proxy = proxies(mesh_to(port, v1_v2, "v1"), extra_args=["--config-load-timeout", "1.5"])
    slow = dump_yaml(mesh_to(port, v1_v2, "v2")) + "---\n" + many_services(5000)  # seconds to load

    def answered_while_the_child_loads():
        (child,) = wait_until(lambda: children(proxy.pid), 10, 0.005, "the loading child")
        with Client(port) as client:
            for _ in range(5):
                assert client.request().status == 200
        assert child in children(proxy.pid), "the child ended before the requests were answered"

    reject_under_traffic(proxy, port, v1_v2, slow, "loading took longer than the 1.5 s limit; stopped", "failure",
                         answered_while_the_child_loads)
    assert children(proxy.pid) == []


def test_with_workers_the_supervisor_rejects_an_alias_bomb(proxies, v1_v2):
    port = free_port()
    proxy = proxies(mesh_to(port, v1_v2, "v1"), concurrency=2)
    expected = f"{proxy.config_path}:6: YAML aliases expand to more than 400000 nodes (the limit)"
    reject_under_traffic(proxy, port, v1_v2, alias_bomb(), expected, "rejected")


@pytest.mark.parametrize("kind", ["nodes", "text"])
def test_a_proxy_started_on_an_alias_bomb_exits_1_at_once_with_the_file_and_line(tmp_path, kind):
    """Not only reloads: the first load fails cleanly too (no expansion, no hang, no traceback)."""
    import subprocess
    import sys

    from hostile_config import string_bomb

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb() if kind == "nodes" else string_bomb())
    done = subprocess.run([sys.executable, "-m", "pymesh", "proxy", "--config", str(bomb), "--admin-port", "0"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1, done.stderr
    expected = ("6: YAML aliases expand to more than 400000 nodes (the limit)" if kind == "nodes"
                else "25: YAML aliases expand to more than 8 MiB of text (the limit)")
    assert f"{bomb}:{expected}" in done.stderr
    assert "Traceback" not in done.stderr
