"""Helpers for the asyncio side of the Kubernetes tests: a client on the stand-in's kubeconfig,
and waiting for an informer's on_change() until a condition holds (bounded, event driven)."""

from __future__ import annotations

import asyncio
from typing import Callable

from pymesh.control.kube.client import KubeClient

WAIT = 10.0


class Changes:
    """An on_change() callback that counts calls and wakes waiters."""

    def __init__(self) -> None:
        self.count = 0
        self._event = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self._event.set()

    async def until(self, predicate: Callable[[], object], what: str, timeout: float = WAIT):
        """Wait (woken by each change) until `predicate()` is truthy; its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (value := predicate()):
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), min(left, 0.2))
            except asyncio.TimeoutError:
                pass  # predicates may also read the stand-in's state, which wakes nobody
        return value


def run(coro, timeout: float = 60.0):
    """asyncio.run with a bound on the whole test body."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def client_for(apiserver) -> KubeClient:
    return await KubeClient.connect(apiserver.kubeconfig)
