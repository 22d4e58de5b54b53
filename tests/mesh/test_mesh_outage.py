"""The control server going away and coming back: proxies keep serving their last good
configuration, resynchronise when it returns, serve their persisted snapshot when restarted
during the outage, and wait (retrying with backoff, not ready) for a server that is not there yet."""

from __future__ import annotations

import json
import os
import stat

from mesh_harness import (  # noqa: F401
    CLIENT, HOST, answers_from, canary_route, egress_sidecar, failures, free_ports, log_times, mesh, start_canary, summary,
    versioned_service, wait_until,
)


def test_proxies_keep_serving_while_the_server_is_killed_and_resync_when_it_restarts(mesh):
    canary = start_canary(mesh, v1=100, v2=0)
    control, client = canary.control, canary.client
    traffic = mesh.traffic(canary.port, HOST)
    traffic.wait_more(20, "traffic before the outage")

    control.kill()  # SIGKILL: no GOAWAY, the proxies just lose the connection
    during = traffic.wait_more(100, "traffic with the control server dead")
    assert client.ready_status() == 200, "a proxy stays ready without its control server"
    # a change while the server is down reaches nobody yet
    canary.route(0, 100)
    during += traffic.wait_more(50, "more traffic during the outage")
    assert {a.upstream for a in during} == {"v1"} and not failures(during), summary(during)

    restarted = len(traffic.snapshot())
    control.start()  # the same ports, the same config directory
    node = control.wait_synced(client.node_id, timeout=20)
    assert node["state"] == "SYNCED" and node["connected"]
    line = next(l for l in control.status_text().splitlines() if l.startswith(client.node_id))
    assert line.split()[-1] == "SYNCED", line
    # the change made while it was down is in force now
    first = traffic.wait(lambda answers: next((a for a in answers[restarted:] if a.upstream == "v2"), None),
                         "the route changed during the outage to apply after the restart")
    after = traffic.wait_more(30, "traffic after the resync")
    assert {a.upstream for a in after} == {"v2"}, summary(after)

    answers = traffic.stop()
    assert first in answers
    assert not failures(answers), f"requests failed around the outage: {failures(answers)[:5]}; {summary(answers)}"


def test_a_proxy_restarted_during_an_outage_serves_its_persisted_snapshot(mesh):
    canary = start_canary(mesh, v1=0, v2=100, data_dir=True)
    control, client = canary.control, canary.client
    acked = control.node(client.node_id)["acked_version"]
    control.kill()
    assert client.stop() == 0
    client.start()  # waits for /ready: no control server anywhere
    assert canary.answers(20) == [(200, "v2")] * 20
    # and when the server is back, the proxy says what it serves and is in sync again
    control.start()
    control.wait_synced(client.node_id, timeout=20)
    assert f"serving version {acked}" in control.log(), "the restarted proxy reports its persisted version"
    assert canary.answers(20) == [(200, "v2")] * 20


def test_the_persisted_snapshot_is_readable_only_by_the_proxy(mesh):
    canary = start_canary(mesh, v1=100, v2=0, data_dir=True)
    path = canary.client.data_dir / "snapshot.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, oct(os.stat(path).st_mode)
    version = canary.control.status()["version"]
    canary.route(0, 100)  # rewritten on every applied push, still private
    node = canary.control.wait_node(canary.client.node_id, lambda n: n["acked_version"] not in (None, version),
                                    "the new version ACKed")
    saved = wait_until(lambda: (s := json.loads(path.read_text()))["version"] == node["acked_version"] and s,
                       what="the ACKed version persisted")
    assert saved["version"] == node["acked_version"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, oct(os.stat(path).st_mode)
    assert [p.name for p in path.parent.iterdir()] == ["snapshot.json"], "no temporary file left behind"


def test_a_proxy_with_no_server_retries_with_backoff_and_is_not_ready_until_one_appears(mesh):
    port = free_ports(1)[0]
    apps = {"v1": mesh.app("v1"), "v2": mesh.app("v2")}
    mesh.write("service.yaml", versioned_service(HOST, port, apps))
    mesh.write("route.yaml", [canary_route(0, 100, HOST)])
    mesh.write("sidecar.yaml", [egress_sidecar("productpage", CLIENT, port)])
    control = mesh.control(start=False)  # its ports are picked; nothing listens on them yet
    client = mesh.proxy(control.port, "productpage", CLIENT, wait=False)

    readiness = set()
    needle = f"control server {control.address}:"

    def attempts():
        try:
            readiness.add(client.ready_status())
        except OSError:
            pass  # the admin port is not open yet
        assert client.running(), client.stderr()
        times = log_times(client.stderr(), needle)
        return times if len(times) >= 5 and readiness else None

    times = wait_until(attempts, timeout=20, interval=0.05, what="five failed connection attempts in the log")
    assert readiness == {503}, f"/ready must say 503 while no configuration arrived, saw {readiness}"
    gaps = [b - a for a, b in zip(times, times[1:])]
    # jittered exponential backoff: the ceiling doubles each time and the delay is at least half of
    # it, so the fourth delay (>= 4x the first ceiling) outlasts the first two however late a busy
    # machine gets round to them
    assert gaps[-1] > max(gaps[:2]), (
        f"the retry delays should grow: {[round(g, 3) for g in gaps]} s\n{client.stderr()[-3000:]}")
    assert client.ready_status() == 503

    control.start()
    client.wait_ready(timeout=20)
    control.wait_synced(client.node_id)
    assert answers_from(port, HOST, 20) == [(200, "v2")] * 20, "once configured, it routes by the snapshot"

