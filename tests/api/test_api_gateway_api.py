"""Gateway API validation: the CRDs' own rules (patterns, enums, limits, CEL), one failing input
each, with the line, path and message; and the kinds told apart from Istio's by apiVersion."""

from __future__ import annotations

import textwrap

import pytest

from pymesh.api.load import load_text

HEAD = "apiVersion: gateway.networking.k8s.io/{version}\nkind: {kind}\nmetadata:\n  name: x\nspec:\n"
LISTENER = "gatewayClassName: istio\nlisteners:\n"
RULE = "parentRefs: [{name: gw}]\nrules:\n"


def doc(kind: str, body: str, version: str = "v1") -> str:
    return HEAD.format(version=version, kind=kind) + textwrap.indent(textwrap.dedent(body), "  ")


def problems(text: str) -> list[str]:
    return [f"{e.line} {e.path}: {e.message}" if e.path else f"{e.line}: {e.message}" for e in load_text(text).errors]


def case(id_: str, kind: str, body: str, *expected: str):
    return pytest.param(doc(kind, body, "v1beta1" if kind == "ReferenceGrant" else "v1"), list(expected), id=id_)


GW, HR, GR, RG = "Gateway", "HTTPRoute", "GRPCRoute", "ReferenceGrant"

CASES = [
    case("gw-class-missing", GW, "listeners: [{name: a, port: 80, protocol: HTTP}]\n",
         "5 spec.gatewayClassName: required field is missing"),
    case("gw-no-listeners", GW, "gatewayClassName: istio\n", "5 spec.listeners: required field is missing"),
    case("gw-listener-names-unique", GW, LISTENER + "- {name: a, port: 80, protocol: HTTP}\n"
         "- {name: a, port: 81, protocol: HTTP}\n", "7 spec.listeners: listener name 'a' appears more than once"),
    case("gw-listener-port-protocol-host-unique", GW, LISTENER + "- {name: a, port: 80, protocol: HTTP}\n"
         "- {name: b, port: 80, protocol: HTTP}\n",
         "7 spec.listeners: port, protocol and hostname (80, 'HTTP', '') appears more than once"),
    case("gw-https-needs-tls", GW, LISTENER + "- {name: a, port: 443, protocol: HTTPS}\n",
         "8 spec.listeners[0]: tls must be specified for protocol HTTPS"),
    case("gw-http-no-tls", GW, LISTENER + "- {name: a, port: 80, protocol: HTTP, tls: {mode: Passthrough}}\n",
         "8 spec.listeners[0].tls: tls must not be specified for protocol HTTP"),
    case("gw-https-terminate-only", GW, LISTENER + "- {name: a, port: 443, protocol: HTTPS, tls: {mode: Passthrough}}\n",
         "8 spec.listeners[0].tls: tls mode must be Terminate for protocol HTTPS"),
    case("gw-terminate-needs-certs", GW, LISTENER + "- {name: a, port: 443, protocol: HTTPS, tls: {mode: Terminate}}\n",
         "8 spec.listeners[0].tls: certificateRefs or options must be specified when mode is Terminate"),
    case("gw-tcp-no-hostname", GW, LISTENER + "- {name: a, port: 9, protocol: TCP, hostname: a.example.com}\n",
         "8 spec.listeners[0].hostname: hostname must not be specified for protocol TCP"),
    case("gw-hostname-pattern", GW, LISTENER + "- {name: a, port: 80, protocol: HTTP, hostname: 'A.example.com'}\n",
         "8 spec.listeners[0].hostname: hostname 'A.example.com' is not valid"),
    case("gw-selector-needed", GW, LISTENER + "- {name: a, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector}}}\n",
         "8 spec.listeners[0].allowedRoutes.namespaces: selector must be specified when from is Selector"),
    case("gw-port-range", GW, LISTENER + "- {name: a, port: 0, protocol: HTTP}\n",
         "8 spec.listeners[0].port: must be between 1 and 65535, got 0"),
    case("hr-path-relative", HR, RULE + "- matches: [{path: {type: PathPrefix, value: foo}}]\n",
         "8 spec.rules[0].matches[0].path.value: value must be an absolute path and start with '/' when type one "
         "of ['Exact', 'PathPrefix']"),
    case("hr-path-dot-segment", HR, RULE + "- matches: [{path: {type: Exact, value: /a/../b}}]\n",
         "8 spec.rules[0].matches[0].path.value: must not contain '/../' when type one of ['Exact', 'PathPrefix']"),
    case("hr-path-regex-re2", HR, RULE + "- matches: [{path: {type: RegularExpression, value: '(?=x)'}}]\n",
         "8 spec.rules[0].matches[0].path.value: "),
    case("hr-header-name", HR, RULE + "- matches: [{headers: [{name: 'a b', value: c}]}]\n",
         "8 spec.rules[0].matches[0].headers[0].name: header name 'a b' is not valid"),
    case("hr-method", HR, RULE + "- matches: [{method: FETCH}]\n",
         "8 spec.rules[0].matches[0].method: method 'FETCH' is not valid (expected GET, HEAD, POST, PUT, DELETE, "
         "CONNECT, OPTIONS, TRACE or PATCH)"),
    case("hr-redirect-and-rewrite", HR, RULE + "- filters:\n  - {type: RequestRedirect, requestRedirect: {scheme: https}}\n"
         "  - {type: URLRewrite, urlRewrite: {hostname: a.example.com}}\n",
         "8 spec.rules[0].filters: may specify either RequestRedirect or URLRewrite, but not both"),
    case("hr-filter-repeated", HR, RULE + "- filters:\n  - {type: URLRewrite, urlRewrite: {hostname: a.example.com}}\n"
         "  - {type: URLRewrite, urlRewrite: {hostname: b.example.com}}\n",
         "8 spec.rules[0].filters: URLRewrite filter cannot be repeated"),
    case("hr-filter-field-mismatch", HR, RULE + "- filters: [{type: URLRewrite, requestRedirect: {scheme: https}}]\n",
         "8 spec.rules[0].filters[0].requestRedirect: requestRedirect must be nil if the filter type is not RequestRedirect",
         "8 spec.rules[0].filters[0]: urlRewrite must be specified for filter type URLRewrite"),
    case("hr-prefix-rewrite-needs-prefix-match", HR, RULE + "- matches: [{path: {type: Exact, value: /a}}]\n"
         "  filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]\n",
         "9 spec.rules[0].filters: with URLRewrite path.replacePrefixMatch, exactly one PathPrefix match must be specified"),
    case("hr-redirect-status", HR, RULE + "- filters: [{type: RequestRedirect, requestRedirect: {statusCode: 304}}]\n",
         "8 spec.rules[0].filters[0].requestRedirect.statusCode: statusCode 304 is not valid (expected 301, 302, 303, "
         "307 or 308)"),
    case("hr-backend-port-required", HR, RULE + "- backendRefs: [{name: svc}]\n",
         "8 spec.rules[0].backendRefs[0]: port is required for a Service reference"),
    case("hr-weight-range", HR, RULE + "- backendRefs: [{name: svc, port: 80, weight: 1000001}]\n",
         "8 spec.rules[0].backendRefs[0].weight: must be between 0 and 1000000, got 1000001"),
    case("hr-timeouts-order", HR, RULE + "- timeouts: {request: 1s, backendRequest: 2s}\n",
         "8 spec.rules[0].timeouts.backendRequest: backendRequest timeout cannot be longer than request timeout"),
    case("hr-duration-format", HR, RULE + "- timeouts: {request: 1.5s}\n",
         '8 spec.rules[0].timeouts.request: expected a Gateway API duration such as "10s" or "1m500ms", got "1.5s"'),
    case("hr-mirror-fraction", HR, RULE + "- filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, "
         "fraction: {numerator: 3, denominator: 2}}}]\n",
         "8 spec.rules[0].filters[0].requestMirror.fraction.numerator: numerator must be less than or equal to denominator"),
    case("hr-retry-codes", HR, RULE + "- retry: {codes: [200]}\n",
         "8 spec.rules[0].retry.codes[0]: must be between 400 and 599, got 200"),
    case("hr-unknown-field", HR, RULE + "- backendRef: []\n",
         '8 spec.rules[0].backendRef: unknown field (did you mean "backendRefs"?)'),
    case("gr-method-needs-one", GR, RULE + "- matches: [{method: {type: Exact}}]\n",
         "8 spec.rules[0].matches[0].method: one or both of 'service' or 'method' must be specified"),
    case("gr-no-redirect", GR, RULE + "- filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]\n",
         "8 spec.rules[0].filters[0].type: type 'RequestRedirect' is not valid (expected RequestHeaderModifier, "
         "ResponseHeaderModifier, RequestMirror or ExtensionRef)",
         "8 spec.rules[0].filters[0].requestRedirect: requestRedirect must be nil if the filter type is not RequestRedirect"),
    case("hr-cors-origin", HR, RULE + "- filters: [{type: CORS, cors: {allowOrigins: ['a.example']}}]\n",
         "8 spec.rules[0].filters[0].cors.allowOrigins[0]: origin 'a.example' is not valid"),
    case("hr-cors-star-method-alone", HR, RULE + "- filters: [{type: CORS, cors: {allowMethods: ['*', GET]}}]\n",
         "8 spec.rules[0].filters[0].cors.allowMethods: AllowMethods cannot contain '*' alongside other methods"),
    case("hr-cors-max-age", HR, RULE + "- filters: [{type: CORS, cors: {maxAge: 0}}]\n",
         "8 spec.rules[0].filters[0].cors.maxAge: must be >= 1, got 0"),
    case("hr-cors-repeated", HR, RULE + "- filters: [{type: CORS, cors: {}}, {type: CORS, cors: {}}]\n",
         "8 spec.rules[0].filters: CORS filter cannot be repeated"),
    case("hr-path-characters", HR, RULE + "- matches: [{path: {type: PathPrefix, value: '/my[/]path01'}}]\n",
         "8 spec.rules[0].matches[0].path.value: must only contain valid characters"),
    case("hr-duplicate-header-match", HR, RULE + "- matches: [{headers: [{name: foo, value: a}, {name: foo, value: b}]}]\n",
         "8 spec.rules[0].matches[0].headers: name 'foo' appears more than once"),
    case("hr-duplicate-query-match", HR, RULE + "- matches: [{queryParams: [{name: q, value: a}, {name: q, value: b}]}]\n",
         "8 spec.rules[0].matches[0].queryParams: name 'q' appears more than once"),
    case("hr-redirect-with-backends", HR, RULE + "- filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]\n"
         "  backendRefs: [{name: svc, port: 80}]\n",
         "8 spec.rules[0]: RequestRedirect filter must not be used together with backendRefs"),
    case("hr-header-value-crlf", HR, RULE + "- filters: [{type: RequestHeaderModifier, requestHeaderModifier: "
         "{set: [{name: a, value: \"b\\r\\nc: d\"}]}}]\n",
         "8 spec.rules[0].filters[0].requestHeaderModifier.set[0].value: header value must not contain CR or LF"),
    case("gc-parameters-ref-needs-kind", "GatewayClass", "controllerName: istio.io/gateway-controller\n"
         "parametersRef: {group: '', name: cm}\n", "7 spec.parametersRef.kind: required field is missing"),
    case("rg-from-required", RG, "to: [{group: '', kind: Service}]\n", "5 spec.from: required field is missing"),
]


