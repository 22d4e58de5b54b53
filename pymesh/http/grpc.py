"""What a proxy must know of gRPC on top of HTTP/2 (gRPC's PROTOCOL-HTTP2.md): which requests
are gRPC, their `grpc-timeout`, the `grpc-status` of a response, and the status a local reply
carries so a gRPC client reads it as a gRPC error (as Envoy's local replies do).
"""

from __future__ import annotations

from pymesh.http.message import Header, RequestHead

OK, CANCELLED, UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, UNAVAILABLE = 0, 1, 2, 4, 12, 14
_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
# Envoy's (and gRPC's) mapping of an HTTP status a proxy answers with to a gRPC status.
_FROM_HTTP = {400: 13, 401: 16, 403: 7, 404: UNIMPLEMENTED, 408: DEADLINE_EXCEEDED, 429: UNAVAILABLE,
              502: UNAVAILABLE, 503: UNAVAILABLE, 504: UNAVAILABLE}


def is_grpc(head: RequestHead) -> bool:
    """A gRPC call: HTTP/2 with content-type application/grpc (or application/grpc+proto, ...)."""
    if head.http_version != "2":
        return False
    content_type = head.header(b"content-type")
    return content_type is not None and content_type[:16].lower() == b"application/grpc"


def timeout(head: RequestHead) -> float | None:
    """Seconds from `grpc-timeout` (at most 8 digits and a unit), or None when absent or invalid."""
    value = head.header(b"grpc-timeout")
    if value is None or not 2 <= len(value) <= 9 or not value[:-1].isdigit():
        return None
    unit = _UNITS.get(value[-1:])
    return int(value[:-1]) * unit if unit is not None else None


def status(headers: list[Header]) -> int | None:
    """The `grpc-status` in a trailer block (or a trailers-only response's head)."""
    for name, value in headers:
        if name == b"grpc-status":
            return int(value) if value.isdigit() and len(value) <= 3 else UNKNOWN
    return None


def local_reply_status(http_status: int, timed_out: bool) -> int:
    """The gRPC status of a reply the proxy writes itself instead of the upstream."""
    if timed_out:
        return DEADLINE_EXCEEDED
    return _FROM_HTTP.get(http_status, UNKNOWN)


class MessageCounter:
    """Counts the length-prefixed messages of one direction of a call as its bytes stream by
    (a 1-byte flag and a 4-byte length, then the message), for Istio's message metrics."""

    __slots__ = ("count", "_remaining", "_prefix")

    def __init__(self) -> None:
        self.count = 0
        self._remaining = 0  # bytes left of the current message
        self._prefix = b""  # a prefix split across DATA frames

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self._remaining:
                taken = min(self._remaining, end - pos)
                self._remaining -= taken
                pos += taken
                continue
            need = 5 - len(self._prefix)
            self._prefix += data[pos:pos + need]
            pos += need
            if len(self._prefix) == 5:
                self.count += 1
                self._remaining = int.from_bytes(self._prefix[1:], "big")
                self._prefix = b""
