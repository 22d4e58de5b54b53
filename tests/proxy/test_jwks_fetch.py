"""Fetching JWK Sets (pymesh.proxy.jwks): the fetch's safety rules against real local servers,
and the cache's schedule (first fetch, waiters, rate-limited early refetch, keeping the last good
keys) with an injected fetch and clock."""

from __future__ import annotations

import asyncio
import datetime
import http.server
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jwt_tokens import Issuer
from proxy_harness import Reply
from pymesh.proxy import jwks as jwks_module
from pymesh.proxy.jwks import FetchError, JwksCache, fetch

pytestmark = pytest.mark.timeout(60)
KEYS = Issuer("https://k.example", "ES256").jwks_json()


def test_fetch_gets_the_body(upstreams):
    server = upstreams("jwks", lambda r: Reply(200, body=KEYS.encode()))
    assert fetch(f"http://127.0.0.1:{server.port}/jwks", 5.0) == KEYS.encode()


@pytest.mark.parametrize("reply, problem", [
    (Reply(302, [("location", "http://127.0.0.1:1/elsewhere")]), "302"),  # redirects are not followed
    (Reply(500, body=b"oops"), "500"),
    (Reply(200, body=b"x" * 2048), "larger than 1024 bytes"),
])
def test_fetch_refuses(upstreams, reply, problem):
    server = upstreams("jwks", lambda r: reply)
    with pytest.raises(FetchError, match=problem):
        fetch(f"http://127.0.0.1:{server.port}/jwks", 5.0, limit=1024)


def test_https_is_verified_against_the_system_roots(tmp_path):
    """A self-signed server (as an attacker on the path would present) is refused, never used."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(KEYS.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch(f"https://localhost:{server.server_address[1]}/jwks", 5.0)
    finally:
        server.shutdown()
        server.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Script:
    """An injected fetch: answers from a list (a str body or an exception), counting calls."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, uri: str, timeout: float) -> bytes:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer.encode()


async def settle(cache: JwksCache, uri: str) -> None:
    """Until no fetch of `uri` is in flight (bounded)."""
    for _ in range(500):
        entry = cache.entries.get(uri)
        if entry is None or entry.inflight is None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the fetch did not end")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_first_fetch_then_waiters_and_the_rate_limited_early_refetch():
    async def scenario():
        clock, script = Clock(), Script(KEYS)
        cache = JwksCache(asyncio.get_running_loop(), fetch=script, clock=clock)
        cache.retain([("https://k/j", 5.0)])
        woken = asyncio.Event()
        assert cache.wait("https://k/j", woken.set, early=False)  # the first fetch is in flight
        await woken.wait()
        assert cache.keys("https://k/j") is not None and script.calls == 1
        assert not cache.wait("https://k/j", woken.set, early=True)  # just fetched: rate-limited
        clock.now += jwks_module.EARLY_REFETCH
        woken.clear()
        assert cache.wait("https://k/j", woken.set, early=True)  # an unknown kid may refetch now
        await woken.wait()
        assert script.calls == 2
        assert not cache.wait("https://k/j", woken.set, early=True)
        assert not cache.wait("https://other/j", woken.set, early=True)  # not named by the snapshot
        cache.close()

    run(scenario())


def test_a_failed_fetch_keeps_the_last_good_keys_and_unused_uris_are_dropped():
    async def scenario():
        clock, script = Clock(), Script(KEYS, FetchError("down"))
        cache = JwksCache(asyncio.get_running_loop(), fetch=script, clock=clock)
        cache.retain([("https://k/j", 5.0)])
        await settle(cache, "https://k/j")
        good = cache.keys("https://k/j")
        clock.now += jwks_module.EARLY_REFETCH
        woken = asyncio.Event()
        assert cache.wait("https://k/j", woken.set, early=True)
        await woken.wait()
        assert (script.calls, cache.failed, cache.keys("https://k/j")) == (2, 1, good)
        cache.retain([])
        assert cache.entries == {} and cache.keys("https://k/j") is None

    run(scenario())


def test_a_uri_whose_first_fetch_failed_has_no_keys():
    async def scenario():
        cache = JwksCache(asyncio.get_running_loop(), fetch=Script(FetchError("down")), clock=Clock())
        cache.retain([("https://k/j", 5.0)])
        await settle(cache, "https://k/j")
        assert cache.keys("https://k/j") is None and cache.failed == 1
        cache.close()

    run(scenario())


@pytest.mark.parametrize("uri", ["file:///etc/passwd", "ftp://127.0.0.1/x", "data:,{}"])
def test_fetch_only_speaks_http(uri):
    with pytest.raises(FetchError, match="only http and https"):
        fetch(uri, 1.0)


def test_dropping_a_uri_wakes_its_waiters():
    async def scenario():
        def slow(uri: str, timeout: float) -> bytes:
            raise FetchError("unreachable")

        cache = JwksCache(asyncio.get_running_loop(), fetch=slow, clock=Clock())
        cache.retain([("https://k/j", 5.0)])
        woken = []
        assert cache.wait("https://k/j", lambda: woken.append(cache.keys("https://k/j")), early=False)
        cache.retain([])  # a reload no longer names it: the waiter decides now, without keys
        assert woken == [None]

    run(scenario())
