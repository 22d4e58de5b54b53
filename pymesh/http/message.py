"""The protocol-neutral HTTP message model shared by the HTTP/1.1 and HTTP/2 codecs.

Headers are lists of (name, value) byte pairs with lower-case names, the form h2 already uses and
the cheapest to build from httptools callbacks. A `RequestHead` also serves as the `RequestView`
that route matching reads (see pymesh.routing.snapshot), with the header dict built lazily because
most routes never look at headers.
"""

from __future__ import annotations

from typing import Iterable

Header = tuple[bytes, bytes]

# RFC 9110 7.6.1 hop-by-hop fields, the legacy ones proxies are expected to drop, and the
# framing fields: each side's codec writes its own framing, never a copy of the peer's.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"content-length",
        b"te",
        b"trailer",
        b"upgrade",
    }
)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class ConnectionInfo:
    """What is known of the downstream connection a request arrived on, fixed when it is
    accepted and shared by all its requests (HTTP/1.1 keep-alive, HTTP/2 streams): who sent it,
    where it was going, and what its TLS handshake established. Kept off the request head so a
    codec never writes connection facts into every message it parses."""

    __slots__ = ("source_ip", "source_port", "local_ip", "local_port", "original_destination", "tls", "sni", "alpn",
                 "peer_identity", "tls_version", "local_identity", "forwarded_client_cert", "mesh_h2")

    def __init__(self, source_ip: str = "", source_port: int = 0, local_port: int = 0,
                 original_destination: tuple[str, int] | None = None) -> None:
        self.source_ip = source_ip
        self.source_port = source_port
        self.local_ip = ""  # the address the connection was accepted on
        self.local_port = local_port  # the listener's port
        self.original_destination = original_destination  # captured connections: where it was going
        self.tls = False  # the connection is TLS-terminated here
        self.sni: str | None = None  # the server name the client asked for in its ClientHello
        self.alpn: str | None = None  # the protocol ALPN settled on ("istio-h2", "h2", "http/1.1")
        # The verified client certificate's SPIFFE ID as its URI ("spiffe://td/ns/N/sa/S"); None
        # without mTLS or when a verified certificate has no SPIFFE URI SAN.
        self.peer_identity: str | None = None
        self.tls_version: str | None = None  # "TLSv1.3", "TLSv1.2"
        self.local_identity: str | None = None  # the SPIFFE URI of the certificate we presented
        self.forwarded_client_cert: bytes | None = None  # x-forwarded-client-cert for the app (mTLS)
        # HTTP/2 only because a client sidecar carries every HTTP request in its mesh HTTP/2 (ALPN
        # istio-h2), whatever its app spoke: useClientProtocol then takes HTTP/1.1 unless gRPC
        self.mesh_h2 = False


NO_CONNECTION = ConnectionInfo()  # for heads built outside a connection (tests, tools)


class RequestHead:
    """A request's head, as received downstream: also the RequestView route matching reads."""

    __slots__ = (
        "method",
        "path",
        "authority",
        "scheme",
        "raw_headers",
        "connection",
        "source_labels",
        "http_version",
        "content_length",
        "streamed",
        "keep_alive",
        "upgrade",
        "expect_continue",
        "nominated",
        "_headers",
    )

    def __init__(
        self,
        method: str,
        path: str,
        raw_headers: list[Header],
        *,
        scheme: str = "http",
        source_labels: dict | None = None,
        http_version: str = "1.1",
    ) -> None:
        self.method = method
        self.path = path
        self.raw_headers = raw_headers
        self.scheme = scheme
        self.connection = NO_CONNECTION  # set by the downstream that received it
        self.source_labels = source_labels or {}
        self.http_version = http_version
        self.authority = ""
        self.content_length: int | None = None
        self.streamed = False  # a body of unknown length follows: chunked (HTTP/1.1), DATA to END_STREAM (HTTP/2)
        self.keep_alive = True
        self.upgrade = False
        self.expect_continue = False
        self.nominated: frozenset[bytes] = frozenset()  # hop-by-hop names from Connection
        self._headers: dict[str, str] | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Lower-case name -> value, repeated fields joined with ','. Built on first use."""
        if self._headers is None:
            self._headers = headers_dict(self.raw_headers)
        return self._headers

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.raw_headers:
            if key == name:
                return value
        return None


class UpstreamRequest:
    """The request a stream sends upstream, without framing: each upstream codec frames it its
    own way (HTTP/1.1: Host, then Content-Length when `length` is known, else chunked when the
    request has a body; HTTP/2: pseudo-headers and DATA frames)."""

    __slots__ = ("method", "target", "authority", "headers", "length", "has_body", "upgrade")

    def __init__(self, method: str, target: str, authority: str, headers: list[Header], length: int | None,
                 has_body: bool, upgrade: bytes | None = None) -> None:
        self.method = method
        self.target = target
        self.authority = authority
        self.headers = headers  # end-to-end headers, no Host and no framing
        self.length = length  # the body's length when known (Content-Length), else None
        self.has_body = has_body  # a body follows (of `length` bytes, or streamed when None)
        self.upgrade = upgrade  # the Upgrade token asked for (WebSocket), or None


class Trailers:
    """The end of a body and its trailers, as kept in a replay buffer between data pieces."""

    __slots__ = ("headers",)

    def __init__(self, headers: list[Header]) -> None:
        self.headers = headers


class ResponseHead:
    __slots__ = ("status", "reason", "raw_headers", "http_version", "content_length", "streamed", "keep_alive", "nominated")

    def __init__(self, status: int, raw_headers: list[Header], reason: bytes = b"", http_version: str = "1.1") -> None:
        self.status = status
        self.reason = reason
        self.raw_headers = raw_headers
        self.http_version = http_version
        self.content_length: int | None = None
        self.streamed = False  # as RequestHead.streamed
        self.keep_alive = True
        self.nominated: frozenset[bytes] = frozenset()


def headers_dict(raw_headers: Iterable[Header]) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, value in raw_headers:
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        result[key] = f"{result[key]},{text}" if key in result else text
    return result


def end_to_end(raw_headers: list[Header], nominated: frozenset[bytes]) -> list[Header]:
    """The headers a proxy forwards: hop-by-hop and framing ones, and those the Connection
    header nominated (see pymesh.http.framing.connection_tokens), dropped."""
    if nominated:
        return [(n, v) for n, v in raw_headers if n not in HOP_BY_HOP and n not in nominated]
    return [(n, v) for n, v in raw_headers if n not in HOP_BY_HOP]
