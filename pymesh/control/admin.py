"""The control server's admin port (HTTP/1.1, 127.0.0.1 by default): GET /status (JSON, what
`pymesh control status` prints), /metrics (Prometheus), /ready and /prometheus/targets (Prometheus
HTTP service discovery of the proxies' stats ports, scrape_targets.py); the mesh page and its JSON
and the Zipkin span collector (`extra` routes, pymesh.control.mesh_api); and the join-token API under
/tokens (what `pymesh control token` calls), answered only to loopback clients, since whoever can
make a token can join the mesh as any service account. Off the push path, so a minimal
one-request-per-connection server is enough.

/status holds client-supplied strings (node ids, labels, NACK errors). JSON escapes control
characters and, with ensure_ascii, everything non-ASCII; "<", ">" and "&" are escaped too (as Go's
encoding/json does) and every answer says nosniff, so no browser can be made to run it as HTML.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import inspect
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Mapping

from pymesh.control.meshpage import CSP
from pymesh.telemetry.prometheus_config import SD_PATH

log = logging.getLogger("pymesh.control.admin")
MAX_HEADER_LINES = 100
MAX_BODY = 16 * 1024
READ_TIMEOUT = 10.0
TOKENS = "/tokens"

Answer = tuple[int, str, bytes]
# (method, path under /tokens, body) -> answer
TokenApi = Callable[[str, str, bytes], Answer]


@dataclass(frozen=True)
class Route:
    """One more path: its handler gets the query string and the body."""

    handler: Callable[[str, bytes], Answer | Awaitable[Answer]]
    method: str = "GET"
    max_body: int = 0


class AdminServer:
    def __init__(self, status: Callable[[], dict], metrics: Callable[[], bytes], metrics_type: str,
                 ready: Callable[[], bool], tokens: TokenApi | None = None,
                 scrape_targets: Callable[[], list] = list, extra: Mapping[str, Route] = {}):
        self._tokens = tokens
        self._routes = {
            "/status": Route(lambda query, body: (200, "application/json", json_body(status()))),
            SD_PATH: Route(lambda query, body: (200, "application/json", json_body(scrape_targets()))),
            "/metrics": Route(lambda query, body: (200, metrics_type, metrics())),
            "/ready": Route(lambda query, body: (200, "text/plain", b"ready\n") if ready()
                            else (503, "text/plain", b"not ready\n")),
            **extra,
        }

    async def start(self, host: str, port: int) -> asyncio.base_events.Server:
        return await asyncio.start_server(self._handle, host, port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, content_type, body = await asyncio.wait_for(
                self._respond(reader, writer.get_extra_info("peername")), READ_TIMEOUT)
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                f"X-Content-Type-Options: nosniff\r\nContent-Security-Policy: {CSP}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        except Exception:
            log.exception("admin request failed")
        finally:
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader, peer) -> Answer:
        request_line = (await reader.readline()).decode("latin-1").split()
        length = 0
        for _ in range(MAX_HEADER_LINES):
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())  # ValueError: dropped
        if len(request_line) != 3 or length < 0:
            return 400, "text/plain", b"bad request\n"
        method, target, _ = request_line
        path, _, query = target.partition("?")
        if self._tokens is not None and (path == TOKENS or path.startswith(TOKENS + "/")):
            if not _loopback(peer):
                return 403, "text/plain", b"the token API answers only loopback clients\n"
            if length > MAX_BODY:
                return 413, "text/plain", b"request body too large\n"
            return self._tokens(method, path[len(TOKENS):], await reader.readexactly(length))
        route = self._routes.get(path)
        if route is None:
            return 404, "text/plain", f"not found: try /mesh, /status, /metrics, /ready or {SD_PATH}\n".encode()
        if method != route.method:
            return 405, "text/plain", b"method not allowed\n"
        if length > route.max_body:
            return 413, "text/plain", b"request body too large\n"
        answer = route.handler(query, await reader.readexactly(length) if length else b"")
        return await answer if inspect.isawaitable(answer) else answer


def _loopback(peer) -> bool:
    try:
        address = ipaddress.ip_address(peer[0])
    except (TypeError, ValueError, IndexError):
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return (mapped or address).is_loopback


def json_body(value: object) -> bytes:
    """Indented JSON, ASCII only, with the HTML-significant characters escaped (they can only
    occur inside strings, where the escapes mean the same)."""
    text = json.dumps(value, indent=2)
    return text.translate(_HTML_ESCAPES).encode() + b"\n"


_HTML_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})
_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 400: "Bad Request", 413: "Content Too Large", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 503: "Service Unavailable"}
