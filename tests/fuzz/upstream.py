"""The recording upstream of the `proxy` target: an asyncio server on 127.0.0.1 that parses what
the proxy sends with h11, a strict parser independent of the proxy's llhttp.

It answers every complete request with 200, `x-echo: 1` and the body "<method> <target>", so the
client's side can tell which request a response answers. An Upgrade request for a target under
`/public/upgrade` is accepted with 101 (then bytes are echoed); every other upgrade is refused with
the ordinary 200, as most servers do. What it could not parse is recorded, never raised.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import h11

ACCEPT_UPGRADE = b"/public/upgrade"
MAX_EVENT = 64 * 1024


@dataclass
class Request:
    """One request as the upstream parsed it."""

    conn: int
    method: bytes
    target: bytes
    body: bytearray = field(default_factory=bytearray)
    complete: bool = False


class Connection(asyncio.Protocol):
    def __init__(self, server: RecordingUpstream) -> None:
        self.server = server
        self.index = len(server.connections)
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_EVENT)
        self.transport: asyncio.Transport | None = None
        self.current: Request | None = None
        self.error = ""  # what h11 refused, if it did
        self.truncated = ""  # why a request cut by the proxy's close was incomplete
        self.raw = bytearray()  # every byte received, for reports
        self.tunnel = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server.connections.append(self)

    def data_received(self, data: bytes) -> None:
        self.raw += data
        self.server.bytes_in += len(data)
        if self.tunnel:
            self._write(data)
        elif not self.error:
            self.h11.receive_data(data)
            self._drain()

    def eof_received(self):
        if not self.error and not self.tunnel:
            self.h11.receive_data(b"")
            self._drain()
            if self.error:  # a request cut by the proxy's close is refused, not misread
                self.error, self.truncated = "", self.error
        return False

    def _drain(self) -> None:
        conn = self.h11
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as error:
                self.error = str(error)
                self.transport.close()
                return
            if event is h11.NEED_DATA or event is h11.PAUSED or type(event) is h11.ConnectionClosed:
                return
            if type(event) is h11.Request:
                self.current = Request(self.index, bytes(event.method), bytes(event.target))
                self.server.requests.append(self.current)
            elif type(event) is h11.Data:
                self.current.body += event.data
            elif type(event) is h11.EndOfMessage:
                self.current.complete = True
                if not self._answer(self.current):
                    return

    def _answer(self, request: Request) -> bool:
        """Respond; False once the connection stopped being HTTP (tunnel) or is closing."""
        conn = self.h11
        if conn.their_state is h11.MIGHT_SWITCH_PROTOCOL and request.target.startswith(ACCEPT_UPGRADE):
            switch = h11.InformationalResponse(status_code=101, headers=[("upgrade", "fuzz"), ("connection", "upgrade")])
            self._write(conn.send(switch))
            self.tunnel = True
            tail = conn.trailing_data[0]
            if tail:
                self._write(tail)
            return False
        body = request.method + b" " + request.target
        headers = [("content-length", str(len(body))), ("x-echo", "1")]
        out = conn.send(h11.Response(status_code=200, headers=headers))
        if request.method != b"HEAD":
            out += conn.send(h11.Data(data=body))
        out += conn.send(h11.EndOfMessage())
        self._write(out)
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            return True
        self.transport.close()
        return False

    def _write(self, data: bytes) -> None:
        self.server.bytes_out += len(data)
        self.transport.write(data)

    def partial_head(self) -> bytes:
        """Bytes waiting between requests that do not yet make a request head (b"" if none)."""
        if self.error or self.tunnel or self.h11.their_state is not h11.IDLE:
            return b""
        return self.h11.trailing_data[0]

    def connection_lost(self, exc) -> None:
        self.server.closed += 1


class RecordingUpstream:
    """The server and everything it received since the last `reset()`."""

    def __init__(self) -> None:
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self.reset()

    async def start(self) -> RecordingUpstream:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: Connection(self), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def reset(self) -> None:
        for conn in getattr(self, "connections", ()):
            conn.transport.abort()
        self.connections: list[Connection] = []
        self.requests: list[Request] = []
        self.bytes_in = self.bytes_out = self.closed = 0

    def activity(self) -> tuple:
        return (self.bytes_in, self.bytes_out, len(self.connections), self.closed)

    async def stop(self) -> None:
        self.reset()
        self.server.close()
        await self.server.wait_closed()
