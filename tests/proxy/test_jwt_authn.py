"""RequestAuthentication through a real proxy, with curl over HTTP/1.1 and h2c: the JWT matrix
(valid RS256 and ES256, expired, not yet valid, wrong issuer, wrong audience, bad signature,
unknown kid, no token), token locations, forwarding and output headers, and keys served by a real
local JWKS server that the tests change (rotation, an issuer that is down)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
import yaml

import jwt_tokens
from jwt_tokens import Issuer
from proxy_harness import Reply, curl, free_port, inbound_mesh, request_authentication, wait_until

pytestmark = pytest.mark.timeout(90)

RSA = Issuer("https://rsa.example", "RS256")
EC = Issuer("https://ec.example", "ES256")
CUSTOM = Issuer("custom@example", "RS256", kid="c1")
STRANGER = Issuer("https://rsa.example", "RS256")  # RSA's name and kid, another key


class JwksServer:
    """A real HTTP server publishing key sets by path; tests change them while it runs."""

    def __init__(self, upstreams) -> None:
        self.sets: dict[str, str] = {}
        self.server = upstreams("jwks", self._answer)

    def _answer(self, request) -> Reply:
        body = self.sets.get(request.path)
        if body is None:
            return Reply(503, body=b"down")
        return Reply(200, [("content-type", "application/json")], body.encode())

    def uri(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"

    def fetches(self, path: str) -> int:
        return sum(1 for r in self.server.requests if r.path == path)


@pytest.fixture
def mesh(upstreams, proxies):
    """start(*rules) -> (port, app, jwks, proxy): a proxy whose inbound listener has these jwtRules; the
    JWKS server publishes RSA's set at /rsa, EC's at /ec and CUSTOM's at /custom first."""
    def start(*rules, publish=True):
        jwks = JwksServer(upstreams)
        if publish:
            jwks.sets.update({"/rsa": RSA.jwks_json(), "/ec": EC.jwks_json(), "/custom": CUSTOM.jwks_json()})
        app = upstreams("app")
        port = free_port()
        rules = [{**r, "jwksUri": jwks.uri(r["jwksUri"])} if r.get("jwksUri", "").startswith("/") else r for r in rules]
        proxy = proxies(inbound_mesh(port, app) + [request_authentication(*rules)])
        return port, app, jwks, proxy
    return start


MATRIX_RULES = (
    {"issuer": RSA.iss, "jwksUri": "/rsa", "audiences": ["svc.example"]},
    {"issuer": EC.iss, "jwksUri": "/ec"},
)


def bearer(token: str) -> tuple[str, str]:
    return ("-H", f"Authorization: Bearer {token}")


@pytest.mark.parametrize("case, token, status, body", [
    ("valid RS256", RSA.token(aud="svc.example"), 200, b"app GET /path?q=1\n"),
    ("valid ES256", EC.token(), 200, b"app GET /path?q=1\n"),
    ("expired", EC.token(now=time.time() - 7200, lifetime=3600), 401, b"Jwt is expired"),
    ("not yet valid", EC.token(nbf=int(time.time() + 3600)), 401, b"Jwt not yet valid"),
    ("wrong issuer", EC.token(iss="https://evil.example"), 401, b"Jwt issuer is not configured"),
    ("wrong audience", RSA.token(aud="other.example"), 403, b"Audiences in Jwt are not allowed"),
    ("bad signature", RSA.token(aud="svc.example", key=STRANGER.keys["key-1"]), 401, b"Jwt verification fails"),
    ("unknown kid", RSA.token(aud="svc.example", kid="nope", key=RSA.keys["key-1"]), 401,
     b"Jwks doesn't have key to match kid or alg from Jwt"),
    ("malformed", "deadbeef", 401,
     b"Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"),
])
def test_jwt_matrix(mesh, via, case, token, status, body):
    port, app, jwks, proxy = mesh(*MATRIX_RULES)
    result = curl(port, "/path?q=1", *via, *bearer(token))
    assert (result.status, result.body) == (status, body), case
    if status == 200:
        (seen,) = app.wait_requests(1)
        assert seen.header("authorization") is None  # removed: forwardOriginalToken is false
    else:
        assert result.header("www-authenticate") == 'Bearer realm="http://svc.local/path", error="invalid_token"'
        assert app.count() == 0


def test_no_token_passes_and_another_scheme_is_no_token(mesh, via):
    port, app, _, proxy = mesh(*MATRIX_RULES)
    assert curl(port, "/", *via).status == 200
    assert curl(port, "/", *via, "-H", "Authorization: Basic dXNlcjpwYXNz").status == 200
    plain, basic = app.wait_requests(2)
    assert basic.header("authorization") == "Basic dXNlcjpwYXNz"
    assert curl(port, "/", *via, *bearer("deadbeef")).status == 401
    assert (proxy.stat("jwt_authn.allowed"), proxy.stat("jwt_authn.denied")) == (2, 1)  # Envoy's names


