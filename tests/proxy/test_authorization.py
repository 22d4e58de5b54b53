"""AuthorizationPolicy end to end, through a proxy's inbound listener in front of a real app,
with curl over HTTP/1.1 and h2c: Envoy's 403 "RBAC: access denied", the rbac stats and the
access log, and TCP connections closed at their start. The flows are Istio's own tasks
(security/authorization: http, deny, dry-run, tcp) with their YAML from
tests/api/data/istio_samples/authz, unchanged; the JWT task with Istio's demo tokens through the
JWT filter. Identities over mTLS: test_authorization_mtls.py."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
import yaml

from grpc_echo import SERVICE, start_server
from jwt_tokens import DATA, ISTIO_DEMO_ISSUER, ISTIO_DEMO_TOKEN, ISTIO_JWKS
from proxy_harness import LOCALHOST, Reply, curl, free_port, inbound_mesh, request_authentication, wait_until

pytestmark = pytest.mark.timeout(60)

SAMPLES = Path(__file__).parents[1] / "api" / "data" / "istio_samples" / "authz"


def sample(name: str, namespace: str | None = None) -> dict:
    """An Istio task's policy; `namespace` moves it where the test's workload is."""
    policy = yaml.safe_load((SAMPLES / name).read_text())
    if namespace is not None:
        policy["metadata"]["namespace"] = namespace
    return policy


def policy(name: str, spec: dict, namespace: str = "default", **annotations) -> dict:
    metadata = {"name": name, "namespace": namespace}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": metadata, "spec": spec}


def serve(proxies, upstreams, *policies: dict, labels: str = "app=httpbin", namespace: str = "default"):
    app = upstreams("app")
    port = free_port()
    proxy = proxies(inbound_mesh(port, app) + list(policies), labels=labels,
                    extra_args=["--namespace", namespace])
    return proxy, port, app


def rbac(proxy, port: int, name: str) -> int:
    return proxy.stats().get(f"http.ingress|{LOCALHOST}|{port}.rbac.{name}", 0)


def test_allow_nothing_denies_with_envoys_reply(proxies, upstreams, via):
    proxy, port, app = serve(proxies, upstreams, sample("authz-http-allow-nothing.yaml"))
    result = curl(port, "/productpage", *via)
    assert result.status == 403
    assert result.body == b"RBAC: access denied"
    assert result.header("content-type") == "text/plain"
    assert app.count() == 0
    entry = proxy.wait_log(lambda e: e["path"] == "/productpage")
    assert (entry["response_code"], entry["response_flags"]) == (403, "-")  # Envoy's RBAC filter sets no flag
    assert (rbac(proxy, port, "denied"), rbac(proxy, port, "allowed")) == (1, 0)
    proxy.wait_metric(lambda s: any(x.labels.get("response_code") == "403" for x in s))


def test_productpage_viewer_allows_get_only(proxies, upstreams, via):
    """The http task: allow-nothing in the namespace, then productpage-viewer lets GETs in."""
    proxy, port, app = serve(proxies, upstreams, sample("authz-http-allow-nothing.yaml"),
                             sample("authz-http-productpage-viewer.yaml"), labels="app=productpage")
    assert curl(port, "/productpage", *via).status == 200
    # a bodiless POST: see the report on h2 local replies racing an upload
    assert curl(port, "/productpage", "-X", "POST", *via).status == 403
    assert (rbac(proxy, port, "allowed"), rbac(proxy, port, "denied")) == (1, 1)
    assert app.count() == 1


def test_a_policy_selecting_other_workloads_does_not_apply(proxies, upstreams):
    _, port, _ = serve(proxies, upstreams, sample("authz-http-details-viewer.yaml"), labels="app=productpage")
    assert curl(port, "/").status == 200


def test_the_root_namespace_policy_applies_mesh_wide(proxies, upstreams):
    _, port, _ = serve(proxies, upstreams, sample("authz-http-allow-nothing.yaml", namespace="istio-system"),
                       namespace="default")
    assert curl(port, "/").status == 403


def test_another_namespace_policy_does_not_apply(proxies, upstreams):
    _, port, _ = serve(proxies, upstreams, sample("authz-http-allow-nothing.yaml", namespace="other"))
    assert curl(port, "/").status == 200


def test_deny_get_unless_admin_token(proxies, upstreams, via):
    """The deny task, step by step: DENY GET, then DENY GET without x-token: admin, then an
    ALLOW for /ip beside it."""
    proxy, port, _ = serve(proxies, upstreams, sample("authz-deny-method-get-x-token.yaml", namespace="default"))
    assert curl(port, "/get", "-H", "x-token: admin", *via).status == 200
    assert curl(port, "/get", "-H", "x-token: guest", *via).status == 403
    assert curl(port, "/post", "-X", "POST", *via).status == 200
    proxy.write_config(inbound_mesh_for(proxy) + [sample("authz-deny-method-get-x-token.yaml", "default"),
                                                  sample("authz-deny-allow-path-ip.yaml", "default")])
    wait_until(lambda: curl(port, "/get", "-H", "x-token: admin").status == 403, what="the ALLOW policy installed")
    assert curl(port, "/ip", "-H", "x-token: guest", *via).status == 403  # DENY first
    assert curl(port, "/ip", "-H", "x-token: admin", *via).status == 200
    assert curl(port, "/ip?x=1", "-H", "x-token: admin", *via).status == 200  # the query is not the path


def inbound_mesh_for(proxy) -> list[dict]:
    """The mesh a proxy of `serve` runs, without its policies."""
    return [r for r in yaml.safe_load_all(proxy.config_path.read_text()) if r["kind"] != "AuthorizationPolicy"]


def test_a_normalized_path_cannot_dodge_a_deny(proxies, upstreams):
    deny = policy("deny-admin", {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]})
    _, port, app = serve(proxies, upstreams, deny)
    for path in ("/admin", "/./admin", "/x/../admin", "/%61dmin"):
        assert curl(port, path, "--path-as-is").status == 403, path
    assert curl(port, "/public").status == 200
    assert app.count() == 1


def test_dry_run_counts_and_never_enforces(proxies, upstreams):
    proxy, port, _ = serve(proxies, upstreams, sample("authz-dry-run-deny-path-headers.yaml", namespace="default"))
    assert [curl(port, "/headers").status for _ in range(3)] == [200, 200, 200]
    assert curl(port, "/ip").status == 200
    assert rbac(proxy, port, "istio_dry_run_deny_shadow_denied") == 3
    assert rbac(proxy, port, "istio_dry_run_deny_shadow_allowed") == 1
    assert rbac(proxy, port, "denied") == 0
    series = f'envoy_http_inbound_127_0_0_1_{port}_rbac{{authz_dry_run_action="deny",authz_dry_run_result="denied"}} 3'
    wait_until(lambda: series in proxy.prometheus(), what="the task's dry-run metric")


def test_audit_marks_and_lets_through(proxies, upstreams):
    audit = policy("audit-get", {"action": "AUDIT", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]})
    proxy, port, _ = serve(proxies, upstreams, audit)
    assert curl(port, "/a").status == 200
    assert curl(port, "/a", "-X", "POST", "-d", "x").status == 200
    assert rbac(proxy, port, "logged") == 1
    assert "authorization audit: GET /a matched ns[default]-policy[audit-get]-rule[0]" in proxy.stderr()


def test_custom_without_a_provider_fails_closed(proxies, upstreams):
    custom = policy("ext-authz", {"action": "CUSTOM", "provider": {"name": "sample-ext-authz-grpc"},
                                  "rules": [{"to": [{"operation": {"paths": ["/headers"]}}]}]})
    proxy, port, _ = serve(proxies, upstreams, custom)
    assert curl(port, "/headers").status == 403
    assert curl(port, "/ip").status == 200
    assert "CUSTOM provider 'sample-ext-authz-grpc' is not an extension provider pymesh knows" in proxy.stderr()


def test_source_ip_blocks(proxies, upstreams, via):
    allow = policy("from-loopback", {"rules": [{"from": [{"source": {"ipBlocks": ["127.0.0.0/8"],
                                                                      "notIpBlocks": ["127.0.0.2"]}}]}]})
    _, port, _ = serve(proxies, upstreams, allow)
    assert curl(port, "/", *via).status == 200
    assert curl(port, "/", "--interface", "127.0.0.2", *via).status == 403


# --- TCP (the tcp task) --------------------------------------------------------------------------


def tcp_serve(proxies, upstreams, *policies: dict):
    echo = upstreams.tcp("echo")
    port = free_port()
    proxy = proxies(inbound_mesh(port, echo, protocol="TCP") + list(policies), labels="app=tcp-echo")
    return proxy, port


def echoes(port: int) -> bool:
    """Whether the echo answers through the proxy, or the connection is closed with nothing."""
    with socket.create_connection((LOCALHOST, port), timeout=10) as sock:
        try:
            sock.sendall(b"hello\n")
            sock.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := sock.recv(4096):
                got += chunk
        except OSError:  # reset, broken pipe, or already shut by the proxy (ENOTCONN)
            return False
    return got == b"hello\n"


def with_port(policy: dict, port: int) -> dict:
    """The task's policy with its first port (9000) replaced by the test's listener port."""
    text = yaml.safe_dump(policy).replace("'9000'", f"'{port}'")
    return yaml.safe_load(text)


def test_tcp_allow_by_port(proxies, upstreams):
    proxy, port = tcp_serve(proxies, upstreams, with_port(sample("authz-tcp-ports.yaml", "default"), free_port()))
    assert not echoes(port)
    assert proxy.stats().get("tcp.rbac.denied") == 1
    entry = proxy.wait_log(lambda e: e["method"] is None)  # the connection's line, at its close
    assert (entry["upstream_host"], entry["bytes_sent"]) == (None, 0)
    proxy, port = tcp_serve(proxies, upstreams, sample("authz-tcp-ports.yaml", "default"))
    assert not echoes(port)


def test_tcp_allow_on_the_listener_port(proxies, upstreams):
    port = free_port()
    echo = upstreams.tcp("echo")
    proxy = proxies(inbound_mesh(port, echo, protocol="TCP") + [with_port(sample("authz-tcp-ports.yaml", "default"), port)],
                    labels="app=tcp-echo")
    assert echoes(port)
    assert proxy.stats().get("tcp.rbac.allowed") == 1


def test_tcp_allow_rule_with_http_fields_never_matches(proxies, upstreams):
    port = free_port()
    echo = upstreams.tcp("echo")
    proxies(inbound_mesh(port, echo, protocol="TCP") + [with_port(sample("authz-tcp-allow-methods-port.yaml", "default"), port)],
            labels="app=tcp-echo")
    assert not echoes(port)


def test_tcp_deny_rule_with_http_fields_denies_wider(proxies, upstreams):
    _, port = tcp_serve(proxies, upstreams, sample("authz-tcp-deny-methods.yaml", "default"))
    assert not echoes(port)
    # methods dropped, port 9000 kept: the test's port is not 9000, so it passes
    _, port = tcp_serve(proxies, upstreams, sample("authz-tcp-deny-methods-port.yaml", "default"))
    assert echoes(port)


# --- gRPC -----------------------------------------------------------------------------------------


def test_a_denied_grpc_call_is_permission_denied(proxies, tmp_path):
    """grpcio as the client and the app: a denial reaches it as Envoy sends it, PERMISSION_DENIED
    with the reply's text as the message; an allowed method passes."""

    server, service, app_port = start_server("127.0.0.1:0")
    port = free_port()
    try:
        mesh = inbound_mesh(port, SimpleNamespace(port=app_port), protocol="GRPC")
        deny = policy("deny-bidi", {"action": "DENY", "rules": [operation_paths(f"/{SERVICE}/Bidi")]})
        proxies(mesh + [deny], labels="app=echo")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert channel.unary_unary(f"/{SERVICE}/Unary")(b"hi", timeout=10) == b"echo:hi"
            with pytest.raises(grpc.RpcError) as refused:
                list(channel.stream_stream(f"/{SERVICE}/Bidi")(iter([b"x"]), timeout=10))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert refused.value.details() == "RBAC: access denied"
    finally:
        service.released.set()
        server.stop(grace=None)


