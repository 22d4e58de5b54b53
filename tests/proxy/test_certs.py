"""The proxy's certificate store: real TLS handshakes between its server and client contexts,
rotation without cutting connections, expiry, and Istio's file-mounted layout reloaded."""

import asyncio
import os
import ssl
from datetime import timedelta

import pytest

from pymesh.control import ca_store
from pymesh.proxy.certs import CertDirSource, CertificateStore
from pymesh.security.ca import CertificateAuthority, utc_now
from pymesh.security.identity import SpiffeId, peer_spiffe_id

NOW = utc_now()
SERVER = SpiffeId("cluster.local", "demo", "reviews")
CLIENT = SpiffeId("cluster.local", "demo", "productpage")


@pytest.fixture(scope="module")
def root():
    return CertificateAuthority.create_root("cluster.local", NOW)


def store_with(cert, clock=utc_now):
    store = CertificateStore(clock)
    store.update(cert)
    return store


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def handshake(server_ctx, client_ctx):
    """(server's view of the client id, client's view of the server id, serial the client saw)."""
    seen = {}

    def accept():
        protocol = Echo()
        original = protocol.connection_made

        def made(transport):
            seen["client"] = peer_spiffe_id(transport.get_extra_info("ssl_object").getpeercert(True))
            original(transport)
        protocol.connection_made = made
        return protocol

    server = await asyncio.get_running_loop().create_server(accept, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
        ssl_object = writer.get_extra_info("ssl_object")
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        from cryptography import x509
        server_cert = x509.load_der_x509_certificate(ssl_object.getpeercert(True))
        result = seen["client"], peer_spiffe_id(ssl_object.getpeercert(True)), server_cert.serial_number
        writer.close()
        return result, (reader, writer)
    finally:
        server.close()


def test_mutual_handshake_identifies_both_ends(root):
    asyncio.run(_test_mutual_handshake_identifies_both_ends(root))


async def _test_mutual_handshake_identifies_both_ends(root):
    server = store_with(root.issue(SERVER, timedelta(hours=1), NOW))
    client = store_with(root.issue(CLIENT, timedelta(hours=1), NOW))
    (client_id, server_id, _), _ = await handshake(server.server_context(), client.client_context())
    assert (client_id, server_id) == (CLIENT, SERVER)


def test_client_from_another_ca_or_without_cert_is_refused(root):
    asyncio.run(_test_client_from_another_ca_or_without_cert_is_refused(root))


async def _test_client_from_another_ca_or_without_cert_is_refused(root):
    server = store_with(root.issue(SERVER, timedelta(hours=1), NOW))
    other = CertificateAuthority.create_root("cluster.local", NOW)
    foreign = store_with(other.issue(CLIENT, timedelta(hours=1), NOW))
    foreign_ctx = foreign.client_context()
    foreign_ctx.load_verify_locations(cadata=root.trust_bundle_pem.decode())  # it trusts us; we don't trust it
    bare = ssl.create_default_context(cadata=root.trust_bundle_pem.decode())
    bare.check_hostname = False
    for client_ctx in (foreign_ctx, bare):
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await handshake(server.server_context(), client_ctx)


def test_no_context_once_the_certificate_expired(root):
    clock = [NOW]
    store = store_with(root.issue(SERVER, timedelta(seconds=60), NOW), clock=lambda: clock[0])
    assert store.server_context() is not None and store.client_context() is not None
    clock[0] = NOW + timedelta(seconds=61)
    assert store.valid() is None
    assert store.server_context() is None and store.client_context() is None


def test_rotation_serves_new_connections_with_the_new_certificate(root):
    asyncio.run(_test_rotation_serves_new_connections_with_the_new_certificate(root))


async def _test_rotation_serves_new_connections_with_the_new_certificate(root):
    server = store_with(root.issue(SERVER, timedelta(hours=1), NOW))
    client = store_with(root.issue(CLIENT, timedelta(hours=1), NOW))
    updates = []
    server.subscribe(updates.append)
    (_, _, first_serial), _ = await handshake(server.server_context(), client.client_context())
    renewed = root.issue(SERVER, timedelta(hours=1), NOW)
    server.update(renewed)
    assert updates == [renewed]
    (_, _, second_serial), _ = await handshake(server.server_context(), client.client_context())
    assert first_serial != second_serial == renewed.serial


def test_cert_dir_loads_and_reloads_and_skips_mismatched_pairs(root, tmp_path):
    ca_store.write_workload(str(tmp_path), root.issue(SERVER, timedelta(hours=1), NOW))
    store = CertificateStore()
    source = CertDirSource(str(tmp_path), store)
    assert source.load() and store.current.identity == SERVER
    assert not source.load()  # nothing changed
    first = store.current.serial
    newer = root.issue(SERVER, timedelta(hours=1), NOW)
    with open(tmp_path / "cert-chain.pem", "wb") as stream:  # the chain replaced, the key not yet
        stream.write(newer.chain_pem)
    assert not source.load() and "does not match" in source.error and store.current.serial == first
    ca_store.write_workload(str(tmp_path), newer)
    assert source.load() and store.current.serial == newer.serial and source.error is None
    assert oct(os.stat(tmp_path / "key.pem").st_mode & 0o777) == "0o600"


def test_cert_dir_missing_files_reported(tmp_path):
    source = CertDirSource(str(tmp_path), CertificateStore())
    assert not source.load() and "cert-chain.pem" in source.error
