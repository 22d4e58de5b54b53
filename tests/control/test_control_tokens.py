"""Join tokens and the signing decision, without sockets: the token format, the store (hash
only, 0600, constant-time check, expiry, revocation, restarts), and which credential proves
which identity to the CA."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from datetime import timedelta

import pytest

from pymesh.api import wire
from pymesh.control.authority import CaOptions, MeshCA
from pymesh.control.signing import Signer
from pymesh.control.token_api import TokenApi
from pymesh.control.tokens import TokenStore
from pymesh.security.ca import CertificateAuthority, new_key_and_csr, utc_now
from pymesh.security.identity import SpiffeId
from pymesh.security.jointoken import JoinToken, TokenRefused, pinned_root, spki_pin

PIN = "sha256:" + "0" * 64


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_token_round_trip_and_repr_hides_the_secret() -> None:
    token = JoinToken("abc", "demo", "reviews", "cluster.local", PIN, "s3cret")
    assert JoinToken.parse(str(token) + "\n") == token
    assert "s3cret" not in repr(token)


@pytest.mark.parametrize("text, error", [
    ("", "not a pymesh join token"),
    ("pm1.abc", "not a pymesh join token"),
    ("pm2.e30.secret", "not a pymesh join token"),
    ("pm1.!!!.secret", "claims are not base64url JSON"),
    ("pm1.e30.secret", "token claims need the strings"),  # {}
    ("pm1.eyJpZCI6MX0.secret", "token claims need the strings"),  # {"id": 1}
    ("pm1." + "A" * 5000 + ".s", "longer than"),
])
def test_malformed_tokens_are_refused_with_a_reason(text: str, error: str) -> None:
    with pytest.raises(TokenRefused, match=error):
        JoinToken.parse(text)


def test_a_token_without_a_secret_is_refused() -> None:
    text = str(JoinToken("abc", "demo", "reviews", "cluster.local", PIN, "x"))[:-1]
    with pytest.raises(TokenRefused, match="no secret"):
        JoinToken.parse(text)


def test_store_keeps_only_the_hash_0600_and_survives_a_restart(tmp_path) -> None:
    clock = Clock()
    store = TokenStore(str(tmp_path), clock)
    token = store.create("demo", "reviews", 60, "cluster.local", PIN)
    path = tmp_path / "join-tokens.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert token.secret not in path.read_text()
    assert "secret" not in json.dumps([r.public() for r in store.records()])
    again = TokenStore(str(tmp_path), clock)
    assert again.verify(token).namespace == "demo"


@pytest.mark.parametrize("change, error", [
    (lambda t: JoinToken(t.id, t.namespace, t.service_account, t.trust_domain, t.ca_pin, t.secret + "x"), "wrong secret"),
    (lambda t: JoinToken("unknown", t.namespace, t.service_account, t.trust_domain, t.ca_pin, t.secret), "unknown token"),
    # the claims are the proxy's to read: the server goes by its own record, so editing them changes nothing
    (lambda t: JoinToken(t.id, "payments", "admin", t.trust_domain, t.ca_pin, t.secret), None),
])
def test_verify_goes_by_the_record_and_the_secret(change, error) -> None:
    store = TokenStore(None, Clock())
    token = change(store.create("demo", "reviews", 60, "cluster.local", PIN))
    if error is None:
        assert (store.verify(token).namespace, store.verify(token).service_account) == ("demo", "reviews")
    else:
        with pytest.raises(TokenRefused, match=error):
            store.verify(token)


def test_expired_and_revoked_tokens_are_refused() -> None:
    clock = Clock()
    store = TokenStore(None, clock)
    expiring = store.create("demo", "a", 10, "cluster.local", PIN)
    revoked = store.create("demo", "b", 1000, "cluster.local", PIN)
    store.revoke(revoked.id)
    with pytest.raises(TokenRefused, match="revoked"):
        store.verify(revoked)
    store.verify(expiring)
    clock.now += 10
    with pytest.raises(TokenRefused, match="expired"):
        store.verify(expiring)
    with pytest.raises(KeyError):
        store.revoke("nope")


# --- the signing decision -----------------------------------------------------------------------


@pytest.fixture
def ca():
    return MeshCA(CertificateAuthority.create_root("cluster.local", utc_now()), CaOptions(cert_ttl=timedelta(hours=1)))


def sign_body(identity: SpiffeId, ttl: float | None = None) -> bytes:
    return wire.encode_body(wire.SignRequest(new_key_and_csr(identity)[1].decode(), ttl))


def signed(signer: Signer, *args):
    """The signer's answer (signing is a coroutine: a ServiceAccount token is reviewed by the API server)."""
    return asyncio.run(signer.sign(*args))


