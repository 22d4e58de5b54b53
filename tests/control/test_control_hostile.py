"""Hostile clients against the control server's push port: what each can make the server hold is
bounded and released, over-limit connections are closed with the reason, and good proxies keep
being served while a flood is on.

The memory tests run the server in this process (tracemalloc and the server's own gauges see its
allocations); the rest run `pymesh control serve` as a subprocess like the other control tests.
"""

from __future__ import annotations

import asyncio
import gc
import struct
import time
import tracemalloc
import weakref
from dataclasses import replace

import pytest

from control_client import ControlClient, Ended, node
from control_harness import service_entry, write
from pymesh.api.wire import Ack, Hello, SnapshotMessage
from pymesh.control import bounds
from pymesh.control.server import ControlOptions, ControlServer

pytestmark = pytest.mark.timeout(90)
KIB = 1024
MIB = 1024 * KIB
REVIEWS = "reviews.default.svc.cluster.local"


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def length_prefix(n: int) -> bytes:
    return struct.pack(">I", n)


async def ended(client: ControlClient, timeout: float = 10.0) -> Ended:
    """The first Ended on the client's queue (messages before it are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await client.recv(max(0.1, deadline - time.monotonic()))
        if isinstance(msg, Ended):
            return msg


async def in_process(config_dir, **limits) -> ControlServer:
    server = ControlServer(ControlOptions(
        config_dir=str(config_dir), listen=("127.0.0.1", 0), admin=("127.0.0.1", 0), grace=1.0,
        connection_limits=replace(bounds.DEFAULT, **limits),
        insecure=True,  # plaintext clients: these bounds hold before any authentication
    ))
    await server.start()
    return server


async def settle(server: ControlServer, predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def traced() -> int:
    """Bytes allocated, and still held, by the control server's code (allocations with a frame
    in pymesh/control on their stack: this test's clients share the process, not that code)."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*/pymesh/control/*", all_frames=True)])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def test_partial_huge_frames_from_unknown_clients_are_bounded_and_released(config_dir) -> None:
    """The reported attack: 12 clients each start a 16 MiB frame and send what they can. Today's
    server held every byte (about 90 MB); now a client without a hello may only announce a 64 KiB
    first message, and may send at most 128 KiB before one."""
    write(config_dir / "reviews.yaml", service_entry("reviews", REVIEWS, endpoints=["10.0.0.1"]))

    async def body():
        server = await in_process(config_dir, hello_timeout=30.0)
        good = await ControlClient.connect(server.listen_address[1])
        good.ack(await good.hello(node("reviews-v1.default")))
        tracemalloc.start(12)  # only now: fewer traces make snapshots quick
        try:
            baseline = traced()
            hostile = [await ControlClient.connect(server.listen_address[1], source="127.0.0.2") for _ in range(12)]
            sent = await asyncio.gather(*(c.push(length_prefix(16 * MIB) + b"x" * MIB, timeout=3) for c in hostile))
            reasons = [await ended(c) for c in hostile]
            during = traced() - baseline
            assert all(r.trailers.get("pymesh-error") == "frame of 16777216 bytes is over the 65536-byte limit"
                       for r in reasons), reasons
            assert max(sent) < MIB, sent  # the server stopped taking bytes long before 1 MiB
            for c in hostile:  # they kept sending on the ended stream: the connection goes too
                assert goaway(await ended(c)) == "sent more than 131072 bytes without a hello"

            # the same clients again, each holding a partial first message just under the limit
            for c in hostile:
                await c.close()
            hostile = [await ControlClient.connect(server.listen_address[1], source="127.0.0.2") for _ in range(12)]
            for c in hostile:
                assert await c.push(length_prefix(60 * KIB) + b"x" * (59 * KIB)) == 59 * KIB + 4
            await settle(server, lambda: sum(c.buffered for c in server._connections) == 12 * (59 * KIB + 4),
                         "the partial messages to arrive")
            held = traced() - baseline
            assert held < 12 * 128 * KIB, f"{held} bytes held for 12 clients"
            assert float(scrape(server, "pymesh_control_buffered_bytes")) == 12 * (59 * KIB + 4)

            # the good proxy is served meanwhile
            write(config_dir / "reviews.yaml", service_entry("reviews", REVIEWS, endpoints=["10.0.0.2"]))
            assert isinstance(await good.recv(), SnapshotMessage)

            # released: once they leave, the server holds what it held before they came
            refs = [weakref.ref(c) for c in server._connections if c.source == "127.0.0.2"]
            for c in hostile:
                await c.close()
            await settle(server, lambda: len(server._connections) == 1, "the hostile connections to close")
            gc.collect()
            assert [r for r in refs if r() is not None] == [], "connections still referenced after close"
            assert traced() - baseline < 256 * KIB
            assert scrape(server, "pymesh_control_connections") == "1.0"
            await good.close()
            await server.stop()
        finally:
            tracemalloc.stop()
        print(f"during the first flood: +{during} bytes; 12 partial hellos held: +{held} bytes")

    run(body())


