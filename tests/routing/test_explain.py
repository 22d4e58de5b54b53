"""`pymesh explain`'s reasons, from files: a matched route (and why earlier routes missed), no
route (unknown host, host known but no route matches, a VirtualService bound to a gateway only or
not exported here), no healthy endpoint, a subset with no endpoints, a fault that fires; and the
flags of an access-log line."""

from __future__ import annotations

import json

import pytest

from pymesh.api.load import load_text
from pymesh.cli import main as main_for_test
from pymesh.explain_command import format_text, parse_clusters
from pymesh.routing.compile import compile_snapshot
from pymesh.routing.explain import Request, explain
from pymesh.routing.explain_log import explain_log_record
from pymesh.routing.match_reasons import failures
from pymesh.routing.snapshot import ProxyIdentity
from pymesh.api import model as m

from explain_mesh import mesh_yaml, sidecar_yaml

PORT = 9080
V1, V2, RATINGS = 18001, 18002, 18003
REVIEWS_V1 = "outbound|9080|v1|reviews.default.svc.cluster.local"
REVIEWS_V2 = "outbound|9080|v2|reviews.default.svc.cluster.local"
SIDECAR = ProxyIdentity(workload="productpage", namespace="default", labels={"app": "productpage"})
ROUTER = ProxyIdentity(workload="istio-ingressgateway", namespace="istio-system",
                       labels={"istio": "ingressgateway"}, kind="router")


def snapshot(identity=SIDECAR, extra: str = ""):
    result = load_text(mesh_yaml({"v1": V1, "v2": V2}, RATINGS) + "---" + sidecar_yaml(PORT) + extra)
    assert result.ok, result.errors
    return compile_snapshot(result.config, identity, "test")


def ask(url: str, headers=None, identity=SIDECAR, health=None, extra: str = "", method: str = "GET"):
    e = explain(snapshot(identity, extra), Request.from_url(url, method, headers), health)
    assert not [n for n in e.notes if "differs from the route table" in n]  # its reasons agree with the proxy's match
    return e


def test_matched_route_names_the_virtual_service_route_match_and_earlier_misses():
    e = ask("http://reviews:9080/x", {"end-user": "jason"})
    assert e.outcome == {"status": None, "flag": "-", "reason": f"forwarded to {REVIEWS_V2}"}
    assert e.listener == {"name": "egress|127.0.0.1|9080", "direction": "outbound", "port": 9080, "protocol": "HTTP"}
    assert e.virtual_host == "reviews.default.svc.cluster.local:9080"
    assert e.route == {"name": "jason", "virtual_service": "default/reviews", "index": 0, "match": 0}
    assert e.misses == []
    assert [(d["cluster"], d["percent"]) for d in e.destinations] == [(REVIEWS_V2, 100.0)]
    assert e.destinations[0]["endpoints"][0]["address"] == f"127.0.0.1:{V2}"
    assert "timeout 3s" in e.policies


def test_fall_through_lists_each_earlier_route_with_its_reason_and_the_weights():
    e = ask("http://reviews:9080/")
    assert e.route["name"] == "default" and e.route["match"] is None
    assert [(miss["name"], miss["reasons"]) for miss in e.misses] == [
        ("jason", ["match[0]: header end-user missing (wanted exact 'jason')"]),
        ("canary", ["match[0]: path '/' does not match uri prefix '/canary'"]),
    ]
    assert [(d["cluster"], d["percent"]) for d in e.destinations] == [(REVIEWS_V1, 90.0), (REVIEWS_V2, 10.0)]


def test_unknown_host_is_nr_with_the_closest_hosts():
    e = ask("http://reviwes:9080/")
    assert (e.outcome["status"], e.outcome["flag"]) == (404, "NR")
    assert "no virtual host for authority 'reviwes:9080'" in e.outcome["reason"]
    assert e.closest_hosts[0] == "reviews:9080"


def test_known_host_without_a_matching_route_says_which_matches_failed():
    extra = """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: only-post, namespace: default}
spec:
  hosts: [ratings.example.com]
  http:
  - match: [{method: {exact: POST}, uri: {prefix: /ratings}}]
    route: [{destination: {host: ratings}}]
"""
    e = ask("http://ratings.example.com:9080/reviews", extra=extra)
    assert (e.outcome["status"], e.outcome["flag"]) == (404, "NR")
    assert e.virtual_host == "ratings.example.com:9080"
    assert e.misses[0]["reasons"] == ["match[0]: path '/reviews' does not match uri prefix '/ratings'; "
                                      "method 'GET' does not match exact 'POST'"]


