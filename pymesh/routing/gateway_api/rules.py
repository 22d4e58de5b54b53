"""One HTTPRoute or GRPCRoute rule -> Istio HTTPRoutes, as Istio's conversion writes them.

Each match becomes its own route (so matches of every rule of every route on a host can be
ordered by the Gateway API's precedence). A PathPrefix match is element-wise ("/foo" matches
"/foo" and "/foo/bar", never "/foobar"), which Istio's string prefix cannot say in one match:
it becomes two routes, `exact /foo` and `prefix /foo/`, adjacent, so the prefix rewrites and
redirects replace exactly what the Gateway API says they replace."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from pymesh.api import model
from pymesh.routing.gateway_api import conditions as c
from pymesh.routing.gateway_api.grants import Grants

DOMAIN_SUFFIX = "svc.cluster.local"
PREFIX_MARKER = "%PREFIX()%"  # Istio's: a redirect path that replaces only the matched prefix
# Istio's retry for a Gateway API `retry` stanza ("SHOULD retry on connection errors")
_RETRY_ON = ("connect-failure", "refused-stream", "unavailable", "cancelled")
_URI_RANK = {"exact": 3, "prefix": 2, "regex": 1}


@dataclass(frozen=True)
class Translated:
    """An Istio route and its place in the Gateway API's order."""

    route: model.HTTPRoute
    key: tuple  # sorts most specific first


@dataclass(frozen=True)
class RuleContext:
    route: model.KubernetesRoute
    grants: Grants
    services: frozenset[str]  # registered hosts, lower-case
    problems: c.Problems

    @property
    def namespace(self) -> str:
        return self.route.metadata.namespace


def translate_rule(ctx: RuleContext, rule: model.RouteRule, index: int) -> list[Translated]:
    """Istio routes for one rule, each with its precedence key (the route's own age and name
    and the rule's position break ties, as the spec says)."""
    meta = ctx.route.metadata
    name = rule.name or f"{meta.namespace}.{meta.name}.{index}"
    base = _base_route(ctx, rule, name)
    tie = (meta.creation_timestamp if meta.creation_timestamp is not None else float("inf"),
           f"{meta.namespace}/{meta.name}", index)
    out = []
    if ctx.route.kind == "GRPCRoute":
        for position, m in enumerate(rule.grpc_matches):
            match = model.HTTPMatchRequest(uri=_grpc_uri(m.method), headers=_headers(m.headers))
            out.append(Translated(replace(base, match=(match,)), _istio_key(match) + tie + (position,)))
        return out
    for position, m in enumerate(rule.matches):
        key = _http_key(m) + tie + (position,)
        for match, prefix_branch in _path_matches(m):
            route = replace(base, match=(match,))
            out.append(Translated(_paths_for_branch(route, rule, m, prefix_branch), key))
    return out


# --- matches ---------------------------------------------------------------------------------


def _path_matches(m: model.HTTPRouteMatchSpec) -> list[tuple[model.HTTPMatchRequest, bool]]:
    """(Istio match, whether it is the prefix branch of a PathPrefix)."""
    common = dict(headers=_headers(m.headers), method=model.StringMatch("exact", m.method) if m.method else None,
                  query_params={q.name: _string_match(q) for q in m.query_params})
    if m.path_type == "Exact":
        return [(model.HTTPMatchRequest(uri=model.StringMatch("exact", m.path), **common), False)]
    if m.path_type == "RegularExpression":
        return [(model.HTTPMatchRequest(uri=model.StringMatch("regex", m.path), **common), False)]
    path = m.path.rstrip("/")  # "a trailing / is ignored"
    if not path:
        return [(model.HTTPMatchRequest(uri=model.StringMatch("prefix", "/"), **common), True)]
    return [(model.HTTPMatchRequest(uri=model.StringMatch("exact", path), **common), False),
            (model.HTTPMatchRequest(uri=model.StringMatch("prefix", path + "/"), **common), True)]


def _headers(matches: tuple[model.RouteHeaderMatch, ...]) -> dict[str, model.StringMatch]:
    return {h.name.lower(): _string_match(h) for h in matches}


def _string_match(m: model.RouteHeaderMatch) -> model.StringMatch:
    return model.StringMatch("regex" if m.type == "RegularExpression" else "exact", m.value)


def _grpc_uri(m: model.GRPCMethodMatch | None) -> model.StringMatch | None:
    """gRPC's /<service>/<method> as Istio matches it."""
    if m is None:
        return None
    if m.type == "Exact":
        if not m.method:
            return model.StringMatch("prefix", f"/{m.service}/")
        if not m.service:
            return model.StringMatch("regex", f"/[^/]+/{m.method}")
        return model.StringMatch("exact", f"/{m.service}/{m.method}")
    if not m.method:
        return model.StringMatch("regex", f"/{m.service}/.+")
    if not m.service:
        return model.StringMatch("regex", f"/[^/]+/{m.method}")
    return model.StringMatch("regex", f"/{m.service}/{m.method}")


