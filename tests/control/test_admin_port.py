"""The control server's admin port under hostile clients: request heads parsed strictly (table),
and over real sockets an in-process AdminServer: oversized heads, many headers, bodies without a
Content-Length, too many connections, clients that send or read nothing. Every wait is bounded."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from pymesh.api import model
from pymesh.api.wire import Node
from pymesh.control import mesh_api, routes_view
from pymesh.control.admin import MAX_CONNECTIONS, MAX_HEAD, AdminServer, Request, Route, parse_head
from pymesh.control.scrape import Scraper
from pymesh.control.traces import TraceStore

CRLF = "\r\n"


def head(*lines: str) -> bytes:
    return (CRLF.join(lines) + CRLF + CRLF).encode("latin-1")


@pytest.mark.parametrize("lines, expected", [
    (("GET /status HTTP/1.1", "Host: x"), Request("GET", "/status", "", 0)),
    (("POST /api/v2/spans?a=1 HTTP/1.0", "content-length: 12"), Request("POST", "/api/v2/spans", "a=1", 12)),
    (("POST / HTTP/1.1", "Content-Length: 5", "Content-Length: 5"), Request("POST", "/", "", 5)),
    (("GET /status",), 400),
    (("GET  /status HTTP/1.1",), 400),  # an empty target
    (("PRI * HTTP/2.0",), 400),
    (("GET / HTTP/1.1", "no colon"), 400),
    (("GET / HTTP/1.1", " X: folded"), 400),
    (("POST / HTTP/1.1", "Content-Length: 1_0"), 400),  # int() would read 10
    (("POST / HTTP/1.1", "Content-Length: ²"), 400),  # str.isdigit() says yes, int() raises
    (("POST / HTTP/1.1", "Content-Length: -1"), 400),
    (("POST / HTTP/1.1", "Content-Length: 5", "Content-Length: 6"), 400),
    (("POST / HTTP/1.1", "Transfer-Encoding: chunked"), 411),
])
def test_request_heads(lines, expected):
    parsed = parse_head(head(*lines))
    assert (parsed if isinstance(parsed, Request) else parsed[0]) == expected


class Served:
    """An AdminServer on a loopback port in this test's event loop."""

    def __init__(self, timeout: float, big: bytes = b""):
        routes = {"/big": Route(lambda q, b: (200, "text/plain", big)),
                  "/echo": Route(lambda q, b: (200, "text/plain", b), "POST", 1 << 20)}
        self.admin = AdminServer(lambda: {"proxies": []}, lambda: b"", "text/plain", lambda: True, extra=routes,
                                 read_timeout=timeout)

    async def __aenter__(self) -> Served:
        self.server = await self.admin.start("127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def ask(self, data: bytes, timeout: float = 5.0) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(data)
            return await asyncio.wait_for(reader.read(), timeout)
        except ConnectionResetError:  # refused: cut off unread
            return b""
        finally:
            writer.close()


def drain(sock: socket.socket) -> int:
    """Bytes read until the end (or a reset), each read bounded in time, the reads in count."""
    sock.settimeout(5.0)
    received = 0
    for _ in range(1_000_000):
        try:
            chunk = sock.recv(1 << 16)
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += len(chunk)
    return received


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer else 0


def test_oversized_heads_get_431_and_many_headers_within_the_limit_are_all_read():
    async def body():
        async with Served(5.0) as served:
            assert status(await served.ask(head("GET /status HTTP/1.1", "X: " + "a" * MAX_HEAD))) == 431
            many = head("POST /echo HTTP/1.1", *["X: y"] * 150, "Content-Length: 2") + b"[]"
            answer = await served.ask(many)  # the old reader stopped at 100 lines and missed the length
            assert status(answer) == 200 and answer.endswith(b"\r\n\r\n[]")
            assert status(await served.ask(head("POST /echo HTTP/1.1", "Transfer-Encoding: chunked") + b"2\r\n[]\r\n0\r\n\r\n")) == 411

    run(body())


def test_a_client_that_sends_nothing_gets_408_and_connections_over_the_cap_are_refused():
    async def body():
        async with Served(0.5) as served:
            assert status(await served.ask(b"GET /status HTTP/1.1\r\n")) == 408
            idle = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(MAX_CONNECTIONS)]
            try:
                await asyncio.sleep(0)  # let the server accept them
                for _ in range(100):  # bounded: until the server has taken all of them
                    if served.admin._open == MAX_CONNECTIONS:
                        break
                    await asyncio.sleep(0.01)
                assert await served.ask(head("GET /status HTTP/1.1"), timeout=0.4) == b"", "refused while full"
            finally:
                for _, writer in idle:
                    writer.close()
            for _ in range(200):  # bounded: until the idle ones were let go
                if served.admin._open == 0:
                    break
                await asyncio.sleep(0.01)
            assert status(await served.ask(head("GET /status HTTP/1.1"))) == 200

    run(body())


