"""The AuthorizationPolicy engine, table-driven: every field and its not-form, the `when` keys,
Istio's string, path, host and IP rules, the evaluation order (CUSTOM, DENY, ALLOW, AUDIT,
dry-run), `spec: {}` against `rules: [{}]`, TCP's view of HTTP-only fields, and which policies
apply to a workload. Policies go through the loader, as YAML, so what is tested is what a user
writes; requests are plain RequestHeads on a ConnectionInfo (the peer identity is what an mTLS
listener puts there)."""

from __future__ import annotations

import pytest
import yaml

from pymesh.api.load import load_text
from pymesh.http.message import ConnectionInfo, RequestHead
from pymesh.security.authz import Authorizer, compile_authorizer
from pymesh.security.authz_attributes import normalize_path
from pymesh.security.identity import SpiffeId
from pymesh.security.principal import RequestPrincipal

SLEEP = "spiffe://cluster.local/ns/default/sa/sleep"
PRODUCTPAGE = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
ADMIN = "spiffe://cluster.local/ns/admin/sa/ops"
JWT = RequestPrincipal("https://issuer.example/alice", ("web", "mobile"), "web-client",
                       {"iss": "https://issuer.example", "sub": "alice", "groups": ["g1", "g2"],
                        "role": "admin", "nested": {"level": "gold", "n": 3}})


def policies(*specs: dict, namespace: str = "default") -> list:
    docs = []
    for index, spec in enumerate(specs):
        metadata = {"name": f"p{index}", "namespace": namespace}
        annotations = spec.pop("annotations", None)
        if annotations:
            metadata["annotations"] = annotations
        docs.append({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                     "metadata": metadata, "spec": spec})
    result = load_text("---\n".join(yaml.safe_dump(d) for d in docs))
    assert result.errors == []
    return list(result.config.authorization_policies)


def connection(source: str = "10.1.2.3", peer=None, sni: str | None = None, local: tuple[str, int] = ("10.0.0.9", 8000),
               original: tuple[str, int] | None = None) -> ConnectionInfo:
    info = ConnectionInfo(source, 40000, local[1], original)
    info.local_ip = local[0]
    info.peer_identity = peer
    info.sni = sni
    return info


def request(method: str = "GET", path: str = "/", host: str = "httpbin.foo:8000", headers: dict | None = None,
            info: ConnectionInfo | None = None) -> RequestHead:
    raw = [(b"host", host.encode())] + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    head = RequestHead(method, path, raw)
    head.authority = host
    head.connection = info or connection()
    return head


def allowed(specs, head=None, *, jwt=None, tcp: bool = False, info=None) -> bool:
    authorizer = Authorizer(policies(*[dict(s) for s in specs]))
    head = head or request(info=info)
    return authorizer.check(None if tcp else head, info or head.connection, jwt).allowed


def allow_when(rule: dict) -> list[dict]:
    return [{"rules": [rule]}]


def source(**fields) -> dict:
    return {"from": [{"source": fields}]}


def operation(**fields) -> dict:
    return {"to": [{"operation": fields}]}


def when(key: str, values=None, not_values=None) -> dict:
    condition = {"key": key}
    if values is not None:
        condition["values"] = values
    if not_values is not None:
        condition["notValues"] = not_values
    return {"when": [condition]}


# --- each field: (rule, request, jwt, expected under an ALLOW policy) ---------------------------

MTLS_SLEEP = connection(peer=SLEEP)
MTLS_ADMIN = connection(peer=ADMIN)
PLAIN = connection()

