"""Telemetry under a control server: the mesh config from `control serve --mesh-config` (istiod's
/etc/istio/config/mesh) and the Telemetry resources of the config directory reach the proxy in
its view, and a change to a Telemetry is pushed and applied without a restart."""

from __future__ import annotations

import json

from mesh_harness import CLIENT, HOST, canary_route, egress_sidecar, mesh, versioned_service, wait_until  # noqa: F401
from mesh_harness import answers_from
from ports import free_ports


def logging_telemetry(disabled: bool) -> dict:
    return {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
            "metadata": {"name": "client-logs", "namespace": "default"},
            "spec": {"selector": {"matchLabels": CLIENT},
                     "accessLogging": [{"providers": [{"name": "json-file"}], "disabled": disabled}]}}


def test_mesh_config_file_and_telemetry_reach_the_proxy(mesh):
    log_path = mesh.root / "client-access.json"
    mesh_file = mesh.root / "mesh"
    mesh_file.write_text("extensionProviders:\n- name: json-file\n  envoyFileAccessLog:\n"
                         f"    path: {log_path}\n    logFormat:\n      labels:\n"
                         "        path: '%REQ(:PATH)%'\n        code: '%RESPONSE_CODE%'\n")
    port = free_ports(1)[0]
    mesh.write("service.yaml", versioned_service(HOST, port, {"v1": mesh.app("v1"), "v2": mesh.app("v2")}))
    mesh.write("route.yaml", [canary_route(100, 0, HOST)])
    mesh.write("sidecar.yaml", [egress_sidecar("productpage", CLIENT, port)])
    mesh.write("telemetry.yaml", [logging_telemetry(disabled=False)])
    control = mesh.control(extra=("--mesh-config", str(mesh_file)))
    client = mesh.proxy(control.port, "productpage", CLIENT)
    control.wait_synced(client.node_id)

    assert answers_from(port, HOST, 3) == [(200, "v1")] * 3

    def lines():
        text = log_path.read_text() if log_path.exists() else ""
        return [json.loads(line) for line in text.splitlines()]

    assert wait_until(lambda: len(lines()) == 3 and lines(), what="three JSON lines") == [{"path": "/", "code": 200}] * 3

    version = control.status()["version"]
    mesh.write("telemetry.yaml", [logging_telemetry(disabled=True)])
    control.wait_status(lambda s: s["version"] != version, what="the Telemetry change applied")
    control.wait_synced(client.node_id)
    before = len(lines())
    assert answers_from(port, HOST, 2) == [(200, "v1")] * 2
    client.stop()
    assert len(lines()) == before
