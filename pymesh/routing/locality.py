"""Locality load balancing, compiled: each endpoint's priority and locality weight as Istio's
control plane computes them (pilot's loadbalancer.ApplyLocalityLoadBalancer).

- `distribute` (applied whenever it is set): the first rule whose `from` matches the proxy's
  locality gives each matching endpoint locality its share of the weight; endpoints in
  localities no `to` names are dropped.
- failover (only when the cluster has outlier detection, as in Istio: without it nothing ever
  marks hosts unhealthy and Envoy would never fail over): priority 0 = same region, zone and
  subzone, 1 = same zone, 2 = same region, 3 = other regions, 4 = other regions than a
  `failover` rule's `to` for the proxy's region; `failoverPriority` labels split levels first.
A proxy with no locality, or `enabled: false`, gets no locality balancing at all.
"""

from __future__ import annotations

from dataclasses import replace
from math import ceil
from typing import Mapping

from pymesh.api import model
from pymesh.api.locality import TOPOLOGY_LABELS
from pymesh.routing.snapshot import Endpoint


def proxy_locality(locality: str, labels: Mapping[str, str]) -> str:
    """The proxy's "region/zone/subzone": given outright, or from Istio's topology labels."""
    if locality:
        return locality
    parts = [labels.get(name, "") for name in TOPOLOGY_LABELS]
    return "/".join(parts).rstrip("/") if parts[0] else ""


def _split(locality: str) -> tuple[str, str, str]:
    region, _, rest = locality.partition("/")
    zone, _, subzone = rest.partition("/")
    return region, zone, subzone


def matches(locality: str, pattern: str) -> bool:
    """Istio's LocalityMatch: "region/zone/subzone" against a pattern with a trailing "*"."""
    for have, want in zip(_split(locality), pattern.split("/", 2)):
        if want == "*":
            return True
        if have != want:
            return False
    return True


def _lb_priority(proxy: tuple[str, str, str], endpoint: tuple[str, str, str]) -> int:
    if proxy[0] != endpoint[0]:
        return 3
    if proxy[1] != endpoint[1]:
        return 2
    return 0 if proxy[2] == endpoint[2] else 1


def apply(endpoints: tuple[Endpoint, ...], setting: model.LocalityLbSetting | None, locality: str,
          labels: Mapping[str, str], failover: bool) -> tuple[Endpoint, ...]:
    """`endpoints` with their priority and locality weight set (some dropped by `distribute`)."""
    setting = setting or model.LocalityLbSetting()
    if not locality or not setting.enabled or not endpoints:
        return endpoints
    if setting.distribute:
        return _distribute(endpoints, setting.distribute, locality)
    if not failover:
        return endpoints
    levels = [_label_level(ep, setting.failover_priority, labels) for ep in endpoints]
    if not setting.failover_priority or setting.failover:
        proxy = _split(locality)
        rules = {rule.source: rule.to for rule in setting.failover}
        for i, ep in enumerate(endpoints):
            priority = _lb_priority(proxy, _split(ep.locality))
            if priority == 3 and proxy[0] in rules and _split(ep.locality)[0] != rules[proxy[0]]:
                priority = 4
            levels[i] = levels[i] * 5 + priority
    ranks = {level: rank for rank, level in enumerate(sorted(set(levels)))}  # 0..N without gaps
    return tuple(replace(ep, priority=ranks[level]) for ep, level in zip(endpoints, levels))


def _label_level(endpoint: Endpoint, priority_labels: tuple[str, ...], labels: Mapping[str, str]) -> int:
    """failoverPriority: the first label (or "label=value") the endpoint does not share with
    the proxy decides its level; sharing them all is level 0."""
    for j, item in enumerate(priority_labels):
        name, eq, value = item.partition("=")
        if endpoint.labels.get(name) != (value if eq else labels.get(name)):
            return len(priority_labels) - j
    return 0


def _distribute(endpoints: tuple[Endpoint, ...], rules: tuple[model.LocalityDistribute, ...],
                locality: str) -> tuple[Endpoint, ...]:
    rule = next((r for r in rules if matches(locality, r.source)), None)
    if rule is None:
        return endpoints
    by_locality: dict[str, list[Endpoint]] = {}
    for ep in endpoints:
        by_locality.setdefault(ep.locality, []).append(ep)
    weights: dict[str, int] = {}
    for pattern, share in rule.to:
        chosen = [loc for loc in by_locality if loc not in weights and matches(loc, pattern)]
        total = sum(sum(max(1, e.weight) for e in by_locality[loc]) for loc in chosen)
        for loc in chosen:
            own = sum(max(1, e.weight) for e in by_locality[loc])
            weights[loc] = ceil(own * share / total)
    return tuple(replace(ep, locality_weight=weights[ep.locality]) for ep in endpoints if ep.locality in weights)
