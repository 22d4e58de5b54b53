"""Proxies that registered (said hello), as the WorkloadEntries the mesh sees.

A connected proxy is an endpoint of every ServiceEntry in its namespace whose workloadSelector
matches its labels, exactly as a WorkloadEntry written in YAML would be; the routing compiler
needs nothing new. When a proxy's last stream closes it stays for `grace` seconds, so a
reconnect (a control server restart, a network blip) does not flap endpoints everywhere.

A node id belongs to the identity (namespace, service account) that registered it, until it
leaves: another identity cannot take it, and the same identity cannot open a second stream for
it while the first is connected (a reconnect after the first is gone resumes it). With mTLS the
registered entries carry Istio's `security.istio.io/tlsMode: istio` label, so that client
sidecars pick mTLS for them.

A proxy that names a WorkloadGroup (Istio's VM auto-registration) stands for the entry its group's
template makes (pymesh.control.autoregistration), stays `entry_grace` seconds after it leaves
(Istio's PILOT_WORKLOAD_ENTRY_GRACE_PERIOD), and, when the group has a probe, is an endpoint only
while its last health report says healthy.

It holds at most `max_nodes` proxies: when a new one arrives with the registry full, the
disconnected proxy nearest the end of its grace period leaves early to make room, so proxies that
come and go under ever new ids cannot grow it (nor the saved state) without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Iterable

from pymesh.api import model
from pymesh.api.wire import Node
from pymesh.control import autoregistration
from pymesh.control.bounds import LogThrottle
from pymesh.control.escape import visible

log = logging.getLogger("pymesh.control.registry")

REGISTRY_SOURCE = model.Source(file="<registry>")
TLS_MODE_LABEL = "security.istio.io/tlsMode"
MAX_NODES = 10_000


def workload_entry(node: Node, mtls: bool = False, groups: tuple[model.WorkloadGroup, ...] = (),
                   health: tuple[bool, str] | None = None) -> model.WorkloadEntry | None:
    """The WorkloadEntry a registered proxy stands for; None without an address to reach it,
    or while its WorkloadGroup is gone, refuses it, or probes it unhealthy."""
    if not node.addresses:
        return None
    if node.workload_group:
        return autoregistration.registered(node, groups, health, {TLS_MODE_LABEL: "istio"} if mtls else {})[0]
    labels = {**node.labels, TLS_MODE_LABEL: "istio"} if mtls else node.labels
    return model.WorkloadEntry(
        metadata=model.Metadata(name=node.id, namespace=node.namespace, labels=labels, source=REGISTRY_SOURCE),
        spec=model.WorkloadEntrySpec(
            address=node.addresses[0], ports=node.ports, labels=labels, service_account=node.service_account
        ),
    )


class Registry:
    """Node id -> Node, with a count of open streams per id and a removal timer for the idle."""

    def __init__(self, grace: float, on_change: Callable[[], None], on_expire: Callable[[str], None] = lambda _: None,
                 mtls: bool = False, max_nodes: int = MAX_NODES, entry_grace: float | None = None,
                 on_entry_deleted: Callable[[], None] = lambda: None):
        self.grace = grace
        self.entry_grace = grace if entry_grace is None else entry_grace  # of auto-registered proxies
        self.mtls = mtls
        self.max_nodes = max_nodes
        self._on_change = on_change
        self._on_expire = on_expire
        self._on_entry_deleted = on_entry_deleted  # an auto-registered proxy's entry went after its grace
        self._nodes: dict[str, Node] = {}
        self._streams: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._health: dict[str, tuple[bool, str]] = {}  # node id -> its last report (healthy, why not)
        self._health_log = LogThrottle()

    def refusal(self, node: Node) -> str | None:
        """Why `node` may not connect now (None: it may): its id is another identity's, or
        connected already."""
        known = self._nodes.get(node.id)
        if known is not None and (known.namespace, known.service_account) != (node.namespace, node.service_account):
            return (f"node id {node.id!r} is registered by another identity "
                    f"({known.namespace}/{known.service_account})")
        if node.id in self._streams:
            return f"node id {node.id!r} is already connected (one stream per node id)"
        return None

    def has_room(self, node_id: str) -> bool:
        """Whether `node_id` can connect: it is known, there is room, or room can be made by
        letting the disconnected proxy due to leave first leave now."""
        if node_id in self._nodes or len(self._nodes) < self.max_nodes:
            return True
        if not self._timers:
            return False
        due = min(self._timers, key=lambda i: self._timers[i].when())
        log.warning("registry full (%d proxies): disconnected proxy %s leaves early", self.max_nodes, due)
        self._expire(due)
        return True

    def connect(self, node: Node) -> None:
        timer = self._timers.pop(node.id, None)
        if timer is not None:
            timer.cancel()
            log.info("proxy %s reconnected within the grace period", node.id)
        self._streams[node.id] = self._streams.get(node.id, 0) + 1
        if self._nodes.get(node.id) != node:
            self._nodes[node.id] = node
            self._on_change()

    def disconnect(self, node_id: str) -> None:
        left = self._streams.get(node_id, 0) - 1
        if left > 0:
            self._streams[node_id] = left
            return
        self._streams.pop(node_id, None)
        node = self._nodes.get(node_id)
        if node is not None and node_id not in self._timers:
            grace = self.entry_grace if node.workload_group else self.grace
            self._timers[node_id] = asyncio.get_running_loop().call_later(grace, self._expire, node_id)

    def set_health(self, node_id: str, healthy: bool, message: str) -> None:
        """A connected proxy's health report (kept through a reconnect in the grace period)."""
        if node_id in self._nodes and self._health.get(node_id) != (healthy, message):
            was = self._health.get(node_id)
            self._health[node_id] = (healthy, message)
            if was is None or was[0] != healthy:
                skipped = self._health_log.allow("health", time.monotonic())  # a flapping proxy floods nothing
                if skipped is not None:
                    log.info("proxy %s reports its application %s%s%s", node_id, "healthy" if healthy else "unhealthy",
                             "" if healthy else f": {visible(message, 200)}",
                             f" ({skipped} more health changes not logged)" if skipped else "")
                self._on_change()

    def health(self, node_id: str) -> tuple[bool, str] | None:
        return self._health.get(node_id)

    def restore(self, nodes: Iterable[Node], health: dict[str, tuple[bool, str]] | None = None) -> None:
        """Nodes known before a restart (with their last health reports): present, but leaving
        after the grace unless they reconnect (at most max_nodes of them)."""
        for node in nodes:
            if len(self._nodes) >= self.max_nodes:
                log.warning("saved state has more than %d proxies; the rest are not restored", self.max_nodes)
                break
            self._nodes[node.id] = node
            if health and node.id in health:
                self._health[node.id] = health[node.id]
            self.disconnect(node.id)
        self._on_change()

    def healths(self) -> dict[str, tuple[bool, str]]:
        return dict(self._health)

    def connected(self, node_id: str) -> bool:
        return node_id in self._streams

    def nodes(self) -> list[Node]:
        return [self._nodes[k] for k in sorted(self._nodes)]

    def entries(self, groups: tuple[model.WorkloadGroup, ...] = ()) -> tuple[model.WorkloadEntry, ...]:
        """The registered proxies' entries; of two auto-registered ones with the same name (a
        VM's proxy restarted under a new node id while its old one is in its grace period) the
        connected one, as Istio keys an auto-registered entry by group and address."""
        chosen: dict[tuple[str, str], tuple[str, model.WorkloadEntry]] = {}
        for node in sorted(self.nodes(), key=lambda n: not self.connected(n.id)):  # stable: by id within
            entry = workload_entry(node, self.mtls, groups, self._health.get(node.id))
            if entry is not None:
                chosen.setdefault((entry.metadata.namespace, entry.metadata.name), (node.id, entry))
        return tuple(entry for _, entry in sorted(chosen.values(), key=lambda item: item[0]))

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _expire(self, node_id: str) -> None:
        timer = self._timers.pop(node_id, None)
        if timer is not None:
            timer.cancel()
        node = self._nodes.pop(node_id, None)
        self._health.pop(node_id, None)
        log.info("proxy %s left (not reconnected within its grace period)", node_id)
        self._on_change()
        self._on_expire(node_id)
        if node is not None and node.workload_group:
            self._on_entry_deleted()
