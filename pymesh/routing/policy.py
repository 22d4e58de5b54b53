"""Istio's traffic policy precedence for one cluster (pilot's MergeSubsetTrafficPolicy): the one
merge every DestinationRule policy of a cluster goes through.

1. A policy's portLevelSettings entry for the cluster's port replaces that policy whole: the
   entry's fields, and the default for every field it leaves out (nothing of the policy's top
   level is inherited, as Istio's API documents; fields a port entry cannot carry are dropped
   too, as pilot's shadowCopyPortTrafficPolicy does).
2. The subset's policy, so narrowed, overrides the rule's field by field; when the subset has an
   entry for the port, all port-level fields come from it, unset ones as defaults.

So a subset's top-level field beats the rule's port-level one, as in Istio.
"""

from __future__ import annotations

from dataclasses import fields, replace

from pymesh.api import model

# The fields a port-level entry sets; TrafficPolicy fields outside it merge only when set.
PORT_FIELDS = tuple(f.name for f in fields(model.PortTrafficPolicy) if f.name != "port")
_MERGED_FIELDS = tuple(f.name for f in fields(model.TrafficPolicy) if f.name != "port_level_settings")


def at_port(policy: model.TrafficPolicy | None, port: int) -> tuple[model.TrafficPolicy | None, bool]:
    """The policy that applies on `port`, and whether a port-level entry made it (the first
    entry naming the port wins, as in Istio)."""
    if policy is None:
        return None, False
    entry = next((p for p in policy.port_level_settings if p.port == port), None)
    if entry is None:
        return replace(policy, port_level_settings=()), False
    return model.TrafficPolicy(**{name: getattr(entry, name) for name in PORT_FIELDS}), True


def merged(rule: model.DestinationRule | None, subset: model.Subset | None, port: int) -> model.TrafficPolicy:
    """The cluster's policy on `port` (a field left None means the default)."""
    base, _ = at_port(rule.traffic_policy if rule else None, port)
    top, port_level = at_port(subset.traffic_policy if subset else None, port)
    if top is None:
        return base or model.TrafficPolicy()
    if base is None:
        return top
    override = {
        name: getattr(top, name)
        for name in _MERGED_FIELDS
        if getattr(top, name) is not None or (port_level and name in PORT_FIELDS)
    }
    return replace(base, **override)


def duplicate_ports(policy: model.TrafficPolicy | None) -> list[int]:
    """Ports named by more than one portLevelSettings entry (all but the first are ignored)."""
    ports = [p.port for p in policy.port_level_settings] if policy else []
    return sorted({port for i, port in enumerate(ports) if port in ports[:i]})
