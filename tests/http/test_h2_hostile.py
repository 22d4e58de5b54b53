"""Hostile HTTP/2 input against pymesh's codec, table-driven: each RFC 9113 violation ends in the
right connection error (GOAWAY) or stream error (RST_STREAM), and the floods (rapid reset,
CONTINUATION, PING, SETTINGS, empty frames...) end in GOAWAY after a bounded number of frames.

Inputs are built as raw frames (HPACK blocks from `hpack`'s encoder, or raw bytes where the block
itself is the attack); what the codec answers is parsed back with `hyperframe` (h2's framer).
"""

from __future__ import annotations

import struct

import hpack
import hyperframe.frame as hf
import pytest

from pymesh.http import h2 as codec
from pymesh.http import h2_frames as fr
from pymesh.http.message import RequestHead, ResponseHead

GOOD = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a.example"), (b":path", b"/")]
POST = [(b":method", b"POST"), *GOOD[1:]]


def settings(*pairs) -> bytes:
    return fr.frame(fr.SETTINGS, 0, 0, b"".join(struct.pack(">HL", *p) for p in pairs))


def headers(sid: int, fields, flags: int = fr.END_HEADERS | fr.END_STREAM, encoder=None) -> bytes:
    return fr.frame(fr.HEADERS, flags, sid, (encoder or hpack.Encoder()).encode(fields))


def data(sid: int, payload: bytes, flags: int = 0) -> bytes:
    return fr.frame(fr.DATA, flags, sid, payload)


def rst(sid: int, code: int = fr.CANCEL) -> bytes:
    return fr.frame(fr.RST_STREAM, 0, sid, struct.pack(">L", code))


def window(sid: int, increment: int) -> bytes:
    return fr.frame(fr.WINDOW_UPDATE, 0, sid, struct.pack(">L", increment))


def parse(wire: bytes) -> list:
    """The frames the codec wrote, as hyperframe objects."""
    frames, pos = [], 0
    if wire.startswith(fr.PREFACE):
        pos = len(fr.PREFACE)
    while pos < len(wire):
        frame, length = hf.Frame.parse_frame_header(memoryview(wire[pos : pos + 9]))
        frame.parse_body(memoryview(wire[pos + 9 : pos + 9 + length]))
        frames.append(frame)
        pos += 9 + length
    return frames


def server(limits: codec.Limits = codec.Limits(), **kw) -> codec.Connection:
    conn = codec.Connection(client=False, limits=limits, **kw)
    conn.data_to_send()
    return conn


def outcome(conn: codec.Connection, wire: bytes):
    """('goaway', code) or ('rst', stream, code) or None, from what the codec answered."""
    conn.feed(wire)
    for frame in parse(conn.data_to_send()):
        if isinstance(frame, hf.GoAwayFrame):
            return ("goaway", frame.error_code)
        if isinstance(frame, hf.RstStreamFrame):
            return ("rst", frame.stream_id, frame.error_code)
    return None


START = fr.PREFACE + settings()
P, FS, FC, CE, SC, CALM = (fr.PROTOCOL_ERROR, fr.FRAME_SIZE_ERROR, fr.FLOW_CONTROL_ERROR,
                           fr.COMPRESSION_ERROR, fr.STREAM_CLOSED, fr.ENHANCE_YOUR_CALM)
OPEN = headers(1, POST, fr.END_HEADERS)  # stream 1 open, its body to come