def test_default_query_parameter_access_token(mesh, via):
    port, app, _, proxy = mesh(*MATRIX_RULES)
    valid, expired = EC.token(), EC.token(now=1)
    assert curl(port, f"/q?a=1&access_token={valid}", *via).status == 200
    assert curl(port, f"/q?access_token={expired}", *via).body == b"Jwt is expired"
    # the tokens are credentials: the access log keeps the paths without them, valid or not
    assert proxy.wait_log(lambda e: e["path"] == "/q?a=1&access_token=REDACTED")
    assert proxy.wait_log(lambda e: e["path"] == "/q?access_token=REDACTED" and e["response_code"] == 401)
    log = proxy.access_log.read_text()
    assert valid not in log and expired not in log


CUSTOM_RULE = {
    "issuer": CUSTOM.iss, "jwksUri": "/custom",
    "fromHeaders": [{"name": "x-jwt-assertion", "prefix": "Token "}], "fromParams": ["my_token"],
    "forwardOriginalToken": True, "outputPayloadToHeader": "x-jwt-payload",
    "outputClaimToHeaders": [{"header": "x-jwt-sub", "claim": "sub"}, {"header": "x-jwt-group", "claim": "org.group"},
                             {"header": "x-jwt-admin", "claim": "admin"}],
}


def test_custom_header_with_prefix_forwarded_with_output_headers(mesh, via):
    port, app, _, proxy = mesh(CUSTOM_RULE)
    token = CUSTOM.token("bob", org={"group": "eng"}, admin=False)
    assert curl(port, "/", *via, "-H", f"x-jwt-assertion: Token {token}").status == 200
    (seen,) = app.wait_requests(1)
    assert seen.header("x-jwt-assertion") == f"Token {token}"  # forwardOriginalToken
    payload = json.loads(base64.urlsafe_b64decode(seen.header("x-jwt-payload") + "=="))
    assert (payload["iss"], payload["sub"]) == (CUSTOM.iss, "bob")
    assert (seen.header("x-jwt-sub"), seen.header("x-jwt-group"), seen.header("x-jwt-admin")) == ("bob", "eng", "false")


def test_custom_locations_replace_the_defaults(mesh, via):
    port, app, _, proxy = mesh(CUSTOM_RULE)
    assert curl(port, f"/?my_token={CUSTOM.token()}", *via).status == 200
    assert curl(port, "/?my_token=bad.token.here", *via).status == 401
    # The default locations are not read for this rule: a bad token there is no token.
    assert curl(port, "/", *via, *bearer("not-a-jwt")).status == 200
    assert curl(port, "/", *via, "-H", f"x-jwt-assertion: Bearer {CUSTOM.token()}").status == 200  # no prefix: none


def test_output_headers_cannot_be_spoofed_without_a_token(mesh, via):
    port, app, _, proxy = mesh(CUSTOM_RULE)
    assert curl(port, "/", *via, "-H", "x-jwt-sub: admin", "-H", "x-jwt-payload: e30").status == 200
    (seen,) = app.wait_requests(1)
    assert (seen.header("x-jwt-sub"), seen.header("x-jwt-payload")) == (None, None)


def test_a_jwks_rotated_at_the_issuer_is_picked_up(mesh):
    rotating = Issuer("https://rotating.example", "ES256", kid="old")
    port, app, jwks, proxy = mesh({"issuer": rotating.iss, "jwksUri": "/rot"}, publish=False)
    jwks.sets["/rot"] = rotating.jwks_json("old")
    wait_until(lambda: curl(port, "/", *bearer(rotating.token(kid="old"))).status == 200, what="the first keys")
    rotating.add_key("new")
    jwks.sets["/rot"] = rotating.jwks_json("new")  # the old key is retired at the issuer
    before = jwks.fetches("/rot")
    # A token with the new kid asks for an early refetch (rate-limited: a few seconds apart).
    wait_until(lambda: curl(port, "/", *bearer(rotating.token(kid="new"))).status == 200, timeout=30,
               interval=0.5, what="the new key picked up")
    assert jwks.fetches("/rot") > before
    assert curl(port, "/", *bearer(rotating.token(kid="old"))).body == b"Jwks doesn't have key to match kid or alg from Jwt"


def test_an_issuer_that_is_down_fails_closed_and_its_first_good_answer_opens(mesh):
    port, app, jwks, proxy = mesh({"issuer": EC.iss, "jwksUri": "/late"}, publish=False)  # /late answers 503
    wait_until(lambda: jwks.fetches("/late") >= 1, what="the first fetch")
    result = curl(port, "/", *bearer(EC.token()))
    assert (result.status, result.body) == (401, b"Jwks remote fetch is failed")
    assert curl(port, "/").status == 200  # no token: not this issuer's business
    jwks.sets["/late"] = EC.jwks_json()
    wait_until(lambda: curl(port, "/", *bearer(EC.token())).status == 200, timeout=30, interval=0.5,
               what="the retried fetch")


