"""Admin, metrics and health endpoints: small HTTP/1.1 servers off the request path.

Envoy's admin paths on the admin port (127.0.0.1:15000 by default, never exposed beyond the host
unless asked): /ready, /config_dump, /clusters, /stats, /stats/prometheus, POST /quitquitquit.
Prometheus scrapes /stats/prometheus on 15090; kubelet probes /healthz/ready on 15021.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Awaitable, Callable

log = logging.getLogger("pymesh.admin")

Handler = Callable[[str, str], Awaitable[tuple[int, bytes, bytes]] | tuple[int, bytes, bytes]]

MAX_REQUEST_HEAD = 16 * 1024


async def serve(host: str, port: int, handler: Handler) -> asyncio.AbstractServer:
    """A tiny one-request-per-connection HTTP server calling `handler(method, path)`."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            if len(head) > MAX_REQUEST_HEAD:
                raise ValueError("request head too large")
            method, path, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            result = handler(method, path)
            if asyncio.iscoroutine(result):
                result = await result
            status, content_type, body = result
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ValueError):
            status, content_type, body = 400, b"text/plain", b"bad request\n"
        except ConnectionError:
            writer.close()
            return
        writer.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (status, b"OK" if status == 200 else b"Error", content_type, len(body))
            + body
        )
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    return await asyncio.start_server(on_connection, host, port, limit=MAX_REQUEST_HEAD)


def text(status: int, body: str) -> tuple[int, bytes, bytes]:
    return status, b"text/plain; charset=utf-8", body.encode()


def as_json(value) -> tuple[int, bytes, bytes]:
    return 200, b"application/json", json.dumps(value, indent=2, sort_keys=True, default=str).encode() + b"\n"