def test_virtual_service_bound_to_a_gateway_only_is_explained_to_a_sidecar():
    e = ask("http://bookinfo.example.com:9080/productpage")
    assert (e.outcome["status"], e.outcome["flag"]) == (404, "NR")
    assert any("VirtualService default/bookinfo names this host but is bound to default/bookinfo-gateway, not mesh"
               in note for note in e.notes), e.notes


def test_the_gateway_itself_matches_that_virtual_service():
    e = ask("http://bookinfo.example.com:8080/productpage", identity=ROUTER)
    assert e.listener["direction"] == "gateway"
    assert e.route["virtual_service"] == "default/bookinfo"
    assert e.outcome["reason"] == "forwarded to outbound|9080||reviews.default.svc.cluster.local"


def test_virtual_service_not_exported_here_is_explained():
    extra = """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: private, namespace: other}
spec:
  hosts: [private.example.com]
  exportTo: ["."]
  http:
  - route: [{destination: {host: reviews.default.svc.cluster.local}}]
"""
    e = ask("http://private.example.com:9080/", extra=extra)
    assert e.outcome["flag"] == "NR"
    assert any("other/private names this host but is not exported to namespace default" in n for n in e.notes), e.notes


def test_no_healthy_endpoint_is_uh_naming_their_health():
    health = {REVIEWS_V2: {f"127.0.0.1:{V2}": "/failed_outlier_check"}}
    e = ask("http://reviews:9080/", {"end-user": "jason"}, health=health)
    assert (e.outcome["status"], e.outcome["flag"]) == (503, "UH")
    assert e.outcome["reason"] == "no healthy endpoint: all 1 are outlier-ejected"
    assert e.destinations[0]["endpoints"][0]["health"] == "outlier-ejected"


def test_one_dead_destination_of_two_is_an_alternative_with_its_share():
    health = {REVIEWS_V2: {f"127.0.0.1:{V2}": "/failed_outlier_check"}}
    e = ask("http://reviews:9080/", health=health)
    assert e.outcome["reason"] == f"forwarded to {REVIEWS_V1}"
    assert [(a["status"], a["flag"], a["percent"]) for a in e.alternatives] == [(503, "UH", 10.0)]


def test_subset_whose_labels_select_no_endpoint():
    e = ask("http://reviews:9080/canary")
    assert (e.outcome["status"], e.outcome["flag"]) == (503, "UH")
    assert e.outcome["reason"] == ("no endpoint: DestinationRule subset 'v9' (labels {'version': 'v9'}) selects none of "
                                   "reviews.default.svc.cluster.local's endpoints (their labels: version=v1; version=v2)")


@pytest.mark.parametrize(("headers", "status", "flag"), [({"end-user": "jason"}, 500, "FI"), ({}, None, "-")])
def test_fault_that_fires(headers, status, flag):
    e = ask("http://ratings:9080/ratings/0", headers)
    assert (e.outcome["status"], e.outcome["flag"]) == (status, flag)
    if status:
        assert e.outcome["reason"] == "fault injection aborts with HTTP 500 for every request"
        assert "fault abort HTTP 500 for 100% of requests (FI)" in e.policies


def test_partial_fault_is_an_alternative_with_its_percentage():
    extra_vs = mesh_yaml({"v1": V1}, RATINGS).replace("value: 100}, httpStatus: 500", "value: 12.5}, httpStatus: 503")
    result = load_text(extra_vs + "---" + sidecar_yaml(PORT))
    e = explain(compile_snapshot(result.config, SIDECAR, "t"), Request.from_url("http://ratings:9080/", "GET", {"end-user": "jason"}))
    assert e.outcome["flag"] == "-"
    assert [(a["status"], a["flag"], a["percent"]) for a in e.alternatives] == [(503, "FI", 12.5)]


def test_no_listener_on_the_port():
    e = ask("http://reviews:7070/")
    assert e.listener is None and e.outcome["flag"] == "-"
    assert "no outbound listener on port 7070" in e.outcome["reason"]