CONNECTION_ERRORS = {
    "bad preface": (b"PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n" + settings(), P),
    "first frame not SETTINGS": (fr.PREFACE + headers(1, GOOD), P),
    "first frame a SETTINGS ACK": (fr.PREFACE + fr.SETTINGS_ACK, P),
    "frame beyond SETTINGS_MAX_FRAME_SIZE": (START + data(1, b"x" * 16385), FS),
    "HEADERS on stream 0": (START + headers(0, GOOD), P),
    "even stream from a client": (START + headers(2, GOOD), P),
    "stream id going down": (START + headers(5, GOOD) + headers(3, GOOD), P),
    "stream id reused": (START + headers(1, GOOD, fr.END_HEADERS) + rst(1) + headers(1, GOOD), P),
    "DATA on an idle stream": (START + data(1, b"x"), P),
    "DATA on stream 0": (START + data(0, b"x"), P),
    "RST_STREAM on an idle stream": (START + rst(1), P),
    "RST_STREAM on stream 0": (START + rst(0), P),
    "RST_STREAM of 3 bytes": (START + OPEN + fr.frame(fr.RST_STREAM, 0, 1, b"\0\0\0"), FS),
    "WINDOW_UPDATE on an idle stream": (START + window(1, 10), P),
    "WINDOW_UPDATE of 0 on the connection": (START + window(0, 0), P),
    "connection window beyond 2^31-1": (START + window(0, 2**31 - 1), FC),
    "WINDOW_UPDATE of 3 bytes": (START + fr.frame(fr.WINDOW_UPDATE, 0, 0, b"\0\0\1"), FS),
    "PUSH_PROMISE from a client": (START + OPEN + fr.frame(fr.PUSH_PROMISE, fr.END_HEADERS, 1, b"\0\0\0\2"), P),
    "CONTINUATION without HEADERS": (START + fr.frame(fr.CONTINUATION, fr.END_HEADERS, 1, b"\x82"), P),
    "header block interrupted by DATA": (START + headers(1, GOOD, 0) + data(1, b""), P),
    "header block interrupted by another stream's CONTINUATION":
        (START + headers(1, GOOD, 0) + fr.frame(fr.CONTINUATION, fr.END_HEADERS, 3, b""), P),
    "HPACK index beyond the tables": (START + fr.frame(fr.HEADERS, 5, 1, b"\xff\x7f"), CE),
    "HPACK truncated literal": (START + fr.frame(fr.HEADERS, 5, 1, b"\x40\x85ab"), CE),
    "HPACK table size update above the limit": (START + fr.frame(fr.HEADERS, 5, 1, b"\x3f\xe1\x7f"), CE),
    "SETTINGS of 5 bytes": (fr.PREFACE + fr.frame(fr.SETTINGS, 0, 0, b"\0" * 5), FS),
    "SETTINGS on a stream": (fr.PREFACE + fr.frame(fr.SETTINGS, 0, 1), P),
    "SETTINGS ACK with a payload": (START + fr.frame(fr.SETTINGS, fr.ACK, 0, b"\0" * 6), FS),
    "SETTINGS_ENABLE_PUSH of 2": (fr.PREFACE + settings((fr.ENABLE_PUSH, 2)), P),
    "SETTINGS_INITIAL_WINDOW_SIZE of 2^31": (fr.PREFACE + settings((fr.INITIAL_WINDOW_SIZE, 2**31)), FC),
    "SETTINGS_MAX_FRAME_SIZE below 16384": (fr.PREFACE + settings((fr.MAX_FRAME_SIZE, 100)), P),
    "SETTINGS_MAX_FRAME_SIZE above 2^24-1": (fr.PREFACE + settings((fr.MAX_FRAME_SIZE, 2**24)), P),
    "INITIAL_WINDOW_SIZE pushing a stream window past 2^31-1":
        (START + OPEN + window(1, 2**31 - 1 - 65535) + settings((fr.INITIAL_WINDOW_SIZE, 65536)), FC),
    "PING of 7 bytes": (START + fr.frame(fr.PING, 0, 0, b"\0" * 7), FS),
    "PING on a stream": (START + fr.frame(fr.PING, 0, 1, b"\0" * 8), P),
    "GOAWAY of 4 bytes": (START + fr.frame(fr.GOAWAY, 0, 0, b"\0" * 4), FS),
    "GOAWAY on a stream": (START + fr.frame(fr.GOAWAY, 0, 1, b"\0" * 8), P),
    "padding longer than the frame": (START + OPEN + fr.frame(fr.DATA, fr.PADDED, 1, b"\x05abc"), P),
    "padded frame without its pad length": (START + OPEN + fr.frame(fr.DATA, fr.PADDED, 1, b""), P),
    "HEADERS depending on itself": (START + fr.frame(fr.HEADERS, 0x25, 1, b"\0\0\0\1\x10" + hpack.Encoder().encode(GOOD)), P),
    "DATA beyond the connection window":
        (START + OPEN + b"".join(data(1, b"x" * 16384) for _ in range(70)), FC),
    "empty DATA frames in a row": (START + OPEN + data(1, b"") + data(1, b""), CALM),
    "header list beyond SETTINGS_MAX_HEADER_LIST_SIZE":
        (START + b"".join(fr.header_block_frames(1, hpack.Encoder().encode(GOOD + [(b"x-big", b"v" * 8000)] * 8),
                                                 True, 16384)), CALM),
}


