"""The rogue-client attacks of issue 11 against a real, secure control server (mTLS, its own CA
in --data-dir), each of which succeeded against the unauthenticated channel: without a
certificate nothing is sent and nothing registered; with one, a client cannot claim another
namespace or service account, read another namespace's private resources, become an endpoint of
a service that names other identities, or take over a node id. Certificates from another CA,
expired certificates, CSRs for another identity, revoked and expired tokens: refused."""

from __future__ import annotations

import asyncio
import ssl
from datetime import timedelta

import pytest

from control_client import ControlClient, Ended
from control_harness import service_entry, write
from identity_kit import CONTROL, certificate, context, create_token, server_ca, spiffe, token_command
from pymesh.api import wire
from pymesh.api.wire import Hello, Node, SnapshotMessage, TrustBundleMessage
from pymesh.proxy.unary_h2 import UnaryError, request
from pymesh.security.ca import CertificateAuthority, new_key_and_csr, utc_now
from pymesh.security.jointoken import JoinToken

REVIEWS = "reviews.demo.svc.cluster.local"
SECRET_HEADER = "Bearer payments-internal-secret"


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def node(node_id: str, namespace: str, account: str, address: str = "10.1.0.1", **labels: str) -> Node:
    return Node(id=node_id, workload=node_id.split(".")[0], namespace=namespace, service_account=account,
                labels=labels, addresses=(address,), ports={"http": 9080})


def private_virtual_service() -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: ledger\n  namespace: payments\n"
        "spec:\n  hosts: [ledger.payments.svc.cluster.local]\n  exportTo: ['.']\n  http:\n  - headers:\n"
        f"      request:\n        set:\n          authorization: {SECRET_HEADER}\n"
        "    route:\n    - destination:\n        host: ledger.payments.svc.cluster.local\n"
    )


@pytest.fixture
def secure(control, tmp_path):
    """A secure server with --data-dir (so the test can read its CA), and that CA."""
    def start(*extra: str, grace: float = 2.0):
        server = control(grace, tmp_path / "data", *extra, secure=True)
        return server, server_ca(tmp_path / "data")
    return start


async def refused_stream(client: ControlClient) -> Ended:
    """The stream ends without a snapshot (what the server says is in the trailers)."""
    msg = await client.recv()
    assert isinstance(msg, Ended), f"expected the stream to be refused, got {msg!r:.300}"
    return msg


async def hello_ok(port: int, ctx: ssl.SSLContext, hello: Node) -> tuple[ControlClient, SnapshotMessage]:
    client = await ControlClient.connect(port, ssl=ctx)
    client.send(Hello(hello))
    bundle = await client.expect(TrustBundleMessage)  # the trust bundle comes first
    assert "BEGIN CERTIFICATE" in bundle.roots_pem
    snapshot = await client.expect(SnapshotMessage)
    client.ack(snapshot)
    return client, snapshot


def test_without_a_certificate_a_client_gets_nothing(secure, config_dir) -> None:
    write(config_dir / "reviews.yaml", service_entry("reviews", REVIEWS, ns="demo", selector={"app": "reviews"}))
    server, ca = secure()

    async def body():
        # plaintext, as today's attacker: the TLS listener never reads an HTTP/2 frame of it
        plain = await ControlClient.connect(server.port)
        plain.send(Hello(node("reviews-v1.demo", "demo", "reviews", app="reviews")))
        assert isinstance(await plain.recv(), Ended)
        await plain.close()
        # TLS, verifying the server, but no client certificate: 401, nothing pushed
        anonymous = await ControlClient.connect(server.port, ssl=context(None, ca.trust_bundle_pem))
        anonymous.send(Hello(node("reviews-v1.demo", "demo", "reviews", app="reviews")))
        ended = await refused_stream(anonymous)
        assert anonymous.status == "401", ended
        await anonymous.close()

    run(body())
    assert server.status()["proxies"] == []
    assert server.metric("pymesh_control_connected_proxies") == 0


