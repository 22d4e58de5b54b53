"""ProxyConfig `concurrency` under a control server: a proxy started without --concurrency and
with no snapshot yet takes the worker count from its first snapshot (it re-executes itself once,
before it serves); a later change is logged and waits for the next restart, as in Istio."""

from __future__ import annotations

import re
from pathlib import Path

from mesh_harness import mesh, start_canary, wait_until  # noqa: F401
from proxy_harness import children


def proxy_config(concurrency: int) -> dict:
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "ProxyConfig",
            "metadata": {"name": "workers", "namespace": "default"}, "spec": {"concurrency": concurrency}}


def test_the_first_snapshot_sets_the_workers_and_a_change_waits_for_a_restart(mesh):
    mesh.write("proxyconfig.yaml", [proxy_config(2)])
    canary = start_canary(mesh, v1=100, v2=0)  # no --concurrency, no --data-dir
    pid = canary.client.pid
    wait_until(lambda: len(children(pid)) == 2, 20, what="two worker processes in the same (re-executed) proxy")
    assert "the first snapshot's ProxyConfig asks for 2 workers: restarting with them" in canary.client.stderr()
    assert canary.answers(10) == [(200, "v1")] * 10
    workers = children(pid)

    mesh.write("proxyconfig.yaml", [proxy_config(3)])
    wait_until(lambda: "ProxyConfig now asks for 3 workers; this proxy runs 2 until its next restart"
               in canary.client.stderr(), what="the change logged")
    canary.control.wait_synced(canary.client.node_id)
    assert children(pid) == workers

    # the private data directory that carried the snapshot over the re-execution goes with the proxy
    private = Path(re.search(r"saved in (\S+)\)", canary.client.stderr())[1])
    assert (private / "snapshot.json").exists()
    assert canary.client.stop() == 0
    assert not private.exists()
