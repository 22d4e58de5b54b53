"""PythonFilters under a real control server: an installed module is sent by name and imported by
the proxy; a file module's code is sent only with `control serve --ship-filter-code`, and run only
by a proxy with `--accept-filter-code`; otherwise the proxy NACKs, naming the resource, and keeps
its configuration."""

from __future__ import annotations

import json
import urllib.request

from mesh_harness import mesh  # noqa: F401
from proxy_harness import LOCALHOST

LABELS = {"app": "ratings"}


def python_filter(name: str, module) -> dict:
    return {"apiVersion": "pymesh.dev/v1alpha1", "kind": "PythonFilter",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"matchLabels": LABELS}, "module": module, "phase": "AUTHZ"}}


INSTALLED = python_filter("installed", "pymesh.filters:HttpFilter")
FROM_FILE = python_filter("from-file", {"file": "filters/check.py", "class": "Check"})


def write_filter_file(mesh, marker) -> None:
    """A filter whose import leaves `marker` behind: proof of which process ran the code."""
    (mesh.config_dir / "filters").mkdir(exist_ok=True)
    (mesh.config_dir / "filters" / "check.py").write_text(
        "import os\nfrom pymesh.filters import HttpFilter\n\n"
        f"with open({str(marker)!r}, 'a') as out:\n    out.write(str(os.getpid()) + '\\n')\n\n"
        "class Check(HttpFilter):\n    pass\n")


def dumped_filters(proxy) -> list[str]:
    status, _, body = proxy.admin("/config_dump")
    assert status == 200, body
    return [spec["name"] for spec in json.loads(body)["python_filters"]["inbound"]]


def test_an_installed_module_is_sent_by_name_and_a_file_without_shipping_is_nacked(mesh, tmp_path):
    marker = tmp_path / "imported"
    write_filter_file(mesh, marker)
    mesh.write("filters.yaml", [INSTALLED])
    control = mesh.control()
    proxy = mesh.proxy(control.port, "ratings", LABELS)
    control.wait_synced(proxy.node_id)
    assert dumped_filters(proxy) == ["default/installed"]

    mesh.write("filters.yaml", [INSTALLED, FROM_FILE])
    node = control.wait_node(proxy.node_id, lambda n: n["state"] == "NACKED", "NACKED")
    assert "PythonFilter default/from-file (module filters/check.py:Check)" in node["error"], node
    assert "--ship-filter-code" in node["error"], node
    assert dumped_filters(proxy) == ["default/installed"]  # the last good configuration
    assert not marker.exists(), "nobody should have run the file's code"


def shipping(mesh, tmp_path):
    """A control server shipping the file filter's code, and the marker its import leaves."""
    marker = tmp_path / "imported"
    write_filter_file(mesh, marker)
    mesh.write("filters.yaml", [FROM_FILE])
    return mesh.control(extra=("--ship-filter-code",)), marker


def test_shipped_code_is_refused_by_a_proxy_that_does_not_accept_it(mesh, tmp_path):
    control, marker = shipping(mesh, tmp_path)
    proxy = mesh.proxy(control.port, "ratings", LABELS, wait=False)
    node = control.wait_node(proxy.node_id, lambda n: n["state"] == "NACKED", "NACKED")
    assert "PythonFilter default/from-file" in node["error"] and "--accept-filter-code" in node["error"], node
    assert not marker.exists(), "the proxy ran code it does not accept"


def test_shipped_code_runs_in_a_proxy_that_accepts_it_and_never_in_the_server(mesh, tmp_path):
    control, marker = shipping(mesh, tmp_path)
    proxy = mesh.proxy(control.port, "ratings", LABELS, extra=("--accept-filter-code",))
    control.wait_synced(proxy.node_id)
    assert dumped_filters(proxy) == ["default/from-file"]
    # the mesh page compiles the proxy's chains on the server: without loading the filter
    page = f"http://{LOCALHOST}:{control.admin_port}/mesh/routes.json?host=ratings&proxy={proxy.node_id}"
    with urllib.request.urlopen(page, timeout=10) as response:
        assert response.status == 200
    pids = set(marker.read_text().split())
    assert str(proxy.pid) in pids and str(control.proc.pid) not in pids, pids
