"""Whether a hello's node description is acceptable, before anything is registered from it.

Every field of a Node is client-supplied and ends up in the registry, in WorkloadEntries, in the
status table and in logs, so each is checked for shape and size here: a node id like a DNS name
or an Istio node id part, Kubernetes names and labels, real IP addresses, real ports, and at most
a few of each. Pure: `check_node` returns the first problem, with its field path.
"""

from __future__ import annotations

import ipaddress
import re

from pymesh.api import checks
from pymesh.api.wire import Node

# node ids, workloads, port names: DNS-like, and "~" for Istio's node ids (sidecar~IP~pod.ns~domain)
NAME = re.compile(r"[A-Za-z0-9._:~-]{1,253}\Z")
MAX_LABELS = 64
MAX_ADDRESSES = 16
MAX_PORTS = 64
MAX_SHOWN = 64  # characters of a bad value quoted in the error
KINDS = ("sidecar", "router")  # Istio's node types pymesh has: a workload's proxy, a gateway


def check_node(node: Node) -> str | None:
    """The first problem with `node` ("node.labels: ..."), or None when it can be registered."""
    if not node.id:
        return "node.id must not be empty"
    for path, value in (("node.id", node.id), ("node.workload", node.workload)):
        if value and not NAME.match(value):
            return f"{path}: {_shown(value)} is not a valid name (letters, digits, '.', '_', ':', '~' and '-', at most 253)"
    if node.kind not in KINDS:
        return f"node.kind: {_shown(node.kind)} is not sidecar or router"
    problem = (
        _prefixed("node.namespace", checks.dns_label(node.namespace), node.namespace)
        or _prefixed("node.service_account", checks.dns_subdomain(node.service_account), node.service_account)
        or (node.workload_group and _prefixed("node.workload_group", checks.dns_subdomain(node.workload_group),
                                              node.workload_group))
        or _labels(node)
        or _addresses(node)
        or _ports(node)
        or _stats_address(node)
    )
    return problem


def _labels(node: Node) -> str | None:
    if len(node.labels) > MAX_LABELS:
        return f"node.labels: {len(node.labels)} labels, more than {MAX_LABELS}"
    for key, value in node.labels.items():
        problem = checks.label_key(key) if len(key) <= 317 else "label key is longer than 317 characters"
        if problem is None:
            problem = checks.label_value(value) if len(value) <= 63 else "label value is longer than 63 characters"
        if problem is not None:
            return f"node.labels[{_shown(key)}]: {_cut(problem)}"
    return None


def _addresses(node: Node) -> str | None:
    if len(node.addresses) > MAX_ADDRESSES:
        return f"node.addresses: {len(node.addresses)} addresses, more than {MAX_ADDRESSES}"
    for index, address in enumerate(node.addresses):
        if len(address) > 64 or checks.ip_address(address) is not None:
            return f"node.addresses[{index}]: {_shown(address)} is not an IP address"
    return None


def _ports(node: Node) -> str | None:
    if len(node.ports) > MAX_PORTS:
        return f"node.ports: {len(node.ports)} ports, more than {MAX_PORTS}"
    for name, number in node.ports.items():
        if not NAME.match(name):
            return f"node.ports: {_shown(name)} is not a valid port name"
        if not 0 < number < 65536:
            return f"node.ports[{name}]: {number} is not a port number (1 to 65535)"
    return None


def _stats_address(node: Node) -> str | None:
    """Prometheus is pointed at it, so only at the proxy's own host: loopback, a wildcard (the
    service discovery answers the node's address) or one of its addresses."""
    if not node.stats_address:
        return None
    host, sep, port = node.stats_address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    # ASCII digits only: "²" is a digit to str.isdigit and no number to int(); "١٢٣" is 123 to it
    if not sep or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536 \
            or checks.ip_address(host) is not None:
        return f"node.stats_address: {_shown(node.stats_address)} is not IP:port"
    address = ipaddress.ip_address(host)
    if not (address.is_loopback or address.is_unspecified or host in node.addresses):
        return f"node.stats_address: {host} is neither loopback nor one of node.addresses"
    return None


def _prefixed(path: str, problem: str | None, value: str) -> str | None:
    if problem is None:
        return None
    return f"{path}: {_cut(problem)}" if len(value) <= MAX_SHOWN else f"{path}: {_shown(value)} is not a valid name"


def _shown(value: str) -> str:
    """A bad value quoted (repr: control characters escaped), cut to MAX_SHOWN characters."""
    return repr(value[:MAX_SHOWN]) + (f"... ({len(value) - MAX_SHOWN} more characters)" if len(value) > MAX_SHOWN else "")


def _cut(problem: str) -> str:
    return problem if len(problem) <= 4 * MAX_SHOWN else problem[: 4 * MAX_SHOWN] + "..."
