"""The one module of the `proxy` target that knows how pymesh's proxy is put together.

It touches only the proxy's stable edges: a `Runtime` built with a telemetry object (a subclass
that sees each finished exchange), a snapshot compiled from Istio-shaped YAML and installed, and a
`DownstreamH1` driven through asyncio's protocol callbacks on an in-memory transport. What the
proxy parsed is read off the protocol's request reader. Adapt this module when those edges move.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path

_TESTS = Path(__file__).resolve().parent.parent
for _path in (str(_TESTS), str(_TESTS / "proxy")):  # proxy_harness's config builders
    if _path not in sys.path:
        sys.path.insert(0, _path)

from proxy_harness import dump_yaml, http_mesh, to_subset  # noqa: E402

from pymesh.api.load import load_text  # noqa: E402
from pymesh.http import h1  # noqa: E402
from pymesh.proxy.http1 import DownstreamH1  # noqa: E402
from pymesh.proxy.runtime import Runtime  # noqa: E402
from pymesh.proxy.telemetry import Telemetry  # noqa: E402
from pymesh.routing.compile import compile_snapshot  # noqa: E402
from pymesh.routing.snapshot import ProxyIdentity  # noqa: E402
from pymesh.telemetry.metrics import MetricsContext  # noqa: E402

from .codec_target import small_limits  # noqa: E402

LISTENER_PORT = 15080  # the egress listener's port: never bound, connections are made by hand
ROUTED_PREFIX = "/public/"  # the only paths routed upstream; anything else is 404


def compile_config(upstream_port: int):
    """One HTTP service whose only route is ROUTED_PREFIX, without retries (no timers)."""
    http = [{"match": [{"uri": {"prefix": ROUTED_PREFIX}}], "route": [to_subset("v1")], "retries": {"attempts": 0}}]
    resources = http_mesh(LISTENER_PORT, {"v1": upstream_port}, http)
    return compile_snapshot(load_text(dump_yaml(resources)).strict(), ProxyIdentity(), "fuzz")


@dataclass
class Parsed:
    """One request as the proxy's reader parsed it."""

    method: str
    target: str
    upgrade: bool
    body: bytearray = field(default_factory=bytearray)
    complete: bool = False


class RecordingReader:
    """Wraps the protocol's request reader: passes events through and keeps what they say."""

    def __init__(self, reader) -> None:
        self.reader = reader
        self.parsed: list[Parsed] = []

    def feed(self, data: bytes) -> list:
        events = self.reader.feed(data)
        for kind, value in events:
            if kind == h1.HEAD:
                self.parsed.append(Parsed(value.method, value.path, bool(value.upgrade)))
            elif kind == h1.DATA:
                self.parsed[-1].body += value
            elif kind == h1.END:
                self.parsed[-1].complete = True
        return events

    def __getattr__(self, name):
        return getattr(self.reader, name)


class Transport(asyncio.Transport):
    """The client's side of a downstream connection, in memory: records what the proxy writes,
    honours pause_reading (the driver asks `readable()` before delivering bytes)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.protocol = None
        self.out = bytearray()
        self.paused = False
        self.closing = False
        self.aborted = False
        self.lost = False
        self.eof_written = False

    def write(self, data) -> None:
        if not self.closing and not self.eof_written:  # as asyncio's: dropped after close()
            self.out += data

    def writelines(self, chunks) -> None:
        for chunk in chunks:
            self.write(chunk)

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.loop.call_soon(self._lost)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def _lost(self) -> None:
        if not self.lost:
            self.lost = True
            self.protocol.connection_lost(None)

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_reading(self) -> bool:
        return not self.paused

    def readable(self) -> bool:
        return not self.paused and not self.closing

    def write_eof(self) -> None:
        self.eof_written = True

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", LISTENER_PORT)}.get(name, default)

    def set_protocol(self, protocol) -> None:
        self.protocol = protocol

    def get_protocol(self):
        return self.protocol


class Client:
    """One downstream connection: its transport, its protocol and what the proxy parsed on it."""

    def __init__(self, proxy: Proxy) -> None:
        self.transport = Transport(proxy.runtime.loop)
        self.protocol = DownstreamH1(proxy.runtime, proxy.listener)
        self.reader = self.protocol.reader = RecordingReader(self.protocol.reader)
        self.transport.set_protocol(self.protocol)
        self.protocol.connection_made(self.transport)

    @property
    def parsed(self) -> list[Parsed]:
        return self.reader.parsed

    def send(self, data: bytes) -> None:
        self.protocol.data_received(data)

    def send_eof(self) -> None:
        if not self.protocol.eof_received():
            self.transport.close()  # what asyncio does when eof_received() returns a false value

    def close(self) -> None:
        self.transport.close()


class Proxy:
    """A fresh Runtime (pools, cluster state) with the compiled snapshot installed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, snapshot, telemetry: Telemetry) -> None:
        self.runtime = Runtime(loop, telemetry, small_limits())
        self.runtime.install(snapshot)
        self.listener = next(iter(self.runtime.listeners.values()))

    def client(self) -> Client:
        return Client(self)

    def close(self) -> None:
        """Stop the runtime's timers."""
        self.runtime.close()


def telemetry() -> Telemetry:
    """One per process: metrics and no access log."""
    return Telemetry(MetricsContext(), None)