def scrape(server: ControlServer, name: str) -> str:
    for line in server.metrics.render().decode().splitlines():
        if line.startswith(name + " "):
            return line.split()[1]
    raise AssertionError(f"{name} not in /metrics")


# --- over sockets, against `pymesh control serve` -----------------------------------------------


def goaway(reason: Ended) -> str:
    assert reason.why == "GOAWAY", reason
    return reason.debug.decode()


def test_a_client_that_never_says_hello_is_closed_with_the_reason(control, config_dir) -> None:
    server = control(5.0, None, "--hello-timeout", "0.5", "--message-timeout", "0.5")

    async def body():
        silent = await ControlClient.connect(server.port)  # preface and headers, then nothing
        assert goaway(await ended(silent)) == "no hello within 0.5 s"
        slow = await ControlClient.connect(server.port)
        slow.send_bytes(length_prefix(100) + b'{"v":1')  # a hello that never completes
        assert goaway(await ended(slow)) == "no hello within 0.5 s"
        assert server.metric('pymesh_control_connections_closed_total{reason="hello_timeout"}') == 2.0

        proxy = await ControlClient.connect(server.port)
        proxy.ack(await proxy.hello(node("reviews-v1.default")))
        await proxy.silent(1.0)  # an idle proxy after its hello is fine
        proxy.send_bytes(length_prefix(100) + b'{"v":1')  # then a message that never completes
        assert goaway(await ended(proxy)) == "a message did not arrive whole within 0.5 s"
        await server_wait_disconnected(server, "reviews-v1.default")

    run(body())


async def server_wait_disconnected(server, node_id: str) -> None:
    await asyncio.to_thread(server.wait_proxy, node_id, "disconnected", lambda p: not p["connected"])


def test_caps_on_connections_per_source_and_in_total_spare_good_proxies(control, config_dir) -> None:
    """A flood from one address fills its share only: a proxy elsewhere connects and is served."""
    write(config_dir / "reviews.yaml", service_entry("reviews", REVIEWS, endpoints=["10.0.0.1"]))
    server = control(5.0, None, "--max-connections-per-source", "3", "--max-connections", "6",
                     "--hello-timeout", "120")  # the flood must not time out during the test

    async def body():
        flood = [await ControlClient.connect(server.port, source="127.0.0.2") for _ in range(4)]
        assert goaway(await ended(flood[3])) == "too many connections from 127.0.0.2 (the limit is 3)"
        good = await ControlClient.connect(server.port, source="127.0.0.1")
        good.ack(await good.hello(node("reviews-v1.default")))
        await asyncio.to_thread(server.wait_proxy, "reviews-v1.default", "synced", lambda p: p["state"] == "SYNCED")
        more = [await ControlClient.connect(server.port, source=f"127.0.0.{i}") for i in (3, 4, 5)]
        assert goaway(await ended(more[2])) == "too many connections (the limit is 6)"
        assert server.metric('pymesh_control_connections_closed_total{reason="too_many_from_source"}') == 1.0
        assert server.metric('pymesh_control_connections_closed_total{reason="too_many_connections"}') == 1.0
        for client in flood:
            await client.close()
        # their places are free again
        again = await ControlClient.connect(server.port, source="127.0.0.2")
        assert isinstance(await again.hello(node("ratings-v1.default")), SnapshotMessage)
        for client in [good, again, *more]:
            await client.close()

    run(body())


