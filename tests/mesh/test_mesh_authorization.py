"""AuthorizationPolicy pushed by the control server: a client sidecar calls a registered reviews
workload through its sidecar; a policy written to the control server's directory reaches the
reviews proxy (its namespace's and the root namespace's policies are in its view) and decides,
and a changed policy takes over without a restart."""

from __future__ import annotations

from mesh_harness import (  # noqa: F401  (mesh: the fixture)
    CLIENT, HOST, LOCALHOST, egress_sidecar, free_ports, get, ingress_sidecar, mesh, selected_service, wait_until,
)


def deny_path(path: str, namespace: str = "default") -> dict:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "deny-path", "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": "reviews"}}, "action": "DENY",
                     "rules": [{"to": [{"operation": {"paths": [path]}}]}]}}


def test_a_pushed_policy_decides_at_the_workloads_sidecar(mesh):
    port, ingress = free_ports(2)
    app = mesh.app("reviews")
    labels = {"app": "reviews"}
    mesh.write("service.yaml", [selected_service(HOST, port, labels, "reviews")])
    mesh.write("sidecars.yaml", [egress_sidecar("productpage", CLIENT, port),
                                 ingress_sidecar("reviews", labels, ingress, app.port)])
    mesh.write("policy.yaml", [deny_path("/secret")])
    control = mesh.control()
    client = mesh.proxy(control.port, "productpage", CLIENT)
    reviews = mesh.proxy(control.port, "reviews", labels, address=LOCALHOST, ports={"http": ingress})
    wait_until(lambda: f"{LOCALHOST}:{ingress}" in client.endpoints(), what="reviews in the client's /clusters")
    control.wait_synced(reviews.node_id)

    assert get(port, HOST, "/open").status == 200
    denied = get(port, HOST, "/secret")
    assert (denied.status, denied.body) == (403, b"RBAC: access denied")
    assert reviews.stat("rbac.denied") == 1 and client.stat("rbac.denied") == 0  # decided inbound only

    mesh.write("policy.yaml", [deny_path("/open", namespace="istio-system")])  # now mesh-wide, another path
    wait_until(lambda: get(port, HOST, "/open").status == 403, what="the root namespace policy pushed")
    assert get(port, HOST, "/secret").status == 200