@pytest.mark.parametrize("which", ["another CA", "expired"])
def test_a_certificate_from_another_ca_or_expired_is_refused_at_the_handshake(secure, which) -> None:
    server, ca = secure()
    if which == "another CA":
        rogue = CertificateAuthority.create_root("cluster.local", utc_now())
        cert = certificate(rogue, "demo", "reviews")
    else:
        cert = certificate(ca, "demo", "reviews", ttl=timedelta(minutes=1), now=utc_now() - timedelta(hours=1))

    async def body():
        client = await ControlClient.connect(server.port, ssl=context(cert, ca.trust_bundle_pem))
        client.send(Hello(node("reviews-v1.demo", "demo", "reviews")))
        assert isinstance(await client.recv(), Ended)  # TLS 1.3: the alert arrives after the client's Finished
        await client.close()

    run(body())
    assert server.status()["proxies"] == []


def test_the_hello_must_name_the_certificates_identity(secure, config_dir) -> None:
    write(config_dir / "ledger.yaml", private_virtual_service())
    server, ca = secure()
    ctx = context(certificate(ca, "demo", "attacker"), ca.trust_bundle_pem)

    async def body():
        for claim in (node("x.payments", "payments", "attacker"), node("x.demo", "demo", "reviews")):
            client = await ControlClient.connect(server.port, ssl=ctx)
            client.send(Hello(claim))
            ended = await refused_stream(client)
            assert "are not those of the client certificate" in ended.trailers.get("pymesh-error", ""), ended
            await client.close()
        # its own identity: served, but only its namespace's view
        client, snapshot = await hello_ok(server.port, ctx, node("x.demo", "demo", "attacker"))
        assert snapshot.config.virtual_services == ()
        await client.close()

    run(body())
    assert SECRET_HEADER not in server.log()
    assert server.metric("pymesh_control_refused_streams_total") == 2


def test_a_proxy_cannot_become_an_endpoint_of_a_service_that_names_other_identities(secure, config_dir) -> None:
    text = service_entry("reviews", REVIEWS, ns="demo", selector={"app": "reviews"})
    text += "  subjectAltNames: [spiffe://cluster.local/ns/demo/sa/reviews]\n"
    write(config_dir / "reviews.yaml", text)
    server, ca = secure()

    async def body():
        watcher, _ = await hello_ok(server.port, context(certificate(ca, "demo", "productpage"), ca.trust_bundle_pem),
                                    node("productpage.demo", "demo", "productpage", app="productpage"))
        rogue, _ = await hello_ok(server.port, context(certificate(ca, "demo", "attacker"), ca.trust_bundle_pem),
                                  node("evil.demo", "demo", "attacker", address="10.9.9.9", app="reviews"))
        status = server.wait_proxy("evil.demo", "refused as an endpoint", lambda p: "refused" in p)
        assert "admits only spiffe://cluster.local/ns/demo/sa/reviews" in status["refused"]
        real, _ = await hello_ok(server.port, context(certificate(ca, "demo", "reviews"), ca.trust_bundle_pem),
                                 node("reviews-v1.demo", "demo", "reviews", address="10.1.0.7", app="reviews"))
        # the watcher's view gets the real reviews proxy, never the rogue one
        for _ in range(5):
            msg = await watcher.recv()
            assert not isinstance(msg, Ended)
            watcher.ack(msg)
            items = msg.workload_entries if isinstance(msg, wire.EndpointsMessage) else msg.config.workload_entries
            assert "10.9.9.9" not in [e.spec.address for e in items]
            if [e.spec.address for e in items] == ["10.1.0.7"]:
                [entry] = items
                assert entry.spec.labels["security.istio.io/tlsMode"] == "istio"  # auto mTLS picks it
                break
        else:
            raise AssertionError("the real reviews proxy never became an endpoint")
        for client in (watcher, rogue, real):
            await client.close()

    run(body())