def test_message_size_after_hello_streams_and_headers_are_bounded(control, config_dir) -> None:
    import h2.connection
    import h2.errors
    import h2.settings

    server = control(5.0, None, "--max-message-kb", "64")

    async def body():
        proxy = await ControlClient.connect(server.port)
        await proxy.hello(node("reviews-v1.default"))
        await proxy.push(length_prefix(64 * KIB + 1))
        reason = await ended(proxy)
        assert reason.trailers["pymesh-error"] == "frame of 65537 bytes is over the 65536-byte limit"

        # the server's SETTINGS: 2 streams, a 16 KiB header list; a third stream is refused
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        conn = h2.connection.H2Connection()
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        await read_events(reader, conn, lambda e: type(e).__name__ == "RemoteSettingsChanged")
        assert conn.remote_settings.max_concurrent_streams == 2
        assert conn.remote_settings.max_header_list_size == 16 * KIB
        headers = [(":method", "POST"), (":path", "/pymesh.control.v1/Stream"), (":scheme", "http"),
                   (":authority", "x"), ("content-type", "application/x-pymesh-stream")]
        for sid in (1, 3):
            conn.send_headers(sid, headers)
        # break the rule on purpose: forget what the server said
        conn.remote_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100})
        conn.send_headers(5, headers)
        writer.write(conn.data_to_send())
        event = await read_events(reader, conn, lambda e: type(e).__name__ == "ConnectionTerminated")
        assert event.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
        writer.close()

        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        conn = h2.connection.H2Connection()
        conn.initiate_connection()
        conn.send_headers(1, headers + [("x-big", "v" * (17 * KIB))])
        writer.write(conn.data_to_send())
        event = await read_events(reader, conn, lambda e: type(e).__name__ == "ConnectionTerminated")
        assert event.error_code != h2.errors.ErrorCodes.NO_ERROR
        writer.close()

    run(body())


