"""AuthorizationPolicy pushed by the control server: a client sidecar calls a registered reviews
workload through its sidecar; a policy written to the control server's directory reaches the
reviews proxy (its namespace's and the root namespace's policies are in its view) and decides,
and a changed policy takes over without a restart."""

from __future__ import annotations

from mesh_harness import (  # noqa: F401  (mesh: the fixture)
    CLIENT, HOST, LOCALHOST, get, mesh, registered_service, wait_until,
)


def deny_path(path: str, namespace: str = "default") -> dict:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "deny-path", "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": "reviews"}}, "action": "DENY",
                     "rules": [{"to": [{"operation": {"paths": [path]}}]}]}}


def test_a_pushed_policy_decides_at_the_workloads_sidecar(mesh):
    service = registered_service(mesh)
    port, ingress, labels = service.port, service.ingress, service.labels
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
