"""Discovery end to end, against the STAND-IN API server of tests/kube/apiserver.py (no real API
server runs here): a real `pymesh control serve --kubernetes` reads Services and EndpointSlices
through it, and a real `pymesh proxy` under that control server routes curl to real upstreams at
the endpoints' addresses (other loopback addresses, one port, as pods' IPs). Endpoint changes
reach the proxy's view within a second; a dropped watch and a 410 Gone lose no update."""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

_MESH_TESTS = str(Path(__file__).resolve().parent.parent / "mesh")
if _MESH_TESTS not in sys.path:
    sys.path.insert(0, _MESH_TESTS)

from mesh_harness import CLIENT, egress_sidecar, free_ports, http_get, mesh, wait_until  # noqa: E402,F401
from proxy_harness import curl  # noqa: E402

from pymesh.kube.resources import ENDPOINT_SLICES  # noqa: E402

HOST = "reviews.default.svc.cluster.local"
WITHIN = 1.0  # the bound: an endpoint change reaches the proxies within a second
ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


def service(port: int) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "reviews", "namespace": "default", "labels": {"app": "reviews"}},
            "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": port, "targetPort": port}],
                     "selector": {"app": "reviews"}, "clusterIP": "10.96.112.53", "clusterIPs": ["10.96.112.53"],
                     "type": "ClusterIP"}}


def endpoint_slice(app_port: int, endpoints: dict[str, bool]) -> dict:
    """The slice the endpointslice controller would write: address -> ready."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": "reviews-abcde", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "reviews",
                                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "ports": [{"name": "http", "protocol": "TCP", "port": app_port}],
            "endpoints": [{"addresses": [address], "conditions": {"ready": ready, "serving": ready,
                                                                  "terminating": False}, "zone": "zone-a"}
                          for address, ready in endpoints.items()]}


def relists(control, resource: str) -> float:
    """The control server's pymesh_control_kube_relists_total for `resource`, from its /metrics."""
    code, _, body = http_get(control.admin_port, "/metrics")
    assert code == 200, body
    return sum(sample.value for family in text_string_to_metric_families(body.decode()) for sample in family.samples
               if sample.name == "pymesh_control_kube_relists_total" and sample.labels.get("resource") == resource)


class Cluster:
    """The stand-in API server with the reviews Service, upstreams on ADDRESSES (one port), a
    control server with --kubernetes and a client sidecar whose egress listener is the Service's port."""

    def __init__(self, mesh, apiserver) -> None:
        self.apiserver = apiserver
        (self.port,) = free_ports(1)
        first = mesh.app("reviews-0", host=ADDRESSES[0])
        self.app_port = first.port
        self.apps = [first] + [mesh.app(f"reviews-{i}", host=a, port=first.port) for i, a in enumerate(ADDRESSES[1:], 1)]
        apiserver.apply(service(self.port))
        self.ready = {ADDRESSES[0]: True}
        self.publish()
        mesh.write("sidecar.yaml", [egress_sidecar("productpage", CLIENT, self.port)])
        self.control = mesh.control(extra=("--kubernetes", "--kubeconfig", str(apiserver.kubeconfig)))
        self.client = mesh.proxy(self.control.port, "productpage", CLIENT)

    def publish(self) -> float:
        """Write the slice with self.ready; the monotonic time it was written."""
        self.apiserver.apply(endpoint_slice(self.app_port, self.ready))
        return time.monotonic()

    def endpoints(self) -> set[str]:
        return {e for e in self.client.endpoints() if e.endswith(f":{self.app_port}")}

    def wait_endpoints(self, expected: set[str], what: str, timeout: float = 10.0) -> float:
        """Until the client's /clusters lists exactly `expected` (addresses); when it did."""
        want = {f"{a}:{self.app_port}" for a in expected}
        wait_until(lambda: self.endpoints() == want, timeout, 0.01, what)
        return time.monotonic()

    def answers(self, n: int = 6) -> set[str]:
        """The upstreams that answered `n` requests through the client sidecar (all must be 200)."""
        seen = set()
        for _ in range(n):
            result = curl(self.port, host=HOST)
            assert result.status == 200, (result.status, result.stderr)
            seen.add(result.body.decode().split()[0])
        return seen

    def wait_answers(self, expected: set[str]) -> None:
        """Until every upstream in `expected`, and no other, has answered (the balancer picks)."""
        seen: set[str] = set()

        def all_seen():
            seen.update(self.answers(len(expected)))
            assert seen <= expected, seen
            return seen == expected
        wait_until(all_seen, 10, 0.01, f"answers from {sorted(expected)} (saw {sorted(seen)})")


