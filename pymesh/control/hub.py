"""The push side of the control server: every proxy stream, what each was sent, and the status.

Transport-neutral: the HTTP/2 layer hands each stream's decoded messages to a `ProxyStream` and
gives it a `Peer` to send through. Sending never waits (a peer queues, and drops a queued message
that a newer snapshot supersedes), so a slow or dead proxy cannot hold up the others.

With mTLS every stream has the identity of its verified client certificate: the hello's
namespace and service account must be that identity's (else the stream is refused), so the
registration and the view (computed from the hello's namespace) are the certificate's, never a
claim; at most `max_per_identity` streams per identity; the trust bundle goes first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Protocol

from pymesh.api import model
from pymesh.api.wire import (
    Ack, EndpointsMessage, HealthMessage, Hello, InvalidMessage, Nack, SnapshotMessage, TrustBundleMessage, WireError,
    encode_json, encode_message,
)
from pymesh.control import autoregistration
from pymesh.control.admission import check_node
from pymesh.control.bounds import LogThrottle
from pymesh.control.convergence import Convergence
from pymesh.control.escape import visible
from pymesh.control.mesh import Generation
from pymesh.control.metrics import ControlMetrics
from pymesh.control.registry import Registry
from pymesh.control.session import ProxySession
from pymesh.routing.view import Views, view_key
from pymesh.security.identity import SpiffeId

log = logging.getLogger("pymesh.control.push")


class Peer(Protocol):
    identity: SpiffeId | None  # from the verified client certificate; None on --insecure

    def send(self, data: bytes, supersedes: bool) -> bool:
        """Queue framed bytes; `supersedes`: queued messages not yet started are dropped first.
        False when the stream is gone."""

    def close(self, error: str | None = None) -> None:
        """End the stream (with the error, for a protocol violation by the proxy)."""


class Hub:
    def __init__(self, registry: Registry, metrics: ControlMetrics, clock: Callable[[], float] = time.monotonic,
                 warmup_until: float = 0.0, bundle: Callable[[], bytes] | None = None, max_per_identity: int = 0):
        self.registry = registry
        self.bundle = bundle  # the trust bundle's PEM, with mTLS
        self.max_per_identity = max_per_identity  # 0: no limit
        self._per_identity: dict[SpiffeId, int] = {}
        self.metrics = metrics
        self.generation: Generation | None = None
        self.records: dict[str, ProxySession] = {}  # node id -> its latest session, for status
        self.convergence = Convergence(metrics.convergence.observe, clock, metrics.pilot_convergence.observe)
        self._clock = clock
        self.warmup_until = warmup_until  # until then, reconnecting proxies wait for the registry to refill
        self._streams: set[ProxyStream] = set()
        self._builder: Views | None = None  # of this generation
        self._views: dict[tuple, model.MeshConfig] = {}  # this generation's, by view_key
        self._encoded: dict[tuple, bytes] = {}  # config JSON of this generation's views
        self.throttle = LogThrottle()  # for streams refused before a hello: anyone can make those

    def open(self, peer: Peer) -> ProxyStream:
        stream = ProxyStream(self, peer)
        self._streams.add(stream)
        return stream

    def publish(self, generation: Generation) -> None:
        """Push the new generation to every proxy whose view it changed."""
        started = self._clock()
        self.generation = generation
        self._builder, self._views, self._encoded = Views(generation.config), {}, {}
        version = str(generation.version)
        affected = []
        for stream in list(self._streams):
            session = stream.session
            if session is None or stream.held:
                continue
            msg = session.push(version, self._view(session))
            if msg is not None and stream.send(msg):
                affected.append(stream)
        if affected:
            self.convergence.started(generation.version, generation.detected_at, affected)
        log.info("version %d: pushed to %d of %d proxies (%d distinct views) in %.0f ms", generation.version,
                 len(affected), len(self._streams), len(self._views), 1000 * (self._clock() - started))

    def encode(self, msg: SnapshotMessage | EndpointsMessage) -> bytes:
        """Framed bytes; the config (or workload entries) is encoded once per distinct view of a
        generation: one generation's views share their resource objects, so identity tells
        equal ones apart cheaply."""
        name = "config" if isinstance(msg, SnapshotMessage) else "workload_entries"
        value = getattr(msg, name)
        resources = vars(value).values() if isinstance(msg, SnapshotMessage) else (value,)
        key = (name, tuple(tuple(map(id, items)) for items in resources))
        data = self._encoded.get(key)
        if data is None:
            data = self._encoded[key] = encode_json(value)
        return encode_message(msg, {name: data})

    def forget(self, node_id: str) -> None:
        """The registry dropped the node: drop its status record unless it is back."""
        session = self.records.get(node_id)
        if session is not None and not session.connected:
            del self.records[node_id]

    def status(self) -> list[dict]:
        """Every proxy with a stream or in the registry (one restored from saved state that has
        not reconnected yet has no session: it shows as disconnected, never pushed)."""
        records = dict(self.records)
        for node in self.registry.nodes():
            if node.id not in records:
                session = records[node.id] = ProxySession(node)
                session.connected = False
        groups = self.generation.config.workload_groups if self.generation is not None else ()
        return [_record(session, self.registry.health(node_id), groups) for node_id, session in sorted(records.items())]

    def connected_nodes(self) -> list:
        """The nodes of the proxies with an open stream (what Prometheus should scrape)."""
        return [session.node for session in self.records.values() if session.connected]

    # --- per stream -----------------------------------------------------------------------

    def _refusal(self, stream: ProxyStream, node) -> str | None:
        """Why this hello may not register (None: it may)."""
        identity = stream.peer.identity
        if self.bundle is not None:
            if identity is None:
                return "hello: no mesh client certificate"
            if (node.namespace, node.service_account) != (identity.namespace, identity.service_account):
                return (f"hello: namespace {node.namespace!r} and service account {node.service_account!r} "
                        f"are not those of the client certificate ({identity.uri})")
            if self.max_per_identity and self._per_identity.get(identity, 0) >= self.max_per_identity:
                return f"{identity.uri} already has {self.max_per_identity} streams open"
        if node.workload_group:
            groups = self.generation.config.workload_groups if self.generation is not None else ()
            refused = autoregistration.refusal(node, groups)
            if refused is not None:
                self.metrics.autoreg_errors.inc()
                return refused
        return self.registry.refusal(node)

    def _hello(self, stream: ProxyStream, hello: Hello) -> None:
        node = hello.node
        refusal = self._refusal(stream, node)
        if refusal is not None:
            self.metrics.refused.inc()
            return stream.fail(refusal)
        if not self.registry.has_room(node.id):
            return stream.fail(f"the registry is full ({self.registry.max_nodes} proxies)")
        identity = stream.peer.identity
        if identity is not None:
            self._per_identity[identity] = self._per_identity.get(identity, 0) + 1
        if self.bundle is not None:
            stream.send_bundle(self.bundle())
        session = stream.session = ProxySession(node, hello.last_version)
        session.identity = identity
        self.records[node.id] = session
        self.registry.connect(node)
        self.metrics.connected.inc()
        if node.workload_group:
            self.metrics.autoreg_success.inc()
            log.info("auto-registered WorkloadEntry %s/%s", node.namespace,
                     autoregistration.entry_name(node.workload_group, node.addresses[0]))
        if identity is None:
            self.metrics.insecure.inc()
        log.info("proxy %s (%s/%s, %s) connected, serving version %s", node.id, node.namespace, node.workload,
                 identity.uri if identity else "no identity: --insecure", visible(hello.last_version or "none", 100))
        wait = self.warmup_until - self._clock()
        if hello.last_version is not None and wait > 0:
            # it serves its last good config meanwhile; an early snapshot could lack endpoints
            # of proxies that have not reconnected yet
            stream.held = True
            asyncio.get_running_loop().call_later(wait, self._release, stream)
        else:
            self._send_snapshot(stream)

    def _release(self, stream: ProxyStream) -> None:
        stream.held = False
        if stream in self._streams:
            self._send_snapshot(stream)

    def _send_snapshot(self, stream: ProxyStream) -> None:
        generation = self.generation
        if generation is None or stream.session is None:
            return
        stream.send(stream.session.snapshot(str(generation.version), self._view(stream.session)))

    def _view(self, session: ProxySession) -> model.MeshConfig:
        key = view_key(session.node)
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = self._builder.view(session.node)
        return view

    def _ack(self, stream: ProxyStream, msg: Ack) -> None:
        if stream.session.ack(msg):
            self.convergence.answered(stream, int(msg.version))

    def _nack(self, stream: ProxyStream, msg: Nack) -> None:
        session = stream.session
        pushed = session.pushed_version
        if not session.nack(msg):
            self.metrics.nacks.inc()
            return  # not for the last push: not logged either, so repeating one cannot flood the log
        self.metrics.rejected(session.pushed_type)
        log.warning("proxy %s NACKed version %s: %s", session.node.id, pushed, visible(msg.error))
        self.convergence.answered(stream, int(pushed))
        if session.stale_base(msg):
            self._send_snapshot(stream)

    def _closed(self, stream: ProxyStream) -> None:
        if stream not in self._streams:
            return
        self._streams.discard(stream)
        self.convergence.gone(stream)
        session = stream.session
        identity = stream.peer.identity
        if session is not None and identity is not None:
            left = self._per_identity.pop(identity) - 1
            if left:
                self._per_identity[identity] = left
        if session is not None:
            session.connected = False
            self.metrics.connected.dec()
            self.registry.disconnect(session.node.id)
            if session.node.workload_group:
                self.metrics.autoreg_unregister.inc()
            log.info("proxy %s disconnected", session.node.id)


class ProxyStream:
    """One proxy's stream: routes its messages and sends through its peer."""

    def __init__(self, hub: Hub, peer: Peer):
        self.hub = hub
        self.peer = peer
        self.session: ProxySession | None = None
        self.held = False

    def received(self, msg: object) -> None:
        if isinstance(msg, InvalidMessage):
            return self.fail(f"invalid {msg.type} message: {msg.error}")
        if isinstance(msg, Hello):
            if self.session is not None:
                return self.fail("hello sent twice on one stream")
            problem = check_node(msg.node)
            if problem is not None:
                return self.fail(f"hello: {problem}")
            return self.hub._hello(self, msg)
        if self.session is None:
            return self.fail(f"{getattr(msg, 'TYPE', type(msg).__name__)} before hello")
        if isinstance(msg, Ack):
            return self.hub._ack(self, msg)
        if isinstance(msg, Nack):
            return self.hub._nack(self, msg)
        if isinstance(msg, HealthMessage):
            return self.hub.registry.set_health(self.session.node.id, msg.healthy, msg.message)
        self.fail(f"a proxy may not send {msg.TYPE} messages")

    def closed(self) -> None:
        self.hub._closed(self)

    def send(self, msg: SnapshotMessage | EndpointsMessage) -> bool:
        started = time.perf_counter()
        try:
            data = self.hub.encode(msg)
        except (WireError, TypeError, ValueError) as exc:
            self.hub.metrics.push_failed()
            log.error("cannot encode %s %s for %s: %s", msg.TYPE, msg.version, self.session.node.id, exc)
            return False
        if not self.peer.send(data, supersedes=isinstance(msg, SnapshotMessage)):
            self.hub.metrics.push_failed()
            return False
        self.hub.metrics.pushed(msg.TYPE, len(data), time.perf_counter() - started)
        return True

    def send_bundle(self, roots_pem: bytes) -> None:
        self.peer.send(encode_message(TrustBundleMessage(roots_pem.decode("ascii"))), supersedes=False)

    def fail(self, error: str) -> None:
        """End the stream with `error` (it may quote the client's text: shown escaped)."""
        error = visible(error)
        if self.session is not None:
            log.warning("closing the stream of %s: %s", self.session.node.id, error)
        elif (skipped := self.hub.throttle.allow("refused", self.hub._clock())) is not None:
            more = f" ({skipped} more refused streams not logged)" if skipped else ""
            log.warning("closing the stream of a proxy: %s%s", error, more)
        self.peer.close(error)


def _record(session: ProxySession, health: tuple[bool, str] | None, groups: tuple) -> dict:
    node = session.node
    registration = {}
    if node.workload_group:
        entry, why = autoregistration.registered(node, groups, health, {})
        registration = {"workload_group": node.workload_group,
                        "workload_entry": entry.metadata.name if entry else None, "not_registered": why or None,
                        "health": None if health is None else {"healthy": health[0], "message": health[1]}}
    return {
        "id": node.id,
        "workload": node.workload,
        "namespace": node.namespace,
        "service_account": node.service_account,
        "identity": session.identity.uri if session.identity else None,  # from its certificate
        "addresses": list(node.addresses),
        "connected": session.connected,
        "pushed_version": session.pushed_version,
        "acked_version": session.acked_version,
        "state": session.state,
        "error": session.error,
        **registration,
    }
