"""Sans-IO HTTP/1.1 codec: httptools (llhttp) parsers that turn bytes into message events.

`feed()` returns the events parsed from one chunk of bytes; the caller acts on them only after the
whole chunk parsed, so a head followed by a malformed body in the same packet is never forwarded.
llhttp already rejects the classic smuggling vectors (Content-Length with Transfer-Encoding,
duplicate Content-Length, bad chunk sizes, obsolete line folding); the reader adds size limits.

Events are small tuples, cheap to build on the hot path:
    (HEAD, RequestHead | ResponseHead)   (DATA, bytes)   (END, trailers)   (UPGRADE, tail bytes)
"""

from __future__ import annotations

from dataclasses import dataclass

import httptools

from pymesh.http.message import Header, RequestHead, ResponseHead

HEAD, DATA, END, UPGRADE = 0, 1, 2, 3


@dataclass(frozen=True)
class Limits:
    """Envoy's defaults: 60 KiB of headers, at most 100 of them."""

    max_request_line: int = 16 * 1024
    max_header_bytes: int = 60 * 1024
    max_headers: int = 100


class ProtocolError(Exception):
    """Malformed or oversized input: the status to answer with, and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _StopParsing(Exception):
    """Raised from a parser callback to stop llhttp (limits, head-only responses)."""


class _Reader:
    """Shared callback plumbing of the request and response readers."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._events: list = []
        self._headers: list[Header] = []
        self._header_bytes = 0
        self._in_trailers = False
        self._stop_reason: ProtocolError | None = None

    def _reject(self, status: int, reason: str) -> _StopParsing:
        """Stop llhttp from a callback; `feed` turns this into ProtocolError(status, reason)."""
        self._stop_reason = ProtocolError(status, reason)
        return _StopParsing()

    def on_message_begin(self) -> None:
        self._headers = []
        self._header_bytes = 0
        self._in_trailers = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.limits.max_header_bytes or len(self._headers) >= self.limits.max_headers:
            raise self._reject(431, "request header fields too large")
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._events.append((DATA, body))

    def on_message_complete(self) -> None:
        trailers = self._headers if self._in_trailers else []
        self._events.append((END, trailers))

    def _finish_head(self, head) -> None:
        chunked = False
        length = None
        for name, value in self._headers:
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.lower().endswith(b"chunked")
        head.content_length = length
        head.chunked = chunked
        self._events.append((HEAD, head))
        self._headers = []
        self._in_trailers = True

    def _feed(self, parser, data: bytes) -> list:
        events = self._events = []
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            events.append((UPGRADE, data[upgrade.args[0] :]))
        except httptools.HttpParserCallbackError as exc:
            if self._stop_reason is not None:
                raise self._stop_reason from None
            raise ProtocolError(400, f"bad request: {exc}") from exc
        except httptools.HttpParserError as exc:
            raise ProtocolError(400, f"bad request: {exc}") from None
        return events


class RequestReader(_Reader):
    """Parses requests from a downstream connection (pipelining included)."""

    def __init__(self, limits: Limits = Limits()) -> None:
        super().__init__(limits)
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._url = b""

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.max_request_line:
            raise self._reject(431, "request line too long")

    def on_headers_complete(self) -> None:
        parser = self._parser
        headers = self._headers
        version = parser.get_http_version()
        if version == "0.9":
            raise self._reject(400, "bad request: HTTP/0.9 is not supported")
        hosts = [value for name, value in headers if name == b"host"]
        if len(hosts) > 1 or (not hosts and version == "1.1"):
            # RFC 9112 3.2: exactly one Host in HTTP/1.1, else 400; two could let the proxy
            # and the upstream disagree about the target.
            raise self._reject(400, "bad request: an HTTP/1.1 request needs exactly one Host header")
        head = RequestHead(
            parser.get_method().decode("ascii"),
            self._url.decode("latin-1"),
            headers,
            http_version=version,
        )
        for name, value in headers:
            if name == b"host":
                head.authority = value.decode("latin-1")
            elif name == b"expect" and value.lower() == b"100-continue":
                head.expect_continue = True
        head.keep_alive = parser.should_keep_alive()
        head.upgrade = parser.should_upgrade()
        self._finish_head(head)

    def feed(self, data: bytes) -> list:
        return self._feed(self._parser, data)


class ResponseReader(_Reader):
    """Parses responses from an upstream connection, one request in flight at a time.

    Interim 1xx responses (other than 101) are dropped: pymesh answers `Expect: 100-continue`
    itself, as Envoy does. llhttp cannot be told that a response answers a HEAD request, so the
    caller sets `expect_body = False` and the reader ends that message at the end of its head.
    """

    def __init__(self, limits: Limits = Limits()) -> None:
        super().__init__(limits)
        self._parser = httptools.HttpResponseParser(self)
        self.expect_body = True
        self._interim = False
        self._head_only_done = False

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        self._interim = 100 <= status < 200 and status != 101
        if self._interim:
            return
        head = ResponseHead(status, self._headers, http_version=parser.get_http_version())
        head.keep_alive = parser.should_keep_alive()
        self._finish_head(head)
        if not self.expect_body:
            self._events.append((END, []))
            self._head_only_done = True
            raise _StopParsing  # stop llhttp here; it would wait for a body

    def on_message_complete(self) -> None:
        # An interim 1xx is dropped; a 101 ends in UPGRADE (the bytes after it are the new
        # protocol's), not in END.
        if not self._interim and self._parser.get_status_code() != 101:
            super().on_message_complete()

    def feed(self, data: bytes) -> list:
        try:
            return self._feed(self._parser, data)
        except ProtocolError:
            if not self._head_only_done:
                raise
            self._head_only_done = False
            self.reset()
            return self._events

    def reset(self) -> None:
        """A fresh parser for the next response (after a HEAD response)."""
        self._parser = httptools.HttpResponseParser(self)
        self._stop_reason = None


# --- serialisation ---------------------------------------------------------------------------


def serialize_request_head(method: str, target: str, headers: list[Header]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1")]
    for name, value in headers:
        lines.append(b"%s: %s\r\n" % (name, value))
    lines.append(b"\r\n")
    return b"".join(lines)


_REASONS = {
    100: b"Continue", 101: b"Switching Protocols", 200: b"OK", 201: b"Created", 202: b"Accepted",
    204: b"No Content", 206: b"Partial Content", 301: b"Moved Permanently", 302: b"Found",
    303: b"See Other", 304: b"Not Modified", 307: b"Temporary Redirect", 308: b"Permanent Redirect",
    400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
    405: b"Method Not Allowed", 408: b"Request Timeout", 409: b"Conflict", 413: b"Content Too Large",
    429: b"Too Many Requests", 431: b"Request Header Fields Too Large", 500: b"Internal Server Error",
    502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Timeout",
}


def reason_phrase(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown")


def serialize_response_head(status: int, headers: list[Header], reason: bytes = b"") -> bytes:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason or reason_phrase(status))]
    for name, value in headers:
        lines.append(b"%s: %s\r\n" % (name, value))
    lines.append(b"\r\n")
    return b"".join(lines)


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def encode_last_chunk(trailers: list[Header]) -> bytes:
    if not trailers:
        return b"0\r\n\r\n"
    return b"0\r\n" + b"".join(b"%s: %s\r\n" % pair for pair in trailers) + b"\r\n"