FIELD_CASES = [
    # principals: exact, prefix, suffix, "*" (any authenticated); plaintext never matches
    ("principal exact", source(principals=["cluster.local/ns/default/sa/sleep"]), request(info=MTLS_SLEEP), None, True),
    ("principal other", source(principals=["cluster.local/ns/default/sa/other"]), request(info=MTLS_SLEEP), None, False),
    ("principal prefix", source(principals=["cluster.local/ns/default/*"]), request(info=MTLS_SLEEP), None, True),
    ("principal suffix", source(principals=["*/sa/sleep"]), request(info=MTLS_SLEEP), None, True),
    ("principal star", source(principals=["*"]), request(info=MTLS_SLEEP), None, True),
    ("principal star plaintext", source(principals=["*"]), request(info=PLAIN), None, False),
    ("principal plaintext", source(principals=["cluster.local/ns/default/sa/sleep"]), request(info=PLAIN), None, False),
    ("principal as SpiffeId", source(principals=["cluster.local/ns/default/sa/sleep"]),
     request(info=connection(peer=SpiffeId("cluster.local", "default", "sleep"))), None, True),
    ("principal as a bare principal", source(principals=["cluster.local/ns/default/sa/sleep"]),
     request(info=connection(peer="cluster.local/ns/default/sa/sleep")), None, True),
    ("notPrincipals excludes", source(notPrincipals=["cluster.local/ns/default/sa/sleep"]), request(info=MTLS_SLEEP), None, False),
    ("notPrincipals others", source(notPrincipals=["cluster.local/ns/default/sa/sleep"]), request(info=MTLS_ADMIN), None, True),
    ("notPrincipals star plaintext", source(notPrincipals=["*"]), request(info=PLAIN), None, True),
    # namespaces, from the peer's identity
    ("namespace", source(namespaces=["default"]), request(info=MTLS_SLEEP), None, True),
    ("namespace other", source(namespaces=["admin"]), request(info=MTLS_SLEEP), None, False),
    ("namespace prefix", source(namespaces=["adm*"]), request(info=MTLS_ADMIN), None, True),
    ("namespace suffix", source(namespaces=["*min"]), request(info=MTLS_ADMIN), None, True),
    ("namespace plaintext", source(namespaces=["*"]), request(info=PLAIN), None, False),
    ("notNamespaces", source(notNamespaces=["admin"]), request(info=MTLS_ADMIN), None, False),
    ("notNamespaces other", source(notNamespaces=["admin"]), request(info=MTLS_SLEEP), None, True),
    # serviceAccounts: "sa" in the policy's namespace, or "ns/sa"
    ("serviceAccount short", source(serviceAccounts=["sleep"]), request(info=MTLS_SLEEP), None, True),
    ("serviceAccount qualified", source(serviceAccounts=["admin/ops"]), request(info=MTLS_ADMIN), None, True),
    ("serviceAccount short is the policy's namespace", source(serviceAccounts=["ops"]), request(info=MTLS_ADMIN), None, False),
    ("notServiceAccounts", source(notServiceAccounts=["sleep"]), request(info=MTLS_SLEEP), None, False),
    # ipBlocks: the direct peer; CIDR or single address; IPv6
    ("ipBlocks cidr", source(ipBlocks=["10.1.0.0/16"]), request(), None, True),
    ("ipBlocks single", source(ipBlocks=["10.1.2.3"]), request(), None, True),
    ("ipBlocks miss", source(ipBlocks=["10.2.0.0/16"]), request(), None, False),
    ("ipBlocks v6", source(ipBlocks=["fd00::/8"]), request(info=connection(source="fd00::5")), None, True),
    ("ipBlocks v4 rule, v6 peer", source(ipBlocks=["0.0.0.0/0"]), request(info=connection(source="fd00::5")), None, False),
    ("ipBlocks v4-mapped peer", source(ipBlocks=["10.1.0.0/16"]), request(info=connection(source="::ffff:10.1.2.3")), None, True),
    ("notIpBlocks", source(notIpBlocks=["10.1.2.3"]), request(), None, False),
    ("ipBlocks and notIpBlocks", source(ipBlocks=["10.0.0.0/8"], notIpBlocks=["10.1.2.0/24"]), request(), None, False),
    # remoteIpBlocks: the last x-forwarded-for address, else the peer
    ("remoteIpBlocks xff", source(remoteIpBlocks=["192.0.2.7"]),
     request(headers={"x-forwarded-for": "198.51.100.1, 192.0.2.7"}), None, True),
    ("remoteIpBlocks no xff", source(remoteIpBlocks=["10.1.2.3/32"]), request(), None, True),
    ("notRemoteIpBlocks", source(notRemoteIpBlocks=["192.0.2.0/24"]),
     request(headers={"x-forwarded-for": "192.0.2.7"}), None, False),
    # requestPrincipals: "<iss>/<sub>" of the verified JWT
    ("requestPrincipals", source(requestPrincipals=["https://issuer.example/alice"]), request(), JWT, True),
    ("requestPrincipals star", source(requestPrincipals=["*"]), request(), JWT, True),
    ("requestPrincipals star no token", source(requestPrincipals=["*"]), request(), None, False),
    ("requestPrincipals prefix", source(requestPrincipals=["https://issuer.example/*"]), request(), JWT, True),
    ("requestPrincipals suffix", source(requestPrincipals=["*/alice"]), request(), JWT, True),
    ("notRequestPrincipals", source(notRequestPrincipals=["*/alice"]), request(), JWT, False),
    ("notRequestPrincipals no token", source(notRequestPrincipals=["*"]), request(), None, True),
    # hosts: case-insensitive, the authority as sent (with its port), prefix and suffix
    ("hosts exact with port", operation(hosts=["httpbin.foo:8000"]), request(), None, True),
    ("hosts exact without port", operation(hosts=["httpbin.foo"]), request(), None, False),
    ("hosts case", operation(hosts=["HTTPBIN.foo:8000"]), request(), None, True),
    ("hosts suffix", operation(hosts=["*.foo:8000"]), request(), None, True),
    ("hosts prefix", operation(hosts=["httpbin.*"]), request(), None, True),
    ("hosts star", operation(hosts=["*"]), request(), None, True),
    ("notHosts", operation(notHosts=["httpbin.*"]), request(), None, False),
    # ports: the destination port, as strings
    ("ports", operation(ports=["8000"]), request(), None, True),
    ("ports miss", operation(ports=["9000"]), request(), None, False),
    ("ports original destination", operation(ports=["9080"]),
     request(info=connection(original=("10.0.0.9", 9080))), None, True),
    ("notPorts", operation(notPorts=["8000"]), request(), None, False),
    # methods: exact
    ("methods", operation(methods=["GET", "HEAD"]), request(), None, True),
    ("methods miss", operation(methods=["POST"]), request(), None, False),
    ("methods case", operation(methods=["get"]), request(), None, False),
    ("notMethods", operation(notMethods=["GET"]), request(), None, False),
    # paths: exact, prefix, suffix, "*"; never the query; normalized
    ("paths exact", operation(paths=["/ip"]), request(path="/ip"), None, True),
    ("paths exact with query", operation(paths=["/ip"]), request(path="/ip?x=1"), None, True),
    ("paths exact miss", operation(paths=["/ip"]), request(path="/ip/x"), None, False),
    ("paths prefix", operation(paths=["/api/*"]), request(path="/api/v1/x"), None, True),
    ("paths prefix needs its slash", operation(paths=["/api/*"]), request(path="/apis"), None, False),
    ("paths suffix", operation(paths=["*.html"]), request(path="/a/b.html"), None, True),
    ("paths star", operation(paths=["*"]), request(path="/anything"), None, True),
    ("paths template one", operation(paths=["/users/{*}/profile"]), request(path="/users/7/profile"), None, True),
    ("paths template one is one segment", operation(paths=["/users/{*}/profile"]),
     request(path="/users/7/8/profile"), None, False),
    ("paths template rest", operation(paths=["/files/{**}"]), request(path="/files/a/b/c"), None, True),
    ("paths dot segments", operation(paths=["/admin"]), request(path="/x/../admin"), None, True),
    ("paths encoded", operation(paths=["/admin"]), request(path="/%61dmin"), None, True),
    ("notPaths", operation(notPaths=["/admin*"]), request(path="/admin/x"), None, False),
    # when: every key Istio accepts
    ("when header", when("request.headers[x-token]", ["admin"]), request(headers={"x-token": "admin"}), None, True),
    ("when header name case", when("request.headers[X-Token]", ["admin"]), request(headers={"x-token": "admin"}), None, True),
    ("when header prefix", when("request.headers[x-token]", ["adm*"]), request(headers={"x-token": "admin"}), None, True),
    ("when header star needs presence", when("request.headers[x-token]", ["*"]), request(headers={"x-token": ""}), None, True),
    ("when header absent", when("request.headers[x-token]", ["*"]), request(), None, False),
    ("when header notValues absent", when("request.headers[x-token]", not_values=["admin"]), request(), None, True),
    ("when header notValues", when("request.headers[x-token]", not_values=["admin"]), request(headers={"x-token": "admin"}), None, False),
    ("when source.ip", when("source.ip", ["10.1.2.0/24"]), request(), None, True),
    ("when source.ip not", when("source.ip", not_values=["10.1.2.3"]), request(), None, False),
    ("when remote.ip", when("remote.ip", ["192.0.2.7"]), request(headers={"x-forwarded-for": "192.0.2.7"}), None, True),
    ("when source.namespace", when("source.namespace", ["default"]), request(info=MTLS_SLEEP), None, True),
    ("when source.principal", when("source.principal", ["cluster.local/ns/default/sa/sleep"]), request(info=MTLS_SLEEP), None, True),
    ("when source.principal plaintext", when("source.principal", ["*"]), request(), None, False),
    ("when source.serviceAccount", when("source.serviceAccount", ["default/sleep"]), request(info=MTLS_SLEEP), None, True),
    ("when request.auth.principal", when("request.auth.principal", ["https://issuer.example/alice"]), request(), JWT, True),
    ("when request.auth.audiences", when("request.auth.audiences", ["mobile"]), request(), JWT, True),
    ("when request.auth.audiences miss", when("request.auth.audiences", ["tv"]), request(), JWT, False),
    ("when request.auth.presenter", when("request.auth.presenter", ["web-client"]), request(), JWT, True),
    ("when request.auth.presenter no token", when("request.auth.presenter", ["*"]), request(), None, False),
    ("when claims string", when("request.auth.claims[role]", ["admin"]), request(), JWT, True),
    ("when claims list", when("request.auth.claims[groups]", ["g2"]), request(), JWT, True),
    ("when claims list miss", when("request.auth.claims[groups]", ["g3"]), request(), JWT, False),
    ("when claims nested", when("request.auth.claims[nested][level]", ["gold"]), request(), JWT, True),
    ("when claims not a string", when("request.auth.claims[nested][n]", ["3"]), request(), JWT, False),
    ("when claims notValues", when("request.auth.claims[groups]", not_values=["g1"]), request(), JWT, False),
    ("when claims no token", when("request.auth.claims[role]", ["admin"]), request(), None, False),
    ("when destination.ip", when("destination.ip", ["10.0.0.0/24"]), request(), None, True),
    ("when destination.ip original", when("destination.ip", ["10.9.9.9"]),
     request(info=connection(original=("10.9.9.9", 80))), None, True),
    ("when destination.port", when("destination.port", ["8000"]), request(), None, True),
    ("when destination.port not", when("destination.port", not_values=["8000"]), request(), None, False),
    ("when connection.sni", when("connection.sni", ["*.foo.svc.cluster.local"]),
     request(info=connection(sni="outbound_.8000_._.httpbin.foo.svc.cluster.local")), None, True),
    ("when connection.sni none", when("connection.sni", ["*"]), request(), None, False),
    ("when envoy filter metadata never matches", when("experimental.envoy.filters.a.b[c]", ["x"]), request(), None, False),
    ("when envoy filter metadata notValues", when("experimental.envoy.filters.a.b[c]", not_values=["x"]), request(), None, True),
]