@pytest.mark.parametrize("text, expected", CASES)
def test_validation(text: str, expected: list[str]) -> None:
    got = problems(text)
    assert len(got) == len(expected), got
    for line, want in zip(got, expected):
        assert line.startswith(want), (line, want)


def test_the_gateway_api_gateway_is_not_istios() -> None:
    """kind Gateway under gateway.networking.k8s.io is the Gateway API's; both can share a name."""
    istio_gateway_free = doc("Gateway", LISTENER + "- {name: a, port: 80, protocol: HTTP}\n")
    result = load_text(istio_gateway_free)
    assert result.errors == []
    assert [g.metadata.name for g in result.config.kubernetes_gateways] == ["x"]
    wrong_version = load_text(doc("HTTPRoute", RULE + "- {}\n", version="v9"))
    assert [e.message for e in wrong_version.errors] == [
        "apiVersion gateway.networking.k8s.io/v9 is not valid for HTTPRoute (expected "
        "gateway.networking.k8s.io/v1, gateway.networking.k8s.io/v1beta1 or gateway.networking.k8s.io/v1alpha2)"]


def test_defaults_are_the_apis() -> None:
    """A match without a path is PathPrefix "/", a rule without matches has that one match, a
    backendRef's weight is 1, kinds default to Service and Gateway."""
    route = load_text(doc("HTTPRoute", RULE + "- backendRefs: [{name: s, port: 80}]\n")).config.http_routes[0]
    (rule,) = route.rules
    assert [(m.path_type, m.path) for m in rule.matches] == [("PathPrefix", "/")]
    assert (rule.backend_refs[0].weight, rule.backend_refs[0].ref.kind, rule.backend_refs[0].ref.group) == (1, "Service", "")
    assert (route.parent_refs[0].kind, route.parent_refs[0].group) == ("Gateway", "gateway.networking.k8s.io")


