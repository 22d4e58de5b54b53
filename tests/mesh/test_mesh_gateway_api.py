"""The Gateway API under the control server: a Gateway and an HTTPRoute in its config directory,
`pymesh gateway --control` labelled gateway.networking.k8s.io/gateway-name=edge is sent their
translation, curl goes through it; the server reports each object's status conditions in
/status and `pymesh control status`, and they follow an edit of the route."""

from __future__ import annotations

from mesh_harness import free_ports, mesh  # noqa: F401
from proxy_harness import curl, endpoint, gateway_service, service_entry

NS = "infra"
GATEWAY = {
    "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "edge", "namespace": NS},
    "spec": {"gatewayClassName": "istio", "listeners": [
        {"name": "http", "port": 80, "protocol": "HTTP", "hostname": "*.example.com",
         "allowedRoutes": {"namespaces": {"from": "All"}}}]},
}
LABELS = {"gateway.networking.k8s.io/gateway-name": "edge"}


def http_route(backend: str) -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "edge", "namespace": NS}], "hostnames": ["web.example.com"],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/app"}}],
                                "backendRefs": [{"name": backend, "port": 8080}]}]}}


def conditions(status: dict, kind: str) -> dict:
    (obj,) = [o for o in status.get("gateway_api", []) if o["kind"] == kind]
    entries = obj.get("conditions", []) or [c for p in obj.get("parents", []) for c in p["conditions"]]
    return {c["type"]: c["reason"] for c in entries}


def test_gateway_api_through_a_gateway_under_the_control_server(mesh):
    listen, = free_ports(1)
    app = mesh.app("web")
    mesh.write("services.yaml", [service_entry(8080, [endpoint(app)], host="web.default.svc.cluster.local", name="web"),
                                 gateway_service({80: listen}, namespace=NS, labels=LABELS)])
    mesh.write("gateway-api.yaml", [GATEWAY, http_route("web")])
    control = mesh.control()
    gateway = mesh.proxy(control.port, "edge-istio", LABELS, namespace=NS, subcommand="gateway")
    control.wait_synced(gateway.node_id)

    served = curl(listen, "/app/page", host="web.example.com")
    assert (served.status, served.body) == (200, b"web GET /app/page\n")
    assert curl(listen, "/application", host="web.example.com").status == 404  # PathPrefix is element-wise
    status = control.status()
    assert conditions(status, "Gateway") == {"Accepted": "Accepted", "Programmed": "Programmed"}
    assert conditions(status, "HTTPRoute") == {"Accepted": "Accepted", "ResolvedRefs": "ResolvedRefs"}
    assert "HTTPRoute default/web parent Gateway infra/edge: Accepted=True(Accepted), ResolvedRefs=True(ResolvedRefs)" \
        in control.status_text()

    mesh.write("gateway-api.yaml", [GATEWAY, http_route("missing")])
    control.wait_status(lambda s: conditions(s, "HTTPRoute").get("ResolvedRefs") == "BackendNotFound",
                        "the route's ResolvedRefs to say BackendNotFound")
    control.wait_synced(gateway.node_id)
    assert curl(listen, "/app/page", host="web.example.com").status == 500  # the spec's answer for it
