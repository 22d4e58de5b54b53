"""Is this connection TLS, and if so what did the client ask for? A sans-IO ClientHello reader.

`inspect(data)` looks at the first bytes a client sent and answers one of:

- `NOT_TLS`: the bytes do not start a TLS handshake record (plaintext HTTP, SSLv2-style hellos,
  anything else). Decided from the first byte or two.
- `NEED_MORE`: a TLS handshake has started but the ClientHello is not complete yet; call again
  with more bytes (the whole buffer so far, not only the new part).
- a `ClientHello`: the SNI (`server_name`), the ALPN list, the versions offered.
- a `Malformed`: it is a TLS handshake record but its lengths or fields are wrong, or the hello
  is larger than `MAX_HELLO` (`oversize`). Hostile input never raises.

It only reads: the bytes are to be passed on untouched (TLS passthrough) or handed to a TLS
stack. The size bound is Envoy's tls_inspector default (`max_client_hello_size`, 16 KiB, which
is also one record's maximum plaintext); a hello may be spread over at most `MAX_RECORDS`
records, so at most MAX_HELLO + 5 * MAX_RECORDS bytes are ever needed before an answer.
Strictness follows RFC 8446 / RFC 6066 / RFC 7301: every length must fit exactly inside its
parent, an extension appears at most once, the SNI list holds one host_name of 1..255 bytes of
printable ASCII without a trailing dot (as BoringSSL requires), ALPN names are 1..255 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ClientHello", "Malformed", "NEED_MORE", "NOT_TLS", "MAX_HELLO", "MAX_RECORDS", "MAX_INPUT", "inspect"]

MAX_HELLO = 16384  # bytes of ClientHello handshake message (type, length and body)
MAX_RECORDS = 16  # records a hello may be spread over (real clients use one or two)
MAX_INPUT = MAX_HELLO + 5 * MAX_RECORDS  # the most bytes inspect() ever needs to decide

_HANDSHAKE = 22  # TLS record content type
_CLIENT_HELLO = 1  # handshake message type
_MAX_RECORD = 16384  # 2^14: a TLSPlaintext record's maximum length
_EXT_SERVER_NAME, _EXT_ALPN, _EXT_SUPPORTED_VERSIONS = 0, 16, 43


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_MORE = _Marker("NEED_MORE")
NOT_TLS = _Marker("NOT_TLS")


@dataclass(frozen=True)
class ClientHello:
    server_name: str | None  # SNI host_name as sent (ASCII), None without the extension
    alpn: tuple[str, ...]  # ALPN protocol names in the client's order ("h2", "http/1.1")
    legacy_version: int  # ClientHello.legacy_version, e.g. 0x0303
    supported_versions: tuple[int, ...]  # supported_versions extension (TLS 1.3), else ()
    size: int  # bytes of the stream the hello took (record headers included)


@dataclass(frozen=True)
class Malformed:
    reason: str
    oversize: bool = False  # over MAX_HELLO or MAX_RECORDS: Envoy closes such connections


class _Bad(Exception):
    """Internal: a length or field is wrong (never escapes `inspect`)."""


def inspect(data: bytes) -> ClientHello | Malformed | _Marker:
    """The verdict on a connection's first bytes; see the module docstring."""
    if not data:
        return NEED_MORE
    if data[0] != _HANDSHAKE:
        return NOT_TLS
    if len(data) >= 2 and data[1] != 3:
        return NOT_TLS  # TLS and SSLv3 records are version 3.x
    if len(data) >= 3 and data[2] > 4:
        return NOT_TLS  # no such TLS version (3.0 SSLv3 .. 3.4 TLS 1.3)
    message, size = _handshake_message(memoryview(data))
    if not isinstance(message, memoryview):
        return message
    try:
        return _client_hello(message, size)
    except _Bad as bad:
        return Malformed(str(bad))


def _handshake_message(data: memoryview) -> tuple[memoryview | Malformed | _Marker, int]:
    """The first handshake message, reassembled from as many handshake records as it spans."""
    body = bytearray()
    offset = records = 0
    needed = None  # the message's full length once its 4-byte header is in
    while needed is None or len(body) < needed:
        if records == MAX_RECORDS:
            return Malformed(f"ClientHello spread over more than {MAX_RECORDS} records", oversize=True), 0
        if len(data) - offset < 5:
            return NEED_MORE, 0
        kind, major, minor = data[offset], data[offset + 1], data[offset + 2]
        length = int.from_bytes(data[offset + 3:offset + 5], "big")
        if kind != _HANDSHAKE:
            return Malformed(f"record type {kind} inside the ClientHello"), 0
        if major != 3 or minor > 4:
            return Malformed(f"record version {major}.{minor}"), 0
        if not 0 < length <= _MAX_RECORD:
            return Malformed(f"record length {length} (1..{_MAX_RECORD})"), 0
        if needed is not None and len(body) + length > needed:
            return Malformed("a record runs past the end of the ClientHello"), 0
        if len(body) + length > MAX_HELLO:
            return Malformed(f"ClientHello over {MAX_HELLO} bytes", oversize=True), 0
        if len(data) - offset - 5 < length:
            # the message's own header may already say it is no ClientHello, or too large
            head = bytes(body[:4]) if len(body) >= 4 else bytes(body) + bytes(data[offset + 5:offset + 9 - len(body)])
            problem = _header_problem(head) if needed is None and len(head) == 4 else None
            return problem or NEED_MORE, 0
        body += data[offset + 5:offset + 5 + length]
        offset += 5 + length
        records += 1
        if needed is None and len(body) >= 4:
            problem = _header_problem(bytes(body[:4]))
            if problem is not None:
                return problem, 0
            needed = 4 + int.from_bytes(body[1:4], "big")
    if len(body) > needed:
        return Malformed("bytes after the ClientHello in its last record"), 0
    return memoryview(bytes(body))[4:], offset


