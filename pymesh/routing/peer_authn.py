"""Which PeerAuthentication mode each inbound port of a workload runs, composed as Istio's
`ComposePeerAuthentication` (pilot/pkg/security/authn) does:

- mesh-wide: a policy without a selector (or with empty matchLabels) in the root namespace;
  namespace-wide: one without a selector in the workload's namespace; workload: one whose
  selector matches the workload's labels, in its namespace. A selector policy in the root
  namespace applies to nothing (Istio ignores it).
- The narrowest scope that sets a mode wins; UNSET (or no `mtls`) inherits the wider scope's;
  with nothing set the mode is PERMISSIVE.
- Several policies in one scope: the oldest (creationTimestamp, then name) is the one used;
  a policy without a timestamp counts as oldest, as Go's zero time does.
- portLevelMtls (the workload policy's only) overrides per port; UNSET there inherits the
  workload-level result.

Pure: compiled once per snapshot into a `PeerAuthnPolicy` the proxy looks a port up in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from pymesh.api import model
from pymesh.routing.scope import ROOT_NAMESPACE, selects

DISABLE, PERMISSIVE, STRICT = "DISABLE", "PERMISSIVE", "STRICT"


@dataclass(frozen=True)
class PeerAuthnPolicy:
    """The composed result for one workload: a mode for every port, exceptions by port."""

    mode: str = PERMISSIVE
    per_port: Mapping[int, str] = field(default_factory=dict)
    sources: tuple[str, ...] = ()  # "namespace/name" of the policies composed, for config_dump

    def mode_for(self, port: int) -> str:
        return self.per_port.get(port, self.mode)

    @property
    def any_strict(self) -> bool:
        return self.mode == STRICT or STRICT in self.per_port.values()


def _age(policy: model.PeerAuthentication) -> tuple[float, str]:
    stamp = policy.metadata.creation_timestamp
    return (float("-inf") if stamp is None else stamp, policy.metadata.name)


def _oldest(policies: list[model.PeerAuthentication]) -> model.PeerAuthentication | None:
    return min(policies, key=_age) if policies else None


def compose(policies: Iterable[model.PeerAuthentication], namespace: str, labels: Mapping[str, str],
            root_namespace: str = ROOT_NAMESPACE) -> PeerAuthnPolicy:
    """The effective policy for the workload in `namespace` with `labels`."""
    mesh, spaces, workloads = [], [], []
    for policy in policies:
        where = policy.metadata.namespace
        if not policy.selector:
            if where == root_namespace:
                mesh.append(policy)
            elif where == namespace:
                spaces.append(policy)
        elif where == namespace and where != root_namespace and selects(policy.selector, labels):
            workloads.append(policy)
    chosen = [p for p in (_oldest(mesh), _oldest(spaces), _oldest(workloads)) if p is not None]
    mode = PERMISSIVE
    for policy in chosen:
        if policy.mode != "UNSET":
            mode = policy.mode
    workload = _oldest(workloads)
    per_port = {}
    if workload is not None:
        per_port = {p.port: (mode if p.mode == "UNSET" else p.mode) for p in workload.port_level_mtls}
    sources = tuple(f"{p.metadata.namespace}/{p.metadata.name}" for p in chosen)
    return PeerAuthnPolicy(mode=mode, per_port=per_port, sources=sources)
