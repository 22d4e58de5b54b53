"""TokenReview without sockets: which answers prove which ServiceAccount (table-driven, from
the shapes a 1.30 API server answers), the reviewer's fail-closed behaviour (errors, timeouts,
too many in flight), its cache (brief, bounded, never past the token's exp, refusals not kept),
and the signer's decisions for ServiceAccount tokens."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from pymesh.api import wire
from pymesh.control.authority import CaOptions, MeshCA
from pymesh.control.kube.token_review import ReviewUnavailable, TokenReviewer
from pymesh.control.signing import Signer
from pymesh.control.tokens import TokenStore
from pymesh.kube import token_review
from pymesh.kube.resources import TOKEN_REVIEWS
from pymesh.kube.token_review import ReviewedAccount
from pymesh.security.ca import CertificateAuthority, new_key_and_csr, utc_now
from pymesh.security.identity import SpiffeId
from pymesh.security.jointoken import TokenRefused
from sa_tokens import authenticated, projected_token, review, unauthenticated

AUD = ["pymesh-ca"]


def with_user(**changes) -> dict:
    status = authenticated("demo", "reviews", AUD, pod="reviews-v1-abc")
    status["user"].update(changes)
    return status


@pytest.mark.parametrize("status, proves", [
    (authenticated("demo", "reviews", AUD, pod="reviews-v1-abc"), ReviewedAccount("demo", "reviews", "reviews-v1-abc")),
    (authenticated("demo", "reviews", ["other", "pymesh-ca"]), ReviewedAccount("demo", "reviews", "reviews-7d4b9c-x2x9z")),
    (with_user(extra={}), ReviewedAccount("demo", "reviews", "")),
    (unauthenticated(), "not authenticated: [invalid bearer token, service account token has expired]"),
    ({"authenticated": False, "user": {}, "audiences": AUD}, "not authenticated"),
    ({**authenticated("demo", "reviews", AUD), "authenticated": "true"}, "not authenticated"),
    (authenticated("demo", "reviews", ["istio-ca"]), "not for the audience pymesh-ca"),
    ({**authenticated("demo", "reviews", AUD), "audiences": None}, "not for the audience pymesh-ca"),
    (with_user(username="alice@example.com"), "is not a ServiceAccount"),
    (with_user(username="system:node:kind-worker"), "is not a ServiceAccount"),
    (with_user(username="system:serviceaccount:demo"), "is not a ServiceAccount"),
    (with_user(username="system:serviceaccount:demo:"), "is not a ServiceAccount"),
    (with_user(username="system:serviceaccount:Demo:x"), "is not a ServiceAccount"),
    (with_user(username="system:serviceaccount:demo:a:b"), "is not a ServiceAccount"),
    (with_user(groups=["system:authenticated"]), "not in the group system:serviceaccounts"),
    ({"error": "bad\x1b[2J\nline"}, "not authenticated: bad\\x1b[2J\\x0aline"),
    ({}, "not authenticated"),
])
def test_judge(status, proves) -> None:
    answer = review({"audiences": AUD}, status)
    if isinstance(proves, ReviewedAccount):
        assert token_review.judge(answer) == proves
    else:
        with pytest.raises(TokenRefused) as refused:
            token_review.judge(answer)
        assert proves in str(refused.value)


@pytest.mark.parametrize("answer", [None, [], {"kind": "TokenReview"}, {"status": "yes"}])
def test_judge_refuses_answers_without_a_status(answer) -> None:
    with pytest.raises(TokenRefused, match="no status"):
        token_review.judge(answer)


def test_review_body_and_claims() -> None:
    token = projected_token("demo", "reviews", ttl=600, now=1_000_000)
    assert token_review.review_body(token) == {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token, "audiences": ["pymesh-ca"]}}
    claims = token_review.unverified_claims(token)
    assert token_review.account_of(claims) == ("demo", "reviews")
    assert token_review.account_of({"sub": "system:serviceaccount:a:b"}) == ("a", "b")
    assert token_review.expiry(token) == 1_000_600
    assert token_review.expiry("a.b.c") is None
    for bad in ({"sub": "alice"}, {"kubernetes.io": {"namespace": "a"}}, {}):
        with pytest.raises(ValueError):
            token_review.account_of(bad)
    for bad in ("x", "a.!!.c", "a.W10.c"):  # not a JWT; not base64 JSON; not an object
        with pytest.raises(ValueError):
            token_review.unverified_claims(bad)


@pytest.mark.parametrize("token", ["pm2.a", "not a jwt", "a.b", "a.b.c.d", "a.b.c" + "x" * 20000, "a.b.c\n"])
def test_shapes_refused_before_asking(token) -> None:
    with pytest.raises(TokenRefused):
        token_review.check_token_shape(token)


# --- the reviewer -------------------------------------------------------------------------------


class FakeApi:
    """create(resource, body) as the client does it, answering with `status` (or raising)."""

    def __init__(self, status: dict | None = None, error: Exception | None = None, delay: float = 0.0):
        self.status, self.error, self.delay = status, error, delay
        self.bodies: list[dict] = []
        self.release = asyncio.Event()

    async def create(self, resource, body: dict) -> dict:
        assert resource is TOKEN_REVIEWS
        self.bodies.append(body)
        if self.delay:
            await asyncio.wait_for(self.release.wait(), self.delay)
        if self.error is not None:
            raise self.error
        return review(body["spec"], self.status)


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(coroutine):
    return asyncio.run(coroutine)


def test_reviewer_caches_briefly_bounded_and_not_past_exp() -> None:
    clock = Clock(1_000_000.0)
    api = FakeApi(authenticated("demo", "reviews", AUD))
    reviewer = TokenReviewer(api.create, cache_ttl=10, cache_size=2, clock=clock)
    long_lived = projected_token("demo", "reviews", ttl=3600, now=clock.now)

    async def scenario():
        for _ in range(3):
            assert (await reviewer.review(long_lived)).service_account == "reviews"
        assert len(api.bodies) == 1  # cached
        assert api.bodies[0]["spec"] == {"token": long_lived, "audiences": ["pymesh-ca"]}
        clock.now += 11
        await reviewer.review(long_lived)
        assert len(api.bodies) == 2  # the cache is brief
        short = projected_token("demo", "reviews", ttl=3, now=clock.now)
        await reviewer.review(short)
        await reviewer.review(short)
        assert len(api.bodies) == 3
        clock.now += 4  # past the short token's exp (within cache_ttl): asked again
        await reviewer.review(short)
        assert len(api.bodies) == 4
        for n in range(3):  # bounded: the oldest entries go
            await reviewer.review(projected_token("demo", f"sa{n}", now=clock.now))
        assert len(reviewer._cache) == 2
        api.status = unauthenticated()  # refusals are never kept
        token = projected_token("demo", "ratings", now=clock.now)
        for _ in range(2):
            with pytest.raises(TokenRefused):
                await reviewer.review(token)
        assert len(api.bodies) == 9
    run(scenario())


@pytest.mark.parametrize("error, reason", [
    (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 6443)"), "ConnectionRefusedError"),
    (type("ApiException", (Exception,), {"status": 403, "reason": "Forbidden"})(), "ApiException 403 Forbidden"),
    (ValueError("cannot decode"), "ValueError: cannot decode"),
])
def test_reviewer_fails_closed_on_errors(error, reason) -> None:
    reviewer = TokenReviewer(FakeApi(error=error).create)
    with pytest.raises(ReviewUnavailable, match=reason):
        run(reviewer.review(projected_token("demo", "reviews")))


def test_reviewer_times_out_and_bounds_reviews_in_flight() -> None:
    async def scenario():
        api = FakeApi(authenticated("demo", "reviews", AUD), delay=30)
        reviewer = TokenReviewer(api.create, timeout=0.2, max_in_flight=2)
        slow = [asyncio.ensure_future(reviewer.review(projected_token("demo", f"sa{n}"))) for n in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(ReviewUnavailable, match="2 reviews already in flight"):
            await reviewer.review(projected_token("demo", "third"))
        for task in slow:
            with pytest.raises(ReviewUnavailable, match="did not answer within 0.2 s"):
                await task
        api.delay = 0
        assert (await reviewer.review(projected_token("demo", "reviews"))).namespace == "demo"
    run(scenario())


# --- the signer with ServiceAccount tokens ------------------------------------------------------


class Reviews:
    """A reviewer standing in for TokenReviewer: token -> account, or the exception to raise."""

    def __init__(self, answers: dict):
        self.answers = answers

    async def review(self, token: str) -> ReviewedAccount:
        answer = self.answers[token]
        if isinstance(answer, Exception):
            raise answer
        return answer


def sign_body(identity: SpiffeId) -> bytes:
    return wire.encode_body(wire.SignRequest(new_key_and_csr(identity)[1].decode()))


def test_signer_with_service_account_tokens() -> None:
    ca = MeshCA(CertificateAuthority.create_root("cluster.local", utc_now()), CaOptions(cert_ttl=timedelta(hours=1)))
    reviews = SpiffeId("cluster.local", "demo", "reviews")
    answers = {
        "good.t.k": ReviewedAccount("demo", "reviews", "reviews-v1-abc"),
        "down.t.k": ReviewUnavailable("TokenReview: the API server did not answer within 5 s"),
        "bad.t.k": TokenRefused("TokenReview: the ServiceAccount token is not authenticated"),
        "ctl.t.k": ReviewedAccount("pymesh-system", "pymesh-control"),
    }
    outcomes: list[str] = []
    signer = Signer(ca, TokenStore(None, lambda: 0.0), outcomes.append, reviewer=Reviews(answers))
    cases = [
        ("a reviewed token, for its own account", "good.t.k", reviews, 200, "signed"),
        ("a reviewed token, a CSR for another account", "good.t.k", SpiffeId("cluster.local", "demo", "ratings"),
         403, "denied"),
        ("the API server could not review it", "down.t.k", reviews, 503, "unauthenticated"),
        ("the review refused it", "bad.t.k", reviews, 401, "unauthenticated"),
        ("the control server's own account", "ctl.t.k", ca.control_identity, 401, "unauthenticated"),
        ("a join token is still a join token", "pm1.x.y", reviews, 401, "unauthenticated"),
    ]
    for what, token, identity, status, outcome in cases:
        outcomes.clear()
        got = run(signer.sign(f"Bearer {token}", sign_body(identity), None, "test"))
        assert (got.status, outcomes) == (status, [outcome]), (what, got.body)
        assert token not in got.body.decode(), what
    assert "did not answer" in json.loads(run(signer.sign("Bearer down.t.k", sign_body(reviews), None, "t")).body)["error"]

    without = Signer(ca, TokenStore(None, lambda: 0.0))  # no --kubernetes: only join tokens
    assert "not a pymesh join token" in run(without.sign("Bearer good.t.k", sign_body(reviews), None, "t")).body.decode()


# --- the root ConfigMap (pure) ------------------------------------------------------------------


def test_root_cert_config_map_and_patch() -> None:
    from pymesh.kube import root_cert

    made = root_cert.config_map("demo", "PEM")
    assert made == {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "pymesh-ca-root-cert", "namespace": "demo",
                                 "labels": {"pymesh.dev/config": "true"}},
                    "data": {"root-cert.pem": "PEM"}}
    assert root_cert.patch(made, "PEM") is None
    cases = [
        ({**made, "data": {"root-cert.pem": "OLD"}}, {"data": {"root-cert.pem": "PEM"}}),
        ({**made, "data": None}, {"data": {"root-cert.pem": "PEM"}}),
        ({"metadata": {"name": "pymesh-ca-root-cert"}, "data": {"root-cert.pem": "PEM"}},
         {"metadata": {"labels": {"pymesh.dev/config": "true"}}}),
    ]
    for existing, change in cases:
        assert root_cert.patch(existing, "PEM") == change


@pytest.mark.parametrize("namespace, wanted", [
    ({"metadata": {"name": "demo"}, "status": {"phase": "Active"}}, "demo"),
    ({"metadata": {"name": "demo", "deletionTimestamp": "2026-12-01T00:00:00Z"}}, None),
    ({"metadata": {"name": "demo"}, "status": {"phase": "Terminating"}}, None),
    ({"metadata": {}}, None),
    ({}, None),
])
def test_root_cert_wanted(namespace, wanted) -> None:
    from pymesh.kube import root_cert

    assert root_cert.wanted(namespace) == wanted