def test_a_service_with_endpoint_slices_is_routable_and_scales_within_a_second(mesh, apiserver):
    """Stand-in API server. The reviews Service and its EndpointSlice become a routable service
    in the sidecar's view: curl through the client sidecar reaches the upstream at the endpoint's
    address. An endpoint added, then one turning unready, reach the proxy within a second."""
    cluster = Cluster(mesh, apiserver)
    cluster.wait_endpoints({ADDRESSES[0]}, "the first endpoint in the client's view")
    assert cluster.answers() == {"reviews-0"}
    assert curl(cluster.port, host="reviews").status == 200  # the short name, in the proxy's namespace

    cluster.ready[ADDRESSES[1]] = True
    added = cluster.publish()
    seen = cluster.wait_endpoints({ADDRESSES[0], ADDRESSES[1]}, "the added endpoint within a second", WITHIN)
    print(f"endpoint added -> proxy's view: {seen - added:.3f}s")
    cluster.wait_answers({"reviews-0", "reviews-1"})

    cluster.ready[ADDRESSES[0]] = False
    unready = cluster.publish()
    seen = cluster.wait_endpoints({ADDRESSES[1]}, "the unready endpoint gone within a second", WITHIN)
    print(f"endpoint unready -> proxy's view: {seen - unready:.3f}s")
    assert cluster.answers() == {"reviews-1"}

    text = cluster.control.status_text()
    assert "KUBERNETES (API server https://localhost:" in text, text
    assert "services: synced, 1 objects" in text and "endpointslices: synced, 1 objects" in text, text


def test_a_dropped_watch_and_a_410_lose_no_update(mesh, apiserver):
    """Stand-in API server. The control server's watches are cut while changes are made (the
    informers cannot watch again until they are in): the changes arrive on reconnect. Then the
    same with the history compacted meanwhile (410 Gone): the informers relist and the proxy sees
    the current endpoints."""
    cluster = Cluster(mesh, apiserver)
    cluster.wait_endpoints({ADDRESSES[0]}, "the first endpoint")

    for compact, address in ((False, ADDRESSES[1]), (True, ADDRESSES[2])):
        listed = relists(cluster.control, "endpointslices")
        apiserver.pause_watches()
        requests = apiserver.watch_requests
        assert apiserver.drop_watches() >= 4  # Services, EndpointSlices, Pods, Namespaces at least
        wait_until(lambda: apiserver.watch_requests > requests, 10, 0.01, "the control server to watch again")
        cluster.ready[address] = True
        cluster.publish()
        if compact:
            apiserver.compact()
        apiserver.resume_watches()
        expected = {a for a, ready in cluster.ready.items() if ready}
        cluster.wait_endpoints(expected, f"{address} after the watch came back ({'410' if compact else 'dropped'})")
        # a dropped watch resumes from its resourceVersion; only the 410 made it list again
        assert relists(cluster.control, "endpointslices") == listed + compact
    cluster.wait_answers({"reviews-0", "reviews-1", "reviews-2"})
    assert apiserver.objects(ENDPOINT_SLICES)[0]["endpoints"][2]["addresses"] == [ADDRESSES[2]]


def test_the_first_configuration_served_already_has_the_cluster(mesh, apiserver):
    """Stand-in API server answering slowly (every request delayed): the control server is not
    ready, and serves no proxy, before its first lists are in; the first generation it serves
    already holds the Service and its endpoint (never an empty registry)."""
    apiserver.delay = 0.5
    port, = free_ports(1)
    app = mesh.app("reviews-0", host=ADDRESSES[0])
    apiserver.apply(service(port))
    apiserver.apply(endpoint_slice(app.port, {ADDRESSES[0]: True}))
    mesh.write("sidecar.yaml", [egress_sidecar("productpage", CLIENT, port)])
    control = mesh.control(extra=("--kubernetes", "--kubeconfig", str(apiserver.kubeconfig)), start=False)
    control.start(wait=False)
    wait_until(lambda: apiserver.requests, 10, 0.01, "the control server's first request")
    with pytest.raises(OSError):  # nothing listens for proxies (nor /ready) before the lists are in
        socket.create_connection(("127.0.0.1", control.port), timeout=1).close()
    control.wait_ready()
    client = mesh.proxy(control.port, "productpage", CLIENT)
    synced = control.wait_synced(client.node_id)
    assert synced["acked_version"] == "1", synced  # the first generation: discovery was in it
    assert f"{ADDRESSES[0]}:{app.port}" in client.endpoints()


def test_sigterm_while_waiting_for_the_api_server_exits(mesh, apiserver):
    """Stand-in API server refusing every request (503): the control server waits for its first
    lists and serves nothing; SIGTERM then ends it cleanly instead of leaving it waiting."""
    apiserver.fail_next(503, "ServiceUnavailable", count=10_000)
    control = mesh.control(extra=("--kubernetes", "--kubeconfig", str(apiserver.kubeconfig)), start=False)
    control.start(wait=False)
    wait_until(lambda: "still waiting for the first list" in control.log() or len(apiserver.requests) > 20, 20, 0.05,
               "the control server retrying its lists")
    control.proc.send_signal(signal.SIGTERM)
    assert control.proc.wait(timeout=10) == 0, control.log()[-3000:]
