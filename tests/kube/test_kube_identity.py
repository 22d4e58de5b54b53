"""Identity in the cluster, against the STAND-IN API server (tests/kube/apiserver.py: no real one
can run here) whose TokenReview decides as a real one does (tests/sa_tokens.py): a real
`pymesh control serve --kubernetes` signs a certificate for a projected ServiceAccount token's
own namespace and account only, refuses a wrong audience, an unauthenticated token, a user that
is not a ServiceAccount, an API error and a slow API server (fail closed), never logs the token;
a real `pymesh proxy` with only a token file gets its identity and its configuration; and the
mesh root is published as the pymesh-ca-root-cert ConfigMap in every namespace."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

_MESH = str(Path(__file__).parents[1] / "mesh")
if _MESH not in sys.path:
    sys.path.insert(0, _MESH)

from mesh_harness import LOCALHOST, mesh  # noqa: E402,F401  (the fixture)
from pymesh.api import wire  # noqa: E402
from pymesh.kube.resources import CONFIG_MAPS  # noqa: E402
from waiting import wait_until  # noqa: E402
from pymesh.proxy.unary_h2 import request  # noqa: E402
from pymesh.proxy.workload_identity import control_identity  # noqa: E402
from pymesh.security.ca import new_key_and_csr  # noqa: E402
from pymesh.security.identity import SpiffeId  # noqa: E402
from apiserver import ApiError  # noqa: E402
from sa_tokens import ApiServerReviews, authenticated, projected_token  # noqa: E402

TD = "cluster.local"
REVIEWS = SpiffeId(TD, "demo", "reviews")
REVIEW_TIMEOUT = 0.5


@pytest.fixture
def cluster(mesh, apiserver):
    """A secure control server with --kubernetes on the stand-in (whose reviews decide like a
    real API server's), its data dir holding the root proxies verify it by."""
    apiserver.token_review = reviews = ApiServerReviews()
    for name in ("default", "demo"):
        apiserver.apply(namespace(name))
    control = mesh.control(secure=True, data_dir=mesh.root / "control-data", extra=(
        "--kubernetes", "--kubeconfig", str(apiserver.kubeconfig), "--token-review-timeout", str(REVIEW_TIMEOUT),
        "--root-cert-resync", "0.5"))
    return control, reviews, (mesh.root / "control-data" / "ca" / "root-cert.pem")


def namespace(name: str, **status) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
            "status": {"phase": "Active", **status}}


def published(apiserver, name: str) -> str | None:
    """The root the pymesh-ca-root-cert ConfigMap of namespace `name` holds."""
    config_map = apiserver.get(CONFIG_MAPS, "pymesh-ca-root-cert", name)
    return (config_map or {}).get("data", {}).get("root-cert.pem")


