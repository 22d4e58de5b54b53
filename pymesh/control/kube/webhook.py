"""The admission webhooks' HTTPS listener (`pymesh control serve --webhook-listen`, 15017 as
istiod's): `POST /inject` (the mutating webhook: a JSON patch adding the sidecar) and `POST
/validate` (the validating webhook: Istio's and pymesh's resources through pymesh's loader),
and `GET /ready` for the Deployment's probes. The answers are decided in pymesh.kube.admission.

HTTP/1.1 with keep-alive (the API server reuses its connections). The caller is normally the API
server, but the port is reachable from the pod network, so every request is bounded: header
size, a Content-Length body of at most `max_body` bytes (an UPDATE carries the object twice,
each up to etcd's 1.5 MiB), a deadline for each request to arrive whole, an idle timeout
between requests and a cap on connections. A wrong method, path, content type or envelope gets
its HTTP status and a one-line reason; the object is never logged (pods carry env values).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from dataclasses import dataclass
from typing import Callable

from pymesh.kube import admission
from pymesh.kube.admission import EnvelopeError, Injector, Validator

log = logging.getLogger("pymesh.control.webhook")

INJECT_PATH = "/inject"
VALIDATE_PATH = "/validate"
READY_PATH = "/ready"


@dataclass(frozen=True)
class WebhookLimits:
    max_body: int = 4 * 1024 * 1024
    max_header_bytes: int = 16 * 1024
    request_timeout: float = 10.0  # seconds for one request to arrive whole (the API server's own is <= 30)
    idle_timeout: float = 60.0  # seconds a kept-alive connection may wait for its next request
    max_connections: int = 256
    max_requests_per_connection: int = 10000


class WebhookServer:
    def __init__(self, context: ssl.SSLContext, inject: Injector, validate: Validator,
                 known: Callable[[str, str], bool], ready: Callable[[], bool] = lambda: True,
                 limits: WebhookLimits = WebhookLimits(),
                 observe: Callable[[str, int, dict | None, dict | None], None] = lambda *answer: None):
        self._context = context
        self._observe = observe  # (path, HTTP status, request, AdmissionReview answer): the metrics
        self._routes = {
            INJECT_PATH: lambda request: admission.review_inject(request, inject),
            VALIDATE_PATH: lambda request: admission.review_validate(request, validate, known),
        }
        self._ready = ready
        self.limits = limits
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self, host: str, port: int) -> asyncio.base_events.Server:
        return await asyncio.start_server(self._connection, host, port, ssl=self._context,
                                          limit=self.limits.max_header_bytes,
                                          ssl_handshake_timeout=self.limits.request_timeout)

    def close_connections(self) -> None:
        for writer in list(self._open):
            writer.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._open) >= self.limits.max_connections:
            writer.close()
            return
        self._open.add(writer)
        try:
            for count in range(self.limits.max_requests_per_connection):
                try:
                    first = await asyncio.wait_for(reader.readuntil(b"\r\n"), self.limits.idle_timeout)
                except (asyncio.TimeoutError, asyncio.IncompleteReadError):
                    return  # idle, or the peer closed between requests
                except asyncio.LimitOverrunError:
                    first = b""  # a request line longer than all the headers may be: refused below
                try:
                    (status, content_type, body), keep = await asyncio.wait_for(
                        self._request(first, reader), self.limits.request_timeout)
                except asyncio.TimeoutError:
                    (status, content_type, body), keep = _text(408, "the request did not arrive in time"), False
                last = not keep or count == self.limits.max_requests_per_connection - 1
                writer.write(_head(status, content_type, len(body), last) + body)
                await writer.drain()
                if last:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except Exception:
            log.exception("webhook request failed")
        finally:
            self._open.discard(writer)
            writer.close()

    async def _request(self, first: bytes, reader: asyncio.StreamReader) -> tuple[tuple[int, str, bytes], bool]:
        """One request -> ((status, content type, body), keep the connection)."""
        too_big = _text(431, f"request headers over {self.limits.max_header_bytes} bytes"), False
        if not first:
            return too_big
        lines, size = [], len(first)
        while True:
            try:
                line = await reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError:
                return too_big
            size += len(line)
            if size > self.limits.max_header_bytes:
                return too_big
            if line == b"\r\n":
                break
            lines.append(line)
        parts = first.decode("latin-1").split()
        headers = _headers(lines)
        if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or headers is None:
            return _text(400, "not an HTTP/1.1 request"), False
        method, target, version = parts
        keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        if "transfer-encoding" in headers:
            return _text(411, "send the body with a Content-Length"), False
        length = headers.get("content-length", "0")
        if not (length.isascii() and length.isdigit()):  # "²".isdigit() is True, int("²") raises
            return _text(400, "Content-Length is not a number"), False
        if int(length) > self.limits.max_body:
            return _text(413, f"the body is over the {self.limits.max_body} byte limit"), False
        body = await reader.readexactly(int(length)) if int(length) else b""
        return self._answer(method, target.partition("?")[0], headers, body), keep

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        if path == READY_PATH:
            if method != "GET":
                return _text(405, "use GET")
            return _text(200, "ready") if self._ready() else _text(503, "not ready")
        if path not in self._routes:
            return _text(404, f"not found: the webhooks are POST {INJECT_PATH} and POST {VALIDATE_PATH}")
        try:
            review = self._review_request(method, headers, body)
        except EnvelopeError as exc:
            self._observe(path, exc.status, None, None)
            return _text(exc.status, exc.message)
        request = review.request
        answer = admission.in_version(self._routes[path](request), review.api_version)
        self._observe(path, 200, request, answer)
        response = answer["response"]
        if not response["allowed"]:  # client-supplied strings: repr, so no line breaks reach the log
            kind = request["kind"].get("kind") if isinstance(request.get("kind"), dict) else None
            log.info("%s denied %s %r %r/%r (uid %r): %r", path, request["operation"], kind, request.get("namespace"),
                     request.get("name"), request["uid"][:64], response["status"]["message"][:512])
        return 200, "application/json", json.dumps(answer, separators=(",", ":")).encode()

    @staticmethod
    def _review_request(method: str, headers: dict[str, str], body: bytes) -> admission.Review:
        """The AdmissionReview, or EnvelopeError with the HTTP status to answer."""
        if method != "POST":
            raise EnvelopeError(405, "use POST with an AdmissionReview")
        if not body:
            raise EnvelopeError(400, "no body found")
        if headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
            raise EnvelopeError(415, "invalid Content-Type, want `application/json`")
        return admission.read_request(body)


def _headers(lines: list[bytes]) -> dict[str, str] | None:
    """Header names lower-cased; None when a line is not `name: value`."""
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon or not name or name != name.strip():
            return None
        headers[name.lower()] = value.strip()
    return headers


def _text(status: int, message: str) -> tuple[int, str, bytes]:
    return status, "text/plain; charset=utf-8", message.encode() + b"\n"


def _head(status: int, content_type: str, length: int, close: bool) -> bytes:
    return (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\nX-Content-Type-Options: nosniff\r\n"
            f"{'Connection: close' if close else 'Connection: keep-alive'}\r\n\r\n").encode("latin-1")


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
            411: "Length Required", 413: "Content Too Large", 415: "Unsupported Media Type",
            431: "Request Header Fields Too Large", 503: "Service Unavailable"}
