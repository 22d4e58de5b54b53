"""VirtualService: how requests to a host are matched and routed."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from pymesh.api import checks, common, hosts, model, shapes
from pymesh.api.cors import cors_policy
from pymesh.api.errors import index_path
from pymesh.api.fault import fault
from pymesh.api.gateway import MESH, gateway_name
from pymesh.api.mirror import mirrors
from pymesh.api.yamltree import LineSeq
from pymesh.api.reader import (
    ISTIO_DURATION,
    ISTIO_DURATION_OR_ZERO,
    PORT,
    Reader,
    Sink,
    Slot,
    boolean,
    choice,
    distinct,
    integer,
    message,
    text,
)

_ROUTE_ACTIONS = ("route", "redirect", "directResponse")
REDIRECT_CODES = (301, 302, 303, 307, 308)  # the ones Envoy can send
RETRY_ON = frozenset(
    {
        "5xx",
        "gateway-error",
        "connect-failure",
        "refused-stream",
        "reset",
        "reset-before-request",
        "retriable-4xx",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        # gRPC statuses (Envoy's x-envoy-retry-grpc-on): trailers-only answers, pymesh.policy.retry
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)


def virtual_service(metadata: model.Metadata, r: Reader) -> model.VirtualService:
    gateways = r.get_list("gateways", gateway_name)
    if not (r.has("http") or r.has("tcp") or r.has("tls")):
        r.error_here("one of http, tcp or tls is required")
    # Istio rejects "*" only for a VirtualService bound to the mesh (no gateways, or "mesh" listed)
    to_mesh = not gateways or MESH in gateways
    vs_hosts = r.get_list("hosts", distinct(hosts.read_host(partial(_host, to_mesh=to_mesh))))
    for i, first in enumerate(vs_hosts):
        for second in vs_hosts[i + 1:]:
            if hosts.overlaps(first, second):
                r.error("hosts", f"duplicate hosts in virtual service: {first} & {second}")
    delegate = not (r.has("hosts") and r.slot("hosts").value)
    if delegate:  # a delegate: its routes apply only under a root's, where the root's gateways are
        for key in ("gateways", "tls", "tcp"):
            if r.has(key):
                r.error(key, f"delegate virtual service must have no {key} specified" if key == "gateways"
                        else f"delegate virtual service must have no {key} route specified")
    http = r.get_list("http", message(shapes.HTTP_ROUTE, partial(http_route, in_delegate=delegate)))
    _unreachable_http_rules(r, http)
    return model.VirtualService(
        metadata=metadata,
        hosts=vs_hosts,
        http=http,
        tcp=r.get_list("tcp", message(shapes.TCP_ROUTE, tcp_route)),
        tls=r.get_list("tls", message(shapes.TLS_ROUTE, partial(tls_route, vs_hosts=vs_hosts))),
        export_to=common.export_to(r, metadata.namespace if metadata else ""),
        gateways=gateways,
    )


def _host(value: str, *, to_mesh: bool) -> str | None:
    if value == "*" and to_mesh:
        return 'host "*" is not allowed for a VirtualService bound to the mesh'
    return hosts.host_or_ip(value)


def _unreachable_http_rules(r: Reader, routes: tuple[model.HTTPRoute, ...]) -> None:
    """Istio's analyzeUnreachableHTTPRules, as warnings: a rule after one without matches is never
    used, and so is a match block some earlier rule already has. Each is reported at its rule."""
    items = r.data.get("http")
    if not isinstance(items, LineSeq) or len(items) != len(routes):
        return  # some rule has errors: the resource is refused anyway
    seen: dict[tuple, int] = {}
    catch_all = -1
    for n, route in enumerate(routes):
        rule = f'"{route.name}"' if route.name else f"#{n}"

        def warn(problem: str, n: int = n) -> None:
            r.sink.warn(items.item_lines[n], index_path(r.path_of("http"), n), problem)

        if not route.match:
            if catch_all >= 0:
                warn(f"virtualService rule {rule} not used (only the last rule can have no matches)")
            catch_all = n
            continue
        if catch_all >= 0:
            warn(f"virtualService rule {rule} not used (route without matches defined before)")
            continue
        duplicates = 0
        for m, match in enumerate(route.match):
            key = _match_key(match)
            if key in seen:
                earlier = routes[seen[key]]
                name = f'"{match.name}"' if match.name else f"#{m}"
                by = f'"{earlier.name}"' if earlier.name else f"#{seen[key]}"
                warn(f"virtualService rule {rule} match {name} is not used (duplicate/overlapping match in rule {by})")
                duplicates += 1
            else:
                seen[key] = n
        if duplicates == len(route.match):
            warn(f"virtualService rule {rule} not used (all matches used by prior rules)")


def _match_key(match: model.HTTPMatchRequest) -> tuple:
    """What a match selects (its name aside), comparable: maps in sorted order."""
    return tuple(tuple(sorted(value.items())) if isinstance(value, dict) else value
                 for value in vars(replace(match, name="")).values())


# --- http ----------------------------------------------------------------------------------


def http_route(r: Reader, *, in_delegate: bool = False) -> model.HTTPRoute:
    """A route; with `delegate` (a root's route) it has no action of its own: the delegate's
    routes bring theirs (Istio: a root route must not specify route or redirect)."""
    delegate = r.get("delegate", message(shapes.DELEGATE, _delegate))
    if delegate is not None and in_delegate:
        r.error("delegate", "delegate HTTP route cannot contain delegate")
    if r.has("delegate"):
        for key in ("route", "redirect"):
            if r.has(key):
                r.error(key, f"root HTTP route must not specify {key}")
        action = None
    else:
        action = r.one_of(_ROUTE_ACTIONS, required=True)
    if action in ("redirect", "directResponse") and r.has("rewrite"):
        r.error("rewrite", f"rewrite cannot be combined with {action}")
    if action == "redirect" and r.has("fault"):
        r.error("fault", "HTTP route cannot contain both fault and redirect")
    routes = r.get_list(
        "route", message(shapes.HTTP_ROUTE_DESTINATION, http_route_destination), required=action == "route"
    )
    common.check_weights(r, "route", routes)
    timeout = r.get("timeout", ISTIO_DURATION_OR_ZERO)
    route_headers = common.headers(r)
    rewritten = r.get("rewrite", message(shapes.HTTP_REWRITE, rewrite))
    authorities = common.authority_writes(rewritten.authority if rewritten else "", route_headers)
    if len(authorities) > 1:
        r.error("headers", f"authority header cannot be set multiple times: have {authorities[0]!r}, "
                f"attempting to set {authorities[1]!r}")
    return model.HTTPRoute(
        name=r.get("name", text(), ""),
        match=r.get_list("match", message(shapes.HTTP_MATCH_REQUEST, http_match)),
        route=routes,
        redirect=r.get("redirect", message(shapes.HTTP_REDIRECT, redirect)),
        rewrite=rewritten,
        direct_response=r.get("directResponse", message(shapes.HTTP_DIRECT_RESPONSE, direct_response)),
        headers=route_headers,
        timeout=timeout or None,  # "0s" disables the route timeout, as in Istio/Envoy
        retries=r.get("retries", message(shapes.HTTP_RETRY, retries)),
        fault=r.get("fault", message(shapes.HTTP_FAULT_INJECTION, fault)),
        cors_policy=r.get("corsPolicy", message(shapes.CORS_POLICY, cors_policy)),
        mirrors=mirrors(r),
        delegate=delegate,
    )


def _delegate(r: Reader) -> model.Delegate:
    return model.Delegate(name=r.get("name", text(checks.not_empty), "", required=True),
                          namespace=r.get("namespace", text(), ""))


def http_match(r: Reader) -> model.HTTPMatchRequest:
    def header_matches(key: str) -> dict[str, model.StringMatch]:
        return r.get_map(key, common.HEADER_MATCH, check_key=checks.match_header_name, lower_keys=True)

    return model.HTTPMatchRequest(
        name=r.get("name", text(), ""),
        uri=r.get("uri", common.STRING_MATCH),
        method=r.get("method", common.STRING_MATCH),
        authority=r.get("authority", common.STRING_MATCH),
        scheme=r.get("scheme", common.STRING_MATCH),
        headers=header_matches("headers"),
        without_headers=header_matches("withoutHeaders"),
        query_params=r.get_map("queryParams", common.STRING_MATCH, check_key=checks.not_empty),
        port=r.get("port", PORT),
        source_labels=common.labels(r, "sourceLabels"),
        ignore_uri_case=r.get("ignoreUriCase", boolean, False),
        gateways=r.get_list("gateways", gateway_name),
    )


def http_route_destination(r: Reader) -> model.HTTPRouteDestination:
    return model.HTTPRouteDestination(
        destination=r.get("destination", common.DESTINATION, required=True),
        weight=r.get("weight", common.WEIGHT, 0),
        headers=common.headers(r),
    )


def redirect(r: Reader) -> model.HTTPRedirect:
    """`port` and `derivePort` are one proto oneof (either counts as a redirect part).
    derivePort FROM_PROTOCOL_DEFAULT is Istio's enum default, what an unset one does (no port
    rewrite); FROM_REQUEST_PORT keeps the port the request came in with."""
    if not any(r.has(key) for key in ("uri", "authority", "port", "derivePort", "scheme")):
        r.error_here("redirect must set at least one of uri, authority, port, derivePort or scheme")
    r.one_of(("port", "derivePort"), required=False)
    derive = r.get("derivePort", choice("derivePort", ("FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT")), "")
    return model.HTTPRedirect(
        uri=r.get("uri", text(), ""),
        authority=r.get("authority", text(), ""),
        port=r.get("port", PORT),
        scheme=r.get("scheme", choice("scheme", ("http", "https")), ""),
        redirect_code=r.get("redirectCode", _redirect_code, model.HTTPRedirect.redirect_code),
        derive_port="FROM_REQUEST_PORT" if derive == "FROM_REQUEST_PORT" else "",
    )


def _redirect_code(sink: Sink, slot: Slot) -> int | None:
    code = integer()(sink, slot)
    if code is not None and code not in REDIRECT_CODES:
        sink.at(slot, f"redirect code {code} is not valid (expected {', '.join(map(str, REDIRECT_CODES))})")
        return None
    return code


def rewrite(r: Reader) -> model.HTTPRewrite:
    if not (r.has("uri") or r.has("authority")):
        r.error_here("rewrite must set uri or authority")
    return model.HTTPRewrite(uri=r.get("uri", text(), ""), authority=r.get("authority", text(), ""))


DIRECT_RESPONSE_WARN, DIRECT_RESPONSE_MAX = 100 * 1024, 1024 * 1024  # Istio's validateHTTPDirectResponse


def direct_response(r: Reader) -> model.HTTPDirectResponse:
    body = r.get("body", message(shapes.HTTP_BODY, lambda body: body.get("string", text(), "")), "")
    size = len(body.encode("utf-8", "surrogatepass"))
    if size > DIRECT_RESPONSE_MAX:
        r.error("body", "large direct_responses may impact control plane performance, must be less than 1MB")
    elif size > DIRECT_RESPONSE_WARN:
        r.warn("body", "large direct_responses may impact control plane performance")
    return model.HTTPDirectResponse(status=r.get("status", integer(100, 599), 0, required=True), body=body)


def retries(r: Reader) -> model.HTTPRetry:
    attempts = r.get("attempts", integer(0))  # unset means 0, as in Istio: no retries
    if (attempts == 0 or not r.has("attempts")) and any(
            r.has(key) for key in ("perTryTimeout", "retryOn", "retryRemoteLocalities")):
        r.error("attempts", "retries are configured but attempts is 0 (which disables them)")
    return model.HTTPRetry(
        attempts=attempts or 0,
        per_try_timeout=r.get("perTryTimeout", ISTIO_DURATION),
        retry_on=r.get("retryOn", _retry_on, ()),
        backoff=r.get("backoff", ISTIO_DURATION),
        retry_ignore_previous_hosts=r.get("retryIgnorePreviousHosts", boolean),
        retry_remote_localities=r.get("retryRemoteLocalities", boolean, False),
    )


def _retry_on(sink: Sink, slot: Slot) -> tuple[str, ...] | None:
    """"5xx,connect-failure,503" -> ("5xx", "connect-failure", "503"); reports every bad token."""
    value = text()(sink, slot)
    if value is None:
        return None
    tokens = tuple(token.strip() for token in value.split(","))
    problems = [_retry_on_problem(token) for token in tokens]
    for problem in filter(None, problems):
        sink.at(slot, problem)
    return None if any(problems) else tokens


def _retry_on_problem(token: str) -> str | None:
    if token in RETRY_ON or (len(token) == 3 and token.isdigit() and 100 <= int(token) <= 599):
        return None
    expected = ", ".join(sorted(RETRY_ON))
    return f"{token!r} is not a valid retryOn policy (expected {expected} or a status code)"


# --- tcp -----------------------------------------------------------------------------------


def tcp_route(r: Reader) -> model.TCPRoute:
    routes = r.get_list("route", message(shapes.ROUTE_DESTINATION, route_destination), required=True)
    common.check_weights(r, "route", routes)
    matches = r.get_list("match", message(shapes.L4_MATCH_ATTRIBUTES, l4_match))
    return model.TCPRoute(match=matches, route=routes)


def l4_match(r: Reader) -> model.L4MatchAttributes:
    return model.L4MatchAttributes(
        port=r.get("port", PORT),
        destination_subnets=r.get_list("destinationSubnets", text(checks.ip_or_cidr)),
        source_labels=common.labels(r, "sourceLabels"),
        gateways=r.get_list("gateways", gateway_name),
    )


def route_destination(r: Reader) -> model.RouteDestination:
    return model.RouteDestination(
        destination=r.get("destination", common.DESTINATION, required=True),
        weight=r.get("weight", common.WEIGHT, 0),
    )


# --- tls -----------------------------------------------------------------------------------


def tls_route(r: Reader, *, vs_hosts: tuple[str, ...]) -> model.TLSRoute:
    """Istio's validateTLSRoute: at least one match (`match` is required, unlike a TCP route's),
    each naming SNI hosts within the VS hosts, and at least one destination."""
    matches = r.get_list("match", message(shapes.TLS_MATCH_ATTRIBUTES, partial(tls_match, vs_hosts=vs_hosts)), required=True)
    routes = r.get_list("route", message(shapes.ROUTE_DESTINATION, route_destination), required=True)
    common.check_weights(r, "route", routes)
    return model.TLSRoute(match=matches, route=routes)


def tls_match(r: Reader, *, vs_hosts: tuple[str, ...]) -> model.TLSMatchAttributes:
    sni_hosts = r.get_list("sniHosts", distinct(hosts.read_host(partial(_sni_host, vs_hosts=vs_hosts))), required=True)
    return model.TLSMatchAttributes(
        sni_hosts=sni_hosts,
        destination_subnets=r.get_list("destinationSubnets", text(checks.ip_or_cidr)),
        port=r.get("port", PORT),
        source_labels=common.labels(r, "sourceLabels"),
        source_namespace=r.get("sourceNamespace", text(hosts.istio_label), ""),
        gateways=r.get_list("gateways", gateway_name),
    )


def _sni_host(value: str, *, vs_hosts: tuple[str, ...]) -> str | None:
    """A wildcard domain (an IP is accepted: Istio only warns that it goes against the SNI spec)
    that is a subset of one of the VirtualService's hosts."""
    if hosts.is_ip(value):
        return None
    if problem := hosts.wildcard_domain(value):
        return problem
    if not any(_subset_of(hosts.normalize(value), host) for host in vs_hosts):
        return f"SNI host {value!r} is not a compatible subset of any of the virtual service hosts: [{', '.join(vs_hosts)}]"
    return None


def _subset_of(name: str, other: str) -> bool:
    """Istio's host.Name.SubsetOf: every name `name` covers, `other` covers too."""
    if name.startswith("*"):
        return other.startswith("*") and name[1:].endswith(other[1:])
    if other.startswith("*"):
        return name.endswith(other[1:])
    return name == other