@pytest.mark.parametrize("rule, head, jwt, expected", [c[1:] for c in FIELD_CASES], ids=[c[0] for c in FIELD_CASES])
def test_each_field_under_allow(rule, head, jwt, expected):
    assert allowed(allow_when(rule), head, jwt=jwt) is expected


@pytest.mark.parametrize("rule, head, jwt, expected", [c[1:] for c in FIELD_CASES], ids=[c[0] for c in FIELD_CASES])
def test_each_field_under_deny_is_the_opposite(rule, head, jwt, expected):
    assert allowed([{"action": "DENY", "rules": [rule]}], head, jwt=jwt) is not expected


def test_fields_of_one_source_all_hold_and_sources_are_alternatives():
    both = source(principals=["cluster.local/ns/default/sa/sleep"], ipBlocks=["10.9.0.0/16"])
    assert not allowed(allow_when(both), request(info=MTLS_SLEEP))
    either = {"from": [{"source": {"principals": ["cluster.local/ns/default/sa/sleep"]}},
                       {"source": {"ipBlocks": ["10.9.0.0/16"]}}]}
    assert allowed(allow_when(either), request(info=MTLS_SLEEP))


def test_from_to_and_when_all_hold():
    rule = {**source(principals=["*"]), **operation(methods=["GET"]), **when("request.headers[x-a]", ["1"])}
    assert allowed(allow_when(rule), request(info=MTLS_SLEEP, headers={"x-a": "1"}))
    assert not allowed(allow_when(rule), request(info=MTLS_SLEEP, headers={"x-a": "2"}))
    assert not allowed(allow_when(rule), request(method="POST", info=MTLS_SLEEP, headers={"x-a": "1"}))
    assert not allowed(allow_when(rule), request(headers={"x-a": "1"}))