def test_a_node_id_cannot_be_taken_over(secure) -> None:
    server, ca = secure(grace=30.0)
    owner = context(certificate(ca, "demo", "reviews"), ca.trust_bundle_pem)
    other = context(certificate(ca, "demo", "attacker"), ca.trust_bundle_pem)
    victim = node("reviews-v1.demo", "demo", "reviews", address="10.1.0.7", app="reviews")

    async def body():
        first, _ = await hello_ok(server.port, owner, victim)
        for ctx, claim, why in ((owner, victim, "already connected"),
                                (other, node("reviews-v1.demo", "demo", "attacker", address="10.9.9.9", app="reviews"),
                                 "registered by another identity")):
            second = await ControlClient.connect(server.port, ssl=ctx)
            second.send(Hello(claim))
            ended = await refused_stream(second)
            assert why in ended.trailers.get("pymesh-error", ""), ended
            await second.close()
        record = server.proxy("reviews-v1.demo")
        assert record["addresses"] == ["10.1.0.7"] and record["identity"] == spiffe("demo", "reviews").uri
        await first.close()
        server.wait_proxy("reviews-v1.demo", "disconnected", lambda p: not p["connected"])
        # gone but in its grace: still the owner's, and the owner may come back
        late = await ControlClient.connect(server.port, ssl=other)
        late.send(Hello(node("reviews-v1.demo", "demo", "attacker", address="10.9.9.9", app="reviews")))
        assert "registered by another identity" in (await refused_stream(late)).trailers.get("pymesh-error", "")
        await late.close()
        back, _ = await hello_ok(server.port, owner, victim)
        await back.close()

    run(body())


def test_streams_per_identity_are_limited(secure) -> None:
    server, ca = secure("--max-connections-per-identity", "2")
    ctx = context(certificate(ca, "demo", "reviews"), ca.trust_bundle_pem)

    async def body():
        kept = [(await hello_ok(server.port, ctx, node(f"r{i}.demo", "demo", "reviews")))[0] for i in range(2)]
        third = await ControlClient.connect(server.port, ssl=ctx)
        third.send(Hello(node("r3.demo", "demo", "reviews")))
        assert "already has 2 streams open" in (await refused_stream(third)).trailers.get("pymesh-error", "")
        await third.close()
        await kept[0].close()
        server.wait_proxy("r0.demo", "disconnected", lambda p: not p["connected"])
        again, _ = await hello_ok(server.port, ctx, node("r3.demo", "demo", "reviews"))
        for client in (again, kept[1]):
            await client.close()

    run(body())


# --- signing over the real listener -------------------------------------------------------------


async def sign(server, ca, token: str | None, identity, cert=None) -> tuple[int, bytes]:
    headers = [("content-type", wire.JSON_TYPE)] + ([("authorization", f"Bearer {token}")] if token else [])
    body = wire.encode_body(wire.SignRequest(new_key_and_csr(identity)[1].decode()))
    response = await request("127.0.0.1", server.port, context(cert, ca.trust_bundle_pem), CONTROL, "POST",
                             wire.SIGN_PATH, headers, body)
    return response.status, response.body


def test_tokens_sign_only_their_identity_until_revoked_or_expired(secure) -> None:
    server, ca = secure()
    token = create_token(server, "demo", "reviews")
    short = create_token(server, "demo", "ratings", ttl="1s")
    reviews, ratings = spiffe("demo", "reviews"), spiffe("demo", "ratings")

    async def body():
        status, answer = await sign(server, ca, token, reviews)
        assert status == 200, answer
        chain = wire.decode_body(wire.SignResponse, answer).certificate_chain
        assert "BEGIN CERTIFICATE" in chain
        assert (await sign(server, ca, token, ratings))[0] == 403  # a CSR for another service account
        assert (await sign(server, ca, None, reviews))[0] == 401  # no credential
        done = token_command(server, "revoke", JoinToken.parse(token).id)
        assert done.returncode == 0, done.stderr
        assert (await sign(server, ca, token, reviews))[0] == 401
        for _ in range(100):  # the 1 s token runs out (bounded: 10 s)
            if (await sign(server, ca, short, ratings))[0] == 401:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("an expired token still signs")

    run(body())
    listing = token_command(server, "list")
    assert listing.returncode == 0
    assert "revoked" in listing.stdout and "expired" in listing.stdout
    log = server.log()
    assert "refused a certificate request" in log and "asks for spiffe://cluster.local/ns/demo/sa/ratings" in log
    for secret in (JoinToken.parse(token).secret, JoinToken.parse(short).secret):
        assert secret not in log + listing.stdout
        assert secret not in server.get("/status").decode() + server.get("/metrics").decode()
    assert server.metric('pymesh_control_certificate_requests_total{outcome="denied"}') == 1


