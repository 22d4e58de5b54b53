"""100 MiB through the proxy in each direction, streamed, from HTTP/1.1 and HTTP/2 clients: the
bytes arrive intact and the proxy's resident memory stays far below the body size."""

from __future__ import annotations

import hashlib
import threading

import h2.events
import pytest

from proxy_harness import Client, Reply, free_port, http_mesh, pattern_chunks, pattern_sha256
from test_http2_downstream import H2Client, request_headers

pytestmark = pytest.mark.timeout(180)

SIZE = 100 << 20
RSS_LIMIT_KIB = 64 << 10


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


def test_100_mib_upload(upstreams, proxies):
    up = upstreams("up")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    with RssWatch(proxy) as rss, Client(port, timeout=60) as client:
        client.send(b"POST /upload HTTP/1.1\r\nHost: svc.local\r\nContent-Length: %d\r\n\r\n" % SIZE)
        for chunk in pattern_chunks(SIZE):
            client.send(chunk)
        response = client.read()
    assert response.status == 200
    received = up.wait_requests(1)[0]
    assert received.body_len == SIZE
    assert received.body_sha256 == pattern_sha256(SIZE)
    assert rss.peak < RSS_LIMIT_KIB, f"proxy RSS peaked at {rss.peak} KiB"


def test_100_mib_chunked_upload(upstreams, proxies):
    up = upstreams("up")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    with RssWatch(proxy) as rss, Client(port, timeout=60) as client:
        client.send(b"POST /upload HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\n\r\n")
        for chunk in pattern_chunks(SIZE):
            client.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        client.send(b"0\r\n\r\n")
        response = client.read()
    assert response.status == 200
    received = up.wait_requests(1)[0]
    assert received.body_len == SIZE
    assert received.body_sha256 == pattern_sha256(SIZE)
    assert rss.peak < RSS_LIMIT_KIB, f"proxy RSS peaked at {rss.peak} KiB"


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_100_mib_download(upstreams, proxies, framing):
    up = upstreams("up", lambda req: Reply(200, [], stream=SIZE, framing=framing))
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    digest = hashlib.sha256()
    size = [0]

    def sink(data: bytes) -> None:
        size[0] += len(data)
        digest.update(data)

    with RssWatch(proxy) as rss, Client(port, timeout=60) as client:
        response = client.request("GET", "/download", sink=sink)
    assert response.status == 200
    assert size[0] == SIZE
    assert digest.hexdigest() == pattern_sha256(SIZE)
    assert rss.peak < RSS_LIMIT_KIB, f"proxy RSS peaked at {rss.peak} KiB"


# --- HTTP/2 clients (h2c): the same bounds through the HTTP/2 windows ---------------------------


def test_100_mib_download_to_an_http2_client(upstreams, proxies):
    """The client's HTTP/2 windows are the only brake: the proxy keeps no more than they allow."""
    up = upstreams("up", lambda req: Reply(200, [], stream=SIZE, framing="length"))
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    digest = hashlib.sha256()
    with RssWatch(proxy) as rss:
        client = H2Client(port)
        try:
            client.conn.send_headers(1, request_headers("/download"), end_stream=True)
            client.flush()
            received = client.events_until(lambda seen: any(isinstance(e, h2.events.StreamEnded) for e in seen),
                                           on_data=digest.update)
        finally:
            client.close()
    assert sum(e.flow_controlled_length for e in received if isinstance(e, h2.events.DataReceived)) >= SIZE
    assert digest.hexdigest() == pattern_sha256(SIZE)
    assert rss.peak < RSS_LIMIT_KIB, f"proxy RSS peaked at {rss.peak} KiB"


def test_100_mib_upload_from_an_http2_client(upstreams, proxies):
    up = upstreams("up")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    with RssWatch(proxy) as rss:
        client = H2Client(port)
        try:
            client.conn.send_headers(1, request_headers("/upload", "POST") + [("content-length", str(SIZE))])
            for chunk in pattern_chunks(SIZE):
                client.send_body(1, chunk, end=False)
            client.conn.end_stream(1)
            client.flush()
            client.events_until(lambda seen: any(isinstance(e, h2.events.StreamEnded) for e in seen))
        finally:
            client.close()
    received = up.wait_requests(1)[0]
    assert received.body_len == SIZE
    assert received.body_sha256 == pattern_sha256(SIZE)
    assert rss.peak < RSS_LIMIT_KIB, f"proxy RSS peaked at {rss.peak} KiB"
