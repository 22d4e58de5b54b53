"""100 MiB through the proxy in each direction, over HTTP/1.1 and HTTP/2 on either side, to a
deliberately slow reader: the bytes arrive intact, the slow side's backpressure reaches the fast
side (the proxy says it stopped reading, Envoy's flow-control counters), and the proxy's resident
memory stays far below the body size all along."""

from __future__ import annotations

import hashlib
import threading

import h2.events
import pytest

from h2_upstream import H2Upstream
from proxy_harness import (Client, Reply, free_port, http_mesh, pattern_chunks, pattern_sha256,
                           wait_until)
from test_http2_downstream import H2Client, request_headers

pytestmark = pytest.mark.timeout(240)

SIZE = 100 << 20
RSS_LIMIT_KIB = 64 << 10
STALL_EVERY = 16 << 20  # the slow reader stops this often, but not in the last stretch, which
STALLS = SIZE // STALL_EVERY - 1  # the sockets' buffers may hold whole (nothing left to pause)


class RssWatch:
    """Samples the proxy's VmRSS every 20 ms on a thread while the block runs; `peak` in KiB."""

    def __init__(self, proxy) -> None:
        self.proxy = proxy
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.proxy.rss_kib())
            if self.stop.wait(0.02):
                return

    def __enter__(self) -> RssWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(5)
        self.peak = max(self.peak, self.proxy.rss_kib())


class SlowReader:
    """Every STALL_EVERY bytes (STALLS times) it stops reading until the proxy reports that it, in turn, stopped
    reading the writer (`side`: "upstream" for a response, "downstream" for a request body; its
    paused counter ahead of its resumed one), then reads on. Called with the length read so far;
    as a sink (`take`) it also hashes what it reads."""

    def __init__(self, proxy, side: str) -> None:
        self.proxy = proxy
        self.paused, self.resumed = (f"{side}_flow_control_{what}_reading_total" for what in ("paused", "resumed"))
        self.next_stall = STALL_EVERY
        self.stalls = 0
        self.digest = hashlib.sha256()
        self.size = 0

    def __call__(self, length: int) -> None:
        if length >= self.next_stall and self.stalls < STALLS:
            self.next_stall += STALL_EVERY
            wait_until(lambda: self.proxy.stat(self.paused) > self.proxy.stat(self.resumed), timeout=30,
                       what=f"the proxy to stop reading ({self.paused})")
            self.stalls += 1

    def take(self, data: bytes) -> None:
        self.digest.update(data)
        self.size += len(data)
        self(self.size)


def assert_streamed(rss: RssWatch, reader: SlowReader) -> None:
    assert reader.stalls == STALLS
    assert rss.peak < RSS_LIMIT_KIB, f"proxy RSS peaked at {rss.peak} KiB"


@pytest.fixture
def h2_upstream():
    server = H2Upstream()
    yield server
    server.stop()


def to_http2(port: int, upstream) -> list[dict]:
    """svc.local on `port`, its one endpoint spoken to in HTTP/2 (h2UpgradePolicy UPGRADE)."""
    return http_mesh(port, {"v1": upstream}, traffic_policy={"connectionPool": {"http": {"h2UpgradePolicy": "UPGRADE"}}})


# --- uploads: the upstream reads slowly -----------------------------------------------------------


def upload_http1(port: int, framing: str, size: int = SIZE) -> int:
    with Client(port, timeout=60) as client:
        if framing == "length":
            client.send(b"POST /upload HTTP/1.1\r\nHost: svc.local\r\nContent-Length: %d\r\n\r\n" % size)
            for chunk in pattern_chunks(size):
                client.send(chunk)
        else:
            client.send(b"POST /upload HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\n\r\n")
            for chunk in pattern_chunks(size):
                client.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            client.send(b"0\r\n\r\n")
        return client.read().status


def upload_http2(port: int, size: int = SIZE) -> int:
    client = H2Client(port)
    try:
        client.conn.send_headers(1, request_headers("/upload", "POST") + [("content-length", str(size))])
        for chunk in pattern_chunks(size):
            client.send_body(1, chunk, end=False)
        client.conn.end_stream(1)
        client.flush()
        events = client.events_until(lambda seen: any(isinstance(e, h2.events.StreamEnded) for e in seen))
    finally:
        client.close()
    return int(next(dict(e.headers)[b":status"] for e in events if isinstance(e, h2.events.ResponseReceived)))


@pytest.mark.parametrize("client", ["http1-length", "http1-chunked", "h2c"])
def test_100_mib_upload_to_a_slow_http1_upstream(upstreams, proxies, client):
    up = upstreams("up")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    reader = up.body_progress = SlowReader(proxy, "downstream")
    with RssWatch(proxy) as rss:
        status = upload_http2(port) if client == "h2c" else upload_http1(port, client.partition("-")[2])
    assert status == 200
    received = up.wait_requests(1)[0]
    assert (received.body_len, received.body_sha256) == (SIZE, pattern_sha256(SIZE))
    assert_streamed(rss, reader)


def test_100_mib_upload_to_a_slow_http2_upstream(h2_upstream, proxies):
    port = free_port()
    proxy = proxies(to_http2(port, h2_upstream.port))
    reader = h2_upstream.body_progress = SlowReader(proxy, "downstream")
    with RssWatch(proxy) as rss:
        assert upload_http1(port, "length") == 200
    received = h2_upstream.wait_requests(1)[0]
    assert (received.recorder.length, received.recorder.hash.hexdigest()) == (SIZE, pattern_sha256(SIZE))
    assert_streamed(rss, reader)


# --- downloads: the client reads slowly -----------------------------------------------------------


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_100_mib_download_to_a_slow_http1_client(upstreams, proxies, framing):
    up = upstreams("up", lambda req: Reply(200, [], stream=SIZE, framing=framing))
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    reader = SlowReader(proxy, "upstream")
    with RssWatch(proxy) as rss, Client(port, timeout=60) as client:
        response = client.request("GET", "/download", sink=reader.take)
    assert response.status == 200
    assert (reader.size, reader.digest.hexdigest()) == (SIZE, pattern_sha256(SIZE))
    assert_streamed(rss, reader)


def test_100_mib_download_to_a_slow_http2_client(upstreams, proxies):
    """The client's HTTP/2 windows are the only brake: the proxy keeps no more than they allow."""
    up = upstreams("up", lambda req: Reply(200, [], stream=SIZE, framing="length"))
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    reader = SlowReader(proxy, "upstream")
    with RssWatch(proxy) as rss:
        client = H2Client(port)
        try:
            client.conn.send_headers(1, request_headers("/download"), end_stream=True)
            client.flush()
            client.events_until(lambda seen: any(isinstance(e, h2.events.StreamEnded) for e in seen),
                                on_data=reader.take)
        finally:
            client.close()
    assert (reader.size, reader.digest.hexdigest()) == (SIZE, pattern_sha256(SIZE))
    assert_streamed(rss, reader)


def test_100_mib_download_from_an_http2_upstream_to_a_slow_http1_client(h2_upstream, proxies):
    port = free_port()
    proxy = proxies(to_http2(port, h2_upstream.port))
    reader = SlowReader(proxy, "upstream")
    with RssWatch(proxy) as rss, Client(port, timeout=60) as client:
        response = client.request("GET", f"/pattern/{SIZE}", sink=reader.take)
    assert response.status == 200
    assert (reader.size, reader.digest.hexdigest()) == (SIZE, pattern_sha256(SIZE))
    assert_streamed(rss, reader)
