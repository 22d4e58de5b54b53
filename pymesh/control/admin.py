"""The control server's admin port (HTTP/1.1, 127.0.0.1 by default): GET /status (JSON, what
`pymesh control status` prints), /metrics (Prometheus), /ready and /prometheus/targets (Prometheus
HTTP service discovery of the proxies' stats ports, scrape_targets.py); the mesh page and its JSON
and the Zipkin span collector (`extra` routes, pymesh.control.mesh_api); and the join-token API under
/tokens (what `pymesh control token` calls), answered only to loopback clients, since whoever can
make a token can join the mesh as any service account. Off the push path, so a minimal
one-request-per-connection server is enough.

A web page in a browser on the same host is a loopback client too: requests one could make
(an Origin, a cross-site Sec-Fetch-Site, a Host that is no address, as DNS rebinding sends) are
refused, as on the proxies' admin ports, so that no page can mint tokens, post spans, read the
mesh page or set the server compiling routes. Open the mesh page by its address, not a link.

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
from pymesh.proxy.admin import browser_refusal
from pymesh.telemetry.prometheus_config import SD_PATH

log = logging.getLogger("pymesh.control.admin")
MAX_HEAD = 16 * 1024  # the request line and headers
MAX_BODY = 16 * 1024
MAX_CONNECTIONS = 64  # at once: the rest are closed unread (the port shares the server's file limit)
READ_TIMEOUT = 10.0  # for the request, and again for the answer to be taken
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
                 scrape_targets: Callable[[], list] = list, extra: Mapping[str, Route] = {},
                 read_timeout: float = READ_TIMEOUT):
        self._tokens = tokens
        self._timeout = read_timeout
        self._open = 0
        self._routes = {
            "/status": Route(lambda query, body: (200, "application/json", json_body(status()))),
            SD_PATH: Route(lambda query, body: (200, "application/json", json_body(scrape_targets()))),
            "/metrics": Route(lambda query, body: (200, metrics_type, metrics())),
            "/ready": Route(lambda query, body: (200, "text/plain", b"ready\n") if ready()
                            else (503, "text/plain", b"not ready\n")),
            **extra,
        }

    async def start(self, host: str, port: int) -> asyncio.base_events.Server:
        return await asyncio.start_server(self._handle, host, port, limit=MAX_HEAD)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:  # each is held self._timeout twice at most: callers retry
            writer.transport.abort()
            return
        self._open += 1
        try:
            try:
                status, content_type, body = await asyncio.wait_for(
                    self._respond(reader, writer.get_extra_info("peername")), self._timeout)
            except asyncio.TimeoutError:
                status, content_type, body = 408, "text/plain", b"the request did not arrive in time\n"
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                f"X-Content-Type-Options: nosniff\r\nContent-Security-Policy: {CSP}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("admin request failed")
        finally:
            await self._close(writer)
            self._open -= 1

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        """Close once the answer is flushed; a client that does not read it in time is cut off
        (a plain close would hold the socket and the answer until it does)."""
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), self._timeout)
        except asyncio.TimeoutError:
            writer.transport.abort()
        except ConnectionError:
            pass

    async def _respond(self, reader: asyncio.StreamReader, peer) -> Answer:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return 431, "text/plain", f"request head over {MAX_HEAD} bytes\n".encode()
        request = parse_head(head)
        if not isinstance(request, Request):
            return request
        refusal = browser_refusal(head)  # the mesh page's own loads and fetches pass: same origin
        if refusal:
            return 403, "text/plain", refusal.encode()
        path, length = request.path, request.length
        if self._tokens is not None and (path == TOKENS or path.startswith(TOKENS + "/")):
            if not _loopback(peer):
                return 403, "text/plain", b"the token API answers only loopback clients\n"
            if length > MAX_BODY:
                return 413, "text/plain", b"request body too large\n"
            return self._tokens(request.method, path[len(TOKENS):], await reader.readexactly(length))
        route = self._routes.get(path)
        if route is None:
            return 404, "text/plain", f"not found: try /mesh, /status, /metrics, /ready or {SD_PATH}\n".encode()
        if request.method != route.method:
            return 405, "text/plain", b"method not allowed\n"
        if length > route.max_body:
            return 413, "text/plain", b"request body too large\n"
        answer = route.handler(request.query, await reader.readexactly(length) if length else b"")
        return await answer if inspect.isawaitable(answer) else answer


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    length: int  # of the body (Content-Length; 0 without one)


def parse_head(head: bytes) -> Request | Answer:
    """A request's head (through the blank line) -> the request, or the error to answer. Bodies
    come with a Content-Length only: a chunked one would be read as the next request."""
    lines = head.decode("latin-1").split("\r\n")[:-2]
    parts = lines[0].split(" ") if lines else []
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not all(parts):
        return 400, "text/plain", b"not an HTTP/1.1 request line\n"
    headers: dict[str, set[str]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return 400, "text/plain", b"a header line is not name: value\n"
        headers.setdefault(name.lower(), set()).add(value.strip())
    if "transfer-encoding" in headers:
        return 411, "text/plain", b"send the body with a Content-Length\n"
    lengths = headers.get("content-length", {"0"})
    length = lengths.pop() if len(lengths) == 1 else ""
    if not (length.isascii() and length.isdigit()):
        return 400, "text/plain", b"Content-Length is not one whole number\n"
    path, _, query = parts[1].partition("?")
    return Request(parts[0], path, query, int(length))


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
_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 411: "Length Required",
            413: "Content Too Large", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}
