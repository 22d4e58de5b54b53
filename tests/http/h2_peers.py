"""In-memory HTTP/2 endpoints for the codec tests: `h2` (the reference) and pymesh's codec behind
one small interface, so that one scenario runs against either and the two logs can be compared.

A log is what an application on that side saw, with frame boundaries and flow-control chatter
abstracted away: per stream, ("head", fields) with pseudo-headers first, ("data", all bytes
until the next other event), ("end", trailers), ("reset", code), ("error", code); and per
connection ("goaway", last stream id, code).
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.settings

from pymesh.http import h2 as codec
from pymesh.http.message import RequestHead, ResponseHead


AUTHORITY = b"svc.default.svc.cluster.local:8080"


def request(method: bytes = b"GET", path: bytes = b"/", extra=()) -> list:
    """A request header list, as a client application would give it."""
    return [(b":method", method), (b":scheme", b"http"), (b":authority", AUTHORITY), (b":path", path),
            (b"user-agent", b"test/1"), *extra]


def response(status: int = 200, extra=()) -> list:
    return [(b":status", b"%d" % status), (b"content-type", b"application/grpc"), *extra]


class Log:
    def __init__(self) -> None:
        self.streams: dict[int, list] = {}
        self.connection: list = []

    def add(self, stream_id: int, kind: str, value) -> None:
        events = self.streams.setdefault(stream_id, [])
        if kind == "data" and events and events[-1][0] == "data":
            events[-1] = ("data", events[-1][1] + value)
        else:
            events.append((kind, value))

    def body(self, stream_id: int) -> bytes:
        return b"".join(v for k, v in self.streams.get(stream_id, []) if k == "data")


def _fields_of(head) -> list:
    if isinstance(head, ResponseHead):
        return [(b":status", b"%d" % head.status)] + list(head.raw_headers)
    return [
        (b":method", head.method.encode()),
        (b":scheme", head.scheme.encode()),
        (b":authority", head.authority.encode()),
        (b":path", head.path.encode()),
    ] + list(head.raw_headers)


def normal_fields(fields) -> list:
    """What a header list means in HTTP: host as :authority, cookies joined, and order kept only
    among fields of one name (RFC 9110 5.3), pseudo-headers first."""
    out = [(bytes(n), bytes(v)) for n, v in fields]
    host = [v for n, v in out if n == b"host"]
    out = [(n, v) for n, v in out if n != b"host"]
    if host and not any(n == b":authority" for n, _ in out):
        out.insert(2, (b":authority", host[0]))
    cookies = [v for n, v in out if n == b"cookie"]
    if len(cookies) > 1:
        out = [(n, v) for n, v in out if n != b"cookie"] + [(b"cookie", b"; ".join(cookies))]
    return sorted(out, key=lambda field: (not field[0].startswith(b":"), field[0]))


class RefPeer:
    """h2.H2Connection with a send buffer that waits for windows, as an application must."""

    def __init__(self, client: bool, auto_ack: bool = True, **settings) -> None:
        config = h2.config.H2Configuration(client_side=client, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        if settings:
            codes = {getattr(h2.settings.SettingCodes, name): value for name, value in settings.items()}
            self.conn.local_settings = h2.settings.Settings(client=client, initial_values=codes)
        self.conn.initiate_connection()
        self.client = client
        self.auto_ack = auto_ack
        self.log = Log()
        self.pending: dict[int, list] = {}  # stream -> [bytes, end_stream, trailers]
        self.terminated = None

    def out(self) -> bytes:
        return self.conn.data_to_send()

    def feed(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as error:
            self.terminated = error
            return
        for event in events:
            if isinstance(event, (h2.events.RequestReceived, h2.events.ResponseReceived)):
                self.log.add(event.stream_id, "head", normal_fields(event.headers))
            elif isinstance(event, h2.events.DataReceived):
                if event.data:
                    self.log.add(event.stream_id, "data", event.data)
                if self.auto_ack:
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived):
                self.log.add(event.stream_id, "end", [tuple(h) for h in event.headers])
            elif isinstance(event, h2.events.StreamEnded):
                if not self.log.streams[event.stream_id] or self.log.streams[event.stream_id][-1][0] != "end":
                    self.log.add(event.stream_id, "end", [])
            elif isinstance(event, h2.events.StreamReset):
                self.pending.pop(event.stream_id, None)
                self.log.add(event.stream_id, "reset", event.error_code)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.log.connection.append(("goaway", event.last_stream_id, event.error_code))
                self.terminated = event
        self._flush()

    def new_stream(self) -> int:
        return self.conn.get_next_available_stream_id()

    def send_head(self, stream_id: int, fields, end_stream: bool = False) -> None:
        self.conn.send_headers(stream_id, fields, end_stream=end_stream)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False, trailers=None) -> None:
        self.pending[stream_id] = [data, end_stream, trailers]
        self._flush()

    def reset(self, stream_id: int, code: int) -> None:
        self.pending.pop(stream_id, None)
        self.conn.reset_stream(stream_id, code)

    def goaway(self, code: int = 0) -> None:
        self.conn.close_connection(code)

    def change_settings(self, **settings) -> None:
        self.conn.update_settings({getattr(h2.settings.SettingCodes, k): v for k, v in settings.items()})

    def ack(self, stream_id: int, size: int) -> None:
        self.conn.acknowledge_received_data(size, stream_id)

    def _flush(self) -> None:
        for stream_id, item in list(self.pending.items()):
            data, end_stream, trailers = item
            try:
                window = self.conn.local_flow_control_window(stream_id)
            except h2.exceptions.StreamClosedError:
                del self.pending[stream_id]
                continue
            size = max(0, min(window, len(data)))
            max_frame = self.conn.max_outbound_frame_size
            for offset in range(0, size, max_frame):
                self.conn.send_data(stream_id, data[offset : min(offset + max_frame, size)])
            item[0] = data = data[size:]
            if not data:
                del self.pending[stream_id]
                if trailers:
                    self.conn.send_headers(stream_id, trailers, end_stream=True)
                elif end_stream:
                    self.conn.end_stream(stream_id)


class CodecPeer:
    """pymesh.http.h2.Connection behind the same interface."""

    def __init__(self, client: bool, auto_ack: bool = True, limits: codec.Limits = codec.Limits(), **kw) -> None:
        self.conn = codec.Connection(client, limits, **kw)
        self.client = client
        self.auto_ack = auto_ack
        self.log = Log()
        self.events: list = []  # every raw event, in order
        self.terminated = None

    def out(self) -> bytes:
        return self.conn.data_to_send()

    def feed(self, data: bytes) -> None:
        events = self.conn.feed(data)
        self.events += events
        for event in events:
            kind, stream_id, value = event
            if kind == codec.HEAD:
                self.log.add(stream_id, "head", normal_fields(_fields_of(value)))
            elif kind == codec.DATA:
                self.log.add(stream_id, "data", value)
                if self.auto_ack:
                    self.conn.acknowledge_received(stream_id, len(value))
            elif kind == codec.END:
                self.log.add(stream_id, "end", list(value))
            elif kind == codec.RESET:
                self.log.add(stream_id, "reset", value)
            elif kind == codec.GOAWAY:
                self.log.connection.append(("goaway", stream_id, value))
                self.terminated = event
            elif kind == codec.ERROR:
                if stream_id:
                    self.log.add(stream_id, "error", value.code)
                else:
                    self.terminated = value

    def new_stream(self) -> int:
        return self.conn.new_stream_id()

    def send_head(self, stream_id: int, fields, end_stream: bool = False) -> None:
        fields = [(bytes(n), bytes(v)) for n, v in fields]
        pseudo = dict(f for f in fields if f[0].startswith(b":"))
        regular = [f for f in fields if not f[0].startswith(b":") and f[0] != b"content-length"]
        lengths = [int(v) for n, v in fields if n == b"content-length"]
        if b":status" in pseudo:
            head = ResponseHead(int(pseudo[b":status"]), regular)
        else:
            head = RequestHead(pseudo[b":method"].decode(), pseudo[b":path"].decode(), regular,
                               scheme=pseudo[b":scheme"].decode())
            head.authority = pseudo[b":authority"].decode()
        head.content_length = lengths[0] if lengths else None  # framing travels in the head
        self.conn.send_headers(stream_id, head, end_stream)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False, trailers=None) -> None:
        self.conn.send_data(stream_id, data, end_stream and not trailers)
        if trailers:
            self.conn.send_trailers(stream_id, trailers)

    def reset(self, stream_id: int, code: int) -> None:
        self.conn.reset_stream(stream_id, code)

    def goaway(self, code: int = 0) -> None:
        self.conn.goaway(code)

    def ack(self, stream_id: int, size: int) -> None:
        self.conn.acknowledge_received(stream_id, size)


def pump(a, b, rounds: int = 10_000) -> int:
    """Move bytes both ways until neither side has anything to send; the rounds it took."""
    for count in range(rounds):
        ab, ba = a.out(), b.out()
        if not ab and not ba:
            return count
        if ab:
            b.feed(ab)
        if ba:
            a.feed(ba)
    raise AssertionError(f"still talking after {rounds} rounds")
