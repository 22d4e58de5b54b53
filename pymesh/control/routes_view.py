"""A service's routes as a proxy runs them, for the mesh page: the proxy's view of the current
generation (what the hub pushes it), compiled by the proxies' own compiler, then cut down to the
virtual hosts that name the service and the clusters (subsets, endpoints) their routes use.
Redacted as /config_dump is."""

from __future__ import annotations

from pymesh.api import model
from pymesh.api.wire import Node
from pymesh.routing.compile import compile_snapshot
from pymesh.routing.dump import dump_snapshot
from pymesh.routing.snapshot import ProxyIdentity
from pymesh.routing.view import Views


def identity(node: Node) -> ProxyIdentity:
    return ProxyIdentity(workload=node.workload or node.id, namespace=node.namespace, labels=dict(node.labels),
                         service_account=node.service_account, kind=node.kind)


def service_routes(config: model.MeshConfig, version: str, host: str, node: Node) -> dict:
    """What `node`'s proxy does with requests for `host`."""
    # PythonFilter classes are not loaded: the server never runs filter code, shipped or installed
    snapshot = dump_snapshot(compile_snapshot(Views(config).view(node), identity(node), version, load_filters=None))
    virtual_hosts = []
    for listener in snapshot["listeners"]:
        for table in [listener["route_table"]] + [chain["route_table"] for chain in listener["tls_servers"]]:
            for vh in (table or {}).get("virtual_hosts", ()):
                if any(_names(domain, host) for domain in vh["domains"]):
                    virtual_hosts.append({"listener": listener["name"], **vh})
    used = {c["cluster"] for vh in virtual_hosts for r in vh["routes"] for c in r.get("clusters", ())}
    clusters = [c for c in snapshot["clusters"] if c["name"] in used or c["service_host"] == host]
    return {"host": host, "proxy": node.id, "version": version, "virtual_hosts": virtual_hosts,
            "clusters": [{k: c[k] for k in ("name", "service_host", "port", "subset", "protocol", "endpoints")}
                         for c in clusters],
            "warnings": [w for w in snapshot["warnings"] if host in w]}


def _names(domain: str, host: str) -> bool:
    """Whether a virtual host's domain is the service (with or without a port, or its short name)."""
    name = domain.rsplit(":", 1)[0] if domain.count(":") == 1 else domain
    return name == host or host.startswith(name + ".")
