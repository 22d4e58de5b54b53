"""Writes to the API server about the custom resources the control server reads: status
subresources and Events. Writes are queued by target, the latest wins (a status computed twice
before it is written is written once), and sent at most `rate` per second (bursts of `burst`),
so a flapping object or a thousand objects changing at once cannot become a write storm. A
write that fails is logged and dropped: the next change computes it again."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Hashable

log = logging.getLogger("pymesh.control.kube")

Write = Callable[[], Awaitable[object]]


class TokenBucket:
    """The pure part: `take(now)` is 0 when a write may go now, else the seconds to wait."""

    def __init__(self, rate: float, burst: int, now: float):
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = float(burst), now

    def take(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class StatusWriter:
    def __init__(self, rate: float = 5.0, burst: int = 20, clock: Callable[[], float] = time.monotonic):
        self._bucket = TokenBucket(rate, burst, clock())
        self._clock = clock
        self._pending: dict[Hashable, tuple[str, Write]] = {}
        self._wake = asyncio.Event()
        self.written = 0
        self.failed = 0

    def offer(self, target: Hashable, what: str, write: Write) -> None:
        """Queue `write` for `target` (replacing one queued and not sent yet); `what` names it in logs."""
        self._pending.pop(target, None)  # to the back of the queue: its newest version goes last
        self._pending[target] = (what, write)
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        """Send queued writes until cancelled."""
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            delay = self._bucket.take(self._clock())
            if delay:
                await asyncio.sleep(delay)
                continue
            target = next(iter(self._pending))
            what, write = self._pending.pop(target)
            try:
                await write()
                self.written += 1
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the API server's refusal, a dropped connection: the next change retries
                self.failed += 1
                log.warning("kubernetes: cannot write %s: %s", what, error)
