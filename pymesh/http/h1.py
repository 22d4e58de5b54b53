"""Sans-IO HTTP/1.1 codec: httptools (llhttp) parsers that turn bytes into message events.

llhttp (strict mode, as httptools builds it) rejects the classic smuggling vectors: Content-Length
with Transfer-Encoding, duplicate or signed Content-Length, bad chunk sizes, bare CR, obsolete line
folding, control bytes. On top of it the readers decide every message's framing themselves, once,
from the parsed header values (`framing`), and refuse anything two parsers could read differently:
a Transfer-Encoding other than exactly `chunked`, Transfer-Encoding in HTTP/1.0, a Content-Length
that is not plain digits. Every input is bounded before it is buffered: the request line, each
header line and the header block, the header count, chunk-size lines and trailers.

`feed()` returns the events parsed from one chunk of bytes. When the chunk turns out to be
malformed, the events of the messages that ended before the error are kept and an ERROR event
closes the list; a message cut by the error is dropped, so its head is never acted on. After a
request with `Connection: close` (or an HTTP/1.0 request without keep-alive) the reader stops:
what the client sends after it is ignored, never parsed as another request.

Events are small tuples, cheap to build on the hot path:
    (HEAD, RequestHead | ResponseHead)   (DATA, bytes)   (END, trailers)   (UPGRADE, tail bytes)
    (ERROR, ProtocolError)
"""

from __future__ import annotations

from dataclasses import dataclass

import httptools

from pymesh.http.errors import ProtocolError
from pymesh.http.framing import MAX_LENGTH_DIGITS, connection_tokens, content_length, is_chunked
from pymesh.http.message import Header, RequestHead, ResponseHead
from pymesh.http.target import AUTHORITY_CHARS, parse_target

HEAD, DATA, END, UPGRADE, ERROR = 0, 1, 2, 3, 4
_OWS = (0x20, 0x09)


@dataclass(frozen=True)
class Limits:
    """Envoy's defaults: 60 KiB of headers, at most 100 of them.

    `max_header_bytes` also bounds any line still being received (a header line that never ends,
    a chunk-size line with endless extensions, a trailer): the bytes that arrive without
    completing anything are counted, and past the limit the message is refused.
    """

    max_request_line: int = 16 * 1024
    max_header_bytes: int = 60 * 1024
    max_headers: int = 100


class _StopParsing(Exception):
    """Raised from a parser callback to stop llhttp (limits, head-only responses, close)."""