# --- evaluation order --------------------------------------------------------------------------


def test_no_policy_allows():
    assert allowed([])


def test_allow_with_no_rules_denies_everything_and_an_empty_rule_allows_everything():
    assert not allowed([{}])  # spec: {} (allow-nothing)
    assert not allowed([{"action": "ALLOW"}])
    assert allowed([{"rules": [{}]}])  # allow-all


def test_deny_with_an_empty_rule_denies_everything():
    assert not allowed([{"action": "DENY", "rules": [{}]}, {"rules": [{}]}])


def test_when_any_allow_applies_unmatched_requests_are_denied():
    specs = [{"rules": [operation(paths=["/ip"])]}, {"rules": [operation(methods=["POST"])]}]
    assert allowed(specs, request(path="/ip"))
    assert allowed(specs, request(method="POST", path="/x"))
    assert not allowed(specs, request(path="/x"))


def test_deny_wins_over_allow():
    specs = [{"rules": [{}]}, {"action": "DENY", "rules": [operation(paths=["/admin"])]}]
    assert not allowed(specs, request(path="/admin"))
    assert allowed(specs, request(path="/ip"))


def test_allow_and_deny_together_as_the_deny_task():
    specs = [{"action": "DENY", "rules": [{**operation(methods=["GET"]),
                                          **when("request.headers[x-token]", not_values=["admin"])}]},
             {"rules": [operation(paths=["/ip"])]}]
    assert not allowed(specs, request(path="/ip", headers={"x-token": "guest"}))
    assert allowed(specs, request(path="/ip", headers={"x-token": "admin"}))
    assert not allowed(specs, request(path="/get", headers={"x-token": "admin"}))