def test_repeated_header_match_keeps_the_first() -> None:
    """"If multiple entries specify equivalent header names, only the first entry ... MUST be considered"."""
    body = RULE + "- matches: [{headers: [{name: X-A, value: one}, {name: x-a, value: two}]}]\n"
    (match,) = load_text(doc("HTTPRoute", body)).config.http_routes[0].rules[0].matches
    assert [(h.name, h.value) for h in match.headers] == [("X-A", "one")]


def test_a_service_parent_without_a_group_is_the_core_service() -> None:
    """Istio's samples/bookinfo/gateway-api/route-reviews-90-10.yaml writes `kind: Service`
    with no group; there is no other Service kind, so it is the core one (GAMMA)."""
    body = "parentRefs: [{kind: Service, name: reviews, port: 9080}]\nrules: [{backendRefs: [{name: reviews-v1, port: 9080}]}]\n"
    (ref,) = load_text(doc("HTTPRoute", body, "v1beta1")).config.http_routes[0].parent_refs
    assert (ref.group, ref.kind, ref.port) == ("", "Service", 9080)


def test_reference_grant_v1() -> None:
    """Gateway API 1.3 promoted ReferenceGrant to v1 (the same schema as v1beta1)."""
    body = "from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: a}]\nto: [{group: '', kind: Service}]\n"
    result = load_text(doc("ReferenceGrant", body, "v1"))
    assert result.errors == [] and [g.grants_from for g in result.config.reference_grants] == [
        (("gateway.networking.k8s.io", "HTTPRoute", "a"),)]


