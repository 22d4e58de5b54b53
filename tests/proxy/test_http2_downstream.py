"""HTTP/2 clients (h2c with prior knowledge) through a sidecar to HTTP/1.1 upstreams, with real
peers: curl --http2-prior-knowledge, nghttp, h2load, and the `h2` library for what the tools
cannot send (a body of unknown length, a reset). The upstream is the harness's HTTP/1.1 server."""

from __future__ import annotations

import hashlib
import re
import socket
import subprocess

import h2.config
import h2.connection
import h2.events
import pytest

from proxy_harness import HOST, Reply, curl, free_port, http_mesh, to_subset, wait_until

pytestmark = pytest.mark.timeout(60)


def mesh(port: int, up) -> list[dict]:
    return http_mesh(port, {"v1": up}, http=[{"match": [{"uri": {"prefix": "/public"}}], "route": [to_subset("v1")]}])


class H2Client:
    """A blocking HTTP/2 client on one socket, with the `h2` library (for the cases tools lack)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def events_until(self, done, on_data=None) -> list:
        """Events until `done(events so far)`; DATA is acknowledged as read (after `on_data`
        took it, when given: then its bytes are not kept in the events)."""
        seen = []
        while not done(seen):
            data = self.sock.recv(65536)
            if not data:
                break
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    if on_data is not None:
                        on_data(event.data)
                        event.data = b""
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                seen.append(event)
            self.flush()
        return seen

    def send_body(self, stream_id: int, body: bytes, end: bool = True) -> None:
        """Send within the proxy's flow-control windows, waiting for its WINDOW_UPDATEs."""
        sent = 0
        while sent < len(body):
            window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            if window == 0:
                self.events_until(lambda seen: any(isinstance(e, h2.events.WindowUpdated) for e in seen))
                continue
            piece = body[sent:sent + window]
            self.conn.send_data(stream_id, piece)
            sent += len(piece)
            self.flush()
        if end:
            self.conn.end_stream(stream_id)
            self.flush()

    def close(self) -> None:
        self.sock.close()


def request_headers(path: str, method: str = "GET") -> list[tuple[str, str]]:
    return [(":method", method), (":path", path), (":scheme", "http"), (":authority", HOST)]


def test_curl_over_h2c_reaches_an_http1_upstream(upstreams, proxies):
    up = upstreams("up")
    port = free_port()
    proxy = proxies(mesh(port, up))
    result = curl(port, "/public/h2?x=1", "--http2-prior-knowledge")
    assert result.status == 200, result.stderr
    assert result.body == b"up GET /public/h2?x=1\n"
    received = up.wait_requests(1)[0]
    assert received.version == "HTTP/1.1"
    assert received.header("host") == HOST
    entry = proxy.wait_log(lambda e: e["path"] == "/public/h2?x=1")
    assert entry["protocol"] == "HTTP/2"
    assert curl(port, "/elsewhere", "--http2-prior-knowledge").status == 404  # NR, over HTTP/2 too


def test_post_bodies_cross_protocols_with_known_and_unknown_length(upstreams, proxies):
    up = upstreams("up", lambda req: Reply(200, body=hashlib.sha256(req.body).hexdigest().encode()))
    port = free_port()
    proxies(mesh(port, up))
    body = bytes(range(256)) * 400
    result = curl(port, "/public/post", "--http2-prior-knowledge", "--data-binary", "@-", "-X", "POST")
    assert result.status == 200
    client = H2Client(port)
    try:
        client.conn.send_headers(1, request_headers("/public/stream", "POST"))  # no content-length
        client.send_body(1, body)
        events = client.events_until(lambda seen: any(isinstance(e, h2.events.StreamEnded) for e in seen))
    finally:
        client.close()
    data = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert data == hashlib.sha256(body).hexdigest().encode()
    streamed = [r for r in up.requests if r.path == "/public/stream"][0]
    assert streamed.header("transfer-encoding") == "chunked"
    assert streamed.body == body