def test_custom_without_a_provider_denies_what_it_matches():
    specs = [{"action": "CUSTOM", "provider": {"name": "ext"}, "rules": [operation(paths=["/headers"])]}]
    assert not allowed(specs, request(path="/headers"))
    assert allowed(specs, request(path="/ip"))


def test_custom_is_reported_as_failing_closed():
    authorizer = Authorizer(policies({"action": "CUSTOM", "provider": {"name": "opa"}, "rules": [{}]}))
    assert authorizer.warnings == [
        "AuthorizationPolicy default/p0: CUSTOM provider 'opa' is not an extension provider pymesh knows (it has no "
        "ext_authz): the requests its rules match are denied"]


def test_audit_never_decides_and_reports_its_match():
    authorizer = Authorizer(policies({"action": "AUDIT", "rules": [operation(methods=["GET"])]}))
    head = request()
    assert authorizer.check(head, head.connection).allowed
    assert authorizer.audited(head, head.connection).policy == "ns[default]-policy[p0]-rule[0]"
    post = request(method="POST")
    assert authorizer.audited(post, post.connection) is None


def test_dry_run_policies_are_shadows():
    authorizer = Authorizer(policies(
        {"annotations": {"istio.io/dry-run": "true"}, "action": "DENY", "rules": [operation(paths=["/headers"])]},
        {"annotations": {"istio.io/dry-run": "true"}, "rules": [operation(paths=["/ip"])]}))
    headers, ip = request(path="/headers"), request(path="/ip")
    assert authorizer.check(headers, headers.connection).allowed and authorizer.check(ip, ip.connection).allowed
    assert authorizer.shadow(headers, headers.connection) == (False, False)
    assert authorizer.shadow(ip, ip.connection) == (True, True)


def test_verdicts_name_the_rule_as_envoy_does():
    authorizer = Authorizer(policies({"action": "DENY", "rules": [operation(paths=["/a"]), operation(paths=["/b"])]},
                                     {"rules": [operation(paths=["/a"])]}))
    head = request(path="/b")
    assert authorizer.check(head, head.connection).policy == "ns[default]-policy[p0]-rule[1]"
    other = request(path="/c")
    assert authorizer.check(other, other.connection).policy == "none"


# --- TCP ---------------------------------------------------------------------------------------

