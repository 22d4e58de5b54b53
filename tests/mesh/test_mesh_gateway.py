"""Istio's bookinfo on the ingress gateway under the control server: the samples unchanged in its
config directory, `pymesh gateway --control` sent its Gateways and the VirtualServices bound to
them, productpage behind its own sidecar (registered with the server), curl through the
gateway. A sidecar is not sent the gateway's VirtualService."""

from __future__ import annotations

from pathlib import Path

from mesh_harness import free_ports, ingress_sidecar, mesh, selected_service  # noqa: F401
from proxy_harness import curl, gateway_service

SAMPLES = Path(__file__).parents[1] / "api" / "data" / "istio_samples" / "bookinfo"
GATEWAY_LABELS = {"istio": "ingressgateway"}


def test_bookinfo_through_the_gateway_under_the_control_server(mesh):
    listen, ingress = free_ports(2)
    app = mesh.app("productpage")
    labels = {"app": "productpage", "version": "v1"}
    for name in ("bookinfo-gateway.yaml", "destination-rule-all.yaml", "virtual-service-all-v1.yaml"):
        mesh.write(name, (SAMPLES / name).read_text())
    mesh.write("services.yaml", [selected_service("productpage.default.svc.cluster.local", 9080, labels, "productpage"),
                                 ingress_sidecar("productpage", labels, ingress, app.port),
                                 gateway_service({80: listen})])
    control = mesh.control()
    productpage = mesh.proxy(control.port, "productpage-v1", labels, address="127.0.0.1", ports={"http": ingress})
    gateway = mesh.proxy(control.port, "istio-ingressgateway", GATEWAY_LABELS, namespace="istio-system",
                         subcommand="gateway")
    control.wait_synced(productpage.node_id)
    control.wait_synced(gateway.node_id)

    result = curl(listen, "/productpage", host="bookinfo.example.com")
    assert result.status == 200, result
    assert result.body == b"productpage GET /productpage\n"
    (request,) = app.wait_requests(1)
    assert request.path == "/productpage"
    assert request.header("x-envoy-internal") == "true"  # the gateway's client is on loopback
    assert request.header("x-forwarded-for").startswith("127.0.0.1")
    assert curl(listen, "/reviews").status == 404

    _, _, dump = productpage.admin("/config_dump")
    assert b"bookinfo-gateway" not in dump  # the sidecar is not sent the gateway's Gateway or VirtualService
