"""Which configuration a proxy sees: its Sidecar, what is exported to its namespace, and what an
egress listener's `hosts` let through.

These are Istio's visibility rules; keeping them together means the snapshot never routes to
something the proxy should not know about.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from pymesh.api import model
from pymesh.routing.hosts import fqdn, hosts_intersect, is_wildcard

# Istio's meshConfig.rootNamespace: its security policies without a selector apply mesh-wide.
ROOT_NAMESPACE = "istio-system"


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """A label selector matches when every selector label is present with the same value."""
    return all(labels.get(k) == v for k, v in selector.items())


def select_sidecar(sidecars: Iterable[model.Sidecar], namespace: str, labels: Mapping[str, str]) -> model.Sidecar | None:
    """Istio's precedence: a Sidecar in the proxy's namespace whose selector matches the proxy's
    labels, else that namespace's selector-less Sidecar, else none (first in file order wins)."""
    fallback = None
    for sc in sidecars:
        if sc.metadata.namespace != namespace:
            continue
        if sc.workload_selector:
            if selects(sc.workload_selector, labels):
                return sc
        elif fallback is None:
            fallback = sc
    return fallback


def exported_to(export_to: Iterable[str], owner_namespace: str, namespace: str) -> bool:
    """exportTo: empty or "*" means everywhere, "." the owner's namespace, else listed names."""
    targets = tuple(export_to)
    if not targets or "*" in targets or namespace in targets:
        return True
    return "." in targets and owner_namespace == namespace


@dataclass(frozen=True)
class EgressScope:
    """Parsed Sidecar egress `hosts` ("namespace/dnsName"): "*" any namespace, "." the Sidecar's,
    "~" none; dnsName "*", "*.example.com" or a name (a short name is read in the namespace of
    the resource being checked, as the resource's own hosts are)."""

    patterns: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, hosts: Iterable[str], sidecar_namespace: str) -> EgressScope:
        patterns = []
        for entry in hosts:
            ns, slash, dns = entry.partition("/")
            if not slash:  # a bare dnsName: any namespace (lenient; the loader may reject it)
                ns, dns = "*", entry
            if ns == ".":
                ns = sidecar_namespace
            patterns.append((ns, dns.lower()))
        return cls(tuple(patterns))

    def allows(self, namespace: str, host: str) -> bool:
        """Whether a resource in `namespace` for `host` (canonical, possibly a wildcard) is in scope."""
        for ns, dns in self.patterns:
            if ns == "~" or (ns != "*" and ns != namespace):
                continue
            if hosts_intersect(dns, host):
                return True
            if "." not in dns and not is_wildcard(dns) and fqdn(dns, namespace) == host:
                return True
        return False


ALL = EgressScope((("*", "*"),))