def _http_key(m: model.HTTPRouteMatchSpec) -> tuple:
    """The spec's precedence: Exact path, then the longest PathPrefix (Istio: then regex, by
    length), then a method match, then the most header and the most query matches."""
    rank = {"Exact": 3, "PathPrefix": 2, "RegularExpression": 1}[m.path_type]
    length = len(m.path.rstrip("/") or "/") if m.path_type == "PathPrefix" else len(m.path)
    return (-rank, -length, not m.method, -len(m.headers), -len(m.query_params))


def _istio_key(m: model.HTTPMatchRequest) -> tuple:
    rank = _URI_RANK[m.uri.kind] if m.uri else 0
    return (-rank, -(len(m.uri.value) if m.uri else 0), m.method is None, -len(m.headers), -len(m.query_params))


# --- filters ---------------------------------------------------------------------------------


def _base_route(ctx: RuleContext, rule: model.RouteRule, name: str) -> model.HTTPRoute:
    request = response = model.HeaderOperations()
    redirect = rewrite = cors = None
    mirrors = []
    failed = False
    for f in rule.filters:
        if f.type == "RequestHeaderModifier" and f.request_header_modifier:
            request = header_operations(f.request_header_modifier)
        elif f.type == "ResponseHeaderModifier" and f.response_header_modifier:
            response = header_operations(f.response_header_modifier)
        elif f.type == "RequestRedirect" and f.request_redirect:
            r = f.request_redirect
            redirect = model.HTTPRedirect(
                authority=r.hostname, port=r.port, scheme=r.scheme, redirect_code=r.status_code,
                # "When empty, port (if specified) of the request is used", unless the scheme changes
                derive_port="" if r.port else ("FROM_PROTOCOL_DEFAULT" if r.scheme else "FROM_REQUEST_PORT"),
            )
        elif f.type == "CORS" and f.cors:
            cors = f.cors
        elif f.type == "URLRewrite" and f.url_rewrite:
            rewrite = model.HTTPRewrite(authority=f.url_rewrite.hostname)
        elif f.type == "RequestMirror" and f.request_mirror:
            destination = _destination(ctx, f.request_mirror.backend_ref)
            percent = f.request_mirror.percent
            mirrors.append(model.HTTPMirrorPolicy(destination, 100.0 if percent is None else percent))
        else:  # ExtensionRef: "the filter MUST NOT be skipped"; the requests it would see get a 500
            ctx.problems.add(c.INVALID_KIND, f"filter {f.type} is not supported by pymesh")
            failed = True
    retries = None
    if rule.retry is not None:
        attempts = 2 if rule.retry.attempts is None else rule.retry.attempts
        retry_on = _RETRY_ON + tuple(str(code) for code in rule.retry.codes) if attempts else ()
        retries = model.HTTPRetry(attempts=attempts, retry_on=retry_on, backoff=rule.retry.backoff)
    timeout = rule.request_timeout or None
    if rule.backend_request_timeout:
        if retries is not None:
            retries = replace(retries, per_try_timeout=rule.backend_request_timeout)
        else:
            timeout = rule.backend_request_timeout
    route = model.HTTPRoute(name=name, headers=model.Headers(request=request, response=response),
                            timeout=timeout, retries=retries, mirrors=tuple(mirrors), rewrite=rewrite,
                            cors_policy=cors)
    if failed:
        return replace(route, direct_response=model.HTTPDirectResponse(500), mirrors=(), rewrite=None)
    if redirect is not None:
        return replace(route, redirect=redirect, mirrors=(), rewrite=None)
    destinations = _destinations(ctx, rule.backend_refs)
    if not destinations:  # "no backends with a weight above 0": a 500, as the spec requires
        return replace(route, direct_response=model.HTTPDirectResponse(500), mirrors=(), rewrite=None)
    return replace(route, route=destinations)


def header_operations(h: model.HeaderModifier) -> model.HeaderOperations:
    return model.HeaderOperations(set={n.lower(): v for n, v in h.set}, add={n.lower(): v for n, v in h.add},
                                  remove=tuple(n.lower() for n in h.remove))


