"""The client side of one HTTP/2 case: send its bytes on a fresh connection (acknowledging the
proxy's SETTINGS as a real client would), read frames with hyperframe until every stream of the
case has ended, the proxy closes, or a quiet period, and say per stream what came back.

A stream's outcome is "status N <x-parsed>" (a response; x-parsed names what the recording
upstream parsed, empty for the proxy's own reply), "rst CODE", or, when the stream got neither,
the connection's end: "goaway CODE" or "closed" or "silent".
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import hpack
import hyperframe.frame as hf

from h2_corpus import H2Case
from proxy_harness import LOCALHOST

from pymesh.http import h2_frames as fr

QUIET = 3.0  # seconds without a byte before giving up: Envoy closes a connection it refuses
            # without a frame, after its 1 s delayed-close timeout
MAX_READS = 1024  # reads per case, far more than any case needs


@dataclass
class H2View:
    statuses: dict[int, tuple[int, str]] = field(default_factory=dict)  # sid -> (:status, x-parsed)
    resets: dict[int, int] = field(default_factory=dict)  # sid -> RST_STREAM code
    ended: set[int] = field(default_factory=set)  # streams whose response ended (END_STREAM)
    goaway: tuple[int, int] | None = None  # (last stream id, code)
    closed: bool = False
    timed_out: bool = False
    error: str = ""

    def outcome(self, sid: int) -> str:
        if sid in self.statuses:
            status, parsed = self.statuses[sid]
            return f"status {status} {parsed}".rstrip()
        if sid in self.resets:
            return f"rst {self.resets[sid]}"
        if self.goaway is not None:
            return f"goaway {self.goaway[1]}"
        return "closed" if self.closed else "silent" if self.timed_out else self.error or "no answer"

    def upstream_answered(self, sid: int) -> bool:
        return sid in self.statuses and bool(self.statuses[sid][1])

    def refused(self, sid: int) -> bool:
        """The proxy refused the stream: a reset, a connection error (a GOAWAY, or a close without
        one, which is how Envoy ends a connection whose frames it cannot decode), or a local 4xx."""
        if sid in self.statuses:
            status, parsed = self.statuses[sid]
            return not parsed and 400 <= status < 500
        if sid in self.resets:
            return True
        if self.goaway is not None:
            return self.goaway[1] != fr.NO_ERROR or sid > self.goaway[0]
        return self.closed

    def accounts_for(self, sid: int) -> bool:
        """The client was told the stream may have been processed (RFC 9113 6.8, 8.7)."""
        if self.upstream_answered(sid):
            return True
        if sid in self.resets:
            return self.resets[sid] != fr.REFUSED_STREAM
        return self.goaway is not None and sid <= self.goaway[0]


class _Reader:
    def __init__(self, sock: socket.socket, view: H2View) -> None:
        self.sock, self.view = sock, view
        self.buf = b""
        self.decoder = hpack.Decoder()
        self.block: tuple[int, bytes, bool] | None = None  # a header block awaiting CONTINUATION

    def feed(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 9:
            frame, length = hf.Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                return
            frame.parse_body(memoryview(self.buf[9:9 + length]))
            self.buf = self.buf[9 + length:]
            self._frame(frame)

    def _frame(self, frame) -> None:
        view = self.view
        if isinstance(frame, hf.SettingsFrame) and "ACK" not in frame.flags:
            self.sock.sendall(fr.SETTINGS_ACK)
        elif isinstance(frame, hf.GoAwayFrame):
            view.goaway = (frame.last_stream_id, frame.error_code)
        elif isinstance(frame, hf.RstStreamFrame):
            view.resets[frame.stream_id] = frame.error_code
        elif isinstance(frame, (hf.HeadersFrame, hf.ContinuationFrame)):
            sid, data, end = self.block or (frame.stream_id, b"", "END_STREAM" in frame.flags)
            self.block = (sid, data + frame.data, end)
            if "END_HEADERS" in frame.flags:
                self._head(*self.block)
                self.block = None
        elif isinstance(frame, hf.DataFrame) and "END_STREAM" in frame.flags:
            view.ended.add(frame.stream_id)

    def _head(self, sid: int, block: bytes, end: bool) -> None:
        fields = dict(self.decoder.decode(block, raw=True))
        if b":status" in fields and int(fields[b":status"]) >= 200 and sid not in self.view.statuses:
            self.view.statuses[sid] = (int(fields[b":status"]), fields.get(b"x-parsed", b"").decode())
        if end:
            self.view.ended.add(sid)


def run(port: int, case: H2Case) -> H2View:
    view = H2View()
    try:
        sock = socket.create_connection((LOCALHOST, port), timeout=QUIET)
    except OSError as error:
        view.error = f"connect: {error}"
        return view
    reader = _Reader(sock, view)
    deadline = time.monotonic() + 3 * QUIET
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.sendall(case.data)
        except OSError as error:  # the proxy closed early; what it answered may still be readable
            view.error = f"send: {type(error).__name__}"
        for _ in range(MAX_READS):
            if all(s in view.ended or s in view.resets for s in case.streams) or time.monotonic() > deadline:
                return view
            try:
                data = sock.recv(65536)
            except socket.timeout:
                view.timed_out = True
                return view
            except OSError:
                data = b""
            if not data:
                view.closed = True
                return view
            reader.feed(data)
    finally:
        sock.close()
    return view
