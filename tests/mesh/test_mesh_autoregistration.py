"""VM auto-registration (Istio's WorkloadGroup): a proxy started with --workload-group makes the
control server create the WorkloadEntry <group>-<address> from the group's template, which a
ServiceEntry's workloadSelector then selects; it is refused when its certificate's service
account is not the template's; it stays through a reconnect within the entry grace period and
goes after it; with a probe in the group, the entry is an endpoint only while the probe passes."""

from __future__ import annotations

import threading
import time

from mesh_harness import (  # noqa: F401
    CLIENT, HOST, LOCALHOST, answers_from, egress_sidecar, free_ports, get, ingress_sidecar, mesh, selected_service,
    wait_until,
)
from proxy_harness import Reply, http_get

ENTRY_GRACE = 6.0  # seconds; the server's --workload-entry-grace (Istio's default is 10 s)
VM_LABELS = {"app": "reviews"}  # what the VM's proxy says it is (cluster.env's labels in Istio)
SELECTOR = {"app": "reviews", "class": "vm"}  # "class" only the group's metadata gives


def autoregistration_metrics(control) -> dict[str, float]:
    """istiod's auto_registration_* counters from the control server's /metrics."""
    _, _, body = http_get(control.admin_port, "/metrics")
    return {line.split()[0]: float(line.split()[1]) for line in body.decode().splitlines()
            if line.startswith("auto_registration_") and line.split()[0].endswith("_total")}