@pytest.mark.parametrize("case", CONNECTION_ERRORS, ids=str)
def test_connection_error(case):
    wire, code = CONNECTION_ERRORS[case]
    conn = server(codec.Limits(initial_stream_window=2**20))
    assert outcome(conn, wire) == ("goaway", code)
    assert conn.closed
    assert conn.feed(headers(7, GOOD)) == []  # nothing is read after the error


STREAM_ERRORS = {  # the header list of stream 1's request, or the frames that follow
    "missing :method": GOOD[1:],
    "missing :path": GOOD[:3],
    "missing :scheme": [GOOD[0], GOOD[2], GOOD[3]],
    "missing :authority and host": [GOOD[0], GOOD[1], GOOD[3]],
    "repeated :path": GOOD + [(b":path", b"/again")],
    "unknown pseudo-header": GOOD + [(b":protocol", b"websocket")],
    ":status in a request": GOOD + [(b":status", b"200")],
    "pseudo-header after a regular one": GOOD[:3] + [(b"accept", b"*/*"), GOOD[3]],
    "upper-case name": GOOD + [(b"Accept", b"*/*")],
    "space in a name": GOOD + [(b"x y", b"1")],
    "empty name": GOOD + [(b"", b"1")],
    "connection": GOOD + [(b"connection", b"close")],
    "keep-alive": GOOD + [(b"keep-alive", b"5")],
    "proxy-connection": GOOD + [(b"proxy-connection", b"keep-alive")],
    "transfer-encoding": GOOD + [(b"transfer-encoding", b"chunked")],
    "upgrade": GOOD + [(b"upgrade", b"h2c")],
    "te other than trailers": GOOD + [(b"te", b"gzip")],
    "LF in a value": GOOD + [(b"x-a", b"1\n2")],
    "NUL in a value": GOOD + [(b"x-a", b"1\x002")],
    "leading space in a value": GOOD + [(b"x-a", b" 1")],
    "trailing tab in a value": GOOD + [(b"x-a", b"1\t")],
    "content-length not digits": GOOD + [(b"content-length", b"+5")],
    "conflicting content-length": GOOD + [(b"content-length", b"5"), (b"content-length", b"6")],
    "content-length on a request without a body": GOOD + [(b"content-length", b"5")],
    "host differing from :authority": GOOD + [(b"host", b"b.example")],
    "absolute-form :path": GOOD[:3] + [(b":path", b"http://a.example/")],
    "asterisk :path": GOOD[:3] + [(b":path", b"*")],
    "unsupported :scheme": [GOOD[0], (b":scheme", b"ftp"), GOOD[2], GOOD[3]],
    "invalid authority": [GOOD[0], GOOD[1], (b":authority", b"a b"), GOOD[3]],
    "CONNECT with :path": [(b":method", b"CONNECT"), *GOOD[1:]],
}

LATER_STREAM_ERRORS = {  # frames after `OPEN` (a POST on stream 1) and their RST_STREAM code
    "body longer than content-length":
        (headers(3, POST + [(b"content-length", b"2")], fr.END_HEADERS) + data(3, b"abc", fr.END_STREAM), 3, P),
    "body shorter than content-length":
        (headers(3, POST + [(b"content-length", b"9")], fr.END_HEADERS) + data(3, b"abc", fr.END_STREAM), 3, P),
    "pseudo-header in trailers": (headers(1, [(b":path", b"/")]), 1, P),
    "trailers without END_STREAM": (headers(1, [(b"x-t", b"1")], fr.END_HEADERS), 1, P),
    "DATA after END_STREAM": (data(1, b"a", fr.END_STREAM) + data(1, b"b"), 1, SC),
    "HEADERS after END_STREAM": (data(1, b"a", fr.END_STREAM) + headers(1, [(b"x-t", b"1")]), 1, SC),
    "DATA beyond the stream window": (b"".join(data(1, b"x" * 16384) for _ in range(17)), 1, FC),
    "stream window beyond 2^31-1": (window(1, 2**31 - 1), 1, FC),
    "WINDOW_UPDATE of 0 on a stream": (window(1, 0), 1, P),
    "PRIORITY of 4 bytes": (fr.frame(fr.PRIORITY, 0, 1, b"\0\0\0\0"), 1, FS),
    "PRIORITY depending on itself": (fr.frame(fr.PRIORITY, 0, 1, b"\0\0\0\1\x10"), 1, P),
}


