"""A snapshot a proxy cannot apply: NACKed with the reason, shown by `pymesh control status`, the
old configuration still serving, and fixed by fixing the file."""

from __future__ import annotations

from mesh_harness import CLIENT, HOST, egress_sidecar, failures, mesh, start_canary, summary  # noqa: F401


def test_a_snapshot_whose_listener_cannot_be_bound_is_nacked_and_the_old_listener_keeps_serving(mesh):
    canary = start_canary(mesh, v1=100, v2=0)
    control, client = canary.control, canary.client
    version = control.status()["version"]
    traffic = mesh.traffic(canary.port, HOST)
    traffic.wait_more(20, "traffic before the bad push")

    taken = mesh.hold_port()  # another process listens there: the proxy's bind must fail
    mesh.write("sidecar.yaml", [egress_sidecar("productpage", CLIENT, taken)])
    node = control.wait_node(client.node_id, lambda n: n["state"] == "NACKED", "NACKED")
    assert "cannot open a listener" in node["error"], node
    assert node["pushed_version"] != version and node["acked_version"] == version, node
    assert node["connected"], node
    line = next(l for l in control.status_text().splitlines() if l.startswith(client.node_id))
    assert "NACKED: cannot open a listener" in line, line
    assert line.split()[3:5] == [node["pushed_version"], version], f"PUSHED and ACKED columns: {line}"

    # the old configuration, listener included, is still the one serving
    during = traffic.wait_more(50, "traffic after the NACK")
    assert {a.upstream for a in during} == {"v1"} and not failures(during), summary(during)
    assert client.ready_status() == 200
    assert "rejected" in client.stderr() and "cannot open a listener" in client.stderr()

    # fixed: the listener back where it was; pushed again, applied, ACKed
    mesh.write("sidecar.yaml", [egress_sidecar("productpage", CLIENT, canary.port)])
    node = control.wait_synced(client.node_id)
    assert node["error"] is None, node
    line = next(l for l in control.status_text().splitlines() if l.startswith(client.node_id))
    assert line.split()[-1] == "SYNCED", line

    after = traffic.wait_more(30, "traffic after the fix")
    answers = traffic.stop()
    assert {a.upstream for a in after} == {"v1"}
    assert not failures(answers), f"requests failed: {failures(answers)[:5]}; {summary(answers)}"