def sign(control, root: Path, token: str, identity: SpiffeId) -> tuple[int, str]:
    """One bootstrap request as a proxy makes it: (status, the error or the chain)."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # the server is checked by its SPIFFE identity
    context.load_verify_locations(cafile=str(root))
    context.set_alpn_protocols(["h2"])
    headers = [("content-type", wire.JSON_TYPE), ("authorization", f"Bearer {token}")]
    body = wire.encode_body(wire.SignRequest(new_key_and_csr(identity)[1].decode()))
    response = asyncio.run(request(LOCALHOST, control.port, context, control_identity(TD), "POST", wire.SIGN_PATH,
                                   headers, body))
    answer = json.loads(response.body)
    return response.status, answer.get("error") or answer.get("certificate_chain", "")


def test_a_service_account_token_signs_only_its_own_account(cluster, apiserver) -> None:
    control, reviews, root = cluster
    token = projected_token("demo", "reviews", pod="reviews-v1-5b9c7-abcde")
    status, chain = sign(control, root, token, REVIEWS)
    assert status == 200 and "BEGIN CERTIFICATE" in chain, chain
    status, error = sign(control, root, token, SpiffeId(TD, "demo", "ratings"))
    assert status == 403 and "spiffe://cluster.local/ns/demo/sa/ratings" in error, error
    assert reviews.calls == 1  # the second request was answered from the brief cache
    reviewed = [p for m, p in apiserver.requests if m == "POST" and "tokenreviews" in p]
    assert reviewed == ["/apis/authentication.k8s.io/v1/tokenreviews"]
    log = control.log()
    assert "signed a certificate for spiffe://cluster.local/ns/demo/sa/reviews (ServiceAccount token of pod " \
           "reviews-v1-5b9c7-abcde" in log
    assert token not in log and token.split(".")[2] not in log
    assert token not in json.dumps(control.status())


@pytest.mark.parametrize("case, status, reason", [
    ("wrong audience", 401, "not authenticated: [invalid bearer token, token audiences [\"istio-ca\"] is invalid"),
    ("another issuer's token", 401, "not authenticated: [invalid bearer token"),
    ("expired", 401, "service account token has expired"),
    ("a user, not a ServiceAccount", 401, '"alice@example.com" is not a ServiceAccount'),
    ("the pod was deleted", 401, 'pod "reviews-gone" not found'),
    ("the control server's own account", 401, "the control server's identity is not a workload's"),
    ("API error", 503, "TokenReview: the API server could not be asked: KubeApiError 500 InternalError"),
    ("API server too slow", 503, f"TokenReview: the API server did not answer within {REVIEW_TIMEOUT:g} s"),
    ("not a JWT", 401, "neither a pymesh join token (pm1.) nor a ServiceAccount token"),
])
def test_refused(cluster, apiserver, case, status, reason) -> None:
    control, reviews, root = cluster
    identity = REVIEWS
    token = projected_token("demo", "reviews")
    if case == "wrong audience":
        token = projected_token("demo", "reviews", audience="istio-ca")
    elif case == "another issuer's token":
        from jwt_tokens import Issuer
        token = Issuer(alg="RS256").token("system:serviceaccount:demo:reviews", aud=["pymesh-ca"])
    elif case == "expired":
        token = projected_token("demo", "reviews", ttl=-60)
    elif case == "a user, not a ServiceAccount":
        reviews.fixed[token] = {**authenticated("demo", "reviews", ["pymesh-ca"]),
                                "user": {"username": "alice@example.com", "groups": ["system:authenticated"]}}
    elif case == "the pod was deleted":
        token = projected_token("demo", "reviews", pod="reviews-gone")
        reviews.deleted_pods.add("reviews-gone")
    elif case == "the control server's own account":
        token, identity = projected_token("pymesh-system", "pymesh-control"), control_identity(TD)
    elif case == "API error":  # the review itself fails (fail_next could hit the server's other requests)
        def failing(spec):
            raise ApiError(500, "InternalError", "stand-in: the review failed")
        apiserver.token_review = failing
    elif case == "API server too slow":
        apiserver.delay = 5 * REVIEW_TIMEOUT
    elif case == "not a JWT":
        token = "secret-but-not-a-jwt"
    got, error = sign(control, root, token, identity)
    assert (got, reason in error) == (status, True), error
    apiserver.delay = 0
    assert token not in control.log()
    assert control.log().count("refused a certificate request") == 1
    metrics = control_metrics(control)
    assert 'pymesh_control_certificate_requests_total{outcome="unauthenticated"} 1.0' in metrics
    assert 'pymesh_control_certificate_requests_total{outcome="signed"} 0.0' in metrics


def control_metrics(control) -> str:
    from proxy_harness import http_get

    code, _, body = http_get(control.admin_port, "/metrics")
    assert code == 200
    return body.decode()


def test_a_real_proxy_gets_its_identity_from_its_token_file(cluster, mesh, apiserver, monkeypatch) -> None:
    """As in an injected pod: the token mounted at a file, the root from the mesh's ConfigMap;
    the kubelet's rotation of the file is read at the next bootstrap."""
    control, reviews, _ = cluster
    token_file = mesh.root / "tokens" / "pymesh-token"
    token_file.parent.mkdir()
    token_file.write_text(projected_token("demo", "reviews", pod="reviews-v1-5b9c7-abcde"))
    root = mesh.root / "ca" / "root-cert.pem"  # as the pod mounts the ConfigMap the server published
    root.parent.mkdir()
    root.write_text(wait_until(lambda: published(apiserver, "demo"), 10, what="pymesh-ca-root-cert in demo"))
    monkeypatch.setenv("PYMESH_CA_ROOT", str(root))
    proxy = mesh.proxy(control.port, "reviews", {"app": "reviews"}, namespace="demo", node_id="reviews-v1.demo",
                       token_file=token_file)
    node = control.wait_synced("reviews-v1.demo")
    assert node["identity"] == "spiffe://cluster.local/ns/demo/sa/reviews", node
    assert proxy.ready_status() == 200
    assert reviews.calls == 1
    assert token_file.read_text() not in proxy.stderr() + control.log()
    table = subprocess.run([sys.executable, "-m", "pymesh", "proxy-status", "--server", f"{LOCALHOST}:{control.admin_port}"],
                           capture_output=True, text=True, timeout=30)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[1].split()[:6] == ["reviews-v1.demo", "Kubernetes", "SYNCED", "SYNCED", "SYNCED",
                                                       "SYNCED"], table.stdout