def test_the_server_presents_its_own_identity(secure) -> None:
    server, ca = secure()

    async def body():
        with pytest.raises(UnaryError, match="is spiffe://cluster.local/ns/pymesh-system/sa/pymesh-control, not"):
            await request("127.0.0.1", server.port, context(None, ca.trust_bundle_pem), spiffe("demo", "x"), "GET",
                          wire.BUNDLE_PATH)
        answer = await request("127.0.0.1", server.port, context(None, ca.trust_bundle_pem), CONTROL, "GET",
                               wire.BUNDLE_PATH)
        assert answer.status == 200 and answer.body == ca.trust_bundle_pem

    run(body())


def test_a_plugin_ca_with_two_roots_bootstraps_a_proxy_by_the_tokens_pin(control, tmp_path) -> None:
    """Istio's cacerts layout, mid-rotation: root-cert.pem holds another root before the signing
    one. The proxy's own bootstrap code, given only the token, must pick the pinned root."""
    from pymesh.proxy.certs import CertificateStore
    from pymesh.proxy.workload_identity import WorkloadIdentity

    signing, other = (CertificateAuthority.create_root("cluster.local", utc_now()) for _ in range(2))
    cacerts = tmp_path / "cacerts"
    cacerts.mkdir()
    cert_pem, key_pem = signing.to_pem()
    for name, data in (("ca-cert.pem", cert_pem), ("ca-key.pem", key_pem), ("cert-chain.pem", cert_pem),
                       ("root-cert.pem", other.trust_bundle_pem + signing.trust_bundle_pem)):
        (cacerts / name).write_bytes(data)
    server = control(2.0, None, *(f"--ca-{kind}={cacerts / name}" for kind, name in (
        ("cert", "ca-cert.pem"), ("key", "ca-key.pem"), ("chain", "cert-chain.pem"), ("root", "root-cert.pem"))),
        secure=True)
    token = JoinToken.parse(create_token(server, "demo", "reviews"))

    async def body():
        store = CertificateStore()
        identity = WorkloadIdentity("127.0.0.1", server.port, token, store)
        await identity.obtain()
        assert store.current.identity == spiffe("demo", "reviews")
        assert store.current.roots_pem == other.trust_bundle_pem + signing.trust_bundle_pem  # both, for the overlap
        await identity.obtain()  # a renewal, over mTLS with the first certificate
        assert identity.problem() is None

    run(body())
    assert "(its client certificate" in server.log()


def test_insecure_mode_is_loud_and_counted(control) -> None:
    server = control()  # the harness's default: --insecure on 127.0.0.1

    async def body():
        client = await ControlClient.connect(server.port)
        assert isinstance(await client.hello(node("p.demo", "demo", "p")), SnapshotMessage)
        server.wait_proxy("p.demo", "connected", lambda p: p["connected"])
        await client.close()

    run(body())
    assert "WARNING pymesh.control: INSECURE: --insecure serves every client" in server.log()
    assert server.metric("pymesh_control_insecure_connections_total") == 1
    assert server.status()["mtls"] is False and server.status()["proxies"][0]["identity"] is None


def test_signing_requests_are_bounded_before_authentication(secure) -> None:
    """A body over the signing limit is answered 413 and not kept; the connection's caps still hold."""
    server, ca = secure()

    async def body():
        answer = await request("127.0.0.1", server.port, context(None, ca.trust_bundle_pem), CONTROL, "POST",
                               wire.SIGN_PATH, [("content-type", wire.JSON_TYPE)], b"x" * (wire.MAX_SIGN_BODY + 1))
        assert answer.status == 413
        wrong = await request("127.0.0.1", server.port, context(None, ca.trust_bundle_pem), CONTROL, "GET",
                              wire.SIGN_PATH)
        assert wrong.status == 405

    run(body())
    assert server.metric('pymesh_control_certificate_requests_total{outcome="signed"}') == 0
