"""Which VirtualServices (and which of their matches) apply to a proxy: Istio's `gateways`.

A VirtualService lists the gateways it binds to: "mesh" (every sidecar), "<name>" (a Gateway
in the VirtualService's namespace), "<namespace>/<name>"; none at all means "mesh" only. A
match may name its own gateways, which replace the VirtualService's for that match (Istio's
sourceMatchHTTP / sourceMatchTCP / sourceMatchTLS: a match with gateways ignores sourceLabels).
`bind` returns the VirtualService as one proxy sees it, so route compilation stays the same
for sidecars and gateways.
"""

from __future__ import annotations

from dataclasses import replace
from typing import AbstractSet, Iterable

from pymesh.api import model
from pymesh.api.gateway import MESH

MESH_ONLY = frozenset({MESH})


def resolve(name: str, namespace: str) -> str:
    """A `gateways` entry as "mesh" or "namespace/name" (`namespace`: the VirtualService's).
    The legacy "name.namespace[.svc.cluster.local]" form reads as Istio reads it."""
    if name == MESH or "/" in name:
        return name
    if "." in name:
        gateway, ns = name.split(".")[:2]
        return f"{ns}/{gateway}"
    return f"{namespace}/{name}"


def gateway_key(gateway: model.Gateway) -> str:
    return f"{gateway.metadata.namespace}/{gateway.metadata.name}"


def bound_gateways(vs: model.VirtualService) -> frozenset[str]:
    """The gateways the VirtualService's own `gateways` names, resolved."""
    if not vs.gateways:
        return MESH_ONLY
    return frozenset(resolve(g, vs.metadata.namespace) for g in vs.gateways)


def bind(vs: model.VirtualService, names: AbstractSet[str]) -> model.VirtualService | None:
    """`vs` as a proxy serving the gateways `names` sees it ({"mesh"} for a sidecar): None when
    it is not bound to any of them; else with the matches that name other gateways left out,
    and the routes all of whose matches were left out dropped."""
    if not bound_gateways(vs) & names:
        return None
    ns = vs.metadata.namespace
    http = _routes(vs.http, names, ns)
    tcp = _routes(vs.tcp, names, ns)
    tls = _routes(vs.tls, names, ns)
    if (http, tcp, tls) == (vs.http, vs.tcp, vs.tls):
        return vs
    return replace(vs, http=http, tcp=tcp, tls=tls)


def bind_all(virtual_services: Iterable[model.VirtualService], names: AbstractSet[str]) -> tuple[model.VirtualService, ...]:
    return tuple(bound for vs in virtual_services if (bound := bind(vs, names)) is not None)


def _routes(routes: tuple, names: AbstractSet[str], namespace: str) -> tuple:
    if not any(m.gateways for route in routes for m in route.match):
        return routes  # nothing narrows by gateway: the common case costs nothing
    out = []
    for route in routes:
        if not route.match:
            out.append(route)
            continue
        kept = tuple(_match(m, names, namespace) for m in route.match)
        kept = tuple(m for m in kept if m is not None)
        if kept:
            out.append(route if kept == route.match else replace(route, match=kept))
    return tuple(out)


def _match(m, names: AbstractSet[str], namespace: str):
    """The match if it applies here; a match naming its gateways matches no sourceLabels."""
    if not m.gateways:
        return m
    if not any(resolve(g, namespace) in names for g in m.gateways):
        return None
    return replace(m, source_labels={}) if m.source_labels else m
