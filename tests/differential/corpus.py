"""The differential corpus: HTTP/1.1 request mutations generated from a few axes (framing header
spellings, framing layouts, Connection tokens, upgrade answers and tails, chunk forms, line endings,
whitespace, folding, control bytes, duplicates, target forms, versions).

Every mutation has a stable name (its axes joined by "/") and a token derived from the name; the
token is in every target the mutation writes, `/public/<token>/<role>` or `/admin/<token>/<role>`,
so whatever an upstream parses out of the bytes, and whatever a proxy logs, can be traced back to
the mutation and to the role the request had in it:

- main: the request the mutation is about;
- pipe: an innocent request pipelined after it, which a desynchronised parser swallows or splits;
- smuggle / capture: requests hidden where only a parser that disagrees would find them (in a body,
  after an upgrade head); capture is unterminated, to swallow whatever comes next on the connection.

Generation is deterministic: the same code gives the same bytes and names in the same order.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable, Iterator

HOST = b"svc.local"
CRLF = b"\r\n"
ROLE = re.compile(rb"/(?:public|admin)/([0-9a-f]{8})/([a-z0-9-]+)")
UPGRADE_ACCEPT = "u101"  # in a target: the recording upstream answers the upgrade with 101


@dataclass(frozen=True)
class Mutation:
    name: str  # stable id: category/axis/axis...
    category: str
    data: bytes  # every byte the client sends, at once
    last_role: str  # the client stops reading once the response to this role arrived
    tunnel: bytes = b""  # bytes after an upgrade head: tunnel data once a 101 came back

    @property
    def token(self) -> str:
        return token_of(self.name)


def token_of(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:8]


def path(tok: str, role: str, area: str = "public") -> bytes:
    return f"/{area}/{tok}/{role}".encode()


def simple(tok: str, role: str, area: str = "public", extra: bytes = b"") -> bytes:
    """A well-formed GET, as an innocent client (or a smuggler) would write it."""
    return b"GET " + path(tok, role, area) + b" HTTP/1.1\r\nHost: " + HOST + CRLF + extra + CRLF


def pipe(tok: str) -> bytes:
    return simple(tok, "pipe")


def smuggle(tok: str) -> bytes:
    return simple(tok, "smuggle", "admin", b"X-Pymesh-Peer: forged\r\n")


def capture(tok: str) -> bytes:
    return b"GET " + path(tok, "capture", "admin") + b" HTTP/1.1\r\nX-Swallow: "


def head(tok: str, lines: list[bytes], method: bytes = b"POST", target: bytes | None = None,
         version: bytes = b"HTTP/1.1", host: bool = True, eol: bytes = CRLF, role: str = "main") -> bytes:
    """A request head: start line, Host (unless `host` is false), `lines`, each ended by `eol`."""
    start = method + b" " + (target if target is not None else path(tok, role)) + b" " + version
    return eol.join([start] + ([b"Host: " + HOST] if host else []) + lines) + eol + eol


def chunked(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload) if payload else b"0\r\n\r\n"


Build = Callable[[str], tuple[bytes, str]]  # token -> (data, last role)


def _make(category: str, parts: tuple[str, ...], build: Build) -> Mutation:
    name = "/".join((category,) + parts)
    data, last_role = build(token_of(name))
    return Mutation(name, category, data, last_role)


def _piped(build: Callable[[str], bytes]) -> Build:
    """The mutation's bytes followed by the innocent pipelined request, which ends it."""
    return lambda tok: (build(tok) + pipe(tok), "pipe")


# --- Transfer-Encoding -----------------------------------------------------------------------------

