"""Publishes the mesh root as the `pymesh-ca-root-cert` ConfigMap in every namespace (istiod's
NamespaceController for `istio-ca-root-cert`), so an injected pod can mount the root that
verifies the control server before it has a certificate.

An informer on Namespaces says which exist; each new one gets the ConfigMap at once (created,
or patched when it holds something else). Every `resync` seconds each namespace is checked again,
which repairs a ConfigMap that was edited or deleted (a watch on every ConfigMap of the cluster
would cost more than it saves). Failures are logged and retried at the next change or resync.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

import aiohttp

from pymesh.control.kube.client import KubeApiError, KubeClient
from pymesh.control.kube.informer import Informer
from pymesh.kube import root_cert
from pymesh.kube.resources import CONFIG_MAPS, NAMESPACES

log = logging.getLogger("pymesh.control.kube")


class RootCertPublisher:
    def __init__(self, client: KubeClient, bundle: Callable[[], bytes], resync: float = 60.0, metrics=None):
        self._client = client
        self._bundle = bundle
        self.resync = resync
        self._wake = asyncio.Event()
        self.namespaces = Informer(client, NAMESPACES, self._wake.set, metrics=metrics)
        self._done: dict[str, str] = {}  # namespace -> the bundle its ConfigMap was seen to hold
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self.namespaces.start()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="root cert publisher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.namespaces.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_resync = loop.time() + self.resync
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_resync - loop.time()))
            except asyncio.TimeoutError:
                self._done.clear()  # check every namespace again
                next_resync = loop.time() + self.resync
            self._wake.clear()
            await self.sync()

    async def sync(self) -> None:
        """Every namespace not yet seen holding the current bundle: create or patch its ConfigMap."""
        bundle = self._bundle().decode("ascii")
        names = {name for ns in self.namespaces.objects() if (name := root_cert.wanted(ns))}
        for gone in set(self._done) - names:
            del self._done[gone]
        for name in sorted(names):
            if self._done.get(name) == bundle:
                continue
            try:
                await self._publish(name, bundle)
                self._done[name] = bundle
            except (KubeApiError, aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                log.warning("kubernetes: cannot publish %s in namespace %s: %s (retried at the next change or in "
                            "%.0f s)", root_cert.NAME, name, exc, self.resync)

    async def _publish(self, namespace: str, bundle: str) -> None:
        try:
            existing = await self._client.get(CONFIG_MAPS, root_cert.NAME, namespace)
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            await self._client.create(CONFIG_MAPS, root_cert.config_map(namespace, bundle), namespace)
            log.info("kubernetes: %s created in namespace %s", root_cert.NAME, namespace)
            return
        change = root_cert.patch(existing, bundle)
        if change is not None:
            await self._client.patch(CONFIG_MAPS, root_cert.NAME, change, namespace)
            log.info("kubernetes: %s updated in namespace %s", root_cert.NAME, namespace)
