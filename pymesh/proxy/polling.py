"""A look at some files every few seconds, on the running loop: how the proxy notices a rotated
certificate (pymesh.proxy.certs) or a changed gateway credential (pymesh.proxy.gateway_tls)
without an inotify dependency. A look that raises is logged; the next one still runs."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

log = logging.getLogger("pymesh.proxy")


class Poller:
    def __init__(self, look: Callable[[], object], interval: float, what: str) -> None:
        self.look = look
        self.interval = interval
        self.what = what  # for the log: "the certificates in /etc/certs"
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.look()
            except Exception:  # a bug must not stop the watch: the next look may succeed
                log.exception("looking at %s failed; still watching", self.what)