FAIL_CASES = [
    (m.HTTPMatchRequest(uri=m.StringMatch("exact", "/a")), "GET", "/a?x=1", {}, []),
    (m.HTTPMatchRequest(uri=m.StringMatch("regex", "/a+")), "GET", "/b", {}, ["path '/b' does not match uri regex '/a+'"]),
    (m.HTTPMatchRequest(uri=m.StringMatch("prefix", "/A"), ignore_uri_case=True), "GET", "/a", {}, []),
    (m.HTTPMatchRequest(headers={"x-v": m.StringMatch("prefix", "1")}), "GET", "/", {"x-v": "2"},
     ["header x-v: '2' does not match prefix '1'"]),
    (m.HTTPMatchRequest(without_headers={"x-v": m.StringMatch("exact", "2")}), "GET", "/", {"x-v": "2"},
     ["header x-v: '2' matches withoutHeaders exact '2'"]),
    (m.HTTPMatchRequest(query_params={"q": m.StringMatch("exact", "1")}), "GET", "/?q=2&q=1", {},
     ["query parameter q: '2' does not match exact '1'"]),
    (m.HTTPMatchRequest(query_params={"q": m.StringMatch("exact", "1")}), "GET", "/", {},
     ["query parameter q missing (wanted exact '1')"]),
    (m.HTTPMatchRequest(method=m.StringMatch("exact", "POST")), "get", "/", {}, ["method 'get' does not match exact 'POST'"]),
    (m.HTTPMatchRequest(source_labels={"app": "x"}), "GET", "/", {}, ["sourceLabels {'app': 'x'} do not select this workload"]),
]


@pytest.mark.parametrize(("match", "method", "path", "headers", "expected"), FAIL_CASES)
def test_match_failures(match, method, path, headers, expected):
    assert failures(match, method, path, "h", "http", headers, {"app": "productpage"}) == expected


@pytest.mark.parametrize(("record", "flags", "phrase"), [
    ({"response_code": 503, "response_flags": "UF,URX", "upstream_request_attempt_count": 3},
     ["UF", "URX"], "retry limit"),
    ({"response_code": 404, "response_flags": "NR"}, ["NR"], "no route configured"),
    ({"response_code": 403, "response_flags": "-"}, [], "RBAC: access denied"),
    ({"response_code": 200, "response_flags": "-", "upstream_host": "127.0.0.1:1"}, [], "answered 200 by the upstream"),
])
def test_log_record_flags(record, flags, phrase):
    out = explain_log_record(record)
    assert out["flags"] == flags
    assert any(phrase in r for r in out["reasons"]), out["reasons"]


def test_parse_clusters_reads_health_flags():
    text = "c|1||h::observability_name::c|1||h\nc|1||h::127.0.0.1:80::health_flags::/failed_outlier_check\n" \
           "c|1||h::127.0.0.1:80::weight::1\n"
    assert parse_clusters(text) == {"c|1||h": {"127.0.0.1:80": "/failed_outlier_check"}}


