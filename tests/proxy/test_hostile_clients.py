"""What one client can do to every other client of a sidecar, bounded: a header line that never
ends, a head dripped a byte at a time, idle keep-alive connections, an upstream that never
answers, connection floods, and a browser page on the node poking the admin port. Real sockets,
a real `pymesh proxy`; deadlines are set short by flag, and the tests await each outcome (a
response, a close) instead of timing it."""

from __future__ import annotations

import socket
import threading

import pytest

from proxy_harness import Client, Reply, free_port, http_mesh, wait_until

pytestmark = pytest.mark.timeout(90)

HEAD = b"GET /x HTTP/1.1\r\nHost: svc.local\r\n"


class Bystander:
    """Another client sending requests on its own connection while a hostile one works."""

    def __init__(self, port: int, count: int = 40) -> None:
        self.port, self.count = port, count
        self.statuses: list[int] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with Client(self.port) as client:
            for i in range(self.count):
                self.statuses.append(client.request("GET", f"/bystander/{i}").status)

    def __enter__(self) -> Bystander:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.thread.join(timeout=60)


def test_header_line_that_never_ends_gets_431_within_the_limit(upstreams, proxies):
    """Issue 8 sent 300 MB; the proxy now answers once ~the header limit is buffered, so the
    client is cut off long before, RSS stays flat and the bystander is served throughout."""
    up = upstreams("up")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}))
    rss_before = proxy.rss_kib()
    piece = b"a" * 65536
    sent = 0
    with Bystander(port) as bystander, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(HEAD + b"X-Endless: ")
        sock.settimeout(0.001)
        answer = b""
        while sent < 300 * 1024 * 1024 and not answer:
            try:
                sock.sendall(piece)
                sent += len(piece)
                answer = sock.recv(4096)
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(10)
        try:
            answer += sock.recv(4096)
        except (ConnectionResetError, socket.timeout):
            pass
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert sent < 16 * 1024 * 1024, f"{sent} bytes were accepted before the 431"
    assert bystander.statuses == [200] * bystander.count
    assert proxy.rss_kib() - rss_before < 32 * 1024
    assert all("/x" != r.path for r in up.requests)


def test_endless_chunk_extension_is_cut_off(upstreams, proxies):
    up = upstreams("up")
    port = free_port()
    proxies(http_mesh(port, {"v1": up}))
    with Client(port) as client:
        client.send(b"POST /c HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=")
        for _ in range(40):
            try:
                client.send(b"x" * 8192)
            except (BrokenPipeError, ConnectionResetError):
                break
        assert client.read().status == 400
    assert all(r.path != "/c" for r in up.requests)


def test_head_dripped_one_byte_at_a_time_is_cut_off_at_the_request_headers_timeout(upstreams, proxies):
    up = upstreams("up")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}), extra_args=["--request-headers-timeout", "1"])
    with Client(port) as client:
        client.send(b"GET /slow HTTP/1.1\r\n")
        client.sock.settimeout(0.2)  # the pace of the drip: one byte per wait for an answer
        answer = b""
        for byte in (b"X-Drip: " + b"d" * 200):
            try:
                client.send(bytes([byte]))
                answer = client.sock.recv(4096)
                break
            except socket.timeout:
                continue
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"request header timeout" in answer
    assert up.count() == 0
    assert proxy.stat("downstream_rq_header_timeout") == 1


def test_a_whole_head_in_one_read_is_not_subject_to_the_drip_deadline(upstreams, proxies):
    """The control case: a slow but complete client is served."""
    up = upstreams("up")
    port = free_port()
    proxies(http_mesh(port, {"v1": up}), extra_args=["--request-headers-timeout", "1"])
    with Client(port) as client:
        for _ in range(3):
            assert client.request("GET", "/fine").status == 200


def test_idle_keep_alive_connection_is_closed_at_the_idle_timeout(upstreams, proxies):
    up = upstreams("up")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}), extra_args=["--idle-timeout", "1"])
    with Client(port) as client:
        assert client.request("GET", "/once").status == 200
        assert client.closed_by_peer(timeout=15)
    assert proxy.stat("downstream_cx_idle_timeout") == 1


@pytest.fixture
def silent_upstream(upstreams):
    """An upstream that reads the request and never answers (until the test ends)."""
    released = threading.Event()
    up = upstreams("silent", lambda req: (released.wait(30), Reply(200))[1])
    yield up
    released.set()


def test_upstream_that_never_answers_ends_with_504_at_the_stream_idle_timeout(silent_upstream, proxies):
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": silent_upstream}), extra_args=["--stream-idle-timeout", "1"])
    with Client(port) as client:
        response = client.request("GET", "/hang")
        assert response.status == 504
        assert response.body == b"stream timeout"
    entry = proxy.wait_log(lambda e: e["path"] == "/hang")
    assert entry["response_flags"] == "SI"
    assert proxy.stat("downstream_rq_idle_timeout") == 1


def test_client_that_stops_sending_its_body_gets_408_at_the_stream_idle_timeout(silent_upstream, proxies):
    port = free_port()
    proxies(http_mesh(port, {"v1": silent_upstream}), extra_args=["--stream-idle-timeout", "1"])
    with Client(port) as client:
        client.send(b"POST /half HTTP/1.1\r\nHost: svc.local\r\nContent-Length: 100\r\n\r\nonly-some")
        response = client.read()
        assert response.status == 408
        assert client.closed_by_peer()


def test_connections_over_the_listener_limit_are_refused_counted_and_logged(upstreams, proxies):
    up = upstreams("up")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}), extra_args=["--max-connections", "3"])
    held = [Client(port) for _ in range(3)]
    try:
        for client in held:
            assert client.request("GET", "/held").status == 200
        with Client(port) as extra:
            assert extra.closed_by_peer()
        assert proxy.stat("downstream_cx_overflow") >= 1
        wait_until(lambda: "at its limit of 3 connections" in proxy.stderr(), what="the overflow warning")
        held.pop().close()
        wait_until(lambda: proxy.stat("downstream_cx_active") <= 2, what="the closed connection to be counted")
        with Client(port) as again:
            assert again.request("GET", "/after").status == 200
    finally:
        for client in held:
            client.close()
    assert "file-descriptor limit" in proxy.stderr()


@pytest.mark.parametrize("header", [b"Origin: http://evil.example", b"Sec-Fetch-Site: cross-site",
                                    b"Host: evil.example:15000"])
def test_admin_refuses_requests_a_web_page_could_make(upstreams, proxies, header):
    up = upstreams("up")
    proxy = proxies(http_mesh(free_port(), {"v1": up}))
    with socket.create_connection(("127.0.0.1", proxy.admin_port), timeout=5) as sock:
        host = b"" if header.startswith(b"Host") else b"Host: 127.0.0.1\r\n"
        sock.sendall(b"POST /quitquitquit HTTP/1.1\r\n" + host + header + b"\r\nContent-Length: 0\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 403"), answer
    assert proxy.running()
    assert proxy.admin("/ready")[0] == 200