@pytest.mark.parametrize("case", STREAM_ERRORS, ids=str)
def test_malformed_request_is_a_stream_error(case):
    conn = server()
    conn.feed(START)
    assert outcome(conn, headers(1, STREAM_ERRORS[case])) == ("rst", 1, P)
    assert not conn.closed
    events = conn.feed(headers(3, GOOD))  # the connection goes on
    assert [e[:2] for e in events] == [(codec.HEAD, 3), (codec.END, 3)]


@pytest.mark.parametrize("case", LATER_STREAM_ERRORS, ids=str)
def test_stream_error_after_the_head(case):
    wire, stream, code = LATER_STREAM_ERRORS[case]
    conn = server()
    conn.feed(START + OPEN)
    events = conn.feed(wire)
    resets = [(f.stream_id, f.error_code) for f in parse(conn.data_to_send()) if isinstance(f, hf.RstStreamFrame)]
    assert resets == [(stream, code)]
    errors = [e for e in events if e[0] == codec.ERROR]
    assert [(e[1], e[2].code) for e in errors] == [(stream, code)]  # the caller hears it
    assert not conn.closed


def test_valid_request_with_everything_allowed():
    """The edges that must pass: padding, PRIORITY, te: trailers, cookies, host equal to
    :authority, an unknown frame type, a request split over CONTINUATION frames."""
    encoder = hpack.Encoder()
    block = encoder.encode(POST + [(b"te", b"trailers"), (b"cookie", b"a=1"), (b"cookie", b"b=2"),
                                   (b"host", b"a.example"), (b"content-length", b"3")])
    wire = (START + fr.frame(fr.PRIORITY, 0, 9, b"\0\0\0\3\x10")
            + fr.frame(fr.HEADERS, fr.PADDED | fr.PRIORITY_FLAG, 1, b"\x02\0\0\0\0\x10" + block[:5] + b"\0\0")
            + fr.frame(fr.CONTINUATION, 0, 1, block[5:9]) + fr.frame(fr.CONTINUATION, fr.END_HEADERS, 1, block[9:])
            + fr.frame(0x21, 0, 0, b"an extension frame")
            + fr.frame(fr.DATA, fr.PADDED, 1, b"\x04abc\0\0\0\0")
            + headers(1, [(b"x-trailer", b"t")], encoder=encoder))
    conn = server()
    events = conn.feed(wire)
    assert [e[0] for e in events] == [codec.HEAD, codec.DATA, codec.END]
    head = events[0][2]
    assert (head.method, head.path, head.authority, head.scheme, head.content_length) == ("POST", "/", "a.example", "http", 3)
    assert head.raw_headers == [(b"te", b"trailers"), (b"content-length", b"3"), (b"cookie", b"a=1; b=2")]
    assert events[1][2] == b"abc" and events[2][2] == [(b"x-trailer", b"t")]
    assert not [f for f in parse(conn.data_to_send()) if isinstance(f, (hf.GoAwayFrame, hf.RstStreamFrame))]


def test_streams_beyond_the_advertised_limit_are_refused():
    conn = server(codec.Limits(max_concurrent_streams=3))
    encoder = hpack.Encoder()
    wire = START + b"".join(headers(sid, POST, fr.END_HEADERS, encoder) for sid in (1, 3, 5, 7))
    assert outcome(conn, wire) == ("rst", 7, fr.REFUSED_STREAM)
    assert conn.open_streams == 3
    conn.feed(data(1, b"", fr.END_STREAM))
    conn.send_headers(1, ResponseHead(200, []), True)
    events = conn.feed(headers(9, GOOD, encoder=encoder))  # a slot is free again
    assert events[0][:2] == (codec.HEAD, 9)


def test_rapid_reset_flood_ends_in_goaway_quickly():
    """CVE-2023-44487: 100k HEADERS + RST_STREAM pairs. Envoy's rule closes the connection after
    250 premature resets; everything after that is never parsed."""
    encoder = hpack.Encoder()
    pair = lambda sid: headers(sid, GOOD, fr.END_HEADERS | fr.END_STREAM, encoder) + rst(sid)
    flood = START + b"".join(pair(sid) for sid in range(1, 200_001, 2))
    conn = server()
    events = conn.feed(flood)
    assert events[-1][0] == codec.ERROR and events[-1][2].code == CALM
    assert conn.frames_received <= 2 * 250 + 2
    assert len(events) <= 3 * 250 + 1
    assert conn._buf == b"" and conn.open_streams == 0
    assert ("goaway", CALM) == next(("goaway", f.error_code) for f in parse(conn.data_to_send()) if isinstance(f, hf.GoAwayFrame))