def test_cli_text_and_json(tmp_path, capsys):
    path = tmp_path / "mesh.yaml"
    path.write_text(mesh_yaml({"v1": V1, "v2": V2}, RATINGS) + "---" + sidecar_yaml(PORT))
    assert main_for_test(["explain", "--config", str(path), "-H", "end-user: jason", "http://ratings:9080/"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split(None, 1) == ["outcome", "500 FI: fault injection aborts with HTTP 500 for every request"]
    assert main_for_test(["explain", "--config", str(path), "--json", "--labels", "app=reviews", "--labels", "version=v1",
                          "http://nowhere:9080/"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["explanation"]["outcome"]["flag"] == "NR"
    assert answer["explanation"]["proxy"]["labels"] == {"app": "reviews", "version": "v1"}
    assert format_text(answer).startswith("outcome")


AUTHZ = """---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: from-productpage, namespace: default}
spec:
  action: ALLOW
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/bookinfo-productpage"]}}]}]
"""
PRODUCTPAGE = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"


@pytest.mark.parametrize(("path", "principal", "status", "reason"), [
    ("/admin/x", PRODUCTPAGE, 403, "RBAC: access denied: matched ns[default]-policy[deny-admin]-rule[0]"),
    ("/reviews/1", "", 403, "RBAC: access denied: no rule of the ALLOW policies (default/deny-admin, "
                            "default/from-productpage) matches (no peer identity: give --source-principal for an mTLS caller)"),
    ("/reviews/1", PRODUCTPAGE, None, "forwarded to inbound|9080||"),
])
def test_inbound_authorization_names_the_policy_that_denies(path, principal, status, reason):
    snap = snapshot(ProxyIdentity(workload="reviews-v1", namespace="default", labels={"app": "reviews"}), AUTHZ)
    e = explain(snap, Request.from_url(f"http://reviews:9080{path}", source_principal=principal), inbound=True)
    assert e.listener["direction"] == "inbound"
    assert (e.outcome["status"], e.outcome["reason"]) == (status, reason)
    assert "authorization policies: default/deny-admin, default/from-productpage" in e.policies


SECURE_GATEWAY = """---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [httpbin.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 8000, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: 18004}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: mygateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    tls: {mode: SIMPLE, credentialName: httpbin-credential}
    hosts: [httpbin.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [httpbin.example.com]
  gateways: [mygateway]
  http:
  - match: [{uri: {prefix: /status}}, {uri: {prefix: /delay}}]
    route: [{destination: {port: {number: 8000}, host: httpbin}}]
"""


def test_secure_gateway_terminates_tls_for_the_sni_and_routes():
    e = ask("https://httpbin.example.com:443/status/418", identity=ROUTER, extra=SECURE_GATEWAY)
    assert e.listener["tls"] == {"mode": "SIMPLE", "server_names": ["httpbin.example.com"]}
    assert e.route == {"name": "", "virtual_service": "default/httpbin", "index": 0, "match": 0}
    assert e.outcome["reason"] == "forwarded to outbound|8000||httpbin.default.svc.cluster.local"
    other = ask("https://other.example.com:443/status/418", identity=ROUTER, extra=SECURE_GATEWAY)
    assert other.outcome["reason"] == ("TLS handshake refused: no server on port 443 for SNI 'other.example.com' "
                                       "(server names: httpbin.example.com)")


def test_tcp_listener_forwards_bytes_to_its_service():
    extra = """---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec:
  hosts: [db.example.com]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {tcp: 18005}}]
"""
    # namespace "other" has no Sidecar: every service port is captured (default's Sidecar captures only 9080)
    e = ask("http://db.example.com:5432/", identity=ProxyIdentity(namespace="other"), extra=extra)
    assert e.listener == {"name": "outbound|0.0.0.0|5432", "direction": "outbound", "port": 5432, "protocol": "TCP"}
    assert e.outcome["reason"] == "forwarded to outbound|5432||db.example.com"
    assert "no outbound listener on port 5432" in ask("http://db.example.com:5432/", extra=extra).outcome["reason"]


def test_mesh_config_view_round_trips_and_redacts_secrets():
    from pymesh.routing.mesh_view import decode_view, encode_view

    jwt = """---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  jwtRules:
  - issuer: testing@secure.istio.io
    jwks: '{"keys":[{"kty":"oct","kid":"k","k":"c2VjcmV0LWhtYWMta2V5"}]}'
    forwardOriginalToken: true
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: creds, namespace: default}
spec:
  hosts: [creds.example.com]
  http:
  - headers: {request: {set: {authorization: Bearer s3cret}}}
    route: [{destination: {host: ratings}}]
"""
    snap = snapshot(extra=jwt)
    view = encode_view(snap)
    text = json.dumps(view)
    assert "s3cret" not in text and "c2VjcmV0LWhtYWMta2V5" not in text and "[redacted]" in text
    version, identity, config = decode_view(json.loads(text))
    assert (version, identity) == ("test", SIDECAR)
    assert config.request_authentications[0].jwt_rules[0].forward_original_token is True  # a bool stays a bool
    again = compile_snapshot(config, identity, version)
    assert [l.name for l in again.listeners] == [l.name for l in snap.listeners]
    assert explain(again, Request.from_url("http://creds.example.com:9080/")).route["virtual_service"] == "default/creds"
    with pytest.raises(ValueError):
        decode_view({"identity": {"labels": "not a mapping"}})


def test_gateway_server_hosts_that_leave_the_host_out():
    narrow = load_text(mesh_yaml({"v1": V1}, RATINGS).replace('hosts: ["*"]', "hosts: [shop.example.com]"))
    e = explain(compile_snapshot(narrow.config, ROUTER, "t"), Request.from_url("http://bookinfo.example.com:8080/productpage"))
    assert e.outcome["flag"] == "NR"
    assert "no Gateway server on port 8080 accepts host bookinfo.example.com (servers' hosts: default/bookinfo-gateway: " \
           "shop.example.com)" in e.notes


@pytest.mark.parametrize(("extra", "note"), [
    ("""---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hidden, namespace: other}
spec:
  hosts: [hidden.example.com]
  exportTo: ["."]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: DNS
""", "ServiceEntry other/hidden names this host but is not exported to namespace default (exportTo ['.'])"),
    ("""---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: elsewhere, namespace: other}
spec:
  hosts: [hidden.example.com]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: DNS
""", "ServiceEntry other/elsewhere names this host but Sidecar default/narrow's egress hosts for port 9080 "
     "(./*) leave it out"),
])
def test_service_entry_the_proxy_cannot_see(extra, note):
    result = load_text(mesh_yaml({"v1": V1}, RATINGS) + extra + """---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: narrow, namespace: default}
spec:
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    bind: 127.0.0.1
    captureMode: NONE
    hosts: ["./*"]
""")
    assert result.ok, result.errors
    e = explain(compile_snapshot(result.config, SIDECAR, "t"), Request.from_url("http://hidden.example.com:9080/"))
    assert e.outcome["flag"] == "NR"
    assert note in e.notes, e.notes


POLICIES = """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.com]
  http:
  - name: moved
    match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: shop.example.com}
  - name: teapot
    match: [{uri: {exact: /tea}}]
    directResponse: {status: 418, body: {string: short and stout}}
  - name: api
    match: [{uri: {prefix: /api}}]
    rewrite: {uri: /v2}
    timeout: 2.5s
    retries: {attempts: 4, perTryTimeout: 500ms, retryOn: "5xx,reset"}
    fault: {delay: {percentage: {value: 10}, fixedDelay: 1s}}
    mirror: {host: ratings}
    mirrorPercentage: {value: 25}
    corsPolicy: {allowOrigins: [{exact: "https://shop.example.com"}], allowMethods: [GET]}
    route: [{destination: {host: reviews}}]
---
apiVersion: pymesh.dev/v1alpha1
kind: LocalRateLimit
metadata: {name: limit, namespace: default}
spec:
  rules: [{tokenBucket: {maxTokens: 3, tokensPerFill: 3, fillInterval: 60s}}]
"""


@pytest.mark.parametrize(("path", "status", "reason"), [
    ("/old", 301, "the route redirects to http://shop.example.com/new"),
    ("/tea", 418, "the route answers directly (directResponse)"),
    ("/api/items", None, "forwarded to outbound|9080||reviews.default.svc.cluster.local"),
])
def test_route_actions_and_the_policies_in_force(path, status, reason):
    e = ask(f"http://shop.example.com:9080{path}", extra=POLICIES)
    assert (e.outcome["status"], e.outcome["reason"]) == (status, reason)
    if path == "/api/items":
        assert e.policies == [
            "timeout 2.5s",
            "retries 4 attempts on 5xx,reset, perTryTimeout 0.5s",
            "fault delay 1s for 10% of requests (DI)",
            "mirror to outbound|9080||ratings.default.svc.cluster.local for 25% of requests",
            "local rate limit default/limit#0: 3 tokens, 3 per 60s (RL, 429)",
            "CORS allowed origins: exact 'https://shop.example.com'",
            "rewrite uri '/v2'",
        ]


@pytest.mark.parametrize(("args", "message"), [
    (["ftp://reviews/"], "expected an http:// or https:// URL"),
    (["-H", "no-colon", "http://reviews:9080/"], "-H: expected 'name: value'"),
    (["http://reviews:9080/"], "give --config PATH or --admin HOST:PORT"),
    (["--request-id", "abc"], "--request-id needs --admin"),
    (["--log-line", "{not json"], "--log-line is not JSON"),
    (["--admin", "127.0.0.1", "http://reviews:9080/"], "--admin: expected HOST:PORT"),
    ([], "give a URL, --log-line or --request-id"),
])
def test_cli_refuses_bad_input_clearly(args, message, capsys):
    assert main_for_test(["explain", *args]) == 2
    assert message in capsys.readouterr().err


def test_only_the_first_misses_are_listed_and_the_rest_counted():
    routes = "\n".join(f"  - name: r{i}\n    match: [{{uri: {{exact: /r{i}}}}}]\n    route: [{{destination: {{host: reviews}}}}]"
                       for i in range(8))
    extra = f"""---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: many, namespace: default}}
spec:
  hosts: [many.example.com]
  http:
{routes}
"""
    e = ask("http://many.example.com:9080/r7", extra=extra)
    assert [m["name"] for m in e.misses] == ["r0", "r1", "r2", "r3", "r4"]
    assert "2 more routes before it did not match either" in e.notes
    assert e.route == {"name": "r7", "virtual_service": "default/many", "index": 7, "match": 0}