def der_of(cert) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    return x509.load_pem_x509_certificates(cert.chain_pem)[0].public_bytes(serialization.Encoding.DER)


def test_signer_decisions(ca) -> None:
    clock = Clock(utc_now().timestamp())
    tokens = TokenStore(None, clock)
    outcomes = []
    signer = Signer(ca, tokens, outcomes.append)
    token = tokens.create("demo", "reviews", 60, ca.trust_domain, ca.pin)
    reviews = SpiffeId("cluster.local", "demo", "reviews")
    ratings = SpiffeId("cluster.local", "demo", "ratings")
    bearer = f"Bearer {token}"

    ok = signed(signer, bearer, sign_body(reviews), None, "test")
    assert ok.status == 200, ok.body
    answer = wire.decode_body(wire.SignResponse, ok.body)
    assert answer.trust_bundle == ca.bundle_pem.decode()

    cases = [
        ("a CSR for another service account", bearer, sign_body(ratings), None, 403, "denied"),
        ("no credential at all", None, sign_body(reviews), None, 401, "unauthenticated"),
        ("not a bearer token", f"Basic {token}", sign_body(reviews), None, 401, "unauthenticated"),
        ("a token with a wrong secret", bearer + "x", sign_body(reviews), None, 401, "unauthenticated"),
        ("not JSON", bearer, b"{", None, 400, "invalid"),
        ("a CSR that is not PEM", bearer, wire.encode_body(wire.SignRequest("junk")), None, 403, "denied"),
    ]
    for what, authorization, body, der, status, outcome in cases:
        outcomes.clear()
        got = signed(signer, authorization, body, der, "test")
        assert (got.status, outcomes) == (status, [outcome]), what
        assert token.secret not in got.body.decode(), what

    # renewal: the verified client certificate is the credential, for its own identity only
    current = ca.authority.issue(reviews, timedelta(hours=1), utc_now())
    assert signed(signer, None, sign_body(reviews), der_of(current), "test").status == 200
    assert signed(signer, None, sign_body(ratings), der_of(current), "test").status == 403
    expired = ca.authority.issue(reviews, timedelta(seconds=1), utc_now() - timedelta(hours=1))
    assert signed(signer, None, sign_body(reviews), der_of(expired), "test").status == 401
    server = ca.authority.issue(ca.control_identity, timedelta(hours=1), utc_now())
    assert signed(signer, None, sign_body(ca.control_identity), der_of(server), "test").status == 401

    tokens.revoke(token.id)
    assert signed(signer, bearer, sign_body(reviews), None, "test").status == 401


def test_asked_lifetime_is_capped_by_max_cert_ttl() -> None:
    ca = MeshCA(CertificateAuthority.create_root("cluster.local", utc_now()),
                CaOptions(cert_ttl=timedelta(hours=1), max_cert_ttl=timedelta(hours=2)))
    reviews = SpiffeId("cluster.local", "demo", "reviews")
    from pymesh.security.ca import workload_certificate
    for asked, most in ((None, 3600), (60, 60), (10**9, 7200)):
        key, csr = new_key_and_csr(reviews)
        cert = workload_certificate(ca.sign(csr, reviews, asked), key, ca.bundle_pem)
        lifetime = (cert.not_after - utc_now()).total_seconds()
        assert most - 5 < lifetime <= most, (asked, lifetime)