def operation_paths(*paths: str) -> dict:
    return {"to": [{"operation": {"paths": list(paths)}}]}


# --- the JWT task (security/authorization/authz-jwt) --------------------------------------------------


def test_the_jwt_task_requires_a_token_and_a_group(proxies, upstreams, via):
    """Istio's authz-jwt task with its own demo tokens, the JWKS served locally: require-jwt lets
    only requests with a valid token from testing@secure.istio.io in; with the groups condition
    only the token whose `groups` claim lists group1."""
    jwks = upstreams("jwks", lambda request: Reply(200, [("content-type", "application/json")], ISTIO_JWKS.encode()))
    groups_token = (DATA / "groups-scope.jwt").read_text().strip()
    authn = request_authentication({"issuer": ISTIO_DEMO_ISSUER, "jwksUri": f"http://127.0.0.1:{jwks.port}/jwks.json"},
                                   selector={"app": "httpbin"})
    proxy, port, _ = serve(proxies, upstreams, authn, sample("authz-jwt-require-jwt.yaml", "default"))

    def status(*headers: str) -> int:
        return curl(port, "/headers", *headers, *via).status

    assert status("-H", "Authorization: Bearer invalidToken") == 401
    assert status() == 403  # no token: no request principal
    wait_until(lambda: status("-H", f"Authorization: Bearer {ISTIO_DEMO_TOKEN}") == 200, what="the keys fetched")
    assert status("-H", f"Authorization: Bearer {groups_token}") == 200

    proxy.write_config(inbound_mesh_for(proxy) + [sample("authz-jwt-require-jwt-groups.yaml", "default")])
    wait_until(lambda: status("-H", f"Authorization: Bearer {ISTIO_DEMO_TOKEN}") == 403, what="the groups policy")
    assert status("-H", f"Authorization: Bearer {groups_token}") == 200