TE_VALUES = {
    "chunked": b"chunked", "Chunked": b"Chunked", "CHUNKED": b"CHUNKED", "mixed-case": b"cHuNkEd",
    "sp-chunked": b" chunked", "chunked-sp": b"chunked ", "chunked-tab": b"chunked\t",
    "tab-chunked": b"\tchunked", "xchunked": b"xchunked", "chunkedx": b"chunkedx", "chunk": b"chunk",
    "chunked-identity": b"chunked, identity", "identity-chunked": b"identity, chunked",
    "gzip-chunked": b"gzip, chunked", "chunked-gzip": b"chunked, gzip", "chunked-chunked": b"chunked, chunked",
    "identity": b"identity", "gzip": b"gzip", "empty": b"", "chunked-comma": b"chunked,",
    "comma-chunked": b", chunked", "quoted": b'"chunked"', "chunked-param": b"chunked;q=1",
    "ch-unked": b"ch unked", "chunked-vt": b"chunked\x0b", "vt-chunked": b"\x0bchunked",
    "chunked-nul": b"chunked\x00", "chunked-ff": b"chunked\x0c", "chunked-del": b"chunked\x7f",
    "chunked-cr": b"chunked\r", "chunked-nbsp": b"chunked\xa0",
}


TE_LAYOUTS = ("te-only", "te-smuggle", "cl-te", "te-cl")


def _te_layouts(tok: str, te_lines: list[bytes]) -> dict[str, bytes]:
    """Bodies a chunked reader and a Content-Length reader split differently, so that whichever
    way a proxy and its upstream disagree, one of them finds a request the other did not."""
    hidden = smuggle(tok)
    size_line = b"%x\r\n" % len(hidden)
    cl_te = b"0\r\n\r\n" + hidden  # by length: a body; chunked: empty body, then a request
    te_cl = size_line + hidden + b"\r\n0\r\n\r\n"  # chunked: a body; by length: a request inside
    return {
        "te-only": head(tok, te_lines) + chunked(b"hello"),
        "te-smuggle": head(tok, te_lines) + cl_te,
        "cl-te": head(tok, [b"Content-Length: %d" % len(cl_te)] + te_lines) + cl_te,
        "te-cl": head(tok, te_lines + [b"Content-Length: %d" % len(size_line)]) + te_cl,
    }


def te_mutations() -> Iterator[Mutation]:
    for label, value in TE_VALUES.items():
        for layout in TE_LAYOUTS:
            yield _make("te", (label, layout), _piped(
                lambda tok, v=value, l=layout: _te_layouts(tok, [b"Transfer-Encoding: " + v])[l]))
    pairs = {"same": (b"chunked", b"chunked"), "chunked-identity": (b"chunked", b"identity"),
             "identity-chunked": (b"identity", b"chunked"), "gzip-chunked": (b"gzip", b"chunked"),
             "chunked-gzip": (b"chunked", b"gzip"), "chunked-empty": (b"chunked", b"")}
    for label, (first, second) in pairs.items():
        for layout in ("te-only", "cl-te", "te-cl"):
            lines = [b"Transfer-Encoding: " + first, b"Transfer-Encoding: " + second]
            yield _make("te-dup", (label, layout), _piped(lambda tok, ls=lines, l=layout: _te_layouts(tok, ls)[l]))
    for label in ("chunked", "chunked-sp", "gzip-chunked"):
        for layout in ("te-only", "cl-te", "te-cl"):
            lines = [b"Transfer-Encoding: " + TE_VALUES[label]]
            yield _make("te-http10", (label, layout), _piped(
                lambda tok, ls=lines, l=layout: _te_layouts(tok, ls)[l].replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)))


# --- Content-Length --------------------------------------------------------------------------------

