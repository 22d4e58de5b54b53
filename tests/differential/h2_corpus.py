"""The HTTP/2 differential corpus: raw frame sequences a client sends after the preface and its
SETTINGS, valid (GET, POST with DATA, trailers, interleaved streams, padding, CONTINUATION,
PRIORITY) and invalid (RFC 9113 8.2-8.3 malformed requests, frame-level and connection errors).

Header blocks are HPACK literals without indexing and without Huffman, written here byte by byte,
so that a header name or value reaches the proxy exactly as the case spells it (no encoder
normalises case or refuses bad bytes). Every request's :path is `/public/<token>/<role>` (the
HTTP/1.1 corpus's scheme), so whatever the upstream parses is traced to its case and stream.
Generation is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from corpus import HOST, path, token_of

from pymesh.http import h2_frames as fr

HDR, DAT, CONT, PRIO, PING = fr.HEADERS, fr.DATA, fr.CONTINUATION, fr.PRIORITY, fr.PING
EH, ES = fr.END_HEADERS, fr.END_STREAM
BIG = fr.DEFAULT_MAX_FRAME + 1


@dataclass(frozen=True)
class H2Case:
    name: str  # category/what
    category: str
    settings: bytes  # the client's first SETTINGS frame (after the preface)
    frames: bytes  # everything after it, sent at once
    streams: dict[int, str] = field(default_factory=dict)  # client stream id -> role in the :path
    watched: tuple[int, ...] = ()  # the streams the case is about (others are bystanders)

    @property
    def token(self) -> str:
        return token_of(self.name)

    @property
    def data(self) -> bytes:
        return fr.PREFACE + self.settings + self.frames


def _int(value: int, prefix: int, first: int = 0) -> bytes:
    """HPACK integer (RFC 7541 5.1)."""
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes([first | value])
    out, value = bytearray([first | limit]), value - limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    return bytes(out + bytes([value]))


def block(fields: list[tuple[bytes, bytes]]) -> bytes:
    """Literal header fields without indexing, new names, no Huffman (RFC 7541 6.2.2)."""
    return b"".join(b"\x00" + _int(len(n), 7) + n + _int(len(v), 7) + v for n, v in fields)


def req(tok: str, role: str, method: bytes = b"GET", extra: list | None = None) -> list[tuple[bytes, bytes]]:
    return [(b":method", method), (b":scheme", b"http"), (b":authority", HOST),
            (b":path", path(tok, role)), *(extra or [])]


def headers(sid: int, fields, flags: int = EH | ES) -> bytes:
    return fr.frame(HDR, flags, sid, block(fields))


def data(sid: int, payload: bytes, flags: int = ES) -> bytes:
    return fr.frame(DAT, flags, sid, payload)


def padded(kind: int, sid: int, payload: bytes, flags: int, pad: int) -> bytes:
    return fr.frame(kind, flags | fr.PADDED, sid, bytes([pad]) + payload + b"\0" * pad)


def priority(sid: int, depends: int, weight: int = 15) -> bytes:
    return fr.frame(PRIO, 0, sid, depends.to_bytes(4, "big") + bytes([weight]))


PING_FRAME = fr.frame(PING, 0, 0, b"pingpong")
NO_SETTINGS = fr.settings_frame([])


def _valid(tok: str) -> dict[str, tuple[bytes, dict[int, str]]]:
    """name -> (frames, streams): requests both proxies should forward alike."""
    main = {1: "main"}
    post = req(tok, "main", b"POST")
    split = block(req(tok, "main", extra=[(b"x-long", b"v" * 300), (b"x-more", b"w" * 40)]))
    return {
        "get": (headers(1, req(tok, "main")), main),
        "get-query": (headers(1, [*req(tok, "main")[:3], (b":path", path(tok, "main") + b"?a=1&b=%20")]), main),
        "get-host-not-authority": (headers(1, [*req(tok, "main")[:2], (b":path", path(tok, "main")),
                                               (b"host", HOST)]), main),
        "get-cookies-split": (headers(1, req(tok, "main", extra=[(b"cookie", b"a=1"), (b"cookie", b"b=2")])), main),
        "get-te-trailers": (headers(1, req(tok, "main", extra=[(b"te", b"trailers")])), main),
        "delete": (headers(1, req(tok, "main", b"DELETE")), main),
        "post-data": (headers(1, post, EH) + data(1, b"hello"), main),
        "post-content-length": (headers(1, post + [(b"content-length", b"5")], EH) + data(1, b"hello"), main),
        "post-many-data": (headers(1, post, EH) + data(1, b"ab", 0) + data(1, b"cd"), main),
        "post-data-empty-end": (headers(1, post, EH) + data(1, b"abc", 0) + data(1, b"def", 0) + data(1, b""), main),
        "post-trailers": (headers(1, post + [(b"te", b"trailers")], EH) + data(1, b"hello", 0)
                          + headers(1, [(b"x-trailer", b"t1")]), main),
        "put-content-length-many": (headers(1, req(tok, "main", b"PUT", [(b"content-length", b"6")]), EH)
                                    + data(1, b"abc", 0) + data(1, b"def"), main),
        "padded-headers": (padded(HDR, 1, block(req(tok, "main")), EH | ES, 7), main),
        "padded-data": (headers(1, post, EH) + padded(DAT, 1, b"hello", ES, 20), main),
        "continuation": (fr.frame(HDR, ES, 1, split[:100]) + fr.frame(CONT, 0, 1, split[100:200])
                         + fr.frame(CONT, EH, 1, split[200:]), main),
        "continuation-empty": (fr.frame(HDR, ES, 1, split) + fr.frame(CONT, EH, 1, b""), main),
        "priority-frame-first": (priority(1, 0) + headers(1, req(tok, "main")), main),
        "priority-flag": (fr.frame(HDR, EH | ES | fr.PRIORITY_FLAG, 1, b"\0\0\0\0\x10" + block(req(tok, "main"))), main),
        "priority-idle-other": (priority(7, 1) + headers(1, req(tok, "main")), main),
        "ping-and-window-update": (PING_FRAME + fr.window_update(0, 1000) + headers(1, post, EH)
                                   + fr.window_update(1, 1000) + data(1, b"x"), main),
        "interleaved": (headers(1, post, EH) + headers(3, req(tok, "second", b"POST"), EH) + data(3, b"33", 0)
                        + data(1, b"1111") + headers(5, req(tok, "third")) + data(3, b"3"),
                        {1: "main", 3: "second", 5: "third"}),
        "skipped-stream-ids": (headers(1, req(tok, "main")) + headers(7, req(tok, "second")),
                               {1: "main", 7: "second"}),
        "unknown-frame-type": (fr.frame(0x20, 0, 0, b"ignored") + headers(1, req(tok, "main")), main),
    }


def _malformed(tok: str) -> dict[str, list[tuple[bytes, bytes]]]:
    """name -> request header list: RFC 9113 8.2-8.3 malformed requests (a stream error at least)."""
    base = req(tok, "main")
    method, scheme, authority, target = base
    return {
        "pseudo-after-regular": [method, scheme, (b"x-a", b"1"), authority, target],
        "missing-path": [method, scheme, authority],
        "missing-method": [scheme, authority, target],
        "missing-scheme": [method, authority, target],
        "empty-path": [method, scheme, authority, (b":path", b"")],
        "duplicate-path": [*base, (b":path", b"/public/other")],
        "duplicate-method": [method, (b":method", b"POST"), scheme, authority, target],
        "unknown-pseudo": [*base, (b":foo", b"bar")],
        "response-pseudo": [*base, (b":status", b"200")],
        "uppercase-name": [*base, (b"X-Upper", b"1")],
        "space-in-name": [*base, (b"x a", b"1")],
        "colon-in-name": [*base, (b"x:a", b"1")],  # an HTTP/1.1 upstream would read header `x`
        "peer-header-smuggle": [*base, (b"x-pymesh-peer:a", b"forged")],
        "non-token-name": [*base, (b"x(a)", b"1")],
        "empty-name": [*base, (b"", b"1")],
        "crlf-in-value": [*base, (b"x-a", b"1\r\nx-smuggled: 1")],
        "nul-in-value": [*base, (b"x-a", b"1\x002")],
        "lf-in-path": [method, scheme, authority, (b":path", path(tok, "main") + b"\nx: y")],
        "space-in-method": [(b":method", b"GET /x"), scheme, authority, target],
        "connection": [*base, (b"connection", b"close")],
        "transfer-encoding": [*base, (b"transfer-encoding", b"chunked")],
        "keep-alive": [*base, (b"keep-alive", b"timeout=5")],
        "upgrade": [*base, (b"upgrade", b"websocket")],
        "proxy-connection": [*base, (b"proxy-connection", b"keep-alive")],
        "te-gzip": [*base, (b"te", b"gzip")],
        "te-trailers-gzip": [*base, (b"te", b"trailers, gzip")],
        "content-length-no-data": [*base, (b"content-length", b"5")],
        "content-length-not-a-number": [*base, (b"content-length", b"abc")],
    }


def _invalid_frames(tok: str) -> dict[str, tuple[bytes, bytes, dict[int, str], tuple[int, ...]]]:
    """name -> (settings, frames, streams, watched): frame and connection errors (RFC 9113 5.4, 6)."""
    get, post = req(tok, "main"), req(tok, "main", b"POST")
    main = {1: "main"}
    cl = post + [(b"content-length", b"5")]
    later = {1: "main", 3: "later"}
    return {
        "content-length-more-than-data": (NO_SETTINGS, headers(1, cl, EH) + data(1, b"hello!"), main, (1,)),
        "content-length-less-than-data": (NO_SETTINGS, headers(1, cl, EH) + data(1, b"hell"), main, (1,)),
        "content-length-more-split": (NO_SETTINGS, headers(1, cl, EH) + data(1, b"hel", 0) + data(1, b"lo!"), main, (1,)),
        "data-on-stream-0": (NO_SETTINGS, data(0, b"x") + headers(1, get), main, (1,)),
        "data-on-idle-stream": (NO_SETTINGS, data(3, b"x") + headers(1, get), main, (1,)),
        "headers-even-stream": (NO_SETTINGS, headers(2, get), {2: "main"}, (2,)),
        "headers-stream-0": (NO_SETTINGS, headers(0, get) + headers(1, req(tok, "later")), {1: "later"}, (1,)),
        "stream-id-backwards": (NO_SETTINGS, headers(5, req(tok, "first")) + headers(3, get),
                                {5: "first", 3: "main"}, (3,)),
        "headers-on-closed-stream": (NO_SETTINGS, headers(1, req(tok, "first")) + headers(1, get, EH) + data(1, b"x"),
                                     {1: "first"}, (1,)),
        "data-frame-too-large": (NO_SETTINGS, headers(1, post, EH) + data(1, b"x" * BIG), main, (1,)),
        "headers-frame-too-large": (NO_SETTINGS, headers(1, req(tok, "main", extra=[(b"x-big", b"v" * BIG)])),
                                    main, (1,)),
        "window-update-0-connection": (NO_SETTINGS, fr.window_update(0, 0) + headers(1, get), main, (1,)),
        "window-update-0-stream": (NO_SETTINGS, headers(1, post, EH) + fr.window_update(1, 0) + data(1, b"x"),
                                   main, (1,)),
        "window-update-overflow": (NO_SETTINGS, fr.window_update(0, fr.MAX_WINDOW) + headers(1, get), main, (1,)),
        "rst-stream-idle": (NO_SETTINGS, fr.rst_stream(1, fr.CANCEL) + headers(1, get), main, (1,)),
        "rst-stream-0": (NO_SETTINGS, fr.rst_stream(0, fr.CANCEL) + headers(1, get), main, (1,)),
        "settings-enable-push-2": (fr.settings_frame([(fr.ENABLE_PUSH, 2)]), headers(1, get), main, (1,)),
        "settings-window-too-large": (fr.settings_frame([(fr.INITIAL_WINDOW_SIZE, fr.MAX_WINDOW + 1)]),
                                      headers(1, get), main, (1,)),
        "settings-max-frame-too-small": (fr.settings_frame([(fr.MAX_FRAME_SIZE, 16383)]), headers(1, get), main, (1,)),
        "settings-max-frame-too-large": (fr.settings_frame([(fr.MAX_FRAME_SIZE, fr.MAX_FRAME_LIMIT + 1)]),
                                         headers(1, get), main, (1,)),
        "settings-bad-length": (fr.frame(fr.SETTINGS, 0, 0, b"\0\2\0\0\0"), headers(1, get), main, (1,)),
        "settings-on-stream": (NO_SETTINGS, fr.frame(fr.SETTINGS, 0, 1, b"") + headers(1, get), main, (1,)),
        "ping-bad-length": (NO_SETTINGS, fr.frame(PING, 0, 0, b"1234567") + headers(1, get), main, (1,)),
        "priority-self-dependency": (NO_SETTINGS, priority(1, 1) + headers(1, get), main, (1,)),
        "priority-bad-length": (NO_SETTINGS, fr.frame(PRIO, 0, 1, b"\0\0\0") + headers(1, get), main, (1,)),
        "headers-pad-too-long": (NO_SETTINGS, fr.frame(HDR, EH | ES | fr.PADDED, 1, b"\xff" + block(get)), main, (1,)),
        "block-interrupted-by-ping": (NO_SETTINGS, fr.frame(HDR, ES, 1, block(get)[:10]) + PING_FRAME
                                      + fr.frame(CONT, EH, 1, block(get)[10:]), main, (1,)),
        "block-interrupted-by-headers": (NO_SETTINGS, fr.frame(HDR, ES, 1, block(get)[:10])
                                         + headers(3, req(tok, "later")) + fr.frame(CONT, EH, 1, block(get)[10:]),
                                         later, (1, 3)),
        "continuation-other-stream": (NO_SETTINGS, fr.frame(HDR, ES, 1, block(get)[:10])
                                      + fr.frame(CONT, EH, 3, block(get)[10:]), main, (1,)),
        "continuation-without-headers": (NO_SETTINGS, fr.frame(CONT, EH, 1, block(get)) + headers(3, req(tok, "later")),
                                         {3: "later"}, (3,)),
        "trailers-without-end-stream": (NO_SETTINGS, headers(1, post, EH) + data(1, b"x", 0)
                                        + headers(1, [(b"x-t", b"1")], EH), main, (1,)),
        "trailers-with-pseudo": (NO_SETTINGS, headers(1, post, EH) + data(1, b"x", 0)
                                 + headers(1, [(b":path", b"/x")]), main, (1,)),
        "hpack-garbage": (NO_SETTINGS, fr.frame(HDR, EH | ES, 1, b"\xff\xff\xff\xff\xff"), main, (1,)),
    }


def corpus() -> list[H2Case]:
    cases = []
    for name in _valid("0" * 8):
        tok = token_of(f"valid/{name}")
        frames, streams = _valid(tok)[name]
        cases.append(H2Case(f"valid/{name}", "valid", NO_SETTINGS, frames, streams, tuple(streams)))
    for name in _malformed("0" * 8):
        tok = token_of(f"malformed/{name}")
        cases.append(H2Case(f"malformed/{name}", "malformed", NO_SETTINGS, headers(1, _malformed(tok)[name]),
                            {1: "main"}, (1,)))
    for name in _invalid_frames("0" * 8):
        tok = token_of(f"frames/{name}")
        settings, frames, streams, watched = _invalid_frames(tok)[name]
        cases.append(H2Case(f"frames/{name}", "frames", settings, frames, streams, watched))
    return cases