async def read_events(reader, conn, predicate, timeout: float = 5.0):
    """Read until an h2 event matches `predicate` (AssertionError on EOF or timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        data = await asyncio.wait_for(reader.read(65536), max(0.1, deadline - time.monotonic()))
        assert data, "connection closed before the event"
        for event in conn.receive_data(data):
            if predicate(event):
                return event


def test_a_hostile_node_is_refused_and_hostile_text_is_escaped_in_status(control, config_dir) -> None:
    """Escape codes and fake rows: in a node id they are refused at hello; in a NACK error (free
    text) they show as visible escapes in `pymesh control status` and cannot break /status."""
    import json
    import subprocess

    from control_harness import cli

    write(config_dir / "reviews.yaml", service_entry("reviews", REVIEWS, endpoints=["10.0.0.1"]))
    server = control()

    async def body():
        evil = await ControlClient.connect(server.port)
        evil.send(Hello(node("x\x1b[2J\nratings-v1.default")))
        reason = await ended(evil)
        assert reason.trailers["pymesh-error"] == (
            "hello: node.id: 'x\\\\x1b[2J\\\\nratings-v1.default' is not a valid name (letters, digits, '.', '_', "
            "':', '~' and '-', at most 253)")
        liar = await ControlClient.connect(server.port)
        liar.send(Hello(replace(node("ratings-v1.default"), labels={"app": "reviews\x1b[8m"})))
        assert (await ended(liar)).trailers["pymesh-error"].startswith("hello: node.labels['app']: label value")
        assert server.status()["proxies"] == []

        proxy = await ControlClient.connect(server.port)
        snapshot = await proxy.hello(node("reviews-v1.default"))
        proxy.nack(snapshot, "bad\x1b[2J\x1b[H\nratings-v1.default   default   10.0.0.9   1   1   SYNCED <script>")
        await asyncio.to_thread(server.wait_proxy, "reviews-v1.default", "NACKED", lambda p: p["state"] == "NACKED")
        raw = server.get("/status")
        assert b"<script>" not in raw and b"\x1b" not in raw
        assert json.loads(raw)["proxies"][0]["error"].endswith("SYNCED <script>")
        done = await asyncio.to_thread(subprocess.run, [*cli(), "status", "--server", f"127.0.0.1:{server.admin_port}"],
                                       capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert "\x1b" not in done.stdout
        lines = done.stdout.splitlines()
        assert len(lines) == 3 and lines[2].startswith("reviews-v1.default"), lines
        assert lines[2].endswith("NACKED: bad\\x1b[2J\\x1b[H\\nratings-v1.default   default   10.0.0.9   1   1   "
                                 "SYNCED <script>")
        await proxy.close()

    run(body())


def test_streams_opened_over_a_connections_life_are_capped(control, config_dir) -> None:
    """Rapid reset: opening and resetting streams costs the server work, so a connection may open
    only so many (a proxy opens one)."""
    import h2.connection
    import h2.errors

    server = control()

    async def body():
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        conn = h2.connection.H2Connection()
        conn.initiate_connection()
        for sid in range(1, 2 * 101, 2):
            conn.send_headers(sid, [(":method", "POST"), (":path", "/pymesh.control.v1/Stream"), (":scheme", "http"),
                                    (":authority", "x"), ("content-type", "application/x-pymesh-stream")])
            conn.reset_stream(sid)
        writer.write(conn.data_to_send())
        event = await read_events(reader, conn, lambda e: type(e).__name__ == "ConnectionTerminated")
        assert (event.error_code, event.additional_data) == (h2.errors.ErrorCodes.ENHANCE_YOUR_CALM,
                                                             b"opened more than 100 streams")
        writer.close()
        assert server.metric('pymesh_control_connections_closed_total{reason="too_many_streams"}') == 1.0

    run(body())


def test_a_client_that_does_not_read_cannot_make_the_server_queue_answers(config_dir) -> None:
    """PING makes the server answer; a client that sends PINGs and never reads would have the
    answers pile up in the server without end. While its socket does not drain, the server does
    not read from it either, so what it queues stays near the transport's high-water mark."""
    import socket

    ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"12345678"  # a PING frame, 17 bytes
    chunk = ping * (64 * KIB // len(ping))

    async def body():
        server = await in_process(config_dir)
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and it never reads
        sock.setblocking(False)
        await loop.sock_connect(sock, server.listen_address)
        await settle(server, lambda: server._connections, "the server to accept")
        (connection,) = server._connections
        # the kernel would absorb megabytes of answers in autotuned buffers: keep its share small
        connection.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        await loop.sock_sendall(sock, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
                                + encode_hello_stream())
        sent, blocked_since = 0, None
        deadline = time.monotonic() + 30
        while sent < 16 * MIB and time.monotonic() < deadline:
            try:
                sent += sock.send(chunk)
                blocked_since = None
            except BlockingIOError:
                blocked_since = blocked_since or time.monotonic()
                if time.monotonic() - blocked_since > 1.0:
                    break  # the server stopped reading
            await asyncio.sleep(0)
        queued = connection.transport.get_write_buffer_size()
        assert sent < 16 * MIB, "the server read every PING although its answers could not go out"
        assert queued < 256 * KIB, f"{queued} bytes of answers queued"
        assert not connection.transport.is_reading()
        sock.close()
        await settle(server, lambda: not server._connections, "the connection to close")
        await server.stop()
        print(f"sent {sent} bytes of PINGs before the server stopped reading; {queued} bytes queued")

    run(body())


def encode_hello_stream() -> bytes:
    """HEADERS opening the control stream and DATA with a hello, as raw frames."""
    import h2.connection

    conn = h2.connection.H2Connection()
    conn.initiate_connection()
    conn.data_to_send()  # the preface and SETTINGS are sent by hand
    conn.send_headers(1, [(":method", "POST"), (":path", "/pymesh.control.v1/Stream"), (":scheme", "http"),
                          (":authority", "x"), ("content-type", "application/x-pymesh-stream")])
    conn.send_data(1, encode_hello())
    return conn.data_to_send()


def encode_hello() -> bytes:
    from pymesh.api.wire import encode_message

    return encode_message(Hello(node("reviews-v1.default")))


def test_a_tls_handshake_that_never_ends_is_cut_at_the_hello_timeout() -> None:
    """With TLS the hello's clock starts after the handshake, so the handshake has the same
    deadline (asyncio's own default is 60 s)."""
    from datetime import timedelta

    from pymesh.control.bounds import Gate
    from pymesh.control.h2server import serve
    from pymesh.proxy.certs import CertificateStore
    from pymesh.security.ca import CertificateAuthority, utc_now
    from pymesh.security.identity import SpiffeId

    async def body():
        now = utc_now()
        ca = CertificateAuthority.create_root("cluster.local", now)
        store = CertificateStore()
        store.update(ca.issue(SpiffeId("cluster.local", "pymesh-system", "control"), timedelta(hours=1), now))
        server, _ = await serve(lambda stream: None, "127.0.0.1", 0, ssl=store.server_context(),
                                gate=Gate(replace(bounds.DEFAULT, hello_timeout=0.5)))
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        assert await asyncio.wait_for(reader.read(), 10) == b""  # no ClientHello: closed
        writer.close()
        server.close()

    run(body())


def test_a_connection_whose_stream_was_refused_must_still_say_hello_in_time(control, config_dir) -> None:
    """A first message that is not an accepted hello does not count: the connection stays under
    the hello deadline (it could otherwise hold its place for ever)."""
    server = control(5.0, None, "--hello-timeout", "0.5")

    async def body():
        client = await ControlClient.connect(server.port)
        client.send(Ack("1", "n"))
        first = await client.recv()
        assert isinstance(first, Ended) and first.trailers["pymesh-error"] == "ack before hello"
        assert goaway(await ended(client)) == "no hello within 0.5 s"

    run(body())