def test_a_client_that_does_not_read_its_answer_is_cut_off_and_frees_its_slot():
    """A plain close waits for the client to take the answer: the socket and the answer were held
    for as long as the client liked."""
    async def body():
        async with Served(0.5, big=b"x" * (32 << 20)) as served:  # more than the socket buffers hold
            sock = socket.create_connection(("127.0.0.1", served.port))
            try:
                sock.sendall(head("GET /big HTTP/1.1"))
                for _ in range(300):  # bounded: 3 s for a 0.5 s timeout
                    await asyncio.sleep(0.01)
                    if served.admin._open == 0:
                        break
                assert served.admin._open == 0, "the connection is still held"
                received = await asyncio.to_thread(drain, sock)
                assert received < 32 << 20, "the whole answer arrived: it was not cut off"
            finally:
                sock.close()

    run(body())


@pytest.mark.parametrize("header, expected", [
    ("Origin: http://evil.example", 403),
    ("Sec-Fetch-Site: cross-site", 403),
    ("Sec-Fetch-Site: same-site", 403),
    ("Host: evil.example:15014", 403),  # DNS rebinding: the page's own name
    ("Sec-Fetch-Site: same-origin", 200),  # the mesh page's fetches
    ("Sec-Fetch-Site: none", 200),  # the address typed in
    ("Host: localhost:15014", 200),
])
def test_requests_a_web_page_could_make_are_refused(header, expected):
    """A page in a browser on the host is a loopback client: it could post spans or mint tokens."""
    async def body():
        async with Served(5.0) as served:
            host = "" if header.startswith("Host") else "Host: 127.0.0.1\r\n"
            answer = await served.ask(f"POST /echo HTTP/1.1\r\n{host}{header}\r\nContent-Length: 2\r\n\r\n[]".encode())
            assert status(answer) == expected, answer

    run(body())


def test_a_services_routes_compile_in_a_thread_while_the_event_loop_runs(monkeypatch):
    """Up to 20 compiles of a third of a second each ran on the loop that pushes configuration."""
    started, released = threading.Event(), threading.Event()

    def blocking(config, version, host, node):
        started.set()
        assert released.wait(5), "the event loop did not run while compiling"
        return {"virtual_hosts": [{"name": host}], "proxy": node.id}

    monkeypatch.setattr(routes_view, "service_routes", blocking)
    node = Node(id="a.demo", namespace="demo")
    api = mesh_api.MeshApi(lambda: {"proxies": []}, lambda: ("1", model.MeshConfig()), lambda: [node],
                           Scraper(lambda: []), TraceStore())

    async def body():
        answer = asyncio.ensure_future(api.service_routes("host=r.demo", b""))
        for _ in range(500):  # bounded: 5 s
            if started.is_set() or answer.done():
                break
            await asyncio.sleep(0.01)
        released.set()  # reached while compiling only if the loop is free meanwhile
        code, _, text = await answer
        assert code == 200 and b'"proxy": "a.demo"' in text

    asyncio.run(asyncio.wait_for(body(), 30))
