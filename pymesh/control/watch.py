"""Change detection for the control server: poll the config directory, gather bursts of changes.

Editors and `kubectl cp` write a file in several steps and people save several files at once, so
changes are gathered into one burst and applied when things have been quiet for `quiet` seconds,
or at the latest `max_delay` after the burst's first change. Polling stat() needs no dependency
and works on every filesystem, bind mounts and ConfigMap volumes included.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Awaitable, Callable

log = logging.getLogger("pymesh.control.watch")


class Burst:
    """The pure part: change events in, "apply now" out (with the time of the first event)."""

    def __init__(self, quiet: float, max_delay: float):
        self.quiet = quiet
        self.max_delay = max(max_delay, quiet)
        self.first: float | None = None
        self.last = 0.0

    def event(self, now: float) -> None:
        if self.first is None:
            self.first = now
        self.last = now

    def deadline(self) -> float | None:
        """When the burst is due, or None when there is none."""
        if self.first is None:
            return None
        return min(self.last + self.quiet, self.first + self.max_delay)

    def take(self, now: float) -> float | None:
        """The first event's time if the burst is due (and starts a new one), else None."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        first, self.first = self.first, None
        return first


class Watcher:
    """Runs `poll` every `interval` seconds (True = something changed) and calls `apply(first)`
    once per burst, awaiting it if it is a coroutine function (one that loads off the loop);
    `notify()` adds an event from elsewhere (a proxy connecting, leaving). Nothing `poll` or
    `apply` raises stops the watching."""

    def __init__(self, poll: Callable[[], bool], apply: Callable[[float], Awaitable[None] | None],
                 quiet: float, max_delay: float,
                 interval: float = 0.1, clock: Callable[[], float] = time.monotonic):
        self._poll = poll
        self._apply = apply
        self._burst = Burst(quiet, max_delay)
        self._interval = interval
        self._clock = clock
        self._wake = asyncio.Event()

    def notify(self) -> None:
        self._burst.event(self._clock())
        self._wake.set()

    async def run(self) -> None:
        while True:
            now = self._clock()
            try:
                if self._poll():
                    self._burst.event(now)
            except Exception:
                log.exception("polling the configuration directory failed")
            first = self._burst.take(now)
            if first is not None:
                try:
                    done = self._apply(first)
                    if inspect.isawaitable(done):
                        await done
                except Exception:  # a bug in one apply must not stop watching
                    log.exception("applying a configuration change failed")
            timeout = self._interval
            deadline = self._burst.deadline()
            if deadline is not None:
                timeout = min(timeout, max(0.0, deadline - self._clock()))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass
