"""Simulated proxies for `python -m benchmarks control`: many per process, each a real client of
the control protocol v1 (pymesh.api.wire) over its own TCP connection and HTTP/2 stream.

A simulated proxy sends hello with its own node (controlgen.node_fields), takes each snapshot or
endpoints message off the stream, and ACKs it at once, recording the CLOCK_MONOTONIC times
(shared by every process on the machine) at which the message was complete and at which its ACK
was handed to the kernel. It does what a proxy does on the wire — h2 with default settings (or
the larger window `connect` is given), data acknowledged as it arrives so the server's window
reopens — but not what a proxy does with the
config: it reads only the message envelope (type, version, nonce), so the figures are the
server's, not the clients'. Fully decoding a 170 kB snapshot takes ~9 ms; a thousand clients on
one CPU would measure themselves. To check that what was pushed is real protocol, the first
message of each version a process sees is kept and decoded in full with
pymesh.api.wire.decode_payload once the change has converged.

Run as a worker: `python -m benchmarks.controlproxies --port P --first I --count N`, then JSON
commands on stdin, one per line, each answered by one JSON line on stdout:

    {"cmd": "connect", "concurrency": 16, "timeout": 60, "window": null}
        -> {"connected", "failed", "errors", "done_at"}
    {"cmd": "state"}                                       -> {"open", "ended", "versions": {v: count}}
    {"cmd": "wait", "after": V, "expect": [i...], "timeout": 30}
        -> {"records": [[i, version, type, received_at, acked_at], ...], "missing": [i...], "decoded": {...}}
    {"cmd": "quit"}

`wait` returns, for every client that was pushed a version newer than V, its first such message;
it waits (bounded) until every client in `expect` has one.
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import json
import re
import resource
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame

from benchmarks import controlgen
from pymesh.api import wire

_LENGTH = struct.Struct(">I")
_TYPE = re.compile(rb'"type":"([a-z]+)"')
_VERSION = re.compile(rb'"version":"([^"\\]*)"')
_NONCE = re.compile(rb'"nonce":"([^"\\]*)"')
HEAD = 256  # the envelope's fields come first; a config starts after them


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit; returns the limits now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def envelope(payload: bytes) -> tuple[str, str, str]:
    """(type, version, nonce) of one frame's JSON, from its first bytes; the full decoder when
    the fields are not where the encoder puts them."""
    head = payload[:HEAD]
    kind, version, nonce = _TYPE.search(head), _VERSION.search(head), _NONCE.search(head)
    if kind and version and nonce:
        return kind[1].decode(), version[1].decode(), nonce[1].decode()
    msg = wire.decode_payload(payload)
    return getattr(msg, "TYPE", getattr(msg, "type", "?")), getattr(msg, "version", ""), getattr(msg, "nonce", "")


def _short_repr(data: bytes | None) -> str:
    return "<hex:" + binascii.hexlify(bytes(data[:10])).decode("ascii") + "...>" if data else "None"


# h2 evaluates repr(frame) for its trace log on every frame it receives, and hyperframe's repr of a
# DATA frame hex-encodes the whole payload before cutting it to 20 characters: ~0.5 ms per 170 kB
# snapshot, nothing for one proxy, but 0.5 s of the clients' one CPU per change with 1000 of them.
# Same output, from the first 10 bytes only.
hyperframe.frame._raw_data_repr = _short_repr


class Worker:
    """The clients of one process, and the first message of each version they got (decoded in
    full only when asked, off the timed path)."""

    def __init__(self) -> None:
        self.clients: dict[int, SimProxy] = {}
        self.first_payload: dict[str, bytes] = {}  # version -> the first message of it received
        self.decoded: dict[str, dict] = {}  # version -> summary of a full decode
        self.changed = asyncio.Event()

    def keep(self, version: str, payload: bytes) -> None:
        self.first_payload.setdefault(version, payload)

    def decode_all(self) -> dict[str, dict]:
        for version, payload in self.first_payload.items():
            if version not in self.decoded:
                self.check(version, payload)
        return self.decoded

    def check(self, version: str, payload: bytes) -> None:
        try:
            msg = wire.decode_payload(payload)
        except wire.WireError as exc:
            self.decoded[version] = {"ok": False, "error": str(exc)}
            return
        if isinstance(msg, wire.InvalidMessage):
            self.decoded[version] = {"ok": False, "error": msg.error}
            return
        summary: dict = {"ok": isinstance(msg, (wire.SnapshotMessage, wire.EndpointsMessage)), "type": msg.TYPE}
        config = getattr(msg, "config", None)
        if config is not None:
            summary["virtual_services"] = len(config.virtual_services)
            for vs in config.virtual_services:
                if vs.metadata.name == f"svc-{controlgen.CHANGED}":
                    summary["weights"] = [d.weight for r in vs.http if r.name == "api" for d in r.route]
        self.decoded[version] = summary


class SimProxy(asyncio.Protocol):
    def __init__(self, worker: Worker, index: int, window: int | None = None) -> None:
        self.worker = worker
        self.window = window
        self.index = index
        self.node = wire.Node(**controlgen.node_fields(index))
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.stream_id = 0
        self.first = asyncio.get_running_loop().create_future()  # None at the first ACK, or why it ended
        self.received: list[tuple[int, str, float, float]] = []  # (version, type, complete at, acked at)
        self.ended: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.h2.initiate_connection()
        if self.window:  # what a proxy could advertise instead of h2's 64 KiB default
            frame = min(self.window, 2 ** 24 - 1)
            self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self.window,
                                     h2.settings.SettingCodes.MAX_FRAME_SIZE: frame})
            self.h2.increment_flow_control_window(self.window - self.h2.inbound_flow_control_window)
            # h2 (4.4.1) sets its frame buffer's limit once per receive_data call, so a large DATA
            # frame read together with the ACK of this SETTINGS would be refused as "overlong":
            # accept large frames from the start (the server sends them only after our SETTINGS).
            self.h2.max_inbound_frame_size = frame
        self.stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(self.stream_id, [
            (":method", "POST"), (":path", wire.PATH), (":scheme", "http"), (":authority", "control"),
            ("content-type", wire.CONTENT_TYPE),
        ])
        self.h2.send_data(self.stream_id, wire.encode_message(wire.Hello(self.node)))
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            return self._end(f"HTTP/2 protocol error: {exc}")
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                self.buffer += event.data
                self._frames()
            elif isinstance(event, h2.events.ResponseReceived):
                status = dict(event.headers).get(":status")
                if status != "200":
                    self._end(f"status {status}")
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset, h2.events.ConnectionTerminated,
                                    h2.events.TrailersReceived)):
                self._end(type(event).__name__)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(f"connection lost: {exc}" if exc else "connection closed")

    def _frames(self) -> None:
        while len(self.buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self.buffer)
            end = _LENGTH.size + length
            if len(self.buffer) < end:
                return
            payload = bytes(self.buffer[_LENGTH.size:end])
            del self.buffer[:end]
            received_at = time.monotonic()
            kind, version, nonce = envelope(payload)
            self.h2.send_data(self.stream_id, wire.encode_message(wire.Ack(version, nonce)))
            self._flush()
            self.received.append((int(version), kind, received_at, time.monotonic()))
            self.worker.keep(version, payload)
            if not self.first.done():
                self.first.set_result(None)
            self.worker.changed.set()

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _end(self, why: str) -> None:
        if self.ended is None:
            self.ended = why
            if not self.first.done():
                self.first.set_result(why)
            self.worker.changed.set()
        if self.transport is not None:
            self.transport.close()

    def first_after(self, version: int) -> tuple[int, str, float, float] | None:
        return next((r for r in self.received if r[0] > version), None)


async def connect(worker: Worker, port: int, indices: range, concurrency: int, timeout: float,
                  window: int | None = None) -> dict:
    """Connect every client, at most `concurrency` handshakes at a time (the server's accept
    backlog is 100); each counts once it has ACKed its first snapshot."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    errors: dict[str, int] = {}
    deadline = loop.time() + timeout

    async def one(i: int) -> None:
        async with gate:
            try:
                left = max(0.1, deadline - loop.time())
                _, proxy = await asyncio.wait_for(
                    loop.create_connection(lambda: SimProxy(worker, i, window), "127.0.0.1", port), left)
                worker.clients[i] = proxy
                ended = await asyncio.wait_for(asyncio.shield(proxy.first), max(0.1, deadline - loop.time()))
                if ended is not None:
                    raise ConnectionError(ended)
            except (OSError, asyncio.TimeoutError) as exc:
                why = type(exc).__name__ + (f": {exc}" if str(exc) else "")
                errors[why[:200]] = errors.get(why[:200], 0) + 1

    await asyncio.gather(*(one(i) for i in indices))
    connected = sum(1 for c in worker.clients.values() if c.first.done() and c.first.result() is None)
    return {"connected": connected, "failed": len(indices) - connected, "errors": errors, "done_at": time.monotonic()}


