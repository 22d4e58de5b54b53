"""One proxy's side of the protocol on the server, without I/O: what to push it for a new view,
and what its ACKs and NACKs mean.

A proxy is pushed only when its view changed. When only the workload entries changed and it has
ACKed the last push, an endpoints message (just the new entries) is enough; otherwise the full
snapshot. A NACK starting "stale base" means the proxy does not hold the endpoints message's
base, and is answered with the full snapshot.
"""

from __future__ import annotations

import secrets
from dataclasses import replace

from pymesh.api import model
from pymesh.api.wire import STALE_BASE, Ack, EndpointsMessage, Nack, Node, SnapshotMessage

SYNCED, STALE, NACKED = "SYNCED", "STALE", "NACKED"


def new_nonce() -> str:
    return secrets.token_hex(8)


def endpoints_only(old: model.MeshConfig, new: model.MeshConfig) -> bool:
    """Whether two views differ at most in their workload entries."""
    return replace(old, workload_entries=()) == replace(new, workload_entries=())


class ProxySession:
    def __init__(self, node: Node, last_version: str | None = None):
        self.node = node
        self.last_version = last_version  # what the proxy said it served at hello
        self.connected = True
        self.pushed_version: str | None = None
        self.pushed_nonce: str | None = None
        self.pushed_type: str | None = None  # of the last push: "snapshot" or "endpoints"
        self.view: model.MeshConfig | None = None  # of the last push
        self.acked_version: str | None = None
        self.error: str | None = None  # the NACK of the last push, if it was NACKed
        self.identity = None  # the SpiffeId of its client certificate (None: --insecure)

    @property
    def state(self) -> str:
        if self.error is not None:
            return NACKED
        if self.pushed_version is not None and self.acked_version == self.pushed_version:
            return SYNCED
        return STALE

    def push(self, version: str, view: model.MeshConfig) -> SnapshotMessage | EndpointsMessage | None:
        """The message for a new generation, or None when this proxy's view did not change."""
        if self.view is not None and view == self.view:
            return None
        if self.view is not None and self.state == SYNCED and endpoints_only(self.view, view):
            return self._pushed(view, EndpointsMessage(version, new_nonce(), self.pushed_version, view.workload_entries))
        return self.snapshot(version, view)

    def snapshot(self, version: str, view: model.MeshConfig) -> SnapshotMessage:
        return self._pushed(view, SnapshotMessage(version, new_nonce(), view))

    def ack(self, msg: Ack) -> bool:
        """Whether the ACK is for the last push (an ACK of an older push is stale and ignored)."""
        if msg.nonce != self.pushed_nonce or msg.version != self.pushed_version:
            return False
        self.acked_version, self.error = msg.version, None
        return True

    def nack(self, msg: Nack) -> bool:
        """Whether the NACK is for the last push; `stale_base` tells whether to resend in full."""
        if msg.nonce != self.pushed_nonce:
            return False
        self.error = msg.error or "rejected (no error given)"
        return True

    @staticmethod
    def stale_base(msg: Nack) -> bool:
        return msg.error.startswith(STALE_BASE)

    def _pushed(self, view, msg):
        self.pushed_version, self.pushed_nonce, self.view, self.error = msg.version, msg.nonce, view, None
        self.pushed_type = msg.TYPE
        return msg