def test_a_failed_refresh_keeps_the_last_good_keys(mesh):
    port, app, jwks, proxy = mesh({"issuer": EC.iss, "jwksUri": "/ec"})
    token = EC.token()
    wait_until(lambda: curl(port, "/", *bearer(token)).status == 200, what="the first keys")
    del jwks.sets["/ec"]  # the issuer goes down
    before = jwks.fetches("/ec")
    unknown = EC.token(kid="rotated", key=EC.keys["key-1"])  # asks for a refetch, which fails
    wait_until(lambda: curl(port, "/", *bearer(unknown)).status == 401 and jwks.fetches("/ec") > before,
               timeout=30, interval=0.5, what="a refetch that failed")
    assert curl(port, "/", *bearer(token)).status == 200


SAMPLES = Path(__file__).parents[1] / "api" / "data" / "istio_samples" / "istio.io-jwt"


def sample_with_local_jwks(name: str, jwks: JwksServer) -> dict:
    """An istio.io sample as loaded, its jwksUri pointed at the local server (the file is unchanged)."""
    (resource,) = yaml.safe_load_all((SAMPLES / name).read_text())
    for rule in resource["spec"]["jwtRules"]:
        rule["jwksUri"] = jwks.uri("/istio")
    return resource


def in_namespace(resources: list[dict], namespace: str) -> list[dict]:
    return [{**r, "metadata": {**r["metadata"], "namespace": namespace}} for r in resources]


@pytest.mark.parametrize("labels, enforced", [("app=httpbin", True), ("app=sleep", False)])
def test_istio_claim_to_header_task(upstreams, proxies, via, labels, enforced):
    """istio.io's "Copy JWT Claims to HTTP Headers" task: a bad token is 401 and Istio's demo
    token puts its foo claim in x-jwt-claim-foo, on the workload the selector picks only."""
    jwks = JwksServer(upstreams)
    jwks.sets["/istio"] = jwt_tokens.ISTIO_JWKS
    app = upstreams("httpbin")
    port = free_port()
    proxies(in_namespace(inbound_mesh(port, app), "foo") + [sample_with_local_jwks("claim-to-header.yaml", jwks)],
            labels=labels, extra_args=["--namespace", "foo"])
    assert curl(port, "/headers", *via, *bearer("invalidToken")).status == (401 if enforced else 200)
    assert curl(port, "/headers", *via, *bearer(jwt_tokens.ISTIO_DEMO_TOKEN)).status == 200
    assert app.requests[-1].header("x-jwt-claim-foo") == ("bar" if enforced else None)


def test_a_reload_adds_and_removes_the_check(upstreams, proxies):
    jwks = JwksServer(upstreams)
    jwks.sets["/ec"] = EC.jwks_json()
    app = upstreams("app")
    port = free_port()
    proxy = proxies(inbound_mesh(port, app))
    assert curl(port, "/", *bearer("deadbeef")).status == 200  # no policy: no check at all
    proxy.write_config(inbound_mesh(port, app) + [request_authentication({"issuer": EC.iss, "jwksUri": jwks.uri("/ec")})])
    wait_until(lambda: curl(port, "/", *bearer("deadbeef")).status == 401, what="the policy applied")
    assert curl(port, "/", *bearer(EC.token())).status == 200
    proxy.write_config(inbound_mesh(port, app))
    wait_until(lambda: curl(port, "/", *bearer("deadbeef")).status == 200, what="the policy removed")


def test_every_worker_fetches_its_keys(upstreams, proxies):
    """With --concurrency 2 each worker holds its own cache: every connection gets verified."""
    jwks = JwksServer(upstreams)
    jwks.sets["/ec"] = EC.jwks_json()
    app = upstreams("app")
    port = free_port()
    proxies(inbound_mesh(port, app) + [request_authentication({"issuer": EC.iss, "jwksUri": jwks.uri("/ec")})],
            concurrency=2)
    wait_until(lambda: jwks.fetches("/ec") >= 2, what="both workers' first fetches")
    token = EC.token()
    assert {curl(port, "/", *bearer(token)).status for _ in range(12)} == {200}
    assert {curl(port, "/", *bearer("deadbeef")).status for _ in range(4)} == {401}


def test_a_rule_without_keys_finds_them_by_openid_discovery(upstreams, proxies):
    """issuer only (no jwks, no jwksUri): the keys named by <issuer>/.well-known/openid-configuration,
    as istiod finds them."""
    jwks = JwksServer(upstreams)
    issuer = Issuer(f"http://127.0.0.1:{jwks.server.port}/realm", "ES256")
    jwks.sets["/realm/.well-known/openid-configuration"] = json.dumps({"issuer": issuer.iss, "jwks_uri": jwks.uri("/keys")})
    jwks.sets["/keys"] = issuer.jwks_json()
    app = upstreams("app")
    port = free_port()
    proxies(inbound_mesh(port, app) + [request_authentication({"issuer": issuer.iss})])
    assert curl(port, "/", *bearer(issuer.token())).status == 200
    assert curl(port, "/", *bearer(issuer.token(kid="x", key=issuer.keys["key-1"]))).status == 401
    assert jwks.fetches("/keys") >= 1
