"""A minimal proxy side of the control protocol for the tests: h2 over a real socket.

It speaks the wire format from pymesh.api.wire (the proxy's side is the lead's; this one exists so
the server is tested over sockets against an independent client). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from pymesh.api.wire import (
    CONTENT_TYPE, PATH, Ack, FrameDecoder, Hello, Nack, Node, encode_message,
)

WAIT = 5.0


@dataclass
class Ended:
    """Put on the message queue when the stream or connection ends."""

    why: str
    trailers: dict = field(default_factory=dict)
    debug: bytes = b""  # a GOAWAY's additional data: the server's reason


def node(id: str, namespace: str = "default", address: str | None = "10.1.0.1", ports=None, **labels: str) -> Node:
    return Node(
        id=id,
        workload=id.split(".")[0],
        namespace=namespace,
        service_account=id.split("-")[0],
        labels=labels,
        addresses=(address,) if address else (),
        ports=ports if ports is not None else {"http": 8080},
    )


class ControlClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, window: int | None, acknowledge: bool):
        self.reader, self.writer = reader, writer
        self.acknowledge = acknowledge  # False: never open the window again (a stuck proxy)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.h2.initiate_connection()
        if window is not None:
            self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(self.stream_id, [
            (":method", "POST"), (":path", PATH), (":scheme", "http"), (":authority", "control"),
            ("content-type", CONTENT_TYPE),
        ])
        self.status: str | None = None
        self.messages: asyncio.Queue = asyncio.Queue()
        self.received_bytes = 0
        self.window_opened = asyncio.Event()  # also set when the connection ends
        self.closed = asyncio.Event()  # the server closed the connection
        self._decoder = FrameDecoder()
        self._flush()
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1", window: int | None = None,
                      acknowledge: bool = True, source: str | None = None, ssl=None) -> ControlClient:
        """`source`: the local address to connect from (127.0.0.2, ... for another client host);
        `ssl`: a client context (tests/control/identity_kit.py makes them) for a secure server."""
        local = (source, 0) if source else None
        reader, writer = await asyncio.open_connection(host, port, local_addr=local, ssl=ssl)
        return cls(reader, writer, window, acknowledge)

    async def hello(self, node: Node, last_version: str | None = None):
        self.send(Hello(node, last_version))
        return await self.recv()

    def send(self, msg) -> None:
        self.send_bytes(encode_message(msg))

    def send_bytes(self, data: bytes) -> None:
        self.h2.send_data(self.stream_id, data)
        self._flush()

    async def push(self, data: bytes, timeout: float = WAIT) -> int:
        """Send `data` as fast as the server's flow-control window allows; the bytes sent
        before the stream or connection ended or `timeout` passed."""
        sent = 0
        deadline = asyncio.get_running_loop().time() + timeout
        while sent < len(data) and not self.writer.is_closing() and not self.closed.is_set():
            try:
                window = min(self.h2.local_flow_control_window(self.stream_id), self.h2.max_outbound_frame_size)
            except h2.exceptions.H2Error:
                break  # the stream or the connection is gone
            if window <= 0:
                self.window_opened.clear()
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(self.window_opened.wait(), left)
                except asyncio.TimeoutError:
                    break
                continue
            chunk = data[sent : sent + window]
            try:
                self.send_bytes(chunk)
            except h2.exceptions.H2Error:
                break
            sent += len(chunk)
            await self.writer.drain()
        return sent

    def ack(self, msg) -> None:
        self.send(Ack(msg.version, msg.nonce))

    def nack(self, msg, error: str) -> None:
        self.send(Nack(msg.version, msg.nonce, error))

    async def recv(self, timeout: float = WAIT):
        """The next message (or Ended); AssertionError when nothing comes in time."""
        try:
            return await asyncio.wait_for(self.messages.get(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no message from the control server within {timeout}s") from None

    async def expect(self, cls, timeout: float = WAIT):
        msg = await self.recv(timeout)
        assert isinstance(msg, cls), f"expected {cls.__name__}, got {msg!r:.300}"
        return msg

    async def silent(self, timeout: float) -> None:
        """Nothing arrives for `timeout` seconds (for "not pushed" checks)."""
        try:
            msg = await asyncio.wait_for(self.messages.get(), timeout)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected message: {msg!r:.300}")

    async def close(self) -> None:
        self._task.cancel()
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def _read(self) -> None:
        trailers: dict = {}
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    return self.messages.put_nowait(Ended("connection closed", trailers))
                for event in self.h2.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        self.status = dict(event.headers)[":status"]
                    elif isinstance(event, h2.events.DataReceived):
                        self.received_bytes += len(event.data)
                        if self.acknowledge:
                            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                        for msg in self._decoder.feed(event.data):
                            self.messages.put_nowait(msg)
                    elif isinstance(event, h2.events.TrailersReceived):
                        trailers = dict(event.headers)
                    elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                        self.messages.put_nowait(Ended(type(event).__name__, trailers))
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        self.messages.put_nowait(Ended("GOAWAY", trailers, event.additional_data or b""))
                    elif isinstance(event, h2.events.WindowUpdated):
                        self.window_opened.set()
                self._flush()
        except (ConnectionError, OSError) as exc:
            self.messages.put_nowait(Ended(f"connection error: {exc}", trailers))
        finally:
            self.closed.set()
            self.window_opened.set()
