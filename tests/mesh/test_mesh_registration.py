"""Workload registration: a proxy started with --address/--port whose labels match a
ServiceEntry's workloadSelector is an endpoint for the other proxies while it is connected, and
stops being one a grace period after it leaves."""

from __future__ import annotations

import time

from mesh_harness import (  # noqa: F401
    CLIENT, HOST, LOCALHOST, answers_from, egress_sidecar, free_ports, ingress_sidecar, mesh, selected_service,
    wait_until,
)

GRACE = 1.0


def test_a_registered_workload_is_an_endpoint_until_a_grace_period_after_it_stops(mesh):
    port, ingress1, ingress2 = free_ports(3)
    apps = {"1": mesh.app("reviews-1"), "2": mesh.app("reviews-2")}
    labels = {n: {"app": "reviews", "instance": n} for n in apps}
    mesh.write("service.yaml", [selected_service(HOST, port, {"app": "reviews"}, "reviews")])
    mesh.write("sidecars.yaml", [
        egress_sidecar("productpage", CLIENT, port),
        ingress_sidecar("reviews-1", labels["1"], ingress1, apps["1"].port),
        ingress_sidecar("reviews-2", labels["2"], ingress2, apps["2"].port),
    ])
    control = mesh.control(grace=GRACE)
    client = mesh.proxy(control.port, "productpage", CLIENT)
    reviews = {
        n: mesh.proxy(control.port, f"reviews-{n}", labels[n], address=LOCALHOST, ports={"http": ingress})
        for n, ingress in (("1", ingress1), ("2", ingress2))
    }
    one, two = f"{LOCALHOST}:{ingress1}", f"{LOCALHOST}:{ingress2}"
    wait_until(lambda: {one, two} <= client.endpoints(), what=f"{one} and {two} in the client's /clusters")
    for proxy in (client, *reviews.values()):
        control.wait_synced(proxy.node_id)

    # traffic reaches both workloads, through their sidecars' ingress listeners
    seen: set = set()

    def both_answered():
        for status, upstream in answers_from(port, HOST, 10):
            assert status == 200, (status, upstream)
            seen.add(upstream)
        return seen == {"reviews-1", "reviews-2"}
    wait_until(both_answered, what=f"answers from both reviews workloads (saw {seen})")
    printed = control.status_text()
    for proxy in reviews.values():
        row = next(l for l in printed.splitlines() if l.startswith(proxy.node_id))
        assert row.split()[2] == LOCALHOST, f"the registered address in the ADDRESS column: {row}"

    # reviews-2 stops: after the grace period the client no longer lists it
    stopped = time.monotonic()
    assert reviews["2"].stop() == 0
    wait_until(lambda: two not in client.endpoints(), timeout=10 + GRACE,
               what=f"{two} gone from the client's /clusters")
    gone = time.monotonic()
    assert gone - stopped >= GRACE, (
        f"a stopped workload should stay an endpoint for the grace period ({GRACE} s), but it was removed "
        f"{gone - stopped:.3f} s after it stopped")
    assert one in client.endpoints()
    control.wait_status(lambda s: control.node(reviews["2"].node_id, s) is None, "reviews-2 gone from /status")
    control.wait_synced(client.node_id)
    assert answers_from(port, HOST, 10) == [(200, "reviews-1")] * 10
