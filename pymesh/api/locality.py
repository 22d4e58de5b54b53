"""DestinationRule `localityLbSetting`: parsed and validated as Istio's ValidateLocalityLbSetting
does (distribute and failover exclusive, weights 1..100 summing to 100, non-overlapping locality
patterns with at most one trailing "*", failover between distinct plain regions)."""

from __future__ import annotations

from pymesh.api import model, shapes
from pymesh.api.reader import Reader, boolean, integer, message, text

# Node labels Istio reads a proxy's locality from; with failover they may not be failoverPriority.
TOPOLOGY_LABELS = ("topology.kubernetes.io/region", "topology.kubernetes.io/zone", "topology.istio.io/subzone")


def lb_setting(r: Reader) -> model.LocalityLbSetting:
    distribute = r.get_list("distribute", message(shapes.LOCALITY_DISTRIBUTE, _distribute))
    failover = r.get_list("failover", message(shapes.LOCALITY_FAILOVER, _failover))
    priority = r.get_list("failoverPriority", text(_priority_label))
    if distribute and failover:
        r.error("failover", "can not simultaneously specify 'distribute' and 'failover'")
    if failover:
        for label in priority:
            if label.partition("=")[0] in TOPOLOGY_LABELS:
                r.error("failoverPriority", f"can not simultaneously set 'failover' and topology label {label!r} in 'failoverPriority'")
                break
    problem = overlap([d.source for d in distribute])
    if problem:
        r.error("distribute", problem)
    return model.LocalityLbSetting(
        enabled=r.get("enabled", boolean, True),
        distribute=distribute,
        failover=failover,
        failover_priority=priority,
    )


def _distribute(r: Reader) -> model.LocalityDistribute:
    to = r.get_map("to", integer(1, 100), check_key=_pattern)
    if r.has("to") and sum(to.values()) != 100:
        r.error("to", f"total locality weight {sum(to.values())} != 100")
    problem = overlap(list(to))
    if problem:
        r.error("to", problem)
    return model.LocalityDistribute(
        source=r.get("from", text(_pattern), "", required=True), to=tuple(sorted(to.items()))
    )


def _failover(r: Reader) -> model.LocalityFailover:
    source = r.get("from", text(_region), "", required=True)
    to = r.get("to", text(_region), "", required=True)
    if source and source == to:
        r.error("to", "locality lb failover settings must specify different regions")
    return model.LocalityFailover(source=source, to=to)


def _region(value: str) -> str | None:
    if "/" in value:
        return "locality lb failover only specify region"
    if "*" in value:
        return "locality lb failover region should not contain '*' wildcard"
    return None if value else "must not be empty"


def _priority_label(value: str) -> str | None:
    return None if value.partition("=")[0] else "must name a label"


def _pattern(value: str) -> str | None:
    """A locality pattern: region[/zone[/subzone]], with at most one "*", at the end."""
    stars = value.count("*")
    if stars and (stars > 1 or not value.endswith("*")):
        return f"locality {value} wildcard '*' number can not exceed 1 and must be in the end"
    if any(not part for part in value.split("/", 2)):
        return f"locality {value} must not contain empty region/zone/subzone info"
    return None


def overlap(patterns: list[str]) -> str | None:
    """The first pattern that overlaps an earlier one (Istio's validateLocalities), or None."""
    seen: list[tuple[str, ...]] = []
    for pattern in patterns:
        parts = tuple(pattern.split("/", 2))
        if parts[-1] == "*":
            parts = parts[:-1]
        for other in seen:
            shorter = min(len(parts), len(other))
            if parts[:shorter] == other[:shorter]:
                return f"locality {pattern} overlap with previous specified ones"
        seen.append(parts)
    return None
