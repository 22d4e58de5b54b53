"""Istio's VM auto-registration, without I/O: the WorkloadEntry a proxy started with a
WorkloadGroup's name stands for, and why a registration is refused.

As istiod's pilot/pkg/autoregistration: the entry is named `<group>-<first address>` (":" of an
IPv6 address as "-", cut to the last 253 characters), lives in the proxy's namespace, takes the
template's ports, weight, locality and service account, and labels merged template < group
metadata < the proxy's own; it carries the `istio.io/autoRegistrationGroup` annotation. The
proxy's identity (its certificate's, with mTLS) must be in the group's namespace and, when the
template names a service account, have that one; the group must exist. The entry follows the
group: when the group is deleted its entries go (Kubernetes' owner reference in Istio), and a
changed template applies at once (Istio keeps an existing entry until the proxy reconnects).

A group with a probe gets health checking: its entries are endpoints only while the proxy
reports its application healthy, and not before the first report (Istio's
`proxy.istio.io/health-checks-enabled` entries; unhealthy endpoints are not sent to proxies,
as PILOT_SEND_UNHEALTHY_ENDPOINTS' default).
"""

from __future__ import annotations

from pymesh.api import model
from pymesh.api.wire import Node

GROUP_ANNOTATION = "istio.io/autoRegistrationGroup"
MAX_NAME = 253
SOURCE = model.Source(file="<auto-registration>")


def find_group(groups: tuple[model.WorkloadGroup, ...], node: Node) -> model.WorkloadGroup | None:
    for group in groups:
        if group.metadata.name == node.workload_group and group.metadata.namespace == node.namespace:
            return group
    return None


def entry_name(group: str, address: str) -> str:
    name = f"{group}-{address.replace(':', '-')}"
    return name[-MAX_NAME:]


def refusal(node: Node, groups: tuple[model.WorkloadGroup, ...]) -> str | None:
    """Why `node` may not auto-register (None: it may). The namespace and service account
    are the certificate's under mTLS (the hub checked them before)."""
    group = find_group(groups, node)
    if group is None:
        return f"auto-registration of {node.id} failed: cannot find WorkloadGroup {node.namespace}/{node.workload_group}"
    if not node.addresses:
        return f"auto-registration of {node.id} failed: the proxy gave no address (--address)"
    wanted = group.template.service_account
    if wanted and wanted != node.service_account:
        return (f"registration of WorkloadEntry service account mismatch: {node.service_account!r} vs {wanted!r} "
                f"(WorkloadGroup {node.namespace}/{node.workload_group})")
    return None


def workload_entry(node: Node, group: model.WorkloadGroup, extra_labels: model.Labels) -> model.WorkloadEntry:
    """The entry of a node that `refusal` accepted; `extra_labels` are the registry's own
    (the mTLS mode label)."""
    template = group.template
    labels = {**template.labels, **group.labels, **node.labels, **extra_labels}
    name = entry_name(group.metadata.name, node.addresses[0])
    return model.WorkloadEntry(
        metadata=model.Metadata(name=name, namespace=node.namespace, labels=labels, source=SOURCE,
                                annotations={GROUP_ANNOTATION: group.metadata.name}),
        spec=model.WorkloadEntrySpec(
            address=node.addresses[0], ports={**template.ports, **node.ports}, labels=labels, weight=template.weight,
            service_account=template.service_account or node.service_account, locality=template.locality,
        ),
    )


def registered(node: Node, groups: tuple[model.WorkloadGroup, ...], health: tuple[bool, str] | None,
               extra_labels: model.Labels) -> tuple[model.WorkloadEntry | None, str]:
    """(the node's entry, "") while it is an endpoint, else (None, why not now)."""
    problem = refusal(node, groups)
    if problem is not None:
        return None, problem
    group = find_group(groups, node)
    if group.probe is not None:  # health-checked
        if health is None:
            return None, "waiting for the first health report"
        if not health[0]:
            return None, f"unhealthy: {health[1]}"
    return workload_entry(node, group, extra_labels), ""
