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


def logging_client(mesh, mesh_file):
    """A control server with `mesh_file` as --mesh-config, the canary's services and route, the
    client's Telemetry logging to json-file, and the client proxy, synced."""
    port = free_ports(1)[0]
    mesh.write("service.yaml", versioned_service(HOST, port, {"v1": mesh.app("v1"), "v2": mesh.app("v2")}))
    mesh.write("route.yaml", [canary_route(100, 0, HOST)])
    mesh.write("sidecar.yaml", [egress_sidecar("productpage", CLIENT, port)])
    mesh.write("telemetry.yaml", [logging_telemetry(disabled=False)])
    control = mesh.control(extra=("--mesh-config", str(mesh_file)))
    client = mesh.proxy(control.port, "productpage", CLIENT)
    control.wait_synced(client.node_id)
    return control, client, port


def test_mesh_config_file_and_telemetry_reach_the_proxy(mesh):
    log_path = mesh.root / "client-access.json"
    mesh_file = mesh.root / "mesh"
    mesh_file.write_text("extensionProviders:\n- name: json-file\n  envoyFileAccessLog:\n"
                         f"    path: {log_path}\n    logFormat:\n      labels:\n"
                         "        path: '%REQ(:PATH)%'\n        code: '%RESPONSE_CODE%'\n")
    control, client, port = logging_client(mesh, mesh_file)

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


def test_the_mesh_config_file_is_watched_and_a_bad_version_keeps_the_last_good(mesh):
    first, second = mesh.root / "first.json", mesh.root / "second.json"
    mesh_file = mesh.root / "mesh"

    def provider_at(path) -> str:
        return (f"extensionProviders:\n- name: json-file\n  envoyFileAccessLog:\n    path: {path}\n"
                "    logFormat: {labels: {path: '%REQ(:PATH)%'}}\n")

    mesh_file.write_text(provider_at(first))
    control, client, port = logging_client(mesh, mesh_file)
    assert answers_from(port, HOST, 1) == [(200, "v1")]
    wait_until(lambda: first.exists() and first.read_text(), what="the first file's line")

    version = control.status()["version"]
    tmp = mesh_file.with_name(".mesh.tmp")
    tmp.write_text(provider_at(second))
    tmp.replace(mesh_file)
    control.wait_status(lambda s: s["version"] != version, what="the new mesh config applied")
    control.wait_synced(client.node_id)
    assert answers_from(port, HOST, 1) == [(200, "v1")]
    wait_until(lambda: second.exists() and second.read_text(), what="the second file's line")

    version = control.status()["version"]
    tmp.write_text("extensionProviders: [{name: broken, zipkin: {port: 9411}}]\n")
    tmp.replace(mesh_file)
    status = control.wait_status(lambda s: any(r["file"] == str(mesh_file) for r in s["rejected"]),
                                 what="the bad mesh config reported")
    assert "zipkin.service: required field is missing" in json.dumps(status["rejected"])
    assert control.status()["version"] == version  # nothing pushed: the last good one stays
