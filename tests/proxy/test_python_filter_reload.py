"""A PythonFilter whose module does not load rejects the configuration in a real `pymesh proxy`:
at a reload the old configuration keeps serving and /config_dump says why (resource and module
named); at start the proxy refuses to run. A fixed module is applied at the next reload."""

from __future__ import annotations

import json

import pytest

from proxy_harness import Proxy, curl, dump_yaml, free_port, http_mesh, to_subset, wait_until

pytestmark = pytest.mark.timeout(90)

GOOD = "from pymesh.filters import HttpFilter\n\nclass Check(HttpFilter):\n    pass\n"
RAISES = "raise RuntimeError('cannot reach the key service')\n"


def config(port: int, servers: dict, subset: str) -> str:
    mesh = http_mesh(port, servers, [{"name": "main", "route": [to_subset(subset)]}])
    python_filter = {
        "apiVersion": "pymesh.dev/v1alpha1", "kind": "PythonFilter",
        "metadata": {"name": "check", "namespace": "default"},
        "spec": {"module": {"file": "filters/check.py", "class": "Check"}, "phase": "AUTHN"},
    }
    return dump_yaml([*mesh, python_filter])


def served_by(port: int) -> str:
    result = curl(port, "/")
    assert result.status == 200, result
    return result.header("x-upstream")


def config_status(proxy) -> dict:
    status, _, body = proxy.admin("/config_dump")
    assert status == 200, body
    return json.loads(body)["config_status"]


def test_a_module_that_fails_to_import_is_rejected_at_reload_and_the_old_one_serves(proxies, upstreams, tmp_path):
    servers = {"v1": upstreams("v1"), "v2": upstreams("v2")}
    port = free_port()
    filters = tmp_path / "proxy0" / "filters"
    filters.mkdir(parents=True)
    (filters / "check.py").write_text(GOOD)
    proxy = proxies(config(port, servers, "v1"))
    assert served_by(port) == "v1"

    (filters / "check.py").write_text(RAISES)
    proxy.write_config(config(port, servers, "v2"))
    wait_until(lambda: (config_status(proxy)["last_attempt"] or {}).get("result") == "rejected", 15,
               what="the reload to be rejected")
    errors = "\n".join(config_status(proxy)["last_attempt"]["errors"])
    assert "PythonFilter default/check (module filters/check.py:Check)" in errors, errors
    assert "RuntimeError: cannot reach the key service" in errors, errors
    assert "configuration rejected" in proxy.stderr()
    assert proxy.running() and served_by(port) == "v1"

    (filters / "check.py").write_text(GOOD)
    proxy.write_config(config(port, servers, "v2") + "\n# fixed\n")
    wait_until(lambda: served_by(port) == "v2", 15, 0.1, "the fixed configuration to apply")


def test_a_module_that_fails_to_import_stops_the_proxy_from_starting(upstreams, tmp_path):
    port = free_port()
    (tmp_path / "filters").mkdir()
    (tmp_path / "filters" / "check.py").write_text("def broken(:\n")
    proxy = Proxy(tmp_path, config(port, {"v1": upstreams("v1")}, "v1"))
    try:
        proxy.start(wait=False)
        assert proxy.wait_exit() == 1
    finally:
        proxy.kill()
    stderr = proxy.stderr()
    assert "configuration has errors" in stderr and "PythonFilter default/check" in stderr, stderr
    assert "SyntaxError" in stderr and "Traceback" not in stderr, stderr


def test_an_edited_filter_file_in_a_config_directory_reloads(upstreams, tmp_path):
    """With --config DIR the filter's own file is watched too: breaking it is rejected, fixing
    it applies, without touching the YAML."""
    port = free_port()
    (tmp_path / "filters").mkdir()
    (tmp_path / "filters" / "check.py").write_text(GOOD)
    proxy = Proxy(tmp_path, config(port, {"v1": upstreams("v1")}, "v1"), extra_args=["--config", str(tmp_path)])
    try:
        proxy.start()
        (tmp_path / "filters" / "check.py").write_text(RAISES)
        wait_until(lambda: (config_status(proxy)["last_attempt"] or {}).get("result") == "rejected", 15,
                   what="the broken filter file to be rejected")
        (tmp_path / "filters" / "check.py").write_text(GOOD + "\n# fixed\n")
        wait_until(lambda: config_status(proxy)["last_attempt"]["result"] == "success", 15,
                   what="the fixed filter file to apply")
        assert served_by(port) == "v1"
    finally:
        proxy.kill()
