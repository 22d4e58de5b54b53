"""Prometheus HTTP service discovery (`http_sd_configs`) of the registered proxies: each
connected proxy's stats address, with meta labels shaped like Kubernetes pod discovery's so that
a scrape config relabels them as Istio's does (`pymesh dashboard prometheus-config` writes one).

Labels: `__meta_pymesh_node_id`, `_namespace`, `_workload`, `_service_account`, `_kind` and
`__meta_pymesh_label_<name>` per node label, its name with every character outside [a-zA-Z0-9_]
made "_" (as `__meta_kubernetes_pod_label_<name>`). Pure: nodes in, JSON-ready list out.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable

from pymesh.api.wire import Node
META = "__meta_pymesh_"
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def http_sd(nodes: Iterable[Node]) -> list[dict]:
    """One target group per proxy that announced a stats address, sorted by node id."""
    groups = []
    for node in sorted(nodes, key=lambda n: n.id):
        target = scrape_address(node)
        if target is None:
            continue
        labels = {f"{META}node_id": node.id, f"{META}namespace": node.namespace, f"{META}workload": node.workload,
                  f"{META}service_account": node.service_account, f"{META}kind": node.kind}
        labels.update({f"{META}label_{_INVALID.sub('_', key)}": value for key, value in sorted(node.labels.items())})
        groups.append({"targets": [target], "labels": labels})
    return groups


def scrape_address(node: Node) -> str | None:
    """Its stats address, a wildcard host replaced by its first address (None: not scrapable)."""
    if not node.stats_address:
        return None
    host, _, port = node.stats_address.rpartition(":")
    if ipaddress.ip_address(host.strip("[]")).is_unspecified:
        if not node.addresses:
            return None
        address = node.addresses[0]
        host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}"