def test_token_api(ca) -> None:
    api = TokenApi(TokenStore(None, Clock(utc_now().timestamp())), ca)
    status, _, body = api("POST", "", json.dumps({"namespace": "demo", "service_account": "reviews", "ttl": 60}).encode())
    assert status == 201
    created = json.loads(body)
    token = JoinToken.parse(created["token"])
    assert (token.namespace, token.service_account, token.trust_domain, token.ca_pin) == (
        "demo", "reviews", "cluster.local", ca.pin)
    status, _, body = api("GET", "", b"")
    assert status == 200 and token.secret not in body.decode() and created["id"] in body.decode()
    for request, expected in [
        ({"namespace": "pymesh-system", "service_account": "pymesh-control"}, "control server's own"),
        ({"namespace": "Bad_NS", "service_account": "x"}, "namespace: "),
        ({"namespace": "demo"}, "service_account"),
        ({"namespace": "demo", "service_account": "x", "ttl": -1}, "ttl must be a positive"),
    ]:
        status, _, body = api("POST", "", json.dumps(request).encode())
        assert status == 400 and expected in body.decode(), (request, body)
    assert api("POST", f"/{created['id']}/revoke", b"")[0] == 200
    assert api("POST", "/nope/revoke", b"")[0] == 404
    assert api("DELETE", "", b"")[0] == 405


def test_pinned_root_takes_only_the_pinned_certificate(ca) -> None:
    other = CertificateAuthority.create_root("cluster.local", utc_now())
    bundle = other.trust_bundle_pem + ca.bundle_pem
    assert pinned_root(bundle, ca.pin) == ca.bundle_pem
    with pytest.raises(ValueError, match="matches the token's pin"):
        pinned_root(other.trust_bundle_pem, ca.pin)
    with pytest.raises(ValueError, match="not PEM"):
        pinned_root(b"-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n", ca.pin)
    assert spki_pin(ca.authority.roots[0]) == ca.pin


@pytest.mark.parametrize("peer, allowed", [
    (("127.0.0.1", 5), True), (("127.8.9.1", 5), True), (("::1", 5, 0, 0), True), (("::ffff:127.0.0.1", 5), True),
    (("::ffff:10.0.0.1", 5), False),
    (("10.0.0.1", 5), False), (("198.18.0.1", 5), False), (None, False), (("not-an-ip", 1), False),
])
def test_the_token_api_answers_only_loopback_peers(peer, allowed) -> None:
    from pymesh.control.admin import _loopback
    assert _loopback(peer) is allowed


def test_the_pin_is_the_signing_root_even_when_the_bundle_holds_others(ca) -> None:
    old = CertificateAuthority.create_root("cluster.local", utc_now())
    rotating = MeshCA(ca.authority.with_roots(old.roots), ca.options)
    assert rotating.pin == ca.pin
    flipped = MeshCA(CertificateAuthority(ca.authority.cert, ca.authority.key, [], old.roots + ca.authority.roots),
                     ca.options)
    assert flipped.pin == ca.pin != spki_pin(old.roots[0])


def test_an_unreadable_token_file_stops_the_start_with_its_path(tmp_path) -> None:
    (tmp_path / "join-tokens.json").write_text('{"tokens": [{"id": "x"}]}')
    with pytest.raises(ValueError, match="join-tokens.json: unreadable join tokens"):
        TokenStore(str(tmp_path), Clock())


def test_token_cli_without_a_server_says_so_and_exits_1() -> None:
    import subprocess
    import sys
    from ports import free_port
    done = subprocess.run([sys.executable, "-m", "pymesh", "control", "token", "list", "--server",
                           f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "cannot reach the control server" in done.stderr, done.stderr