def test_the_root_is_published_in_every_namespace(cluster, apiserver) -> None:
    """Istio's istio-ca-root-cert, ours: created in each namespace, in a new one at once, repaired
    when edited or deleted (at the next resync), not in a namespace being deleted."""
    control, _, root = cluster
    bundle = root.read_text()
    for name in ("default", "demo"):
        assert wait_until(lambda: published(apiserver, name), 10, what=f"the ConfigMap in {name}") == bundle
    made = apiserver.get(CONFIG_MAPS, "pymesh-ca-root-cert", "demo")
    assert made["metadata"]["labels"] == {"pymesh.dev/config": "true"}
    apiserver.apply(namespace("late"))
    assert wait_until(lambda: published(apiserver, "late"), 10, what="the ConfigMap in a new namespace") == bundle
    apiserver.apply({**made, "data": {"root-cert.pem": "tampered"}})
    apiserver.delete(CONFIG_MAPS, "pymesh-ca-root-cert", "default")
    wait_until(lambda: published(apiserver, "demo") == bundle and published(apiserver, "default") == bundle, 10,
               what="the edited and the deleted ConfigMaps repaired")
    apiserver.apply(namespace("leaving", phase="Terminating"))
    apiserver.delete(CONFIG_MAPS, "pymesh-ca-root-cert", "late")
    wait_until(lambda: published(apiserver, "late") == bundle, 10, what="a resync after the terminating namespace")
    assert published(apiserver, "leaving") is None
    assert "pymesh-ca-root-cert created in namespace late" in control.log()


def test_a_client_that_leaves_during_a_review_costs_nothing(cluster, apiserver) -> None:
    """The answer of a review still in flight when its connection closes is dropped (the task
    cancelled), and the server goes on answering others."""
    control, reviews, root = cluster
    apiserver.delay = 0.8 * REVIEW_TIMEOUT  # the review would succeed; the client gives up at 0.2 s before it
    token = projected_token("demo", "reviews")
    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(_leave_early(control, root, token))
    apiserver.delay = 0
    wait_until(lambda: reviews.calls >= 1, 10, what="the stand-in reached the abandoned review")
    for _ in range(2):  # answered after the abandoned review's answer came back (had it been awaited)
        status, chain = sign(control, root, projected_token("demo", "reviews"), REVIEWS)
        assert status == 200, chain
    log = control.log()
    assert log.count("signed a certificate") == 2, log  # the abandoned request was never signed
    assert "Traceback" not in log and "Sign failed" not in log


async def _leave_early(control, root: Path, token: str) -> None:
    """A bootstrap request whose client gives up (closes its connection) after 0.2 s."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cafile=str(root))
    context.set_alpn_protocols(["h2"])
    headers = [("content-type", wire.JSON_TYPE), ("authorization", f"Bearer {token}")]
    body = wire.encode_body(wire.SignRequest(new_key_and_csr(REVIEWS)[1].decode()))
    await asyncio.wait_for(request(LOCALHOST, control.port, context, control_identity(TD), "POST", wire.SIGN_PATH,
                                   headers, body), 0.2)
