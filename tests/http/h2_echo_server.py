"""A tiny HTTP/2 echo server on pymesh's codec and asyncio, for tests with real clients (curl,
nghttp, h2load: nghttp2, Envoy's own codec). Not the proxy: just enough glue to put the codec on
a socket. Each request is answered with its own body, and its method, path, authority and
trailers as `x-echo-*` headers; data is acknowledged as the echo is handed to the codec."""

from __future__ import annotations

import asyncio
import threading

from pymesh.http import h2 as codec
from pymesh.http.message import ResponseHead


class _Echo(asyncio.Protocol):
    def __init__(self, stats: dict) -> None:
        self.stats = stats

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.conn = codec.Connection(client=False)
        self.requests: dict[int, list] = {}
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        for kind, stream_id, value in conn.feed(data):
            if kind == codec.HEAD:
                self.requests[stream_id] = [value, []]
            elif kind == codec.DATA:
                self.requests[stream_id][1].append(value)
                conn.acknowledge_received(stream_id, len(value))
            elif kind == codec.END:
                self._answer(stream_id, value)
            elif kind in (codec.RESET, codec.ERROR):
                self.requests.pop(stream_id, None)
                if kind == codec.ERROR:
                    self.stats.setdefault("errors", []).append((stream_id, value.code))
        out = conn.data_to_send()
        if out:
            self.transport.write(out)
        if conn.closed:
            self.transport.close()

    def _answer(self, stream_id: int, trailers: list) -> None:
        head, chunks = self.requests.pop(stream_id)
        body = b"".join(chunks)
        headers = [(b"x-echo-method", head.method.encode()), (b"x-echo-path", head.path.encode()),
                   (b"x-echo-authority", head.authority.encode()),
                   (b"x-echo-trailers", b",".join(b"%s=%s" % pair for pair in trailers))]
        response = ResponseHead(200, headers)
        response.content_length = len(body)
        self.conn.send_headers(stream_id, response, end_stream=not body)
        if body:
            self.conn.send_data(stream_id, body, end_stream=True)
        self.stats["answered"] = self.stats.get("answered", 0) + 1


class EchoServer:
    """Runs in a thread with its own event loop on 127.0.0.1 (a port the kernel picks, held
    from the start); `stop()` closes everything."""

    def __init__(self) -> None:
        self.stats: dict = {}
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("echo server did not start")

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            self.loop.create_server(lambda: _Echo(self.stats), "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()
        self.server.close()
        self.loop.run_until_complete(self.server.wait_closed())
        self.loop.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
