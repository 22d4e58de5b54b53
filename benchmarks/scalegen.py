"""Generated pymesh configs for the scale benchmark: many services, or many routes in one host.

Both start from the one-hop config (configs/pymesh-egress.yaml: the upstream.bench ServiceEntry and
the Sidecar's egress listener) and append Istio resources built as data, so they are valid YAML by
construction.
"""

from __future__ import annotations

import yaml

from benchmarks import configs
from benchmarks.rows import HOST

API = "networking.istio.io/v1"


def _service_entry(host: str, listen_port: int, upstream_port: int) -> dict:
    return {"apiVersion": API, "kind": "ServiceEntry", "metadata": {"name": host.split(".")[0], "namespace": "bench"},
            "spec": {"hosts": [host], "ports": [{"number": listen_port, "name": "http", "protocol": "HTTP"}],
                     "resolution": "STATIC",
                     "endpoints": [{"address": "127.0.0.1", "ports": {"http": upstream_port}}]}}


def _virtual_service(name: str, host: str, routes: list[dict]) -> dict:
    return {"apiVersion": API, "kind": "VirtualService", "metadata": {"name": name, "namespace": "bench"},
            "spec": {"hosts": [host], "http": routes}}


def _route(name: str, uri: dict, host: str) -> dict:
    return {"name": name, "match": [{"uri": uri}], "route": [{"destination": {"host": host}}]}


def _with_base(params: dict, documents: list[dict]) -> str:
    base = configs.render("pymesh-egress.yaml", {"protocol": "HTTP", **params})
    return base + "".join("---\n" + yaml.safe_dump(doc, sort_keys=False) for doc in documents)


def services_config(count: int, params: dict) -> str:
    """The one-hop config plus `count` services, each a ServiceEntry and a VirtualService."""
    docs = []
    for i in range(count):
        host = f"svc-{i}.bench"
        docs.append(_service_entry(host, params["listen_port"], params["upstream_port"]))
        docs.append(_virtual_service(f"svc-{i}", host, [_route("all", {"prefix": "/"}, host)]))
    return _with_base(params, docs)


def route_path(index: int) -> str:
    return f"/r{index}"


def routes_config(count: int, params: dict) -> str:
    """The one-hop config plus one VirtualService for upstream.bench with `count` exact-path routes
    /r0 .. /r<count-1>, in that order (a request for /r0 matches the first, the last one last)."""
    routes = [_route(f"r{i}", {"exact": route_path(i)}, HOST) for i in range(count)]
    return _with_base(params, [_virtual_service("upstream-routes", HOST, routes)])