async def wait(worker: Worker, after: int, expect: list[int], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        missing = [i for i in expect if i in worker.clients and worker.clients[i].first_after(after) is None
                   and worker.clients[i].ended is None]
        left = deadline - time.monotonic()
        if not missing or left <= 0:
            break
        worker.changed.clear()
        try:
            await asyncio.wait_for(worker.changed.wait(), min(left, 1.0))
        except asyncio.TimeoutError:
            pass
    records = []
    for i, client in sorted(worker.clients.items()):
        first = client.first_after(after)
        if first is not None:
            records.append([i, first[0], first[1], first[2], first[3]])
    got = {r[0] for r in records}
    missing = [i for i in expect if i not in got]
    return {"records": records, "missing": missing, "decoded": worker.decode_all()}


def state(worker: Worker) -> dict:
    versions: dict[str, int] = {}
    for client in worker.clients.values():
        if client.received:
            key = str(client.received[-1][0])
            versions[key] = versions.get(key, 0) + 1
    ended = [c for c in worker.clients.values() if c.ended is not None]
    return {"open": len(worker.clients) - len(ended), "ended": len(ended),
            "ended_why": sorted({c.ended for c in ended})[:5], "versions": versions}


async def serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    worker = Worker()
    limits = raise_nofile()
    reply({"started": True, "nofile": limits})
    try:
        while True:
            line = await reader.readline()
            if not line:
                return 0  # the harness went away
            command = json.loads(line)
            name = command.get("cmd")
            if name == "connect":
                reply(await connect(worker, args.port, range(args.first, args.first + args.count),
                                    int(command.get("concurrency", 16)), float(command.get("timeout", 60)),
                                    command.get("window")))
            elif name == "state":
                reply(state(worker))
            elif name == "wait":
                reply(await wait(worker, int(command["after"]), list(command.get("expect", [])),
                                 float(command.get("timeout", 30))))
            elif name == "quit":
                return 0
            else:
                reply({"error": f"unknown command {name!r}"})
    finally:
        for client in worker.clients.values():
            if client.transport is not None:
                client.transport.close()


def reply(value: dict) -> None:
    sys.stdout.write(json.dumps(value, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.controlproxies", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="the control server's port on 127.0.0.1")
    parser.add_argument("--first", type=int, default=0, help="index of this process's first simulated proxy")
    parser.add_argument("--count", type=int, required=True, help="simulated proxies in this process")
    return asyncio.run(serve(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
