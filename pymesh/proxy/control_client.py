"""The proxy's side of the control protocol (pymesh.api.wire): one long-lived HTTP/2 stream to
the control server, snapshots in, ACKs and NACKs out.

The proxy names itself once per connection (hello), applies each snapshot atomically through
`apply`, and ACKs it, or NACKs with the error and keeps serving what it had. It reconnects with
jittered exponential backoff and, while the server is away, simply keeps its last good
configuration, which `SnapshotStore` also keeps on disk so a proxy restarted during an outage
still serves.

With a `WorkloadIdentity` (a join token) each connection is mTLS with the proxy's current
certificate, the server must have the control server's SPIFFE identity, and pushed trust
bundles go to the identity; without one it is plaintext (a server run with --insecure).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from dataclasses import replace
from typing import TYPE_CHECKING, Awaitable, Callable

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from pymesh.api import codec, model, wire
from pymesh.security.identity import peer_spiffe_id

if TYPE_CHECKING:
    from pymesh.proxy.workload_identity import WorkloadIdentity

log = logging.getLogger("pymesh.control_client")

BACKOFF_BASE = 0.1
BACKOFF_MAX = 15.0
READ_SIZE = 65536
MAX_FRAME_SIZE = 2**24 - 1  # HTTP/2's largest frame


class ConfigRejected(Exception):
    """`apply` could not use a configuration; the message goes back in the NACK."""


Apply = Callable[[model.MeshConfig, str], Awaitable[None]]


class SnapshotStore:
    """The last good configuration on disk (0600, written atomically), for restarts in an outage."""

    def __init__(self, data_dir: str | None) -> None:
        self.path = os.path.join(data_dir, "snapshot.json") if data_dir else None

    def load(self) -> tuple[model.MeshConfig, str] | None:
        if self.path is None or not os.path.exists(self.path):
            return None
        try:
            with open(self.path, encoding="utf-8") as handle:
                saved = json.load(handle)
            return codec.decode(model.MeshConfig, saved["config"]), str(saved["version"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.error("ignoring unreadable persisted snapshot %s: %s", self.path, error)
            return None

    def save(self, config: model.MeshConfig, version: str) -> None:
        if self.path is None:
            return
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        temporary = f"{self.path}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # even if a stale temporary file had a wider mode
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"version": version, "config": codec.encode(config)}, handle)
        os.replace(temporary, self.path)


class ControlClient:
    def __init__(self, host: str, port: int, node: wire.Node, apply: Apply, store: SnapshotStore,
                 identity: WorkloadIdentity | None = None) -> None:
        self.host = host
        self.port = port
        self.node = node
        self.apply = apply
        self.store = store
        self.identity = identity
        self.config: model.MeshConfig | None = None
        self.version: str | None = None
        self.connected = asyncio.Event()
        self._rng = random.Random()
        self._live: _Session | None = None  # the session now connected, to send health reports on
        self._health: wire.HealthMessage | None = None  # the last one, sent again after each hello
        self._flushes: set[asyncio.Task] = set()  # held until done (the loop keeps only weak references)

    def restore(self) -> tuple[model.MeshConfig, str] | None:
        """The persisted snapshot, remembered as current so the server knows what we serve."""
        saved = self.store.load()
        if saved is not None:
            self.config, self.version = saved
        return saved

    def report_health(self, healthy: bool, message: str) -> None:
        """The application's health by its WorkloadGroup's probe: sent now if connected, and
        after every hello (the server forgets it with the registration)."""
        self._health = wire.HealthMessage(healthy, message)
        session = self._live
        if session is not None:
            session.queue(self._health)
            task = asyncio.get_running_loop().create_task(session.flush_quietly())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def run(self) -> None:
        """Stay connected until cancelled; never raises for network trouble."""
        if self.identity is not None:
            await self.identity.first.wait()  # its certificate: the identity logs why it is late
        failures = 0
        while True:
            try:
                await self._session()
            except (OSError, asyncio.IncompleteReadError, wire.WireError, h2.exceptions.ProtocolError) as error:
                problem = error
            # A session that had connected resets the backoff: reconnect promptly after it.
            failures = 1 if self.connected.is_set() else failures + 1
            self.connected.clear()
            ceiling = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** min(failures, 10))
            delay = self._rng.uniform(ceiling / 2, ceiling)
            log.warning("control server %s:%d: %s; retrying in %.1f s", self.host, self.port, problem, delay)
            await asyncio.sleep(delay)

    # one connection ------------------------------------------------------------------------------

    async def _session(self) -> None:
        tls = None
        if self.identity is not None:
            tls = self.identity.channel_context()
            if tls is None:
                raise ConnectionError(f"no valid workload certificate yet ({self.identity.error or 'being signed'})")
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=tls)
        try:
            if tls is not None:
                peer = peer_spiffe_id(writer.get_extra_info("ssl_object").getpeercert(binary_form=True))
                if peer != self.identity.server:
                    raise ConnectionError(f"the server is {peer.uri if peer else 'no SPIFFE identity'}, "
                                          f"not {self.identity.server.uri}")
            connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            connection.initiate_connection()
            self._open_windows(connection)
            stream_id = connection.get_next_available_stream_id()
            connection.send_headers(stream_id, [
                (":method", "POST"), (":path", wire.PATH), (":scheme", "https" if tls else "http"),
                (":authority", f"{self.host}:{self.port}"), ("content-type", wire.CONTENT_TYPE),
            ])
            session = _Session(connection, stream_id, writer)
            session.queue(wire.Hello(node=self.node, last_version=self.version))
            if self._health is not None:
                session.queue(self._health)
            self._live = session
            await session.flush()
            decoder = wire.FrameDecoder()
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    raise ConnectionError("control server closed the connection")
                for event in connection.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        status = dict(event.headers).get(b":status", b"").decode()
                        if status != "200":
                            raise ConnectionError(f"control server refused the stream: {status}")
                        self.connected.set()
                        log.info("connected to control server %s:%d", self.host, self.port)
                    elif isinstance(event, h2.events.DataReceived):
                        connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                        for message in decoder.feed(event.data):
                            await self._handle(session, message)
                    elif isinstance(event, h2.events.TrailersReceived):
                        why = dict(event.headers).get(b"pymesh-error", b"").decode("utf-8", "replace")
                        raise ConnectionError(f"control server ended the stream: {why or 'no reason given'}")
                    elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset, h2.events.ConnectionTerminated)):
                        raise ConnectionError(f"control stream ended ({type(event).__name__})")
                session.pump()
                await session.flush()
        finally:
            self._live = None
            writer.close()

    @staticmethod
    def _open_windows(connection: h2.connection.H2Connection) -> None:
        """Let a whole snapshot arrive without waiting for window updates.

        With HTTP/2's default 64 KiB window a 170 kB snapshot takes about ten round trips per
        proxy, which was most of the control server's time when pushing to 1000 proxies.
        """
        connection.update_settings({
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: wire.MAX_FRAME,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
        })
        connection.increment_flow_control_window(wire.MAX_FRAME - connection.inbound_flow_control_window)
        # h2 applies a new frame-size limit only once per receive_data call: a large frame read
        # together with the SETTINGS ACK would be refused as overlong unless it is set now.
        connection.max_inbound_frame_size = MAX_FRAME_SIZE

    async def _handle(self, session: _Session, message) -> None:
        if isinstance(message, wire.InvalidMessage):
            log.error("configuration version %s unreadable: %s", message.version, message.error)
            session.queue(wire.Nack(version=message.version, nonce=message.nonce, error=message.error))
            return
        if isinstance(message, wire.TrustBundleMessage):
            if self.identity is not None:
                self.identity.trust_bundle(message.roots_pem)
            return
        if isinstance(message, wire.SnapshotMessage):
            config = message.config
        elif isinstance(message, wire.EndpointsMessage):
            if self.config is None or message.base_version != self.version:
                session.queue(wire.Nack(version=message.version, nonce=message.nonce,
                                        error=f"{wire.STALE_BASE}: serving {self.version}, not {message.base_version}"))
                return
            config = replace(self.config, workload_entries=tuple(message.workload_entries))
        else:
            log.warning("ignoring unexpected control message %s", type(message).__name__)
            return
        try:
            await self.apply(config, message.version)
        except ConfigRejected as error:
            log.error("configuration version %s rejected: %s", message.version, error)
            session.queue(wire.Nack(version=message.version, nonce=message.nonce, error=str(error)))
            return
        self.config, self.version = config, message.version
        self.store.save(config, message.version)
        session.queue(wire.Ack(version=message.version, nonce=message.nonce))


class _Session:
    """Sending on the one stream within HTTP/2 flow control: messages queue, and the read loop
    pumps them out as the peer's window allows (it is the loop that sees WINDOW_UPDATE)."""

    def __init__(self, connection: h2.connection.H2Connection, stream_id: int, writer: asyncio.StreamWriter) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.writer = writer
        self.pending = b""

    def queue(self, message) -> None:
        self.pending += wire.encode_message(message)
        self.pump()

    def pump(self) -> None:
        while self.pending:
            window = min(self.connection.local_flow_control_window(self.stream_id),
                         self.connection.max_outbound_frame_size)
            if window <= 0:
                return
            self.connection.send_data(self.stream_id, self.pending[:window])
            self.pending = self.pending[window:]

    async def flush(self) -> None:
        data = self.connection.data_to_send()
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def flush_quietly(self) -> None:
        """A flush outside the read loop: a broken connection is the read loop's to report."""
        try:
            await self.flush()
        except (OSError, RuntimeError):
            pass