CL_VALUES = {  # each for a body of b"hello" (5 bytes)
    "5": b"5", "05": b"05", "0005": b"0005", "plus": b"+5", "minus": b"-5", "sp-5": b" 5", "5-sp": b"5 ",
    "5-tab": b"5\t", "list-same": b"5, 5", "list-same-nosp": b"5,5", "list-differ": b"5, 6",
    "list-differ-rev": b"6, 5", "list-empty": b"5,", "sp-inside": b"5 5", "hex": b"0x5", "underscore": b"0_5",
    "underscore-50": b"5_0", "decimal": b"5.0", "exponent": b"5e0", "wrap-2-64": b"18446744073709551621",
    "wrap-2-32": b"4294967301", "huge": b"9" * 40, "empty": b"", "word": b"five", "vt": b"5\x0b",
    "nul": b"5\x00", "arabic-5": "\u0665".encode(), "fullwidth-5": "\uff15".encode(), "zero": b"0",
    "minus-zero": b"-0", "semicolon": b"5;",
}


def cl_mutations() -> Iterator[Mutation]:
    for label, value in CL_VALUES.items():
        for version in (b"HTTP/1.1", b"HTTP/1.0"):
            yield _make("cl", (label, version.decode().lower().replace("/", "")), _piped(
                lambda tok, v=value, ver=version: head(tok, [b"Content-Length: " + v], version=ver) + b"hello"))
    pairs = {"same": (b"5", b"5"), "differ": (b"5", b"6"), "differ-rev": (b"6", b"5"), "padded": (b"5", b"05"),
             "empty": (b"5", b""), "list-and-single": (b"5, 5", b"5")}
    for label, (first, second) in pairs.items():
        lines = [b"Content-Length: " + first, b"Content-Length: " + second]
        yield _make("cl-dup", (label,), _piped(lambda tok, ls=lines: head(tok, ls) + b"hello"))


# --- Connection naming headers ----------------------------------------------------------------------

CONNECTION_TOKENS = {  # token -> the header it names, when the request should carry it
    "content-length": None, "Content-Length": None, "transfer-encoding": None, "host": None,
    "upgrade": None, "te": b"TE: trailers", "x-forwarded-for": b"X-Forwarded-For: 203.0.113.7",
    "x-request-id": b"X-Request-Id: client-chosen", "x-pymesh-peer": b"X-Pymesh-Peer: forged",
    "x-forwarded-proto": b"X-Forwarded-Proto: https", "authorization": b"Authorization: Bearer secret",
    "cookie": b"Cookie: a=b", "proxy-connection": b"Proxy-Connection: keep-alive", "close": None,
    "keep-alive": b"Keep-Alive: timeout=5", "content-length, close": None, "close, transfer-encoding": None,
    "keep-alive, content-length": None, "connection": None, "x-b3-traceid": b"X-B3-TraceId: 0123456789abcdef",
}


def _framed(tok: str, framing: str, lines: list[bytes]) -> bytes:
    """A request carrying `framing` ("cl", "te" or "none") whose body is a hidden request."""
    hidden = smuggle(tok)
    if framing == "cl":
        return head(tok, lines + [b"Content-Length: %d" % len(hidden)]) + hidden
    if framing == "te":
        return head(tok, lines + [b"Transfer-Encoding: chunked"]) + chunked(hidden)
    return head(tok, lines, method=b"GET")


def connection_mutations() -> Iterator[Mutation]:
    for token, named in CONNECTION_TOKENS.items():
        lines = [b"Connection: " + token.encode()] + ([named] if named else [])
        for framing in ("cl", "te", "none"):
            yield _make("connection", (token.replace(", ", "+"), framing), _piped(
                lambda tok, ls=lines, f=framing: _framed(tok, f, ls)))


# --- Upgrade ---------------------------------------------------------------------------------------