TCP_CASES = [
    # (policies, expected for a TCP connection to port 8000)
    ("allow ports", [{"rules": [operation(ports=["8000"])]}], True),
    ("allow other ports", [{"rules": [operation(ports=["9000"])]}], False),
    ("allow rule with an HTTP field never matches", [{"rules": [operation(methods=["GET"], ports=["8000"])]}], False),
    ("allow: only the HTTP rule is dropped", [{"rules": [operation(methods=["GET"]), operation(ports=["8000"])]}], True),
    ("allow rule with a not-form HTTP field never matches", [{"rules": [operation(notMethods=["GET"])]}], False),
    ("allow rule with an HTTP when key", [{"rules": [when("request.headers[a]", ["b"])]}], False),
    ("allow rule with requestPrincipals", [{"rules": [source(requestPrincipals=["*"])]}], False),
    ("deny with only HTTP fields denies all", [{"action": "DENY", "rules": [operation(methods=["GET"])]}], False),
    ("deny drops HTTP fields, keeps ports", [{"action": "DENY", "rules": [operation(methods=["GET"], ports=["9000"])]}], True),
    ("deny on port", [{"action": "DENY", "rules": [operation(methods=["GET"], ports=["8000"])]}], False),
    ("deny drops an HTTP when key", [{"action": "DENY", "rules": [{**operation(ports=["9000"]),
                                                                   **when("request.headers[a]", ["b"])}]}], True),
    ("custom drops HTTP fields too", [{"action": "CUSTOM", "provider": {"name": "x"},
                                       "rules": [operation(paths=["/a"])]}], False),
    ("ip blocks", [{"rules": [source(ipBlocks=["10.1.2.3"])]}], True),
    ("principals need mTLS", [{"rules": [source(principals=["*"])]}], False),
]


@pytest.mark.parametrize("specs, expected", [c[1:] for c in TCP_CASES], ids=[c[0] for c in TCP_CASES])
def test_tcp_sees_istios_network_rules(specs, expected):
    assert allowed(specs, tcp=True, info=connection()) is expected


def test_tcp_principal_with_mtls():
    assert allowed([{"rules": [source(principals=["cluster.local/ns/default/sa/sleep"])]}], tcp=True,
                   info=connection(peer=SLEEP))


# --- scope -------------------------------------------------------------------------------------


def authorizer_for(specs_by_namespace: dict, namespace: str = "default", labels: dict | None = None,
                   served=lambda ns, name: False):
    found = []
    for ns, specs in specs_by_namespace.items():
        found += policies(*specs, namespace=ns)
    from pymesh.api import model
    return compile_authorizer(model.MeshConfig(authorization_policies=tuple(found)), namespace, labels or {}, served)


SELECT_HTTPBIN = {"selector": {"matchLabels": {"app": "httpbin"}}}


@pytest.mark.parametrize("policies_by_ns, namespace, labels, applies", [
    ({"default": [{}]}, "default", {}, True),
    ({"other": [{}]}, "default", {}, False),
    ({"istio-system": [{}]}, "default", {}, True),
    ({"istio-system": [dict(SELECT_HTTPBIN)]}, "foo", {"app": "httpbin"}, True),
    ({"istio-system": [dict(SELECT_HTTPBIN)]}, "foo", {"app": "sleep"}, False),
    ({"default": [dict(SELECT_HTTPBIN)]}, "default", {"app": "httpbin", "version": "v1"}, True),
    ({"default": [{"selector": {"matchLabels": {}}}]}, "default", {"app": "x"}, True),
    ({"default": [{"targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}]}]},
     "default", {}, False),
], ids=["namespace", "other namespace", "root namespace", "root with selector", "root selector miss",
        "selector subset of labels", "empty selector", "gateway target"])
def test_which_policies_apply(policies_by_ns, namespace, labels, applies):
    assert (authorizer_for(policies_by_ns, namespace, labels) is not None) is applies


def test_target_refs_bind_to_the_services_the_workload_serves():
    spec = {"targetRefs": [{"kind": "Service", "group": "", "name": "httpbin"}]}
    served = lambda ns, name: (ns, name) == ("default", "httpbin")
    assert authorizer_for({"default": [dict(spec)]}, served=served) is not None
    assert authorizer_for({"default": [dict(spec)]}) is None


def test_paths_are_normalized_as_envoy_does():
    assert [normalize_path(p) for p in ("/a/./b", "/a/../b", "/a/b/..", "/%7Euser", "/%2f", "/a?x=/..", "/a#f")] == [
        "/a/b", "/b", "/a/", "/~user", "/%2F", "/a", "/a"]
    path = "/plain/path"
    assert normalize_path(path) is path  # the common case builds nothing


def test_a_deny_rule_of_http_fields_warns_it_denies_tcp():
    authorizer = Authorizer(policies({"action": "DENY", "rules": [operation(methods=["GET"]),
                                                                  operation(methods=["GET"], ports=["80"])]},
                                     {"rules": [operation(methods=["GET"])]}))
    assert authorizer.warnings == [
        "AuthorizationPolicy default/p0 will deny all traffic to TCP ports under its scope due to the use of only "
        "HTTP attributes in a DENY rule (rule 0); it is recommended to explicitly specify the port"]
