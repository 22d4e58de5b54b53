"""Which registered proxies may be endpoints of which services (with mTLS), without I/O.

A registration is an endpoint of the ServiceEntries whose workloadSelector matches its labels in
its own namespace (the routing compiler's rule; the namespace is the certificate's). Labels are
the proxy's claim, so, as a Kubernetes Service admits whatever pods its namespace's users create,
the namespace is the boundary; a ServiceEntry that names its workloads' identities in
`subjectAltNames` (Istio's field for them) admits only proxies with one of those SPIFFE URIs. A
registration one of whose selecting ServiceEntries does not admit it is left out of the mesh
entirely (it shows in /status with the reason), never half-registered.
"""

from __future__ import annotations

from pymesh.api import model
from pymesh.routing.scope import selects
from pymesh.security.identity import SpiffeId


def refusal(entry: model.WorkloadEntry, services: tuple[model.ServiceEntry, ...], trust_domain: str) -> str | None:
    """Why a registered entry may not be an endpoint (None: it may)."""
    namespace = entry.metadata.namespace
    uri = SpiffeId(trust_domain, namespace, entry.spec.service_account).uri
    for se in services:
        if (se.subject_alt_names and se.workload_selector and se.metadata.namespace == namespace
                and selects(se.workload_selector, entry.spec.labels) and uri not in se.subject_alt_names):
            return (f"ServiceEntry {namespace}/{se.metadata.name} admits only {', '.join(se.subject_alt_names)} "
                    f"(subjectAltNames), not {uri}")
    return None


def admitted(entries: tuple[model.WorkloadEntry, ...], services: tuple[model.ServiceEntry, ...],
             trust_domain: str) -> tuple[tuple[model.WorkloadEntry, ...], dict[str, str]]:
    """(the entries that may be endpoints, {refused entry's name: why})."""
    kept, refused = [], {}
    for entry in entries:
        why = refusal(entry, services, trust_domain)
        if why is None:
            kept.append(entry)
        else:
            refused[entry.metadata.name] = why
    return tuple(kept), refused