UPGRADES = {
    "websocket": [b"Connection: Upgrade", b"Upgrade: websocket", b"Sec-WebSocket-Version: 13",
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="],
    "websocket-keepalive": [b"Connection: keep-alive, Upgrade", b"Upgrade: websocket", b"Sec-WebSocket-Version: 13",
                            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="],
    "h2c": [b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c", b"HTTP2-Settings: AAMAAABkAAQAAP__"],
    "no-connection-token": [b"Upgrade: websocket", b"Sec-WebSocket-Version: 13"],
    "post-websocket": [b"Connection: Upgrade", b"Upgrade: websocket", b"Content-Length: 5"],
}
TAILS: dict[str, Callable[[str], bytes]] = {
    "none": lambda tok: b"", "pipe": pipe, "smuggle": smuggle, "capture": capture,
    "frame": lambda tok: b"\x81\x05hello",
}


def upgrade_mutations() -> Iterator[Mutation]:
    for kind, lines in UPGRADES.items():
        body = b"hello" if kind.startswith("post") else b""
        method = b"POST" if body else b"GET"
        for answer in ("101", "200"):
            role = f"main-{UPGRADE_ACCEPT}" if answer == "101" else "main"
            for tail_name, tail in TAILS.items():
                name = "/".join(("upgrade", kind, answer, tail_name))
                tok = token_of(name)
                rest = tail(tok)
                last = "pipe" if tail_name == "pipe" and answer == "200" else role
                data = head(tok, lines, method=method, role=role) + body + rest
                yield Mutation(name, "upgrade", data, last, rest)


# --- chunk sizes, extensions, chunk framing ----------------------------------------------------------

CHUNK_FORMS = {  # each a chunked body that a strict reader takes as b"hello" or refuses
    "plain": b"5\r\nhello\r\n0\r\n\r\n", "zero-pad": b"0005\r\nhello\r\n0\r\n\r\n",
    "long-pad": b"0" * 100 + b"5\r\nhello\r\n0\r\n\r\n", "upper-hex": b"A\r\nhellohello\r\n0\r\n\r\n",
    "lower-hex": b"a\r\nhellohello\r\n0\r\n\r\n", "0x": b"0x5\r\nhello\r\n0\r\n\r\n",
    "lead-sp": b" 5\r\nhello\r\n0\r\n\r\n", "trail-sp": b"5 \r\nhello\r\n0\r\n\r\n",
    "trail-tab": b"5\t\r\nhello\r\n0\r\n\r\n", "minus": b"-5\r\nhello\r\n0\r\n\r\n", "plus": b"+5\r\nhello\r\n0\r\n\r\n",
    "underscore": b"0_5\r\nhello\r\n0\r\n\r\n", "huge": b"ffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "wrap-2-64": b"10000000000000005\r\nhello\r\n0\r\n\r\n", "empty-size": b"\r\nhello\r\n0\r\n\r\n",
    "ext": b"5;a=b\r\nhello\r\n0\r\n\r\n", "ext-name-only": b"5;a\r\nhello\r\n0\r\n\r\n",
    "ext-sp": b"5 ;a=b\r\nhello\r\n0\r\n\r\n", "ext-quoted": b'5;a="b c"\r\nhello\r\n0\r\n\r\n',
    "ext-bare": b"5;\r\nhello\r\n0\r\n\r\n", "ext-nul": b"5;a=\x00\r\nhello\r\n0\r\n\r\n",
    "ext-long": b"5;" + b"a" * 4000 + b"\r\nhello\r\n0\r\n\r\n", "ext-huge": b"5;" + b"a" * 70000 + b"\r\nhello\r\n0\r\n\r\n",
    "ext-lf": b"5;a=b\nc\r\nhello\r\n0\r\n\r\n", "lf-size": b"5\nhello\r\n0\r\n\r\n",
    "lf-data": b"5\r\nhello\n0\r\n\r\n", "lf-last": b"5\r\nhello\r\n0\n\n", "cr-size": b"5\rhello\r\n0\r\n\r\n",
    "cr-data": b"5\r\nhello\r0\r\n\r\n", "no-crlf-after-data": b"5\r\nhelloXX0\r\n\r\n",
    "data-longer": b"5\r\nhelloEXTRA\r\n0\r\n\r\n", "multi": b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
    "last-00": b"5\r\nhello\r\n00\r\n\r\n", "last-ext": b"5\r\nhello\r\n0;a=b\r\n\r\n",
    "trailer": b"5\r\nhello\r\n0\r\nX-Trailer: v\r\n\r\n",
    "trailer-cl": b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n",
    "trailer-te": b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n",
    "trailer-lf": b"5\r\nhello\r\n0\r\nX-Trailer: v\n\r\n", "trailer-fold": b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n",
    "trailer-nul": b"5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n", "no-last-crlf": b"5\r\nhello\r\n0\r\n",
}


def chunk_mutations() -> Iterator[Mutation]:
    for label, form in CHUNK_FORMS.items():
        base = lambda tok, f=form: head(tok, [b"Transfer-Encoding: chunked"]) + f  # noqa: E731
        yield _make("chunk", (label, "pipe"), _piped(base))
        yield _make("chunk", (label, "alone"), lambda tok, b=base: (b(tok), "main"))


# --- line endings, whitespace, folding, control bytes -----------------------------------------------

def _framing_lines(framing: str) -> tuple[list[bytes], bytes, bytes]:
    """(header lines, body, method) of a plain request with the given framing."""
    if framing == "cl":
        return [b"Content-Length: 5"], b"hello", b"POST"
    if framing == "te":
        return [b"Transfer-Encoding: chunked"], chunked(b"hello"), b"POST"
    return [], b"", b"GET"


LINE_ENDINGS: dict[str, Callable[[bytes], bytes]] = {  # rewrite a CRLF head
    "lf-all": lambda h: h.replace(CRLF, b"\n"),
    "cr-all": lambda h: h.replace(CRLF, b"\r"),
    "lf-request-line": lambda h: h.replace(CRLF, b"\n", 1),
    "lf-host-line": lambda h: h.replace(b"Host: svc.local\r\n", b"Host: svc.local\n"),
    "cr-host-line": lambda h: h.replace(b"Host: svc.local\r\n", b"Host: svc.local\r"),
    "lf-terminator": lambda h: h[:-2] + b"\n",
    "cr-terminator": lambda h: h[:-2] + b"\r",
    "lfcr-terminator": lambda h: h[:-2] + b"\n\r",
    "crcrlf-terminator": lambda h: h[:-2] + b"\r\r\n",
    "lf-in-value": lambda h: h.replace(b"Host: svc.local\r\n", b"Host: svc.local\r\nX-A: a\nContent-Length: 0\r\n"),
    "cr-in-value": lambda h: h.replace(b"Host: svc.local\r\n", b"Host: svc.local\r\nX-A: a\rContent-Length: 0\r\n"),
    "space-before-crlf": lambda h: h.replace(b"Host: svc.local\r\n", b"Host: svc.local \r\n"),
}


def line_ending_mutations() -> Iterator[Mutation]:
    for label, rewrite in LINE_ENDINGS.items():
        for framing in ("cl", "te", "none"):
            lines, body, method = _framing_lines(framing)
            yield _make("line-ending", (label, framing), _piped(
                lambda tok, r=rewrite, ls=lines, b=body, m=method: r(head(tok, ls, method=m)) + b))


COLON_FORMS = {  # name, value -> header line
    "no-space": lambda n, v: n + b":" + v, "space-before-colon": lambda n, v: n + b" : " + v,
    "tab-before-colon": lambda n, v: n + b"\t: " + v, "tab-after-colon": lambda n, v: n + b":\t" + v,
    "tab-after-value": lambda n, v: n + b": " + v + b"\t", "spaces-around": lambda n, v: n + b":   " + v + b"   ",
    "leading-space": lambda n, v: b" " + n + b": " + v, "leading-tab": lambda n, v: b"\t" + n + b": " + v,
    "vt-before-colon": lambda n, v: n + b"\x0b: " + v, "empty-name": lambda n, v: b": " + v,
}
COLON_HEADERS = {"content-length": (b"Content-Length", b"5", "cl"), "transfer-encoding": (b"Transfer-Encoding", b"chunked", "te"),
                 "host": (b"Host", HOST, "none"), "custom": (b"X-Custom", b"x", "none")}


def colon_mutations() -> Iterator[Mutation]:
    for form, line in COLON_FORMS.items():
        for label, (name, value, framing) in COLON_HEADERS.items():
            _, body, method = _framing_lines(framing)
            yield _make("whitespace", (label, form), _piped(
                lambda tok, l=line(name, value), b=body, m=method, h=label != "host":
                head(tok, [l], method=m, host=h) + b))


FOLDS = {  # header lines (CRLF inside marks the fold), framing of the body that follows
    "custom": ([b"X-Custom: a\r\n b"], "cl"), "custom-tab": ([b"X-Custom: a\r\n\tb"], "cl"),
    "host": ([b"X-Custom: a", b"Host: svc.local\r\n evil"], "none"),
    "content-length": ([b"Content-Length: 5\r\n 0"], "cl-raw"), "content-length-empty": ([b"Content-Length:\r\n 5"], "cl-raw"),
    "te-identity-chunked": ([b"Transfer-Encoding: identity\r\n chunked"], "te-raw"),
    "te-chunked-empty": ([b"Transfer-Encoding: chunked\r\n "], "te-raw"),
    "connection": ([b"Connection: keep-alive\r\n content-length"], "cl"),
    "first-line": ([b" X-Custom: a"], "cl"),
}


def fold_mutations() -> Iterator[Mutation]:
    for label, (lines, framing) in FOLDS.items():
        kind = framing.removesuffix("-raw")
        extra, body, method = _framing_lines(kind)
        extra = [] if framing.endswith("-raw") else extra
        host = label != "host"
        yield _make("obs-fold", (label,), _piped(
            lambda tok, ls=lines + extra, b=body, m=method, h=host: head(tok, ls, method=m, host=h) + b))


CONTROL_BYTES = {"nul": b"\x00", "soh": b"\x01", "bs": b"\x08", "vt": b"\x0b", "ff": b"\x0c", "so": b"\x0e",
                 "us": b"\x1f", "del": b"\x7f", "obs-80": b"\x80", "obs-ff": b"\xff"}
CONTROL_PLACES: dict[str, Callable[[str, bytes], bytes]] = {
    "name": lambda tok, c: head(tok, [b"X-A" + c + b"B: v", b"Content-Length: 5"]) + b"hello",
    "value-middle": lambda tok, c: head(tok, [b"X-A: a" + c + b"b", b"Content-Length: 5"]) + b"hello",
    "value-start": lambda tok, c: head(tok, [b"X-A: " + c + b"b", b"Content-Length: 5"]) + b"hello",
    "value-end": lambda tok, c: head(tok, [b"X-A: a" + c, b"Content-Length: 5"]) + b"hello",
    "target": lambda tok, c: head(tok, [b"Content-Length: 5"], target=path(tok, "main") + c) + b"hello",
    "host": lambda tok, c: head(tok, [b"Host: svc.local" + c, b"Content-Length: 5"], host=False) + b"hello",
}


def control_mutations() -> Iterator[Mutation]:
    for label, byte in CONTROL_BYTES.items():
        for place, build in CONTROL_PLACES.items():
            yield _make("control", (label, place), _piped(lambda tok, b=build, c=byte: b(tok, c)))


# --- duplicates, targets, versions --------------------------------------------------------------------

DUPLICATES = {
    "host-same": [b"Host: svc.local"], "host-other-after": [b"Host: other.local"],
    "host-list": [b"Host: svc.local, other.local"], "host-empty-after": [b"Host:"],
    "upgrade-twice": [b"Upgrade: websocket", b"Upgrade: h2c"], "connection-twice": [b"Connection: keep-alive", b"Connection: close"],
}


def duplicate_mutations() -> Iterator[Mutation]:
    for label, lines in DUPLICATES.items():
        yield _make("duplicate", (label,), _piped(lambda tok, ls=lines: head(tok, ls, method=b"GET")))
    yield _make("duplicate", ("host-other-first",), _piped(
        lambda tok: head(tok, [b"Host: other.local", b"Host: svc.local"], method=b"GET", host=False)))


ABSOLUTE_TARGETS = {
    "http-same": lambda p: b"http://svc.local" + p, "http-other": lambda p: b"http://other.local" + p,
    "https-same": lambda p: b"https://svc.local" + p, "upper-scheme": lambda p: b"HTTP://SVC.LOCAL" + p,
    "port-80": lambda p: b"http://svc.local:80" + p, "userinfo": lambda p: b"http://user:pw@svc.local" + p,
    "scheme-relative": lambda p: b"//svc.local" + p, "no-slashes": lambda p: b"http:svc.local" + p,
    "ftp": lambda p: b"ftp://svc.local" + p, "query-host": lambda p: b"http://svc.local" + p + b"?h=http://other.local/",
}
HOSTS = {"host-same": [b"Host: svc.local"], "host-other": [b"Host: other.local"], "no-host": []}


def absolute_mutations() -> Iterator[Mutation]:
    for label, target in ABSOLUTE_TARGETS.items():
        for host_label, host_lines in HOSTS.items():
            yield _make("absolute-form", (label, host_label), _piped(
                lambda tok, t=target, hl=host_lines: head(tok, hl, method=b"GET", target=t(path(tok, "main")), host=False)))
    for label, target in {"asterisk": b"*", "authority": b"svc.local:80"}.items():
        yield _make("absolute-form", (label,), _piped(
            lambda tok, t=target: head(tok, [b"X-Tok: " + path(tok, "main")], method=b"OPTIONS", target=t)))


VERSIONS = {  # (version, header lines, body)
    "http10-plain": (b"HTTP/1.0", [], b""), "http10-keepalive": (b"HTTP/1.0", [b"Connection: keep-alive"], b""),
    "http10-keepalive-cl": (b"HTTP/1.0", [b"Connection: keep-alive", b"Content-Length: 5"], b"hello"),
    "http10-keepalive-upper": (b"HTTP/1.0", [b"Connection: Keep-Alive"], b""),
    "http10-close": (b"HTTP/1.0", [b"Connection: close"], b""),
    "http10-no-host": (b"HTTP/1.0", [b"Connection: keep-alive"], b""),
    "http11-no-host": (b"HTTP/1.1", [], b""), "http12": (b"HTTP/1.2", [], b""), "http20": (b"HTTP/2.0", [], b""),
    "lowercase": (b"http/1.1", [], b""), "leading-zero": (b"HTTP/01.1", [], b""), "two-digit": (b"HTTP/1.10", [], b""),
    "no-version": (b"", [], b""), "extra-space": (b" HTTP/1.1", [], b""),
}


def version_mutations() -> Iterator[Mutation]:
    for label, (version, lines, body) in VERSIONS.items():
        host = "no-host" not in label
        yield _make("version", (label,), _piped(
            lambda tok, v=version, ls=lines, b=body, h=host: head(tok, ls, method=b"POST" if b else b"GET",
                                                                 version=v, host=h) + b))


GENERATORS = (te_mutations, cl_mutations, connection_mutations, upgrade_mutations, chunk_mutations,
              line_ending_mutations, colon_mutations, fold_mutations, control_mutations, duplicate_mutations,
              absolute_mutations, version_mutations)


def corpus() -> list[Mutation]:
    """Every mutation, in generation order; names and tokens are unique."""
    out = [m for generate in GENERATORS for m in generate()]
    names = [m.name for m in out]
    assert len(set(names)) == len(names), "duplicate mutation names"
    assert len({m.token for m in out}) == len(out), "token collision"
    return out


def role_of(target: bytes) -> tuple[str, str] | None:
    """(token, role) named by a target or a logged path, if any."""
    match = ROLE.search(target)
    return (match.group(1).decode(), match.group(2).decode()) if match else None
