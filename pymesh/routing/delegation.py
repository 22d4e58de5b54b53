"""VirtualService delegation (Istio's VirtualService chaining), resolved before routes compile:
a root VirtualService's http route with `delegate: {name, namespace}` is replaced by the routes
of that hostless (delegate) VirtualService, each narrowed by the root route's matches, as
Istio's mergeVirtualServicesIfNeeded (pilot/pkg/model/virtualservice.go) does:

- a delegate that does not exist or is not exported to the root's namespace drops the root
  route (only it);
- each delegate route's match must fall within one of the root route's matches (a conflicting
  one, say prefix /b under the root's /a, or any regex, drops that delegate route); the merged
  match is the delegate's with the root's uri, scheme, method, authority and port where the
  delegate sets none, and both header, withoutHeaders and query parameter maps (the delegate's
  entries win);
- a delegate route without rewrite, timeout, retries, fault, mirrors, corsPolicy or headers
  takes the root route's; names join as "root-delegate";
- delegate VirtualServices themselves route nothing on their own, and are dropped.

Pure; `apply` returns the config unchanged (the same object) when nothing delegates."""

from __future__ import annotations

from dataclasses import replace

from pymesh.api import model
from pymesh.routing.scope import exported_to


def apply(config: model.MeshConfig) -> model.MeshConfig:
    services = config.virtual_services
    if all(vs.hosts and not _is_root(vs) for vs in services):
        return config
    delegates = {(vs.metadata.name, vs.metadata.namespace): vs for vs in services if not vs.hosts}
    merged = tuple(_merge_root(vs, delegates) if _is_root(vs) else vs for vs in services if vs.hosts)
    return replace(config, virtual_services=merged)


def _is_root(vs: model.VirtualService) -> bool:
    return any(route.delegate is not None for route in vs.http)


def _merge_root(root: model.VirtualService, delegates: dict) -> model.VirtualService:
    namespace = root.metadata.namespace
    routes: list[model.HTTPRoute] = []
    for route in root.http:
        if route.delegate is None:
            routes.append(route)
            continue
        child = delegates.get((route.delegate.name, route.delegate.namespace or namespace))
        if child is None or not exported_to(child.export_to, child.metadata.namespace, namespace):
            continue
        routes += [m for m in (merge_route(route, sub) for sub in child.http) if m is not None]
    return replace(root, http=tuple(routes))


def merge_route(root: model.HTTPRoute, sub: model.HTTPRoute) -> model.HTTPRoute | None:
    """`sub` (a delegate's route) under `root`, or None when its matches conflict with root's."""
    matches = merge_matches(root.match, sub.match)
    if matches is None:
        return None
    return replace(
        sub,
        match=matches,
        name=_joined(root.name, sub.name),
        rewrite=sub.rewrite or root.rewrite,
        timeout=sub.timeout if sub.timeout is not None else root.timeout,
        retries=sub.retries or root.retries,
        fault=sub.fault or root.fault,
        mirrors=sub.mirrors or root.mirrors,
        cors_policy=sub.cors_policy or root.cors_policy,
        headers=sub.headers if sub.headers != model.Headers() else root.headers,
    )


def merge_matches(root: tuple[model.HTTPMatchRequest, ...],
                  sub: tuple[model.HTTPMatchRequest, ...]) -> tuple[model.HTTPMatchRequest, ...] | None:
    """Every delegate match narrowed by each root match it fits in; None when one fits none."""
    if not root:
        return sub
    if not sub:
        return root
    out = []
    for leaf in sub:
        fitting = [_merge_match(r, leaf) for r in root if not _conflict(r, leaf)]
        if not fitting:
            return None
        out += fitting
    return tuple(out)


def _merge_match(root: model.HTTPMatchRequest, leaf: model.HTTPMatchRequest) -> model.HTTPMatchRequest:
    # sourceLabels and gateways stay the delegate's: Istio ignores the root's here
    return replace(
        leaf,
        name=_joined(root.name, leaf.name),
        uri=leaf.uri or root.uri,
        scheme=leaf.scheme or root.scheme,
        method=leaf.method or root.method,
        authority=leaf.authority or root.authority,
        headers={**root.headers, **leaf.headers},
        without_headers={**root.without_headers, **leaf.without_headers},
        query_params={**root.query_params, **leaf.query_params},
        port=leaf.port or root.port,
    )


def _conflict(root: model.HTTPMatchRequest, leaf: model.HTTPMatchRequest) -> bool:
    pairs = [(root.uri, leaf.uri), (root.scheme, leaf.scheme), (root.method, leaf.method),
             (root.authority, leaf.authority)]
    pairs += [(root.headers.get(k), v) for k, v in leaf.headers.items()]
    pairs += [(root.headers.get(k), v) for k, v in leaf.without_headers.items()]  # sic: Istio compares with headers
    pairs += [(root.query_params.get(k), v) for k, v in leaf.query_params.items()]
    if any(_string_conflict(r, l) for r, l in pairs) or root.ignore_uri_case != leaf.ignore_uri_case:
        return True
    return bool(root.port and leaf.port and root.port != leaf.port)


def _string_conflict(root: model.StringMatch | None, leaf: model.StringMatch | None) -> bool:
    """Whether `leaf` can match something `root` does not (Istio's stringMatchConflict)."""
    if root is None or leaf is None:
        return False
    if "regex" in (root.kind, leaf.kind):
        return True
    if root.kind == "exact" and root.value:
        return leaf.kind == "prefix" or leaf.value != root.value
    if root.kind == "prefix" and root.value and leaf.value:
        return not leaf.value.startswith(root.value)
    return True


def _joined(root: str, leaf: str) -> str:
    return f"{root}-{leaf}" if root and leaf else (leaf or root)