def test_malformed_requests_count_as_premature_resets():
    """The other form of rapid reset: requests built to be refused at once."""
    encoder = hpack.Encoder()
    flood = START + b"".join(headers(sid, GOOD[1:], encoder=encoder) for sid in range(1, 20_001, 2))
    conn = server()
    conn.feed(flood)
    assert conn.closed and conn.frames_received <= 252


def test_slow_resets_are_not_premature():
    """Streams that lived past the premature window do not count, however many are reset."""
    now = [0.0]
    conn = server(clock=lambda: now[0])
    encoder = hpack.Encoder()
    conn.feed(START)
    for sid in range(1, 2001, 2):
        conn.feed(headers(sid, GOOD, fr.END_HEADERS | fr.END_STREAM, encoder))
        now[0] += 2.0
        conn.feed(rst(sid))
    assert not conn.closed


def test_continuation_flood_ends_in_goaway_quickly():
    """A header block that never ends, in many small CONTINUATION frames (CVE-2024-27316 class)."""
    conn = server()
    flood = START + fr.frame(fr.HEADERS, 0, 1, b"\x82") + fr.frame(fr.CONTINUATION, 0, 1, b"\x40\x01a\x01b") * 100_000
    assert outcome(conn, flood) == ("goaway", CALM)
    assert conn.frames_received <= 1 + 1 + 9


def test_continuation_bytes_are_bounded():
    """Large CONTINUATION frames: refused once the block passes the header list limit."""
    conn = server()
    big = fr.frame(fr.CONTINUATION, 0, 1, b"\x40\x01a\x7f\x80\x7f" + b"a" * 16000)
    assert outcome(conn, START + fr.frame(fr.HEADERS, 0, 1, b"\x82") + big * 50) == ("goaway", CALM)
    assert conn.frames_received <= 1 + 1 + 5


FLOODS = {
    "PING": (lambda i: fr.frame(fr.PING, 0, 0, b"%08d" % i), 1001),
    "SETTINGS": (lambda i: settings(), 1001),
    "PRIORITY": (lambda i: fr.frame(fr.PRIORITY, 0, 2 * i + 1, b"\0\0\0\0\x10"), 101),
    "WINDOW_UPDATE": (lambda i: window(0, 1), 6),
}


@pytest.mark.parametrize("kind", ["PING", "SETTINGS", "PRIORITY", "WINDOW_UPDATE"])
def test_control_frame_floods_end_in_goaway(kind):
    """Frames that cost the proxy work (an answer, a scan) beyond Envoy's limits, while the
    answers pile up unsent."""
    make, limit = FLOODS[kind]
    conn = server()
    assert outcome(conn, START + b"".join(make(i) for i in range(100_000))) == ("goaway", CALM)
    assert conn.frames_received <= limit + 2


def test_pings_are_answered_while_the_caller_drains():
    conn = server()
    conn.feed(START)
    conn.data_to_send()
    for i in range(3000):
        conn.feed(fr.frame(fr.PING, 0, 0, b"%08d" % i))
        assert len(parse(conn.data_to_send())) == 1
    assert not conn.closed


def test_client_side_refuses_what_a_server_may_not_send():
    for wire, expected in [
        (settings((fr.ENABLE_PUSH, 1)), ("goaway", P)),
        (settings() + fr.frame(fr.PUSH_PROMISE, fr.END_HEADERS, 1, b"\0\0\0\2"), ("goaway", P)),
        (settings() + headers(2, [(b":status", b"200")]), ("goaway", P)),
        (settings() + headers(1, [(b":status", b"20")]), ("rst", 1, P)),
        (settings() + headers(1, [(b":status", b"200"), (b":path", b"/")]), ("rst", 1, P)),
        (settings() + headers(1, [(b":status", b"101")], fr.END_HEADERS), ("rst", 1, P)),
        (settings() + data(1, b"x"), ("rst", 1, P)),  # DATA before the response head
    ]:
        conn = codec.Connection(client=True)
        sid = conn.new_stream_id()
        head = RequestHead("GET", "/", [])
        head.authority = "a.example"
        conn.send_headers(sid, head, True)
        conn.data_to_send()
        assert outcome(conn, wire) == expected, wire


