"""The same promises with --concurrency 2, where a supervisor process talks to the control
server and worker processes serve the traffic: pushed configuration reaches the workers, and a
snapshot they cannot apply is NACKed, not ACKed."""

from __future__ import annotations

import pytest
from waiting import wait_until

from mesh_harness import CLIENT, HOST, egress_sidecar, failures, mesh, start_canary, summary  # noqa: F401


def test_a_route_edit_reaches_every_worker(mesh):
    canary = start_canary(mesh, v1=100, v2=0, data_dir=True, concurrency=2)
    assert canary.answers(10) == [(200, "v1")] * 10
    traffic = mesh.traffic(canary.port, HOST)
    traffic.wait_more(20, "traffic before the edit")
    written = canary.route(0, 100)
    canary.control.wait_synced(canary.client.node_id)
    traffic.wait(lambda answers: any(a.upstream == "v2" and a.received >= written for a in answers), "v2 answering")
    answers = traffic.stop()
    assert not failures(answers), summary(answers)
    # every new connection (the kernel spreads them over both workers) gets the new route. The
    # supervisor ACKs once it has handed the snapshot to its workers (as Envoy's main thread
    # ACKs before its workers swap): a loaded machine may take a moment to install it in both.
    wait_until(lambda: [canary.answers(1)[0] for _ in range(20)] == [(200, "v2")] * 20, timeout=10,
               what="20 new connections in a row answered by v2")


def test_workers_serve_the_pushed_configuration_without_a_data_dir(mesh):
    canary = start_canary(mesh, v1=100, v2=0, concurrency=2)  # ready, and SYNCED at the server
    assert canary.answers(10) == [(200, "v1")] * 10


def test_workers_nack_a_snapshot_whose_listener_cannot_be_bound(mesh):
    canary = start_canary(mesh, v1=100, v2=0, data_dir=True, concurrency=2)
    control, client = canary.control, canary.client
    version = control.status()["version"]
    taken = mesh.hold_port()
    mesh.write("sidecar.yaml", [egress_sidecar("productpage", CLIENT, taken)])
    node = control.wait_node(client.node_id, lambda n: n["pushed_version"] != version
                             and (n["state"] == "NACKED" or n["acked_version"] == n["pushed_version"]),
                             "an answer to the push")
    assert node["state"] == "NACKED" and "cannot open a listener" in node["error"], node
    assert canary.answers(10) == [(200, "v1")] * 10  # the old listener, on every worker
    # what is persisted is still the last good snapshot: a restart serves it
    control.kill()
    assert client.stop() == 0
    client.start()
    assert canary.answers(10) == [(200, "v1")] * 10