def test_many_concurrent_streams_with_nghttp(upstreams, proxies):
    up = upstreams("up")
    port = free_port()
    proxies(mesh(port, up))
    urls = [f"http://127.0.0.1:{port}/public/n{i}" for i in range(20)]
    done = subprocess.run(["nghttp", "-n", "-s", "-H", f":authority: {HOST}", *urls],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert len(re.findall(r"\s200\s", done.stdout)) >= 20 or up.count() == 20
    assert sorted(r.path for r in up.requests) == sorted(f"/public/n{i}" for i in range(20))


def test_h2load_completes_every_request(upstreams, proxies):
    up = upstreams("up")
    port = free_port()
    proxies(mesh(port, up))
    done = subprocess.run(["h2load", "-n", "300", "-c", "2", "-m", "10", "-H", f":authority: {HOST}",
                           f"http://127.0.0.1:{port}/public/load"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "300 succeeded, 0 failed, 0 errored" in done.stdout, done.stdout


def test_large_download_respects_the_clients_flow_control(upstreams, proxies):
    size = 8 * 1024 * 1024
    up = upstreams("up", lambda req: Reply(200, stream=size))
    port = free_port()
    proxies(mesh(port, up))
    result = curl(port, "/public/big", "--http2-prior-knowledge")
    assert result.status == 200
    assert len(result.body) == size


def test_a_client_reset_stream_drops_the_upstream_request(upstreams, proxies):
    import threading
    released = threading.Event()
    up = upstreams("up", lambda req: (req.path == "/public/slow" and released.wait(20), Reply(200))[1])
    port = free_port()
    proxy = proxies(mesh(port, up))
    client = H2Client(port)
    try:
        client.conn.send_headers(1, request_headers("/public/slow"), end_stream=True)
        client.flush()
        wait_until(lambda: up.count() == 1, what="the request upstream")
        client.conn.reset_stream(1)
        client.flush()
        entry = proxy.wait_log(lambda e: e["path"] == "/public/slow")
        assert entry["response_flags"] == "DC"  # the exchange ended as downstream-closed ...
        client.conn.send_headers(3, request_headers("/public/after"), end_stream=True)
        client.flush()  # ... and the connection goes on serving other streams
        events = client.events_until(lambda seen: any(isinstance(e, h2.events.StreamEnded) for e in seen))
        assert any(isinstance(e, h2.events.ResponseReceived) and e.stream_id == 3 for e in events)
    finally:
        released.set()
        client.close()


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_drain_lets_the_open_http2_stream_finish(upstreams, proxies):
    """SIGTERM while an HTTP/2 stream is in flight: the proxy sends GOAWAY (NO_ERROR) and stops
    listening, but the stream still gets its whole response, and the proxy then exits 0. (curl is
    the client: the h2 library closes its side on any GOAWAY.)"""
    import signal
    import threading
    released = threading.Event()
    up = upstreams("up", lambda req: (released.wait(20), Reply(200, body=b"finished"))[1])
    port = free_port()
    proxy = proxies(mesh(port, up), drain_timeout=15)
    result = {}
    caller = threading.Thread(target=lambda: result.update(r=curl(port, "/public/in-flight", "--http2-prior-knowledge")))
    caller.start()
    try:
        wait_until(lambda: up.count() == 1, what="the request upstream")
        proxy.signal(signal.SIGTERM)
        wait_until(lambda: not accepts(port), what="the proxy to stop listening (draining)")
        released.set()
        caller.join(30)
    finally:
        released.set()
    assert result["r"].status == 200, result["r"].stderr
    assert result["r"].body == b"finished"
    assert proxy.wait_exit() == 0


def test_upgrade_h2c_is_taken_by_the_proxy(upstreams, proxies):
    """curl --http2 on http:// asks `Upgrade: h2c`: the proxy answers 101 itself, the request
    becomes stream 1, and more requests follow on the same HTTP/2 connection."""
    up = upstreams("up")
    port = free_port()
    proxy = proxies(mesh(port, up))
    result = curl(port, "/public/one", "--http2", "-v")
    assert result.status == 200, result.stderr
    assert result.statuses[:1] == [101]
    assert result.body == b"up GET /public/one\n"
    received = up.wait_requests(1)[0]
    assert received.header("upgrade") is None and received.header("http2-settings") is None
    assert proxy.wait_log(lambda e: e["path"] == "/public/one")["protocol"] == "HTTP/2"


def test_upgrade_h2c_with_malformed_settings_is_400(upstreams, proxies):
    up = upstreams("up")
    port = free_port()
    proxies(mesh(port, up))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /public/x HTTP/1.1\r\nHost: svc.local\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                     b"Upgrade: h2c\r\nHTTP2-Settings: AAMA\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400")
    assert up.count() == 0
