"""The one error a codec raises for malformed or oversized input."""

from __future__ import annotations


class ProtocolError(Exception):
    """Malformed or oversized input: the status to answer with, and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