class _Reader:
    """Shared callback plumbing of the request and response readers."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.in_head = False  # a message began and its head is not complete yet
        self._events: list = []
        self._headers: list[Header] = []
        self._header_bytes = 0
        self._in_trailers = False
        self._stop_reason: ProtocolError | None = None
        self._progress = False  # did the last chunk complete anything (a line, body bytes)?
        self._in_line = False  # a head line or a chunk-size line is being received
        self._stalled = 0  # bytes of the line being received (or since anything completed)
        self._finished = False  # Connection: close seen: nothing more is parsed

    def _reject(self, status: int, reason: str) -> _StopParsing:
        """Stop llhttp from a callback; `feed` turns this into an ERROR event."""
        self._stop_reason = ProtocolError(status, reason)
        return _StopParsing()

    def on_message_begin(self) -> None:
        self._headers = []
        self._header_bytes = 0
        self._in_trailers = False
        self.in_head = True
        self._in_line = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self._progress = True
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.limits.max_header_bytes or len(self._headers) >= self.limits.max_headers:
            raise self._reject(431, "request header fields too large")
        if value and value[-1] in _OWS:  # llhttp leaves trailing whitespace in; RFC 9110 5.5 drops it
            value = value.rstrip(b" \t")
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._progress = True
        self._events.append((DATA, body))

    def on_chunk_header(self) -> None:
        self._progress = True
        self._in_line = False

    def on_chunk_complete(self) -> None:
        self._progress = True
        self._in_line = True  # the next chunk-size line

    def on_message_complete(self) -> None:
        self._progress = True
        self._in_line = False
        trailers = self._headers if self._in_trailers else []
        self._events.append((END, trailers))

    def _finish_head(self, head, reject_status: int) -> None:
        """Framing from the parsed values, decided here once (see pymesh.http.framing)."""
        self._progress = True
        self.in_head = False
        self._in_line = head.streamed
        lengths = []
        codings = []
        tokens = []
        for name, value in self._headers:
            if name == b"content-length":
                lengths.append(value)
            elif name == b"transfer-encoding":
                codings.append(value)
            elif name == b"connection":
                tokens.append(value)
        try:
            if codings:
                if head.http_version == "1.0":
                    raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 message")
                head.streamed = is_chunked(codings, reject_status)
            if lengths:
                single = lengths[0]
                if len(lengths) == 1 and single.isdigit() and len(single) <= MAX_LENGTH_DIGITS:
                    head.content_length = int(single)  # plain ASCII digits (bytes.isdigit): safe
                else:
                    head.content_length = content_length(lengths)
            if tokens:
                head.nominated = connection_tokens(tokens)
        except ProtocolError as error:
            self._stop_reason = error
            raise _StopParsing from None
        self._events.append((HEAD, head))
        self._headers = []
        self._in_trailers = True

    def _feed(self, parser, data: bytes) -> list:
        events = self._events = []
        if self._finished:
            return events
        self._progress = False
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            events.append((UPGRADE, data[upgrade.args[0] :]))
        except httptools.HttpParserCallbackError as exc:
            if self._finished:
                return events
            error = self._stop_reason or ProtocolError(400, f"bad request: {exc}")
            return self._fail(events, error)
        except httptools.HttpParserError as exc:
            return self._fail(events, ProtocolError(400, f"bad request: {exc}"))
        if self._in_line:  # a head or chunk-size line: exactly what follows the last line end
            newline = data.rfind(b"\n")
            self._stalled = len(data) - newline - 1 if newline >= 0 else self._stalled + len(data)
        elif self._progress:
            self._stalled = 0  # the body moved; a trailer line is bounded from the next read on
        else:
            self._stalled += len(data)
        if self._stalled > self.limits.max_header_bytes:
            if self.in_head:
                return self._fail(events, ProtocolError(431, "request header fields too large"))
            return self._fail(events, ProtocolError(400, "bad request: line too long"))
        return events

    def _fail(self, events: list, error: ProtocolError) -> list:
        """Keep the messages that ended before the error; drop the one it cut."""
        self._finished = True
        last_end = len(events) - 1
        while last_end >= 0 and events[last_end][0] != END:
            last_end -= 1
        del events[last_end + 1 :]
        events.append((ERROR, error))
        return events


class RequestReader(_Reader):
    """Parses requests from a downstream connection (pipelining included)."""

    def __init__(self, limits: Limits = Limits()) -> None:
        super().__init__(limits)
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._closes = False  # the request being read ends the connection (Connection: close)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._url = b""

    def on_url(self, url: bytes) -> None:
        self._progress = True
        self._url += url
        if len(self._url) > self.limits.max_request_line:
            raise self._reject(431, "request line too long")

    def on_headers_complete(self) -> None:
        parser = self._parser
        headers = self._headers
        version = parser.get_http_version()
        if version == "0.9":
            raise self._reject(400, "bad request: HTTP/0.9 is not supported")
        if version not in ("1.0", "1.1"):
            raise self._reject(505, f"HTTP/{version} is not supported on an HTTP/1 connection")
        method = parser.get_method().decode("ascii")
        if method == "CONNECT":
            raise self._reject(405, "CONNECT is not supported")
        hosts = [value for name, value in headers if name == b"host"]
        if len(hosts) > 1 or (not hosts and version == "1.1"):
            # RFC 9112 3.2: exactly one Host in HTTP/1.1, else 400; two could let the proxy
            # and the upstream disagree about the target.
            raise self._reject(400, "bad request: an HTTP/1.1 request needs exactly one Host header")
        url = self._url
        if url[:1] == b"/":  # origin form, nearly every request
            path, authority = url.decode("latin-1"), None
        else:
            try:
                path, authority = parse_target(method, url)
            except ValueError as error:
                raise self._reject(400, f"bad request: {error}") from None
        if authority is None and hosts:
            if hosts[0].translate(None, AUTHORITY_CHARS) or not hosts[0]:
                raise self._reject(400, "bad request: invalid characters in Host")
            authority = hosts[0].decode("latin-1")
        head = RequestHead(method, path, headers, http_version=version)
        # RFC 9112 3.2.2: an absolute-form target's authority replaces Host.
        head.authority = authority or ""
        for name, value in headers:
            if name == b"expect" and value.lower() == b"100-continue":
                head.expect_continue = True
        head.keep_alive = parser.should_keep_alive()
        head.upgrade = parser.should_upgrade()
        self._closes = not head.keep_alive and not head.upgrade
        self._finish_head(head, 501)
        if head.upgrade and (head.streamed or head.content_length):
            # llhttp hands an Upgrade request's body over as the new protocol's bytes: the body
            # and the tunnel could not be told apart. Refused (Envoy stalls on it).
            raise self._reject(400, "bad request: an Upgrade request with a body is not supported")

    def on_message_complete(self) -> None:
        self._progress = True
        self._in_line = False
        self._events.append((END, self._headers if self._in_trailers else []))
        if self._closes:
            self._finished = True  # nothing after a closing request is a request
            raise _StopParsing

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
            self.in_head = False
            self._in_line = False
            return
        head = ResponseHead(status, self._headers, http_version=parser.get_http_version())
        head.keep_alive = parser.should_keep_alive()
        self._finish_head(head, 502)
        if not self.expect_body:
            self._events.append((END, []))
            self._head_only_done = True
            raise _StopParsing  # stop llhttp here; it would wait for a body

    def on_body(self, body: bytes) -> None:
        if self._interim:
            raise self._reject(502, "an interim 1xx response with a body")
        self._progress = True
        self._events.append((DATA, body))

    def on_message_complete(self) -> None:
        # An interim 1xx is dropped; a 101 ends in UPGRADE (the bytes after it are the new
        # protocol's), not in END.
        if not self._interim and self._parser.get_status_code() != 101:
            super().on_message_complete()

    def feed(self, data: bytes) -> list:
        events = self._feed(self._parser, data)
        if self._head_only_done:
            # The head-only stop is not an error: the next response gets a fresh parser.
            self._head_only_done = False
            self.reset()
            if events and events[-1][0] == ERROR:
                events.pop()
        return events

    def reset(self) -> None:
        """A fresh parser for the next response (after a HEAD response)."""
        self._parser = httptools.HttpResponseParser(self)
        self._stop_reason = None
        self._finished = False
        self.in_head = False


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