def _paths_for_branch(route: model.HTTPRoute, rule: model.RouteRule, m: model.HTTPRouteMatchSpec,
                      prefix_branch: bool) -> model.HTTPRoute:
    """The rule's URLRewrite or RequestRedirect path for one branch of its match: on the prefix
    branch the matched "/foo/" is replaced by "<replacement>/"; elsewhere the whole path is."""
    path = _path_modifier(rule)
    if path is None:
        return route
    if path.type == "ReplaceFullPath":
        full = path.value or "/"
        if route.redirect is not None:
            return replace(route, redirect=replace(route.redirect, uri=full))
        if prefix_branch:  # a whole-path rewrite must not see the matched prefix: match by regex
            prefix = route.match[0].uri.value  # type: ignore[union-attr]
            match = replace(route.match[0], uri=None if prefix == "/" else model.StringMatch("regex", re.escape(prefix) + ".*"))
            route = replace(route, match=(match,))
        return replace(route, rewrite=replace(route.rewrite or model.HTTPRewrite(), uri=full))
    # ReplacePrefixMatch (the parser guarantees a single PathPrefix match)
    value = path.value.rstrip("/")
    new = value + "/" if prefix_branch else (value or "/")
    if route.redirect is not None:
        return replace(route, redirect=replace(route.redirect, uri=(PREFIX_MARKER + new) if prefix_branch else new))
    return replace(route, rewrite=replace(route.rewrite or model.HTTPRewrite(), uri=new))


def _path_modifier(rule: model.RouteRule) -> model.PathModifier | None:
    for f in rule.filters:
        if f.type == "URLRewrite" and f.url_rewrite and f.url_rewrite.path:
            return f.url_rewrite.path
        if f.type == "RequestRedirect" and f.request_redirect and f.request_redirect.path:
            return f.request_redirect.path
    return None


# --- backends --------------------------------------------------------------------------------


def _destinations(ctx: RuleContext, refs: tuple[model.RouteBackendRef, ...]) -> tuple[model.HTTPRouteDestination, ...]:
    """Weighted destinations, weight-0 ones left out (a lone one takes everything). An invalid
    backend keeps its share: its cluster does not exist, so that share gets a 500."""
    kept = [b for b in refs if b.weight > 0]
    out = []
    for b in kept:
        headers = model.Headers()
        for f in b.filters:
            if f.type == "RequestHeaderModifier" and f.request_header_modifier:
                headers = replace(headers, request=header_operations(f.request_header_modifier))
            elif f.type == "ResponseHeaderModifier" and f.response_header_modifier:
                headers = replace(headers, response=header_operations(f.response_header_modifier))
            else:
                ctx.problems.add(c.INVALID_KIND, f"backendRef filter {f.type} is not supported by pymesh")
        out.append(model.HTTPRouteDestination(_destination(ctx, b.ref), 0 if len(kept) == 1 else b.weight, headers))
    return tuple(out)


L4_KINDS = frozenset({"TCPRoute", "TLSRoute"})


@dataclass(frozen=True)
class L4Rule:
    """A TCPRoute or TLSRoute rule: its weighted destinations."""

    destinations: tuple[model.RouteDestination, ...]


def translate_l4_rule(ctx: RuleContext, rule: model.RouteRule) -> L4Rule:
    """Weighted destinations, weight-0 ones left out; with none left, Istio's unroutable
    destination, so the connections are refused (the spec: "rejected")."""
    kept = [b for b in rule.backend_refs if b.weight > 0]
    if not kept:
        return L4Rule((model.RouteDestination(model.Destination(INVALID_HOST, port=65535)),))
    return L4Rule(tuple(model.RouteDestination(_destination(ctx, b.ref), 0 if len(kept) == 1 else b.weight)
                        for b in kept))


def service_host(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.{DOMAIN_SUFFIX}"


INVALID_HOST = "invalid-backend-ref.pymesh.invalid"  # no cluster: the requests for it get a 500


def _destination(ctx: RuleContext, ref: model.ObjectReference) -> model.Destination:
    namespace = ref.namespace or ctx.namespace
    where = f"backendRef {namespace}/{ref.name}"
    if (ref.group, ref.kind) != ("", "Service"):
        ctx.problems.add(c.INVALID_KIND, f"{where}: kind {ref.group or 'core'}/{ref.kind} is not supported (only Service)")
        return model.Destination(INVALID_HOST)
    source = ("gateway.networking.k8s.io", ctx.route.kind, ctx.namespace)
    if not ctx.grants.allows(source, ("", "Service", namespace, ref.name)):
        ctx.problems.add(c.REF_NOT_PERMITTED, f"{where}: not permitted by any ReferenceGrant")
        return model.Destination(INVALID_HOST)
    host = service_host(ref.name, namespace)
    if host not in ctx.services:
        ctx.problems.add(c.BACKEND_NOT_FOUND, f"{where}: service {host} not found")
    return model.Destination(host, port=ref.port)