def test_space_delimited_claims_match_word_by_word(proxies, upstreams, via):
    """jwtRules[].spaceDelimitedClaims: those claims' string values are split on spaces for
    AuthorizationPolicy (Envoy's normalize_payload_in_metadata), as `scope` and `permission`
    always are; other string claims still compare whole."""
    from jwt_tokens import Issuer

    issuer = Issuer("https://roles.example")
    jwks = upstreams("jwks", lambda request: Reply(200, [("content-type", "application/json")], issuer.jwks_json().encode()))
    authn = request_authentication({"issuer": issuer.iss, "jwksUri": f"http://127.0.0.1:{jwks.port}/jwks.json",
                                    "spaceDelimitedClaims": ["roles"]}, selector={"app": "httpbin"})
    allow = policy("admins-who-write", {"selector": {"matchLabels": {"app": "httpbin"}}, "rules": [{"when": [
        {"key": "request.auth.claims[roles]", "values": ["admin"]},
        {"key": "request.auth.claims[scope]", "values": ["write"]},
        {"key": "request.auth.claims[team]", "values": ["blue"]}]}]})
    _, port, _ = serve(proxies, upstreams, authn, allow)

    def status(**claims) -> int:
        return curl(port, "/headers", "-H", f"Authorization: Bearer {issuer.token(**claims)}", *via).status

    wait_until(lambda: status(roles="user admin", scope="read write", team="blue") == 200, what="the keys fetched")
    assert status(roles="user", scope="read write", team="blue") == 403
    assert status(roles="user admin", scope="read", team="blue") == 403
    assert status(roles="user admin", scope="write", team="blue green") == 403  # not space-delimited