def workload_group(name: str, ports: dict, service_account: str = "", probe: dict | None = None) -> dict:
    spec = {"metadata": {"labels": {"app": "reviews", "class": "vm"}},
            "template": {"ports": ports, **({"serviceAccount": service_account} if service_account else {})}}
    if probe is not None:
        spec["probe"] = probe
    return {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadGroup",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def vm_mesh(mesh, app, group_extra: dict | None = None, secure: bool = False):
    """The client sidecar calling HOST, whose endpoints are the workloads labelled SELECTOR, and
    the WorkloadGroup "reviews" whose template gives its ingress port; (control, client, port, ingress)."""
    port, ingress = free_ports(2)
    mesh.write("service.yaml", [selected_service(HOST, port, SELECTOR, "reviews")])
    mesh.write("sidecars.yaml", [egress_sidecar("productpage", CLIENT, port),
                                 ingress_sidecar("reviews", VM_LABELS, ingress, app.port)])
    mesh.write("group.yaml", [workload_group("reviews", {"http": ingress}, **(group_extra or {}))])
    control = mesh.control(1.0, secure=secure, extra=("--workload-entry-grace", f"{ENTRY_GRACE}s"))
    token = control.join_token(mesh.root / "pp.token", service_account="productpage") if secure else None
    client = mesh.proxy(control.port, "productpage", CLIENT, token_file=token)
    return control, client, port, ingress


def test_a_vm_registers_from_its_group_and_its_entry_outlives_a_reconnect_within_the_grace(mesh):
    app = mesh.app("reviews-vm")
    control, client, port, ingress = vm_mesh(mesh, app, {"service_account": "reviews"}, secure=True)
    token = control.join_token(mesh.root / "reviews.token", service_account="reviews")
    vm = mesh.proxy(control.port, "reviews-vm", VM_LABELS, address=LOCALHOST, workload_group="reviews",
                    token_file=token)
    endpoint = f"{LOCALHOST}:{ingress}"
    wait_until(lambda: endpoint in client.endpoints(), what=f"the VM's entry {endpoint} in the client's /clusters")
    node = control.wait_synced(vm.node_id)
    assert (node["workload_group"], node["workload_entry"]) == ("reviews", f"reviews-{LOCALHOST}"), node
    assert answers_from(port, HOST, 5) == [(200, "reviews-vm")] * 5  # over mTLS: the entry carries tlsMode

    # the VM's proxy dies and comes back (same node id, address and token) within the grace:
    # the entry is never removed, so the client never loses the endpoint
    vm.kill()
    seen_missing = threading.Event()
    done = threading.Event()

    def watch():
        for _ in range(2000):
            if done.is_set():
                return
            if endpoint not in client.endpoints():
                seen_missing.set()
            time.sleep(0.02)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    again = mesh.proxy(control.port, "reviews-vm", VM_LABELS, address=LOCALHOST, workload_group="reviews",
                       token_file=token)
    control.wait_synced(again.node_id)
    done.set()
    watcher.join(60)
    assert not seen_missing.is_set(), "the entry left the client's endpoints during a reconnect within the grace"
    assert "proxy reviews-vm.default left" not in control.log()
    assert answers_from(port, HOST, 3) == [(200, "reviews-vm")] * 3

    # gone for good: the entry outlives it by the grace period, then leaves
    again.kill()
    stopped = time.monotonic()
    wait_until(lambda: endpoint not in client.endpoints(), timeout=ENTRY_GRACE + 15,
               what=f"{endpoint} gone from the client's /clusters")
    assert time.monotonic() - stopped >= ENTRY_GRACE, "the entry went before its grace period"
    control.wait_status(lambda s: control.node(again.node_id, s) is None, "the VM gone from /status")
    assert autoregistration_metrics(control) == {
        "auto_registration_success_total": 2.0, "auto_registration_errors_total": 0.0,
        "auto_registration_unregister_total": 2.0, "auto_registration_deletes_total": 1.0}


def test_a_vm_whose_certificate_is_not_the_templates_service_account_is_refused(mesh):
    app = mesh.app("reviews-vm")
    control, client, _, ingress = vm_mesh(mesh, app, {"service_account": "reviews"}, secure=True)
    impostor = mesh.proxy(control.port, "ratings-vm", VM_LABELS, address=LOCALHOST, workload_group="reviews",
                          token_file=control.join_token(mesh.root / "ratings.token", service_account="ratings"),
                          wait=False)
    refusal = "registration of WorkloadEntry service account mismatch: 'ratings' vs 'reviews'"
    wait_until(lambda: refusal in control.log(), what="the control server refusing the registration")
    wait_until(lambda: refusal in impostor.stderr(), what="the proxy told why its stream ended")
    assert impostor.ready_status() != 200  # no configuration: it never registered
    assert control.node(impostor.node_id) is None
    assert f"{LOCALHOST}:{ingress}" not in client.endpoints()

    # a group that does not exist is refused too
    lost = mesh.proxy(control.port, "lost-vm", VM_LABELS, address=LOCALHOST, workload_group="nosuchgroup",
                      token_file=control.join_token(mesh.root / "lost.token", service_account="reviews"), wait=False)
    wait_until(lambda: "cannot find WorkloadGroup default/nosuchgroup" in lost.stderr(),
               what="the proxy of an unknown group refused")
    assert control.node(lost.node_id) is None
    counts = autoregistration_metrics(control)
    assert counts["auto_registration_errors_total"] >= 2 and counts["auto_registration_success_total"] == 0


def test_a_failing_probe_makes_the_vm_entry_unready_and_a_passing_one_ready_again(mesh):
    healthy = threading.Event()
    healthy.set()

    def handler(request):
        if request.target == "/healthz" and not healthy.is_set():
            return Reply(503, [("content-type", "text/plain")], b"not ready\n")
        return Reply(200, [("content-type", "text/plain"), ("x-upstream", "reviews-vm")], b"ok\n")
    app = mesh.app("reviews-vm")
    app.handler = handler
    probe = {"periodSeconds": 1, "failureThreshold": 1, "successThreshold": 1,
             "httpGet": {"path": "/healthz", "port": app.port}}
    control, client, port, ingress = vm_mesh(mesh, app, {"probe": probe})
    vm = mesh.proxy(control.port, "reviews-vm", VM_LABELS, address=LOCALHOST, workload_group="reviews")
    endpoint = f"{LOCALHOST}:{ingress}"
    wait_until(lambda: endpoint in client.endpoints(), what="the probed VM's entry in the client's /clusters")
    node = control.wait_node(vm.node_id, lambda n: n["health"] == {"healthy": True, "message": ""}, "healthy")
    assert node["workload_entry"] == f"reviews-{LOCALHOST}"
    assert answers_from(port, HOST, 3) == [(200, "reviews-vm")] * 3

    healthy.clear()
    wait_until(lambda: endpoint not in client.endpoints(), what="the unhealthy VM's entry gone from /clusters")
    node = control.wait_node(vm.node_id, lambda n: n["health"] and not n["health"]["healthy"], "unhealthy")
    assert "HTTP 503" in node["health"]["message"], node
    assert node["connected"] and node["workload_entry"] is None
    assert node["not_registered"].startswith("unhealthy: GET http://127.0.0.1:"), node
    assert "; not registered: unhealthy: GET http" in control.status_text()
    assert get(port, HOST).status == 503  # no healthy endpoint left, as Envoy answers

    healthy.set()
    wait_until(lambda: endpoint in client.endpoints(), what="the VM's entry back once the probe passes")
    assert answers_from(port, HOST, 3) == [(200, "reviews-vm")] * 3
