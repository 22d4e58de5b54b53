"""Admin, metrics and health endpoints: small HTTP/1.1 servers off the request path.

Envoy's admin paths on the admin port (127.0.0.1:15000 by default, never exposed beyond the host
unless asked): /ready, /config_dump, /clusters, /certs, /stats, /stats/prometheus, POST /quitquitquit.
Prometheus scrapes /stats/prometheus on 15090; kubelet probes /healthz/ready on 15021.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from typing import Awaitable, Callable

log = logging.getLogger("pymesh.admin")

Handler = Callable[[str, str], Awaitable[tuple[int, bytes, bytes]] | tuple[int, bytes, bytes]]

MAX_REQUEST_HEAD = 16 * 1024


async def serve(host: str, port: int, handler: Handler, browser_guard: bool = False) -> asyncio.AbstractServer:
    """A tiny one-request-per-connection HTTP server calling `handler(method, path)`; with
    `browser_guard`, requests a web page could make are refused (see `browser_refusal`)."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            if len(head) > MAX_REQUEST_HEAD:
                raise ValueError("request head too large")
            request_line, _, header_block = head[:-4].partition(b"\r\n")
            method, path, _ = request_line.decode("latin-1").split(" ", 2)
            refusal = browser_refusal(header_block) if browser_guard else ""
            if refusal:
                status, content_type, body = text(403, refusal)
            else:
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


def browser_refusal(header_block: bytes) -> str:
    """Why a request must not be served, or "": the admin ports bind to localhost, so the one
    remote caller that can reach them is a web page in a browser on the same host. Such a page
    sends `Origin` (cross-site fetches and every POST) or `Sec-Fetch-Site`, and a DNS-rebinding
    page sends its own host name in `Host`; curl, kubelet and Prometheus send neither."""
    for line in header_block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"origin":
            return "refused: request from a web page (Origin)\n"
        if name == b"sec-fetch-site" and value not in (b"none", b"same-origin"):
            return "refused: request from a web page (Sec-Fetch-Site)\n"
        if name == b"host" and not _local_host(value.decode("latin-1")):
            return "refused: Host is not a local address (DNS rebinding?)\n"
    return ""


def _local_host(host: str) -> bool:
    """localhost, or an IP literal (any: the admin address may be configured)."""
    name = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def text(status: int, body: str) -> tuple[int, bytes, bytes]:
    return status, b"text/plain; charset=utf-8", body.encode()


def as_json(value) -> tuple[int, bytes, bytes]:
    return 200, b"application/json", json.dumps(value, indent=2, sort_keys=True, default=str).encode() + b"\n"