def test_frames_on_closed_streams_are_ignored_and_their_data_credited():
    """After a stream ends (or we reset it) the peer's late frames change nothing, and the
    connection window they used is given back: no leak, however many arrive."""
    conn = server(codec.Limits(initial_connection_window=100_000))
    encoder = hpack.Encoder()
    conn.feed(START + headers(1, GOOD, encoder=encoder))
    conn.send_headers(1, ResponseHead(200, []), True)  # stream 1 is closed both ways
    conn.feed(headers(3, POST, fr.END_HEADERS, encoder))
    conn.reset_stream(3)  # and stream 3 reset by us
    conn.data_to_send()
    late = (rst(1) + fr.frame(fr.PRIORITY, 0, 1, b"\0\0\0\0\x10") + data(3, b"x" * 16000)
            + headers(3, [(b"x-t", b"1")], encoder=encoder))
    for index in range(20):  # 320 KB of late DATA through a 100 KB window
        assert conn.feed((window(1, 100) if index == 0 else b"") + late) == []
        frames = parse(conn.data_to_send())
        assert not [f for f in frames if isinstance(f, (hf.GoAwayFrame, hf.RstStreamFrame))]
    assert not conn.closed


def test_client_side_response_framing_errors():
    def client_with_request(method="GET"):
        conn = codec.Connection(client=True)
        sid = conn.new_stream_id()
        head = RequestHead(method, "/", [])
        head.authority = "a.example"
        conn.send_headers(sid, head, True)
        conn.data_to_send()
        return conn

    encoder = hpack.Encoder
    conn = client_with_request()
    events = conn.feed(settings() + headers(1, [(b":status", b"200"), (b"content-length", b"5")], fr.END_HEADERS)
                       + data(1, b"abc", fr.END_STREAM))
    assert [(e[0], e[1]) for e in events][-1] == (codec.ERROR, 1) and events[-1][2].status == 502
    conn = client_with_request("HEAD")  # a HEAD response: Content-Length describes no body
    events = conn.feed(settings() + headers(1, [(b":status", b"200"), (b"content-length", b"5")], encoder=encoder()))
    assert [e[0] for e in events] == [codec.HEAD, codec.END] and events[0][2].content_length == 5
    conn = client_with_request()  # 100 Continue, then the response, then trailers
    enc = encoder()
    events = conn.feed(settings() + headers(1, [(b":status", b"100")], fr.END_HEADERS, enc)
                       + headers(1, [(b":status", b"200")], fr.END_HEADERS, enc) + data(1, b"ok")
                       + headers(1, [(b"grpc-status", b"0")], encoder=enc))
    assert [(e[0], e[2] if e[0] != codec.HEAD else e[2].status) for e in events] == [
        (codec.HEAD, 200), (codec.DATA, b"ok"), (codec.END, [(b"grpc-status", b"0")])]


def test_header_blocks_on_ignored_streams_still_feed_the_hpack_context():
    """A block the codec ignores (a stream it reset, one it refused, one past its GOAWAY) is
    still decoded: a later block may index what it inserted."""
    encoder = hpack.Encoder()
    conn = server(codec.Limits(max_concurrent_streams=1))
    conn.feed(START + headers(1, POST, fr.END_HEADERS, encoder))
    conn.reset_stream(1)
    conn.feed(headers(1, [(b"x-late", b"1")], encoder=encoder))  # trailers already on their way
    conn.feed(headers(3, POST + [(b"x-open", b"1")], fr.END_HEADERS, encoder))
    conn.feed(headers(5, POST + [(b"x-refused", b"1")], encoder=encoder))  # beyond the limit of 1
    conn.goaway()
    conn.feed(headers(7, POST + [(b"x-after-goaway", b"1")], encoder=encoder))
    every = [(b"x-late", b"1"), (b"x-open", b"1"), (b"x-refused", b"1"), (b"x-after-goaway", b"1")]
    block = encoder.encode(every)
    assert len(block) == 4  # four one-byte references into the dynamic table
    events = conn.feed(fr.frame(fr.HEADERS, fr.END_HEADERS | fr.END_STREAM, 3, block))
    assert events == [(codec.END, 3, every)]
