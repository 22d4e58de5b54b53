"""Sans-IO HTTP/2 connection codec for the data plane (RFC 9113), on top of `hpack`.

Why not `h2`: one side of it costs more CPU per request than pymesh's whole HTTP/1.1 hop, and a
proxy pays it on both sides (figures: benchmarks/README.md, "HTTP/2 codec"). This codec does
the minimum per request: frame headers parsed in place with `struct`, HPACK through `hpack`,
flow control as window arithmetic, small tuples as events, one object per stream. `h2` stays
the reference peer of the tests (tests/http/).

Use, as pymesh.http.h1: `feed(bytes)` returns a list of events; the caller writes
`data_to_send()` after feeding and after sending. `Connection(client=False)` is a server (the
downstream side: it expects the client preface); `Connection(client=True)` a client (the
upstream side: it sends the preface, and disables server push).

Events, always `(kind, stream_id, value)`:
    (HEAD, id, RequestHead | ResponseHead)  a request (server) or a final response (client);
                                            pseudo-headers mapped, see pymesh.http.h2_headers.
                                            Interim 1xx responses are dropped.
    (DATA, id, bytes)       body bytes; acknowledge each once passed on (`acknowledge_received`)
    (END, id, trailers)     the peer ended the stream (trailers: a list, often empty)
    (RESET, id, code)       the peer reset the stream (RST_STREAM), or its GOAWAY left our
                            stream unprocessed (REFUSED_STREAM: safe to retry)
    (GOAWAY, last_id, code) the peer is going away; streams up to last_id may still complete
    (WINDOW, id, None)      a stream whose sending was blocked has sent all it buffered
    (ERROR, id, H2Error)    id != 0: this codec reset a stream the caller knows (the peer broke
                            the protocol on it); id == 0: a connection error: GOAWAY is queued
                            and the connection is finished (close it after writing)

A stream the caller never saw (refused, malformed request headers) is reset without an event.

Sending: `new_stream_id()` (client; `can_open_stream` says whether the peer's limits and GOAWAY
allow one), `send_headers`, `send_data`, `send_trailers`, `end_stream`, `reset_stream`,
`goaway`. SETTINGS and PINGs are acknowledged by the codec. After `goaway(NO_ERROR)` the open
streams finish and new ones are ignored: close once `open_streams` is 0.

Backpressure is end to end: the receive windows are only reopened by `acknowledge_received`
(every DATA byte once, even after the stream ended), so a proxy acknowledges what it has
passed on. `send_data` sends what the peer's windows allow and buffers the rest in the stream;
it returns the bytes sent, and while a stream has buffered bytes the caller stops feeding it
until (WINDOW, id, None).

Abuse is bounded as Envoy bounds it: header list size (SETTINGS_MAX_HEADER_LIST_SIZE), header
block bytes and CONTINUATION frames per block, concurrent streams (REFUSED_STREAM past the
limit), premature resets (CVE-2023-44487 "rapid reset": Envoy's rule, GOAWAY
ENHANCE_YOUR_CALM), control frames queued and not yet taken by `data_to_send`, empty frames,
PRIORITY and WINDOW_UPDATE floods. `frames_received` counts frames processed, for tests.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

from hpack.exceptions import OversizedHeaderListError

from pymesh.http import h2_frames as f
from pymesh.http.errors import ProtocolError
from pymesh.http.h2_headers import (
    Malformed,
    clone_request,
    clone_response,
    read_request,
    read_response,
    read_trailers,
    request_fields,
    response_fields,
    trailer_fields,
)
from pymesh.http.h2_hpack import Decoder, Encoder

HEAD, DATA, END, RESET, GOAWAY, WINDOW, ERROR = range(7)
_NO_BODY_STATUS = frozenset({204, 304})
_RESET_MEMORY = 128


@dataclass(frozen=True)
class Limits:
    """Bounded defaults for a sidecar.

    Envoy's own defaults (which Istio keeps) are all but unbounded: 2^31-1 concurrent streams,
    256 MiB windows. Its edge guidance is 100 streams, 64 KiB per stream, 1 MiB per connection.
    pymesh takes 100 streams and a 1 MiB connection window, with 256 KiB per stream so that one
    stream still fills a fast local link: what a peer may send unacknowledged stays at 1 MiB per
    connection however many streams are open. 60 KiB of headers is Envoy's default, 8
    CONTINUATION frames per block nghttp2's (which Envoy embeds); the premature-reset rule (500
    streams, 50 %, within 1 s) and the flood limits are Envoy's defaults.
    """

    max_concurrent_streams: int = 100
    initial_stream_window: int = 256 * 1024
    initial_connection_window: int = 1024 * 1024
    max_header_list_size: int = 60 * 1024
    max_frame_size: int = f.DEFAULT_MAX_FRAME
    max_continuation_frames: int = 8
    header_table_size: int = 4096  # our decoder's dynamic table
    max_encoder_table_size: int = 4096  # cap on what the peer lets our encoder use
    premature_reset_seconds: float = 1.0
    premature_reset_min_streams: int = 500
    max_queued_control_frames: int = 1000
    max_consecutive_empty_frames: int = 1
    max_priority_frames_per_stream: int = 100
    max_window_updates_per_data_frame: int = 10
    # What one stream may hold beyond the peer's windows: the caller stops at the first partial
    # send_data; this bounds a caller that does not (one proxy read, and the stream window of an
    # HTTP/2 upstream, fit several times).
    max_send_buffer: int = 2 * 1024 * 1024


class H2Error(ProtocolError):
    """A stream or connection error: the HTTP/2 error code, why, and an HTTP status to log."""

    def __init__(self, code: int, reason: str, status: int = 400) -> None:
        super().__init__(status, reason)
        self.code = code


class _ConnectionError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class _Stream:
    __slots__ = (
        "id", "local_open", "remote_open", "head_seen", "send_window", "recv_window", "unacked",
        "expected", "received", "opened_at", "pending", "pending_end", "pending_trailers", "no_body",
    )

    def __init__(self, stream_id: int, send_window: int, recv_window: int, opened_at: float) -> None:
        self.id = stream_id
        self.local_open = True  # we have not ended or reset it
        self.remote_open = True  # the peer has not ended or reset it
        self.head_seen = False  # the peer's (final) head arrived: a later HEADERS is trailers
        self.send_window = send_window
        self.recv_window = recv_window
        self.unacked = 0  # received, acknowledged by the caller, not yet given back
        self.expected: int | None = None  # the peer's Content-Length
        self.received = 0
        self.opened_at = opened_at
        self.pending: list[bytes] = []  # data the windows did not allow yet
        self.pending_end = False
        self.pending_trailers: list | None = None
        self.no_body = False  # a response to HEAD: Content-Length is not the body's


class Connection:
    """One HTTP/2 connection, either side. See the module docstring for events and rules."""

    def __init__(self, client: bool, limits: Limits = Limits(), clock=time.monotonic) -> None:
        self.client = client
        self.limits = limits
        self._clock = clock
        self._status = 502 if client else 400  # what a caller logs for the peer's errors
        self._out: list[bytes] = []
        self._buf = b""
        self._events: list = []
        self._expect_preface = not client
        self._expect_settings = True
        self._decoder = Decoder(limits.max_header_list_size, limits.header_table_size)
        self._encoder = Encoder()
        self._streams: dict[int, _Stream] = {}
        self._blocked: dict[int, _Stream] = {}
        self._peer_parity = 0 if client else 1
        self._highest_peer = 0
        self._next_local = 1 if client else 2
        self._partial: list | None = None
        self._reset_ids: dict[int, None] = {}  # ordered set, see _remember_reset  # [stream id, flags, fragments, bytes, continuations]
        self.peer_max_concurrent_streams = f.MAX_WINDOW
        self._peer_max_frame = f.DEFAULT_MAX_FRAME
        self._peer_initial_window = f.DEFAULT_WINDOW
        self._send_window = f.DEFAULT_WINDOW
        self._recv_window = limits.initial_connection_window
        self._unacked = 0
        self._peer_streams = 0  # open streams the peer started
        self._local_streams = 0
        self.closed = False
        self.goaway_received: int | None = None
        self._goaway_sent: int | None = None
        # abuse accounting
        self.frames_received = 0
        self._opened = 0
        self._closed_streams = 0
        self._premature = 0
        self._queued_control = 0
        self._empty_frames = 0
        self._priority_frames = 0
        self._window_updates = 0
        self._data_frames_sent = 0
        self._last_data: tuple | None = None  # (stream, index in _out, size) of the last DATA frame queued
        self._handlers = (
            self._on_data, self._on_headers, self._on_priority, self._on_rst_stream, self._on_settings,
            self._on_push_promise, self._on_ping, self._on_goaway, self._on_window_update, self._on_continuation,
        )
        settings = [
            (f.MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams),
            (f.INITIAL_WINDOW_SIZE, limits.initial_stream_window),
            (f.MAX_HEADER_LIST_SIZE, limits.max_header_list_size),
        ]
        if client:
            settings.insert(0, (f.ENABLE_PUSH, 0))
            self._out.append(f.PREFACE)
        if limits.max_frame_size != f.DEFAULT_MAX_FRAME:
            settings.append((f.MAX_FRAME_SIZE, limits.max_frame_size))
        if limits.header_table_size != 4096:
            settings.append((f.HEADER_TABLE_SIZE, limits.header_table_size))
        self._out.append(f.settings_frame(settings))
        if limits.initial_connection_window > f.DEFAULT_WINDOW:
            self._out.append(f.window_update(0, limits.initial_connection_window - f.DEFAULT_WINDOW))
        self._conn_threshold = limits.initial_connection_window // 2
        self._stream_threshold = limits.initial_stream_window // 2

    # --- receiving ----------------------------------------------------------------------------

    def feed(self, data: bytes) -> list:
        """Events parsed from `data` (see the module docstring)."""
        events = self._events = []
        if self.closed:
            return events
        buf = self._buf + data if self._buf else data
        pos = 0
        end = len(buf)
        try:
            if self._expect_preface:
                if end < 24:
                    if not f.PREFACE.startswith(buf):
                        raise _ConnectionError(f.PROTOCOL_ERROR, "invalid connection preface")
                    self._buf = buf
                    return events
                if buf[:24] != f.PREFACE:
                    raise _ConnectionError(f.PROTOCOL_ERROR, "invalid connection preface")
                self._expect_preface = False
                pos = 24
            max_frame = self.limits.max_frame_size
            handlers = self._handlers
            unpack = f.FRAME_HEADER.unpack_from
            while end - pos >= 9:
                high, low, kind, flags, stream_id = unpack(buf, pos)
                length = (high << 16) | low
                if length > max_frame:
                    raise _ConnectionError(f.FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE")
                start = pos + 9
                if end - start < length:
                    break
                pos = start + length
                self.frames_received += 1
                if self._expect_settings:
                    if kind != f.SETTINGS or flags & f.ACK:
                        raise _ConnectionError(f.PROTOCOL_ERROR, "the first frame is not SETTINGS")
                    self._expect_settings = False
                if self._partial is not None and kind != f.CONTINUATION:
                    raise _ConnectionError(f.PROTOCOL_ERROR, "a header block interrupted by another frame")
                if kind < 10:
                    handlers[kind](flags, stream_id & 0x7FFFFFFF, buf[start:pos])
                if self.closed:
                    break
        except _ConnectionError as error:
            self._connection_error(error.code, str(error))
        self._buf = buf[pos:] if pos < end and not self.closed else b""
        return events

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise _ConnectionError(f.PROTOCOL_ERROR, "DATA on stream 0")
        flow = len(payload)
        self._recv_window -= flow
        if self._recv_window < 0:
            raise _ConnectionError(f.FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        data = _unpad(payload) if flags & f.PADDED else payload
        stream = self._streams.get(stream_id)
        if stream is None or not stream.remote_open or not stream.head_seen:
            if stream is None and self._idle(stream_id):
                raise _ConnectionError(f.PROTOCOL_ERROR, "DATA on an idle stream")
            self._credit(flow)  # dropped: the caller will never acknowledge it
            if stream is not None:
                self._reset(stream, f.STREAM_CLOSED if stream.head_seen else f.PROTOCOL_ERROR, "DATA out of place")
            return
        stream.recv_window -= flow
        if stream.recv_window < 0:
            self._credit(flow)
            self._reset(stream, f.FLOW_CONTROL_ERROR, "DATA beyond the stream window")
            return
        size = len(data)
        if flow != size:
            self._credit(flow - size)  # padding: never the caller's to acknowledge
            stream.recv_window += flow - size
        end_stream = flags & f.END_STREAM
        if size == 0 and not end_stream:
            self._empty_frame()
        else:
            self._empty_frames = 0
        received = stream.received = stream.received + size
        expected = stream.expected
        if expected is not None and (received > expected or (end_stream and received != expected)):
            self._credit(size)
            self._reset(stream, f.PROTOCOL_ERROR, "body length differs from content-length")
            return
        if size:
            self._events.append((DATA, stream_id, data))
        if end_stream:
            self._events.append((END, stream_id, []))
            self._remote_closed(stream)

    @property
    def header_block_open(self) -> bool:
        """A HEADERS frame arrived and its block still awaits CONTINUATION frames."""
        return self._partial is not None

    def _on_headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise _ConnectionError(f.PROTOCOL_ERROR, "HEADERS on stream 0")
        if flags & f.PADDED:
            payload = _unpad(payload)
        if flags & f.PRIORITY_FLAG:
            if len(payload) < 5:
                raise _ConnectionError(f.FRAME_SIZE_ERROR, "HEADERS too short for its priority")
            if int.from_bytes(payload[:4], "big") & 0x7FFFFFFF == stream_id:
                raise _ConnectionError(f.PROTOCOL_ERROR, "a stream depending on itself")
            payload = payload[5:]
        if flags & f.END_HEADERS:
            self._header_block(stream_id, flags, payload)
            return
        if not payload:
            self._empty_frame()
        self._partial = [stream_id, flags, [payload], len(payload), 0]
        self._check_block(len(payload), 0)

    def _on_continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        partial = self._partial
        if partial is None or partial[0] != stream_id:
            raise _ConnectionError(f.PROTOCOL_ERROR, "CONTINUATION without a header block to continue")
        partial[2].append(payload)
        partial[3] += len(payload)
        partial[4] += 1
        if not payload and not flags & f.END_HEADERS:
            self._empty_frame()
        self._check_block(partial[3], partial[4])
        if flags & f.END_HEADERS:
            self._partial = None
            self._header_block(stream_id, partial[1], b"".join(partial[2]))

    def _check_block(self, size: int, continuations: int) -> None:
        """CONTINUATION floods: a header block is bounded in bytes and in frames."""
        if continuations > self.limits.max_continuation_frames:
            raise _ConnectionError(f.ENHANCE_YOUR_CALM, "too many CONTINUATION frames")
        if size > self.limits.max_header_list_size + self.limits.max_frame_size:
            raise _ConnectionError(f.ENHANCE_YOUR_CALM, "header block too large")

    def _decode(self, block: bytes, read, clone):
        """read(the decoded header list); Malformed propagates, a decoding failure is a
        connection error: the HPACK context is lost with it."""
        try:
            return self._decoder.decode(block, read, clone)
        except Malformed:
            raise
        except OversizedHeaderListError:
            raise _ConnectionError(f.ENHANCE_YOUR_CALM, "header list larger than SETTINGS_MAX_HEADER_LIST_SIZE") from None
        except Exception:  # whatever hpack raises on hostile input
            raise _ConnectionError(f.COMPRESSION_ERROR, "invalid HPACK header block") from None

    def _header_block(self, stream_id: int, flags: int, block: bytes) -> None:
        end_stream = flags & f.END_STREAM
        stream = self._streams.get(stream_id)
        if stream is None:
            if self.client or (stream_id & 1) != self._peer_parity:
                if self._idle(stream_id):
                    raise _ConnectionError(f.PROTOCOL_ERROR, "HEADERS on a stream this side never opened")
                self._decode(block, _ignore, _ignore)  # a stream we reset: ignored (RFC 9113 5.4.2)
                return
            self._open_peer_stream(stream_id, block, end_stream)
            return
        if not stream.remote_open:
            self._decode(block, _ignore, _ignore)
            self._reset(stream, f.STREAM_CLOSED, "HEADERS after the end of the stream")
            return
        try:
            if not stream.head_seen:  # a client's response
                head = self._decode(block, read_response, clone_response)
                if head.status < 200:
                    if end_stream or head.status == 101:
                        raise Malformed("an interim response ending the stream, or 101")
                    return
                stream.head_seen = True
                if stream.no_body or head.status in _NO_BODY_STATUS:
                    stream.no_body = True
                else:
                    stream.expected = head.content_length
                    if end_stream and head.content_length:
                        raise Malformed("content-length without a body")
                self._events.append((HEAD, stream_id, head))
                if end_stream:
                    self._events.append((END, stream_id, []))
                    self._remote_closed(stream)
                return
            trailers = self._decode(block, read_trailers, list)
            if not end_stream:
                raise Malformed("trailers without END_STREAM")
            expected = stream.expected
            if expected is not None and stream.received != expected:
                raise Malformed("body length differs from content-length")
        except Malformed as error:
            self._reset(stream, f.PROTOCOL_ERROR, str(error))
            return
        self._events.append((END, stream_id, trailers))
        self._remote_closed(stream)

    def _open_peer_stream(self, stream_id: int, block: bytes, end_stream: int) -> None:
        if stream_id <= self._highest_peer:
            if stream_id in self._reset_ids:  # in flight when we reset it: ignored (RFC 9113 5.4.2)
                self._decode(block, _ignore, _ignore)
                return
            # RFC 9113 5.1.1: a new stream's id must grow; reusing one is the same error
            raise _ConnectionError(f.PROTOCOL_ERROR, "stream id not above every earlier one")
        self._highest_peer = stream_id
        if self._goaway_sent is not None and stream_id > self._goaway_sent:
            self._decode(block, _ignore, _ignore)  # for the HPACK context only (RFC 9113 6.8)
            return
        now = self._clock()
        self._opened += 1
        if self._peer_streams >= self.limits.max_concurrent_streams:
            self._decode(block, _ignore, _ignore)
            self._refuse(stream_id, f.REFUSED_STREAM, now)
            return
        try:
            head = self._decode(block, read_request, clone_request)
            if end_stream and head.content_length:
                raise Malformed("content-length without a body")
        except Malformed:
            self._refuse(stream_id, f.PROTOCOL_ERROR, now)
            return
        stream = _Stream(stream_id, self._peer_initial_window, self.limits.initial_stream_window, now)
        stream.head_seen = True
        stream.expected = head.content_length
        self._streams[stream_id] = stream
        self._peer_streams += 1
        events = self._events
        events.append((HEAD, stream_id, head))
        if end_stream:
            events.append((END, stream_id, []))
            stream.remote_open = False

    def _on_priority(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise _ConnectionError(f.PROTOCOL_ERROR, "PRIORITY on stream 0")
        self._priority_frames += 1
        if self._priority_frames > self.limits.max_priority_frames_per_stream * (1 + self._opened):
            raise _ConnectionError(f.ENHANCE_YOUR_CALM, "PRIORITY flood")
        if len(payload) != 5 or int.from_bytes(payload[:4], "big") & 0x7FFFFFFF == stream_id:
            code = f.FRAME_SIZE_ERROR if len(payload) != 5 else f.PROTOCOL_ERROR
            stream = self._streams.get(stream_id)
            if stream is not None:
                self._reset(stream, code, "invalid PRIORITY")
        # otherwise accepted and ignored (RFC 9113 5.3.2 deprecates priorities)

    def _on_rst_stream(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise _ConnectionError(f.PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if len(payload) != 4:
            raise _ConnectionError(f.FRAME_SIZE_ERROR, "RST_STREAM of a wrong size")
        stream = self._streams.get(stream_id)
        if stream is None:
            if self._idle(stream_id):
                raise _ConnectionError(f.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
            return
        self._forget(stream, True)
        self._events.append((RESET, stream_id, int.from_bytes(payload, "big")))

    def _on_settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise _ConnectionError(f.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.ACK:
            if payload:
                raise _ConnectionError(f.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise _ConnectionError(f.FRAME_SIZE_ERROR, "SETTINGS of a wrong size")
        for offset in range(0, len(payload), 6):
            ident, value = f.SETTING.unpack_from(payload, offset)
            if ident == f.INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise _ConnectionError(f.FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE too large")
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for stream in self._streams.values():
                    stream.send_window += delta
                    if stream.send_window > f.MAX_WINDOW:
                        raise _ConnectionError(f.FLOW_CONTROL_ERROR, "a stream window beyond 2^31-1")
            elif ident == f.MAX_FRAME_SIZE:
                if not f.DEFAULT_MAX_FRAME <= value <= f.MAX_FRAME_LIMIT:
                    raise _ConnectionError(f.PROTOCOL_ERROR, "invalid SETTINGS_MAX_FRAME_SIZE")
                self._peer_max_frame = value
            elif ident == f.MAX_CONCURRENT_STREAMS:
                self.peer_max_concurrent_streams = value
            elif ident == f.HEADER_TABLE_SIZE:
                self._encoder.set_table_size(min(value, self.limits.max_encoder_table_size))
            elif ident == f.ENABLE_PUSH:
                if value > 1 or (self.client and value == 1):
                    raise _ConnectionError(f.PROTOCOL_ERROR, "invalid SETTINGS_ENABLE_PUSH")
        self._queue_control(f.SETTINGS_ACK)
        if self._blocked:
            self._flush_blocked()

    def _on_push_promise(self, flags: int, stream_id: int, payload: bytes) -> None:
        raise _ConnectionError(f.PROTOCOL_ERROR, "PUSH_PROMISE (push is disabled)")

    def _on_ping(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise _ConnectionError(f.PROTOCOL_ERROR, "PING on a stream")
        if len(payload) != 8:
            raise _ConnectionError(f.FRAME_SIZE_ERROR, "PING of a wrong size")
        if not flags & f.ACK:
            self._queue_control(f.ping_ack(payload))

    def _on_goaway(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise _ConnectionError(f.PROTOCOL_ERROR, "GOAWAY on a stream")
        if len(payload) < 8:
            raise _ConnectionError(f.FRAME_SIZE_ERROR, "GOAWAY too short")
        last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
        code = int.from_bytes(payload[4:8], "big")
        self.goaway_received = last if self.goaway_received is None else min(last, self.goaway_received)
        self._events.append((GOAWAY, last, code))
        local = 1 - self._peer_parity
        for stream in [s for s in self._streams.values() if s.id > last and (s.id & 1) == local]:
            self._forget(stream, False)
            self._events.append((RESET, stream.id, f.REFUSED_STREAM))

    def _on_window_update(self, flags: int, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ConnectionError(f.FRAME_SIZE_ERROR, "WINDOW_UPDATE of a wrong size")
        self._window_updates += 1
        limit = self.limits.max_window_updates_per_data_frame
        if self._window_updates > 5 + 2 * (self._opened + limit * self._data_frames_sent):
            raise _ConnectionError(f.ENHANCE_YOUR_CALM, "WINDOW_UPDATE flood")
        increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if stream_id == 0:
            if increment == 0:
                raise _ConnectionError(f.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > f.MAX_WINDOW:
                raise _ConnectionError(f.FLOW_CONTROL_ERROR, "connection window beyond 2^31-1")
            if self._blocked:
                self._flush_blocked()
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            if self._idle(stream_id):
                raise _ConnectionError(f.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
            return
        if increment == 0:
            self._reset(stream, f.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            return
        stream.send_window += increment
        if stream.send_window > f.MAX_WINDOW:
            self._reset(stream, f.FLOW_CONTROL_ERROR, "stream window beyond 2^31-1")
            return
        if stream.pending and self._send_window > 0:
            self._flush_blocked()

    # --- stream bookkeeping -------------------------------------------------------------------

    def _idle(self, stream_id: int) -> bool:
        if (stream_id & 1) == self._peer_parity:
            return stream_id > self._highest_peer
        return stream_id >= self._next_local

    def _empty_frame(self) -> None:
        self._empty_frames += 1
        if self._empty_frames > self.limits.max_consecutive_empty_frames:
            raise _ConnectionError(f.ENHANCE_YOUR_CALM, "too many frames with an empty payload")

    def _remote_closed(self, stream: _Stream) -> None:
        stream.remote_open = False
        if not stream.local_open:
            self._forget(stream, False)

    def _local_closed(self, stream: _Stream) -> None:
        stream.local_open = False
        if not stream.remote_open:
            self._forget(stream, False)

    def _forget(self, stream: _Stream, reset: bool) -> None:
        """The stream is closed: drop it; a peer's stream counts for the rapid-reset rule."""
        if self._streams.pop(stream.id, None) is None:
            return
        stream.local_open = stream.remote_open = False
        stream.pending = []
        self._blocked.pop(stream.id, None)
        if (stream.id & 1) == self._peer_parity:
            self._peer_streams -= 1
            if not self.client:
                self._count_closed(stream.opened_at, reset)
        else:
            self._local_streams -= 1

    def _count_closed(self, opened_at: float, reset: bool) -> None:
        """Envoy's premature-reset rule: past 500 streams, more than half reset within 1 s
        of opening; or, before that, so many that the rest could not bring it under half."""
        self._closed_streams += 1
        if reset and self._clock() - opened_at < self.limits.premature_reset_seconds:
            self._premature += 1
            limit = self.limits.premature_reset_min_streams
            total = self._closed_streams
            if self._premature * 2 >= (limit if total < limit else total):
                raise _ConnectionError(f.ENHANCE_YOUR_CALM, "too many streams reset early (rapid reset)")

    def _refuse(self, stream_id: int, code: int, opened_at: float) -> None:
        """Reset a peer's stream the caller never saw."""
        self._queue_control(f.rst_stream(stream_id, code))
        self._remember_reset(stream_id)
        self._count_closed(opened_at, True)

    def _remember_reset(self, stream_id: int) -> None:
        """The last streams we reset: the peer's frames already in flight on them are ignored."""
        reset_ids = self._reset_ids
        reset_ids[stream_id] = None
        if len(reset_ids) > _RESET_MEMORY:
            del reset_ids[next(iter(reset_ids))]

    def _reset(self, stream: _Stream, code: int, reason: str) -> None:
        """A stream error on a stream the caller knows: RST_STREAM, forget, tell the caller."""
        self._queue_control(f.rst_stream(stream.id, code))
        self._remember_reset(stream.id)
        self._forget(stream, True)
        self._events.append((ERROR, stream.id, H2Error(code, reason, self._status)))

    def _queue_control(self, frame: bytes) -> None:
        self._out.append(frame)
        self._queued_control += 1
        if self._queued_control > self.limits.max_queued_control_frames:
            raise _ConnectionError(f.ENHANCE_YOUR_CALM, "too many control frames queued (flood)")

    def _credit(self, size: int) -> None:
        """Bytes received that nobody will acknowledge: reopen the connection window."""
        if size:
            self.acknowledge_received(0, size)

    def _connection_error(self, code: int, reason: str) -> None:
        self._out.append(f.goaway(self._highest_peer, code, reason.encode("latin-1")[:256]))
        self._finish()
        self._events.append((ERROR, 0, H2Error(code, reason, self._status)))

    def _finish(self) -> None:
        self.closed = True
        self._streams.clear()
        self._blocked.clear()
        self._partial = None
        self._buf = b""

    # --- sending ------------------------------------------------------------------------------

    def accept_upgrade(self, http2_settings: bytes) -> None:
        """Server side of `Upgrade: h2c` (RFC 7540 3.2), after answering 101: the HTTP/1.1
        request, read whole, becomes stream 1 (half-closed: answer it with send_headers), and
        the client's HTTP2-Settings apply as its first SETTINGS, acknowledged by the 101 itself.
        The client's preface still follows. H2Error if the settings are malformed."""
        try:
            payload = base64.urlsafe_b64decode(http2_settings + b"=" * (-len(http2_settings) % 4))
            self._on_settings(0, 0, payload)
        except (ValueError, _ConnectionError) as error:
            raise H2Error(getattr(error, "code", f.PROTOCOL_ERROR), f"bad HTTP2-Settings: {error}") from None
        self._out.pop()  # no SETTINGS ACK: the 101 was one
        self._queued_control -= 1
        stream = _Stream(1, self._peer_initial_window, self.limits.initial_stream_window, self._clock())
        stream.head_seen = True
        stream.remote_open = False
        self._streams[1] = stream
        self._highest_peer = 1
        self._peer_streams = 1
        self._opened += 1

    def new_stream_id(self) -> int:
        """Open a stream of this client (send its head next); ValueError when none may open."""
        if not self.can_open_stream:
            raise ValueError("no new stream may be opened on this connection")
        stream_id = self._next_local
        self._next_local += 2
        self._streams[stream_id] = _Stream(stream_id, self._peer_initial_window, self.limits.initial_stream_window, 0.0)
        self._local_streams += 1
        self._opened += 1
        return stream_id

    @property
    def can_open_stream(self) -> bool:
        return (
            self.client
            and not self.closed
            and self.goaway_received is None
            and self._local_streams < self.peer_max_concurrent_streams
            and self._next_local <= f.MAX_WINDOW
        )

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def send_headers(self, stream_id: int, head, end_stream: bool = False) -> None:
        """A request (client: RequestHead or UpstreamRequest) or a response head (server:
        ResponseHead) on an open stream."""
        stream = self._streams.get(stream_id)
        if stream is None or not stream.local_open:
            return
        if self.client:
            fields = request_fields(head)
            stream.no_body = head.method == "HEAD"
        else:
            fields = response_fields(head)
        self._write_block(stream_id, fields, end_stream)
        if end_stream:
            self._local_closed(stream)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> int:
        """Send what the windows allow and buffer the rest; the bytes sent now.

        On a stream that is gone (reset, ended) the data is dropped and len(data) returned:
        there is nothing to wait for, and the caller has the event that said so.
        """
        stream = self._streams.get(stream_id)
        if stream is None or not stream.local_open or stream.pending_end:
            return len(data)
        if stream.pending:
            if self.buffered(stream_id) + len(data) > self.limits.max_send_buffer:
                raise BufferError(f"stream {stream_id} holds too much unsent data: wait for (WINDOW, id, None)")
            stream.pending.append(data)
            stream.pending_end = end_stream
            return 0
        sent = self._write_data(stream, data, end_stream)
        if sent < len(data):
            stream.pending.append(data[sent:] if sent else data)
            stream.pending_end = end_stream
            self._blocked[stream_id] = stream
        return sent

    def buffered(self, stream_id: int) -> int:
        """Bytes of the stream that wait for the peer's windows."""
        stream = self._streams.get(stream_id)
        return sum(map(len, stream.pending)) if stream is not None else 0

    def send_trailers(self, stream_id: int, trailers: list) -> None:
        """End the stream with trailers (after any data still buffered)."""
        stream = self._streams.get(stream_id)
        if stream is None or not stream.local_open or stream.pending_end:
            return
        if stream.pending:
            stream.pending_trailers = trailers
            stream.pending_end = True
            return
        self._write_block(stream_id, trailer_fields(trailers), True)
        self._local_closed(stream)

    def end_stream(self, stream_id: int) -> None:
        """End the stream with an empty DATA frame (after any data still buffered), or, when
        the stream's last DATA frame is still the last thing queued, by setting END_STREAM on
        it: one frame per response body instead of two."""
        last = self._last_data
        if last is not None and last[0].id == stream_id and last[1] == len(self._out) - 2:
            stream = last[0]
            self._last_data = None
            if stream.local_open and not stream.pending and self._streams.get(stream_id) is stream:
                self._out[last[1]] = f.frame_header(last[2], f.DATA, f.END_STREAM, stream_id)
                self._local_closed(stream)
                return
        self.send_data(stream_id, b"", True)

    def reset_stream(self, stream_id: int, code: int = f.CANCEL) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        self._out.append(f.rst_stream(stream_id, code))
        self._remember_reset(stream_id)
        self._forget(stream, False)

    def acknowledge_received(self, stream_id: int, size: int) -> None:
        """The caller has passed `size` DATA bytes of the stream on: reopen the windows by them."""
        if self.closed:
            return
        self._unacked += size
        if self._unacked >= self._conn_threshold:
            self._out.append(f.window_update(0, self._unacked))
            self._recv_window += self._unacked
            self._unacked = 0
        stream = self._streams.get(stream_id) if stream_id else None
        if stream is not None and stream.remote_open:
            stream.unacked += size
            if stream.unacked >= self._stream_threshold:
                self._out.append(f.window_update(stream_id, stream.unacked))
                stream.recv_window += stream.unacked
                stream.unacked = 0

    def goaway(self, code: int = f.NO_ERROR, reason: str = "") -> None:
        """Tell the peer to go away. NO_ERROR drains: open streams finish, new ones are
        ignored; any other code ends the connection now."""
        if self.closed:
            return
        self._goaway_sent = self._highest_peer
        self._out.append(f.goaway(self._highest_peer, code, reason.encode("latin-1")[:256]))
        if code != f.NO_ERROR:
            self._finish()

    @property
    def has_output(self) -> bool:
        """Frames are queued for `data_to_send`."""
        return bool(self._out)

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        self._out = []
        self._last_data = None
        self._queued_control = 0
        return b"".join(out)

    def _write_block(self, stream_id: int, fields: list, end_stream: bool) -> None:
        block = self._encoder.encode(fields)
        self._out += f.header_block_frames(stream_id, block, end_stream, self._peer_max_frame)

    def _write_data(self, stream: _Stream, data: bytes, end_stream: bool) -> int:
        """Frame as much of `data` as the windows allow; END_STREAM with the last of it."""
        size = len(data)
        if size == 0 and not end_stream:
            return 0
        allowed = min(size, self._send_window, stream.send_window)
        if allowed < 0:
            allowed = 0
        out = self._out
        max_frame = self._peer_max_frame
        stream_id = stream.id
        if allowed == size and size <= max_frame:  # the usual case: one frame
            out.append(f.frame_header(size, f.DATA, f.END_STREAM if end_stream else 0, stream_id))
            if size:
                out.append(data)
                if not end_stream:
                    self._last_data = (stream, len(out) - 2, size)
            self._data_frames_sent += 1
        else:
            view = memoryview(data)
            offset = 0
            while offset < allowed:
                chunk = view[offset : min(offset + max_frame, allowed)]
                offset += len(chunk)
                last = end_stream and offset == size
                out.append(f.frame_header(len(chunk), f.DATA, f.END_STREAM if last else 0, stream_id))
                out.append(bytes(chunk))
                self._data_frames_sent += 1
        self._send_window -= allowed
        stream.send_window -= allowed
        if end_stream and allowed == size:
            self._local_closed(stream)
        return allowed

    def _flush_blocked(self) -> None:
        """The windows opened: send what blocked streams buffered, oldest first."""
        for stream in list(self._blocked.values()):
            if self._send_window <= 0:
                return
            if stream.send_window <= 0:
                continue
            pending = stream.pending
            while pending:
                chunk = pending[0]
                last = len(pending) == 1
                sent = self._write_data(stream, chunk, last and stream.pending_end and stream.pending_trailers is None)
                if sent < len(chunk):
                    pending[0] = chunk[sent:]
                    break
                pending.pop(0)
            if pending:
                continue
            self._blocked.pop(stream.id, None)
            if stream.pending_trailers is not None and stream.local_open:
                self._write_block(stream.id, trailer_fields(stream.pending_trailers), True)
                stream.pending_trailers = None
                self._local_closed(stream)
            self._events.append((WINDOW, stream.id, None))


def _ignore(value) -> None:
    """The reading of a block decoded only to keep the HPACK context in step."""


def _unpad(payload: bytes) -> bytes:
    if not payload or payload[0] >= len(payload):
        raise _ConnectionError(f.PROTOCOL_ERROR, "padding longer than the frame")
    return payload[1 : len(payload) - payload[0]]