def _header_problem(head: bytes) -> Malformed | None:
    """What the handshake message's 4-byte header alone rules out."""
    if head[0] != _CLIENT_HELLO:
        return Malformed(f"handshake message type {head[0]} (expected ClientHello)")
    size = 4 + int.from_bytes(head[1:4], "big")
    if size > MAX_HELLO:
        return Malformed(f"ClientHello of {size} bytes (at most {MAX_HELLO})", oversize=True)
    return None


class _Reader:
    """Length-checked reads over a view; any overrun is `_Bad`."""

    __slots__ = ("view", "pos")

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.pos = 0

    def left(self) -> int:
        return len(self.view) - self.pos

    def take(self, n: int, what: str) -> memoryview:
        if n > self.left():
            raise _Bad(f"{what} overruns its container")
        out = self.view[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, width: int, what: str) -> int:
        return int.from_bytes(self.take(width, what), "big")

    def vector(self, width: int, what: str, low: int = 0, high: int | None = None) -> _Reader:
        n = self.uint(width, what + " length")
        if n < low or (high is not None and n > high):
            raise _Bad(f"{what} length {n}")
        return _Reader(self.take(n, what))

    def done(self, what: str) -> None:
        if self.left():
            raise _Bad(f"{self.left()} stray bytes after {what}")


def _client_hello(body: memoryview, size: int) -> ClientHello:
    r = _Reader(body)
    legacy_version = r.uint(2, "legacy_version")
    r.take(32, "random")
    r.vector(1, "session_id", 0, 32)
    suites = r.vector(2, "cipher_suites", 2)
    if suites.left() % 2:
        raise _Bad("cipher_suites length is odd")
    r.vector(1, "compression_methods", 1)
    server_name, alpn, versions = None, (), ()
    if r.left():  # no extensions at all is allowed before TLS 1.3
        extensions = r.vector(2, "extensions")
        r.done("extensions")
        seen: set[int] = set()
        while extensions.left():
            kind = extensions.uint(2, "extension type")
            data = extensions.vector(2, f"extension {kind}")
            if kind in seen:
                raise _Bad(f"extension {kind} appears twice")
            seen.add(kind)
            if kind == _EXT_SERVER_NAME:
                server_name = _server_name(data)
            elif kind == _EXT_ALPN:
                alpn = _alpn(data)
            elif kind == _EXT_SUPPORTED_VERSIONS:
                versions = _versions(data)
    return ClientHello(server_name, alpn, legacy_version, versions, size)


def _server_name(data: _Reader) -> str:
    names = data.vector(2, "server_name_list", 1)
    data.done("server_name_list")
    host = None
    while names.left():
        name_type = names.uint(1, "name_type")
        name = names.vector(2, "host_name", 1)
        if name_type != 0:
            raise _Bad(f"server name type {name_type} (only host_name exists)")
        if host is not None:
            raise _Bad("more than one host_name in server_name")
        raw = bytes(name.take(name.left(), "host_name"))
        if len(raw) > 255 or not all(0x21 <= b < 0x7F for b in raw) or raw.endswith(b"."):
            raise _Bad("server_name is not a host name (1..255 printable ASCII bytes, no trailing dot)")
        host = raw.decode("ascii")
    return host  # type: ignore[return-value]  # the list is non-empty, so host is set


def _alpn(data: _Reader) -> tuple[str, ...]:
    names = data.vector(2, "protocol_name_list", 2)
    data.done("protocol_name_list")
    out = []
    while names.left():
        name = names.vector(1, "protocol_name", 1)
        out.append(bytes(name.take(name.left(), "protocol_name")).decode("latin-1"))
    return tuple(out)


def _versions(data: _Reader) -> tuple[int, ...]:
    versions = data.vector(1, "supported_versions", 2, 254)
    data.done("supported_versions")
    if versions.left() % 2:
        raise _Bad("supported_versions length is odd")
    return tuple(versions.uint(2, "version") for _ in range(versions.left() // 2))
