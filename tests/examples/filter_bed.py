"""The example filters deployed as a user deploys them: the example's own PythonFilter YAML (from
examples/filters/, pluginConfig adjusted to the test's ports) beside an ordinary mesh, in one of
two ways a test is parametrized over (`deploy`):

    static   `pymesh proxy --config FILE` with every resource in the file
    pushed   the same resources in a control server's directory, and a `pymesh proxy --control`
             (the filter's module installed in the proxy, as the default under a control server)

Either way the test gets the listener's port and the proxy, whose /stats/prometheus carries the
filter's metrics.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from mesh_harness import CLIENT, Mesh
from proxy_harness import Proxy, free_port, http_mesh, samples, total

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "filters"


def example(file: str, **plugin_config) -> dict:
    """examples/filters/<file> with these pluginConfig entries replaced."""
    resource = copy.deepcopy(yaml.safe_load((EXAMPLES / file).read_text()))
    resource["spec"].setdefault("pluginConfig", {}).update(plugin_config)
    return resource


@dataclass
class Deployed:
    port: int  # the egress listener the client calls
    proxy: Proxy

    def filter_metric(self, metric: str, filter_name: str) -> float:
        """pymesh_filter_<metric>{filter="<filter_name>"} (0 before the first count)."""
        name = f"pymesh_filter_{metric}"
        return total(samples(self.proxy.prometheus(), name) + samples(self.proxy.prometheus(), name + "_total"),
                     filter=filter_name)


def pushed(mesh: Mesh, resources: list[dict]) -> Proxy:
    mesh.write("mesh.yaml", resources)
    control = mesh.control()
    proxy = mesh.proxy(control.port, "productpage", CLIENT)
    control.wait_synced(proxy.node_id)
    return proxy


@pytest.fixture(params=["static", "pushed"])
def deploy(request, proxies, mesh, monkeypatch):
    """deploy(versions, filters, http=None) -> Deployed: the usual test mesh (proxy_harness.http_mesh:
    svc.local with one subset per upstream, an optional VirtualService) and the filter resources.
    The processes get the repository root on PYTHONPATH: the examples' modules are
    examples.filters.*, imported by the proxy as an installed module would be."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))))
    def start(versions: dict, filters: list[dict], http: list[dict] | None = None) -> Deployed:
        port = free_port()
        resources = http_mesh(port, versions, http) + filters
        return Deployed(port, proxies(resources) if request.param == "static" else pushed(mesh, resources))
    return start