def test_cors_filter_reads_as_istios_cors_policy() -> None:
    """Istio's translation: origins as exact matches (here "*" in a host is the Gateway API's
    wildcard), methods and headers as written, maxAge in seconds with the CRD's default of 5."""
    from pymesh.api import model

    body = RULE + ("- filters: [{type: CORS, cors: {allowOrigins: ['https://www.foo.com', 'https://*.bar.com', '*'], "
                   "allowMethods: [GET], allowHeaders: ['*'], allowCredentials: true}}]\n")
    result = load_text(doc("HTTPRoute", body))
    assert result.errors == []
    (f,) = result.config.http_routes[0].rules[0].filters
    assert f.cors == model.CorsPolicy(
        allow_origins=(model.StringMatch("exact", "https://www.foo.com"), model.StringMatch("regex", r"https://.*\.bar\.com"),
                       model.StringMatch("exact", "*")),
        allow_methods=("GET",), allow_headers=("*",), max_age=5, allow_credentials=True)


def test_gateway_class_parameters_ref_is_a_warning() -> None:
    """Istio reads a ConfigMap at parametersRef to shape the deployment it creates; pymesh
    creates none, so analyze says it has no effect instead of refusing it."""
    from pymesh.routing import gateway_api

    body = "controllerName: istio.io/gateway-controller\nparametersRef: {group: '', kind: ConfigMap, name: gw-options}\n"
    result = load_text(doc("GatewayClass", body))
    assert result.errors == []
    (status,) = [s for s in gateway_api.translate(result.config).statuses if s.kind == "GatewayClass"]
    assert status.problems() == ["GatewayClass /x: parametersRef /ConfigMap gw-options has no effect: it configures "
                                 "the gateway deployment Istio would create, and pymesh creates none"]
