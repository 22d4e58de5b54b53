"""The Gateway API's kinds (gateway.networking.k8s.io): GatewayClass, Gateway, HTTPRoute,
GRPCRoute, ReferenceGrant, read into pymesh.api.model with the validation the API's CRDs do
(their OpenAPI patterns, enums, limits and CEL rules), so a resource the Kubernetes API server
would refuse is refused here with its field path. What they mean is decided later, by
pymesh.routing.gateway_api (Istio's translation into Gateways and VirtualServices)."""

from __future__ import annotations

import re
from typing import Callable

from pymesh.api import checks, model, shapes
from pymesh.api.reader import (PORT, Reader, Sink, Slot, boolean, choice, describe, distinct, integer, message, or_list,
                               text)

CORE_GROUP = ""
GATEWAY_GROUP = "gateway.networking.k8s.io"

# the CRDs' patterns
_HOSTNAME = re.compile(r"(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+\Z")
_SECTION_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_GROUP = re.compile(r"(|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)\Z")
_KIND = re.compile(r"[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?\Z")
_PROTOCOL = re.compile(
    r"([a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[a-zA-Z0-9]+)\Z"
)
_CONTROLLER = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+\Z")
_DURATION = re.compile(r"([0-9]{1,5}(h|m|s|ms)){1,4}\Z")
_DURATION_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_GRPC_SERVICE = re.compile(r"(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*\Z")
_GRPC_METHOD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*\Z")
_PATH_CHARS = re.compile(r"(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+\Z")
_CORS_ORIGIN = re.compile(r"(\*|[a-zA-Z][a-zA-Z0-9+\-.]+://[^:/?#]+(:[0-9]{1,5})?)\Z")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
REDIRECT_CODES = (301, 302, 303, 307, 308)  # v1.4's enum; v1.0-1.3 had 301 and 302 only
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
HTTP_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite",
                "RequestMirror", "CORS", "ExtensionRef")
GRPC_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "ExtensionRef")
_FILTER_FIELDS = {"RequestHeaderModifier": "requestHeaderModifier", "ResponseHeaderModifier": "responseHeaderModifier",
                  "RequestRedirect": "requestRedirect", "URLRewrite": "urlRewrite",
                  "RequestMirror": "requestMirror", "CORS": "cors", "ExtensionRef": "extensionRef"}


def _pattern(regex: re.Pattern, what: str, max_len: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if not value or len(value) > max_len:
            return f"{what} must be 1 to {max_len} characters"
        return None if regex.match(value) else f"{what} {value!r} is not valid"

    return check


HOSTNAME = text(_pattern(_HOSTNAME, "hostname", 253))
SECTION_NAME = text(_pattern(_SECTION_NAME, "section name", 253))
OBJECT_NAME = text(_pattern(_SECTION_NAME, "name", 253))
NAMESPACE = text(checks.dns_label)
GROUP = text(lambda v: None if len(v) <= 253 and _GROUP.match(v) else f"group {v!r} is not valid")
KIND = text(_pattern(_KIND, "kind", 63))
HEADER_NAME = text(_pattern(_HEADER_NAME, "header name", 256))
HEADER_NAME_OR_STAR = text(lambda v: None if v == "*" else _pattern(_HEADER_NAME, "header name", 256)(v))


def _precise_hostname(value: str) -> str | None:
    problem = _pattern(_HOSTNAME, "hostname", 253)(value)
    return problem or ("a wildcard is not allowed here" if value.startswith("*") else None)


def gw_duration(sink: Sink, slot: Slot) -> float | None:
    """The Gateway API's Duration (GEP-2257): "1h", "500ms", "1m30s"; no fractions, no "us"."""
    value = slot.value
    if not isinstance(value, str) or not _DURATION.match(value):
        sink.at(slot, f'expected a Gateway API duration such as "10s" or "1m500ms", got {describe(value)}')
        return None
    return sum(int(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(value))


def _unique(r: Reader, key: str, items: tuple, name: Callable, what: str) -> None:
    seen: set = set()
    for item in items:
        if name(item) in seen:
            r.error(key, f"{what} {name(item)!r} appears more than once")
        seen.add(name(item))


# --- GatewayClass ------------------------------------------------------------------------------


def gateway_class(metadata: model.Metadata, r: Reader) -> model.GatewayClass:
    r.get("description", text())
    return model.GatewayClass(metadata, r.get("controllerName", text(_pattern(_CONTROLLER, "controllerName", 253)),
                                              "", required=True),
                              parameters_ref=r.get("parametersRef", message(shapes.PARAMETERS_REFERENCE, _parameters), ""))


def _parameters(r: Reader) -> str:
    """A ParametersReference, kept only to be reported: what it configures is a deployment."""
    group, kind = r.get("group", GROUP, "", required=True), r.get("kind", KIND, "", required=True)
    name = r.get("name", text(lambda v: None if 0 < len(v) <= 253 else "name must be 1 to 253 characters"), "",
                 required=True)
    namespace = r.get("namespace", NAMESPACE, "")
    return f"{group}/{kind} {namespace + '/' if namespace else ''}{name}"


# --- Gateway -----------------------------------------------------------------------------------


def kubernetes_gateway(metadata: model.Metadata, r: Reader) -> model.KubernetesGateway:
    listeners = r.get_list("listeners", message(shapes.LISTENER, _listener), required=True)
    if len(listeners) > 64:
        r.error("listeners", "at most 64 listeners")
    _unique(r, "listeners", listeners, lambda l: l.name, "listener name")
    _unique(r, "listeners", listeners, lambda l: (l.port, l.protocol, l.hostname), "port, protocol and hostname")
    return model.KubernetesGateway(
        metadata=metadata,
        gateway_class_name=r.get("gatewayClassName", OBJECT_NAME, "", required=True),
        listeners=listeners,
        addresses=r.get_list("addresses", message(shapes.GATEWAY_ADDRESS, _address)),
    )


def _address(r: Reader) -> tuple[str, str]:
    kind = r.get("type", text(_pattern(re.compile(r"(IPAddress|Hostname|NamedAddress|[a-z0-9.-]+/[A-Za-z0-9]+)\Z"),
                                        "address type", 253)), "IPAddress")
    value = r.get("value", text(lambda v: None if 0 < len(v) <= 253 else "value must be 1 to 253 characters"),
                  "", required=True)
    if kind == "IPAddress" and value and checks.ip_address(value):
        r.error("value", f"{value!r} is not an IP address")
    return kind, value


def _listener(r: Reader) -> model.GatewayListener:
    protocol = r.get("protocol", text(_pattern(_PROTOCOL, "protocol", 255)), "", required=True)
    if protocol in ("TCP", "UDP") and r.has("hostname"):
        r.error("hostname", f"hostname must not be specified for protocol {protocol}")
    if protocol in ("HTTP", "TCP", "UDP") and r.has("tls"):
        r.error("tls", f"tls must not be specified for protocol {protocol}")
    if protocol in ("HTTPS", "TLS") and not r.has("tls"):
        r.error_here(f"tls must be specified for protocol {protocol}")
    tls = r.get("tls", message(shapes.GATEWAY_TLS, _gateway_tls))
    if protocol == "HTTPS" and tls is not None and tls.mode != "Terminate":
        r.error("tls", "tls mode must be Terminate for protocol HTTPS")
    allowed = r.get("allowedRoutes", message(shapes.ALLOWED_ROUTES, _allowed_routes), (model.RouteNamespaces(), ()))
    return model.GatewayListener(
        name=r.get("name", SECTION_NAME, "", required=True),
        port=r.get("port", PORT, 0, required=True),
        protocol=protocol,
        hostname=r.get("hostname", HOSTNAME, ""),
        tls=tls,
        allowed_namespaces=allowed[0],
        allowed_kinds=allowed[1],
    )


def _gateway_tls(r: Reader) -> model.GatewayTLSConfig:
    mode = r.get("mode", choice("mode", ("Terminate", "Passthrough")), "Terminate")
    refs = r.get_list("certificateRefs", message(shapes.SECRET_REFERENCE, _secret_ref))
    if len(refs) > 64:
        r.error("certificateRefs", "at most 64 certificateRefs")
    options = r.get_map("options", text(lambda v: None if len(v) <= 4096 else "at most 4096 characters"))
    if mode == "Terminate" and not refs and not options:
        r.error_here("certificateRefs or options must be specified when mode is Terminate")
    return model.GatewayTLSConfig(mode=mode, certificate_refs=refs, options=options)


def _secret_ref(r: Reader) -> model.ObjectReference:
    return object_ref(r, CORE_GROUP, "Secret")


def _allowed_routes(r: Reader) -> tuple[model.RouteNamespaces, tuple[model.RouteGroupKind, ...]]:
    namespaces = r.get("namespaces", message(shapes.ROUTE_NAMESPACES, _route_namespaces), model.RouteNamespaces())
    kinds = r.get_list("kinds", message(shapes.ROUTE_GROUP_KIND, lambda k: model.RouteGroupKind(
        kind=k.get("kind", KIND, "", required=True), group=k.get("group", GROUP, GATEWAY_GROUP))))
    if len(kinds) > 8:
        r.error("kinds", "at most 8 kinds")
    return namespaces, kinds


def _route_namespaces(r: Reader) -> model.RouteNamespaces:
    source = r.get("from", choice("from", ("All", "Same", "Selector")), "Same")
    selector = r.get("selector", message(shapes.LABEL_SELECTOR, lambda s: s.get_map(
        "matchLabels", text(checks.label_value), check_key=checks.label_key)))
    if source == "Selector" and selector is None:
        r.error_here("selector must be specified when from is Selector")
    return model.RouteNamespaces(source=source, selector=selector if source == "Selector" else None)


# --- references --------------------------------------------------------------------------------


def object_ref(r: Reader, group: str, kind: str, **extra) -> model.ObjectReference:
    """name, group, kind and namespace with the API's defaults for this reference type."""
    return model.ObjectReference(name=r.get("name", OBJECT_NAME, "", required=True), group=r.get("group", GROUP, group),
                                 kind=r.get("kind", KIND, kind), namespace=r.get("namespace", NAMESPACE, ""), **extra)


def parent_ref(r: Reader) -> model.ObjectReference:
    """A parentRef. `kind: Service` without a group is the core Service (Istio's own GAMMA
    samples write it so; the API's default group has no Service kind)."""
    group = CORE_GROUP if r.get("kind", KIND) == "Service" else GATEWAY_GROUP
    return object_ref(r, group, "Gateway", section_name=r.get("sectionName", SECTION_NAME, ""), port=r.get("port", PORT))


def backend_object_ref(r: Reader) -> model.ObjectReference:
    ref = object_ref(r, CORE_GROUP, "Service", port=r.get("port", PORT))
    if ref.group == CORE_GROUP and ref.kind == "Service" and ref.port is None:
        r.error_here("port is required for a Service reference")
    return ref


# --- HTTPRoute and GRPCRoute -------------------------------------------------------------------


def http_route(metadata: model.Metadata, r: Reader) -> model.KubernetesRoute:
    return _route(metadata, r, "HTTPRoute", shapes.HTTP_ROUTE_RULE, _http_rule)


def grpc_route(metadata: model.Metadata, r: Reader) -> model.KubernetesRoute:
    return _route(metadata, r, "GRPCRoute", shapes.GRPC_ROUTE_RULE, _grpc_rule)


def tcp_route(metadata: model.Metadata, r: Reader) -> model.KubernetesRoute:
    return _route(metadata, r, "TCPRoute", shapes.L4_ROUTE_RULE, _l4_rule)


def tls_route(metadata: model.Metadata, r: Reader) -> model.KubernetesRoute:
    return _route(metadata, r, "TLSRoute", shapes.L4_ROUTE_RULE, _l4_rule)


def _l4_rule(r: Reader) -> model.RouteRule:
    def read(b: Reader) -> model.RouteBackendRef:
        return model.RouteBackendRef(ref=backend_object_ref(b), weight=b.get("weight", integer(0, 1000000), 1))

    refs = r.get_list("backendRefs", message(shapes.L4_BACKEND_REF, read), required=True)
    if len(refs) > 16:
        r.error("backendRefs", "at most 16 backendRefs")
    return model.RouteRule(name=r.get("name", SECTION_NAME, ""), backend_refs=refs)


def _route(metadata, r: Reader, kind: str, rule_shape, rule) -> model.KubernetesRoute:
    parents = r.get_list("parentRefs", message(shapes.PARENT_REFERENCE, parent_ref))
    hostnames = r.get_list("hostnames", distinct(HOSTNAME, what="hostname")) if "hostnames" in r.shape.fields else ()
    rules = r.get_list("rules", message(rule_shape, rule))
    for key, items, most in (("parentRefs", parents, 32), ("hostnames", hostnames, 16), ("rules", rules, 16)):
        if len(items) > most:
            r.error(key, f"at most {most} {key}")
    names = [x.name for x in rules if x.name]
    if len(names) != len(set(names)):
        r.error("rules", "rule names must be unique within the route")
    _unique(r, "parentRefs", parents, lambda p: (p.group, p.kind, p.namespace, p.name, p.section_name, p.port),
            "parentRef")
    if kind in ("TCPRoute", "TLSRoute") and not rules:
        r.error("rules", "required field is missing")
    return model.KubernetesRoute(metadata=metadata, kind=kind, parent_refs=parents, hostnames=hostnames,
                                 rules=rules or (model.RouteRule(),))


def _http_rule(r: Reader) -> model.RouteRule:
    matches = r.get_list("matches", message(shapes.HTTP_ROUTE_MATCH, _http_match)) or (model.HTTPRouteMatchSpec(),)
    filters = _filters(r, HTTP_FILTERS)
    for f in filters:
        for modifier in (f.request_redirect, f.url_rewrite):
            if modifier is not None and modifier.path is not None and modifier.path.type == "ReplacePrefixMatch":
                if len(matches) != 1 or matches[0].path_type != "PathPrefix":
                    r.error("filters", f"with {f.type} path.replacePrefixMatch, exactly one PathPrefix match "
                                       "must be specified")
    refs = _backend_refs(r, HTTP_FILTERS)
    if refs and any(f.type == "RequestRedirect" for f in filters):
        r.error_here("RequestRedirect filter must not be used together with backendRefs")
    request = backend = None
    if r.has("timeouts"):
        request, backend = r.get("timeouts", message(shapes.HTTP_ROUTE_TIMEOUTS, _timeouts), (None, None))
    retry = r.get("retry", message(shapes.HTTP_ROUTE_RETRY, _retry))
    if len(matches) > 64:
        r.error("matches", "at most 64 matches")
    return model.RouteRule(
        name=r.get("name", SECTION_NAME, ""),
        matches=matches,
        filters=filters,
        backend_refs=refs,
        request_timeout=request,
        backend_request_timeout=backend,
        retry=retry,
    )


def _grpc_rule(r: Reader) -> model.RouteRule:
    matches = r.get_list("matches", message(shapes.GRPC_ROUTE_MATCH, _grpc_match))
    if len(matches) > 64:
        r.error("matches", "at most 64 matches")
    return model.RouteRule(
        name=r.get("name", SECTION_NAME, ""),
        grpc_matches=matches or (model.GRPCRouteMatchSpec(),),
        filters=_filters(r, GRPC_FILTERS),
        backend_refs=_backend_refs(r, GRPC_FILTERS),
    )


def _timeouts(r: Reader) -> tuple[float | None, float | None]:
    request = r.get("request", gw_duration)
    backend = r.get("backendRequest", gw_duration)
    if request and backend is not None and backend > request:
        r.error("backendRequest", "backendRequest timeout cannot be longer than request timeout")
    return request, backend


def _retry(r: Reader) -> model.RouteRetry:
    return model.RouteRetry(
        attempts=r.get("attempts", integer(0)),
        backoff=r.get("backoff", gw_duration),
        codes=r.get_list("codes", integer(400, 599)),
    )


def _path_value(path_type: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if len(value) > 1024:
            return "path must be at most 1024 characters"
        if path_type == "RegularExpression":
            return checks.regex(value)
        if not value.startswith("/"):
            return "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']"
        for bad in ("//", "/./", "/../", "%2f", "%2F", "#"):
            if bad in value:
                return f"must not contain '{bad}' when type one of ['Exact', 'PathPrefix']"
        if value.endswith("/..") or value.endswith("/."):
            return "must not end with '/..' or '/.' when type one of ['Exact', 'PathPrefix']"
        if not _PATH_CHARS.match(value):
            return f"must only contain valid characters (matching {_PATH_CHARS.pattern[:-2]}) for types ['Exact', 'PathPrefix']"
        return None

    return check


def _http_match(r: Reader) -> model.HTTPRouteMatchSpec:
    path_type, path = "PathPrefix", "/"
    if r.has("path"):
        def read_path(p: Reader) -> tuple[str, str]:
            kind = p.get("type", choice("type", ("Exact", "PathPrefix", "RegularExpression")), "PathPrefix")
            return kind, p.get("value", text(_path_value(kind)), "/")

        path_type, path = r.get("path", message(shapes.HTTP_PATH_MATCH, read_path), (path_type, path))
    return model.HTTPRouteMatchSpec(
        path_type=path_type,
        path=path,
        headers=_header_matches(r, "headers", HEADER_NAME),
        query_params=_header_matches(r, "queryParams", HEADER_NAME, fold=False),
        method=r.get("method", choice("method", METHODS), ""),
    )


def _header_matches(r: Reader, key: str, name: Callable, fold: bool = True) -> tuple[model.RouteHeaderMatch, ...]:
    """Header (or query parameter) matches; "only the first entry with an equivalent name MUST be
    considered", so later ones are dropped (header names compare case-insensitively)."""

    def read(h: Reader) -> model.RouteHeaderMatch:
        kind = h.get("type", choice("type", ("Exact", "RegularExpression")), "Exact")
        check = checks.regex if kind == "RegularExpression" else (lambda v: None if len(v) <= 4096 else "at most 4096 characters")
        return model.RouteHeaderMatch(name=h.get("name", name, "", required=True),
                                      value=h.get("value", text(check), "", required=True), type=kind)

    matches = r.get_list(key, message(shapes.HTTP_HEADER_MATCH, read))
    if len(matches) > 16:
        r.error(key, f"at most 16 {key}")
    # the CRD's list-map key is the exact name: the API server refuses a repeat, while names
    # equal only without case pass it and the first one counts
    _unique(r, key, matches, lambda m: m.name, "name")
    first: dict[str, model.RouteHeaderMatch] = {}
    for m in matches:
        first.setdefault(m.name.lower() if fold else m.name, m)
    return tuple(first.values())


def _grpc_match(r: Reader) -> model.GRPCRouteMatchSpec:
    def read_method(m: Reader) -> model.GRPCMethodMatch:
        kind = m.get("type", choice("type", ("Exact", "RegularExpression")), "Exact")
        if kind == "Exact":
            service = m.get("service", text(_pattern(_GRPC_SERVICE, "service", 1024)), "")
            method = m.get("method", text(_pattern(_GRPC_METHOD, "method", 1024)), "")
        else:
            service = m.get("service", text(checks.regex), "")
            method = m.get("method", text(checks.regex), "")
        if not (m.has("service") or m.has("method")):
            m.error_here("one or both of 'service' or 'method' must be specified")
        return model.GRPCMethodMatch(type=kind, service=service, method=method)

    return model.GRPCRouteMatchSpec(
        method=r.get("method", message(shapes.GRPC_METHOD_MATCH, read_method)),
        headers=_header_matches(r, "headers", HEADER_NAME),
    )


# --- filters -----------------------------------------------------------------------------------


def _filters(r: Reader, allowed: tuple[str, ...]) -> tuple[model.RouteFilter, ...]:
    filters = r.get_list("filters", message(shapes.HTTP_ROUTE_FILTER, lambda f: _filter(f, allowed)))
    if len(filters) > 16:
        r.error("filters", "at most 16 filters")
    types = [f.type for f in filters]
    for once in ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite", "CORS"):
        if types.count(once) > 1:
            r.error("filters", f"{once} filter cannot be repeated")
    if "RequestRedirect" in types and "URLRewrite" in types:
        r.error("filters", "may specify either RequestRedirect or URLRewrite, but not both")
    return filters


def _filter(r: Reader, allowed: tuple[str, ...]) -> model.RouteFilter:
    kind = r.get("type", choice("type", allowed, not_yet=("ExternalAuth",)), "", required=True)
    for other, key in _FILTER_FIELDS.items():
        if other != kind and r.has(key):
            r.error(key, f"{key} must be nil if the filter type is not {other}")
    key = _FILTER_FIELDS.get(kind)
    if key is not None and not r.has(key):
        r.error_here(f"{key} must be specified for filter type {kind}")
    if kind == "ExtensionRef":
        r.get("extensionRef", message(shapes.LOCAL_OBJECT_REFERENCE, lambda e: (
            e.get("group", GROUP, "", required=True), e.get("kind", KIND, "", required=True),
            e.get("name", OBJECT_NAME, "", required=True))))
    return model.RouteFilter(
        type=kind,
        request_header_modifier=r.get("requestHeaderModifier", message(shapes.HTTP_HEADER_FILTER, _header_filter)),
        response_header_modifier=r.get("responseHeaderModifier", message(shapes.HTTP_HEADER_FILTER, _header_filter)),
        request_redirect=r.get("requestRedirect", message(shapes.HTTP_REQUEST_REDIRECT, _redirect)),
        url_rewrite=r.get("urlRewrite", message(shapes.HTTP_URL_REWRITE, _rewrite)),
        request_mirror=r.get("requestMirror", message(shapes.HTTP_REQUEST_MIRROR, _mirror)),
        cors=r.get("cors", message(shapes.HTTP_CORS_FILTER, _cors)),
    )


def _cors(r: Reader) -> model.CorsPolicy:
    """The CORS filter (Gateway API 1.3), read straight into Istio's corsPolicy, as Istio's
    translation does, except that an origin with a "*" in its host is a wildcard, as the Gateway
    API defines it ("https://*.bar.com" allows any subdomain), where Istio still compares it exactly."""
    origins = r.get_list("allowOrigins", distinct(text(_origin), what="origin"))
    methods = r.get_list("allowMethods", distinct(choice("method", (*METHODS, "*")), what="method"))
    if "*" in methods and len(methods) > 1:
        r.error("allowMethods", "AllowMethods cannot contain '*' alongside other methods")
    headers = {key: r.get_list(key, distinct(HEADER_NAME_OR_STAR, what="header")) for key in ("allowHeaders",
                                                                                             "exposeHeaders")}
    for key, items, most in (("allowOrigins", origins, 64), ("allowMethods", methods, 9),
                             ("allowHeaders", headers["allowHeaders"], 64), ("exposeHeaders", headers["exposeHeaders"], 64)):
        if len(items) > most:
            r.error(key, f"at most {most} entries")
    return model.CorsPolicy(
        allow_origins=tuple(_origin_match(o) for o in origins),
        allow_methods=methods,
        allow_headers=headers["allowHeaders"],
        expose_headers=headers["exposeHeaders"],
        max_age=r.get("maxAge", integer(1), 5),
        allow_credentials=r.get("allowCredentials", boolean) or None,
    )


def _origin(value: str) -> str | None:
    return None if _CORS_ORIGIN.match(value) else f"origin {value!r} is not valid (expected \"*\" or scheme://host[:port])"


def _origin_match(origin: str) -> model.StringMatch:
    if origin == "*" or "*" not in origin:
        return model.StringMatch("exact", origin)  # "*" alone: any origin, as corsPolicy reads it
    return model.StringMatch("regex", ".*".join(re.escape(part) for part in origin.split("*")))


def _header_filter(r: Reader) -> model.HeaderModifier:
    value = text(_header_value)

    def pairs(key: str) -> tuple[tuple[str, str], ...]:
        items = r.get_list(key, message(shapes.HTTP_HEADER, lambda h: (h.get("name", HEADER_NAME, "", required=True),
                                                                       h.get("value", value, "", required=True))))
        _unique(r, key, items, lambda h: h[0].lower(), "header")
        return items

    remove = r.get_list("remove", distinct(text(_pattern(_HEADER_NAME, "header name", 256)), what="header"))
    out = model.HeaderModifier(set=pairs("set"), add=pairs("add"), remove=remove)
    for key, items in (("set", out.set), ("add", out.add), ("remove", out.remove)):
        if len(items) > 16:
            r.error(key, "at most 16 entries")
    return out


def _header_value(value: str) -> str | None:
    if not 0 < len(value) <= 4096:
        return "value must be 1 to 4096 characters"
    return "header value must not contain CR or LF" if "\r" in value or "\n" in value else None


def _path_modifier(r: Reader) -> model.PathModifier:
    kind = r.get("type", choice("type", ("ReplaceFullPath", "ReplacePrefixMatch")), "", required=True)
    for other, key in (("ReplaceFullPath", "replaceFullPath"), ("ReplacePrefixMatch", "replacePrefixMatch")):
        if kind == other and not r.has(key):
            r.error_here(f"{key} must be specified when type is set to '{other}'")
        elif kind != other and r.has(key):
            r.error(key, f"{key} must be nil if the type is not {other}")
    key = "replaceFullPath" if kind == "ReplaceFullPath" else "replacePrefixMatch"
    path = r.get(key, text(_modifier_path), "/")
    return model.PathModifier(type=kind, value=path)


def _modifier_path(value: str) -> str | None:
    if len(value) > 1024:
        return "at most 1024 characters"
    return None if value.startswith("/") or not value else "must start with '/'"


def _redirect(r: Reader) -> model.RequestRedirectFilter:
    return model.RequestRedirectFilter(
        scheme=r.get("scheme", choice("scheme", ("http", "https")), ""),
        hostname=r.get("hostname", text(_precise_hostname), ""),
        path=r.get("path", message(shapes.HTTP_PATH_MODIFIER, _path_modifier)),
        port=r.get("port", PORT),
        status_code=r.get("statusCode", _status_code, 302),
    )


def _status_code(sink: Sink, slot: Slot) -> int | None:
    if isinstance(slot.value, bool) or slot.value not in REDIRECT_CODES:
        sink.at(slot, f"statusCode {describe(slot.value)} is not valid (expected {or_list(map(str, REDIRECT_CODES))})")
        return None
    return slot.value


def _rewrite(r: Reader) -> model.URLRewriteFilter:
    return model.URLRewriteFilter(
        hostname=r.get("hostname", text(_precise_hostname), ""),
        path=r.get("path", message(shapes.HTTP_PATH_MODIFIER, _path_modifier)),
    )


def _mirror(r: Reader) -> model.RequestMirrorFilter:
    percent = r.get("percent", integer(0, 100))
    if r.has("percent") and r.has("fraction"):
        r.error("fraction", "only one of percent or fraction may be specified")
    fraction = r.get("fraction", message(shapes.FRACTION, _fraction))
    return model.RequestMirrorFilter(
        backend_ref=r.get("backendRef", message(shapes.BACKEND_OBJECT_REFERENCE, backend_object_ref),
                          model.ObjectReference(""), required=True),
        percent=float(percent) if percent is not None else fraction,
    )


def _fraction(r: Reader) -> float | None:
    numerator = r.get("numerator", integer(0), 0, required=True)
    denominator = r.get("denominator", integer(1), 100)
    if numerator > denominator:
        r.error("numerator", "numerator must be less than or equal to denominator")
        return None
    return 100.0 * numerator / denominator


def _backend_refs(r: Reader, filters: tuple[str, ...]) -> tuple[model.RouteBackendRef, ...]:
    def read(b: Reader) -> model.RouteBackendRef:
        ref = backend_object_ref(b)
        return model.RouteBackendRef(ref=ref, weight=b.get("weight", integer(0, 1000000), 1),
                                     filters=_filters(b, filters))

    refs = r.get_list("backendRefs", message(shapes.BACKEND_REF, read))
    if len(refs) > 16:
        r.error("backendRefs", "at most 16 backendRefs")
    return refs


# --- ReferenceGrant ----------------------------------------------------------------------------


def reference_grant(metadata: model.Metadata, r: Reader) -> model.ReferenceGrant:
    grants_from = r.get_list("from", message(shapes.REFERENCE_GRANT_FROM, lambda f: (
        f.get("group", GROUP, "", required=True), f.get("kind", KIND, "", required=True),
        f.get("namespace", NAMESPACE, "", required=True))), required=True)
    grants_to = r.get_list("to", message(shapes.REFERENCE_GRANT_TO, lambda t: (
        t.get("group", GROUP, "", required=True), t.get("kind", KIND, "", required=True),
        t.get("name", OBJECT_NAME, ""))), required=True)
    for key, items in (("from", grants_from), ("to", grants_to)):
        if len(items) > 16:
            r.error(key, "at most 16 entries")
    return model.ReferenceGrant(metadata=metadata, grants_from=grants_from, grants_to=grants_to)
