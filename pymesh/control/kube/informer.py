"""An informer: the API server's objects of one resource type, cached and kept current, as
client-go's Reflector does it. List (paginated) then watch from the list's resourceVersion; each
ADDED/MODIFIED/DELETED changes the cache and calls on_change(); BOOKMARK only moves the
resourceVersion on. A watch that ends or drops resumes from the last resourceVersion seen, so
nothing is lost and nothing applied twice; 410 Gone (as an HTTP status or an ERROR event) means
that version is compacted away: relist and replace the cache. Errors back off (bounded, jittered);
a resource type the server does not serve (404: a CRD not installed) is reported once, counts as
synced and empty, and is asked for again slowly."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Callable

import aiohttp

from pymesh.control.kube.client import KubeApiError, KubeClient, WATCH_TIMEOUT
from pymesh.kube.resources import ResourceType

log = logging.getLogger("pymesh.control.kube")


@dataclass(frozen=True)
class Backoff:
    """Exponential with full jitter around the step, capped (client-go: 800ms to 30s)."""

    initial: float = 0.2
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5  # the delay is step * (1 - jitter .. 1 + jitter)

    def delay(self, failures: int) -> float:
        step = min(self.maximum, self.initial * self.factor ** max(0, failures - 1))
        return min(self.maximum, step * random.uniform(1 - self.jitter, 1 + self.jitter))


class Gone(Exception):
    """The watch's resourceVersion is no longer in the server's history."""


def stripped(obj: dict) -> dict:
    """The object without metadata.managedFields (often half its size, read by no consumer), as
    Istio's informers strip it."""
    metadata = obj.get("metadata")
    if isinstance(metadata, dict) and "managedFields" in metadata:
        return {**obj, "metadata": {k: v for k, v in metadata.items() if k != "managedFields"}}
    return obj


def object_key(obj: dict) -> tuple[str, str]:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


class Informer:
    """The ObjectCache of one resource type (in `namespace`, or all), fed by list and watch."""

    def __init__(self, client: KubeClient, resource: ResourceType, on_change: Callable[[], None],
                 namespace: str | None = None, metrics=None, page_size: int = 500,
                 backoff: Backoff = Backoff(), missing_retry: float = 30.0,
                 watch_timeout: int = WATCH_TIMEOUT) -> None:
        self.resource, self.namespace = resource, namespace
        self.synced = asyncio.Event()
        self.missing = False  # the server does not serve this type (404)
        self.last_error: str | None = None
        self.resource_version: str | None = None
        self._client, self._on_change, self._metrics = client, on_change, metrics
        self._page_size, self._backoff, self._missing_retry = page_size, backoff, missing_retry
        self._watch_timeout = watch_timeout
        self._cache: dict[tuple[str, str], dict] = {}
        self._progress = False  # an event arrived on the current watch
        self._task: asyncio.Task | None = None

    def objects(self) -> list[dict]:
        return list(self._cache.values())

    def status(self) -> dict:
        """For `pymesh control status`: synced, objects, last error."""
        return {"resource": self.resource.plural, "namespace": self.namespace or "", "synced": self.synced.is_set(),
                "missing": self.missing, "objects": len(self._cache), "resourceVersion": self.resource_version or "",
                "lastError": self.last_error or ""}

    def start(self) -> asyncio.Task:
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"informer {self.resource.plural}")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _count(self, name: str, **labels: str) -> None:
        if self._metrics is not None:
            getattr(self._metrics, name).labels(resource=self.resource.plural, **labels).inc()

    async def run(self) -> None:
        """List and watch until cancelled."""
        failures = 0
        while True:
            self._progress, listed = False, self.resource_version is None
            try:
                if listed:
                    await self._relist()
                await self._watch()
                self._count("kube_watch_restarts", reason="ended")
                if self._progress:  # a watch the server ended cleanly: resume at once
                    failures = 0
                else:  # ended with nothing in it (not even a bookmark): as client-go, not in a tight loop
                    failures += 1
                    await asyncio.sleep(self._backoff.delay(failures))
            except Gone:
                log.info("kubernetes: %s: resourceVersion %s is gone, relisting", self.resource.plural,
                         self.resource_version)
                self.resource_version = None
                self._count("kube_watch_restarts", reason="gone")
                if listed and not self._progress:  # gone right after a list: no relisting in a tight loop
                    failures += 1
                    await asyncio.sleep(self._backoff.delay(failures))
            except KubeApiError as error:
                if error.status == 404:
                    self.resource_version = None
                    self._not_served(error)
                    await asyncio.sleep(self._missing_retry)
                    continue
                failures += 1
                await self._failed(error, failures)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as error:
                failures += 1
                await self._failed(error, failures)
            except Exception as error:  # a malformed object must not end the informer: log, back off, relist
                log.exception("kubernetes: %s: unexpected error", self.resource.plural)
                self.resource_version = None
                failures += 1
                await self._failed(error, failures)

    def _not_served(self, error: KubeApiError) -> None:
        if not self.missing:
            log.warning("kubernetes: the API server does not serve %s (%s): is its CRD installed? Asking again "
                        "every %gs", self.resource.path(), error, self._missing_retry)
        self.missing, self.last_error = True, str(error)
        if self._cache:
            self._cache.clear()
            self._on_change()
        self.synced.set()

    async def _failed(self, error: Exception, failures: int) -> None:
        self.last_error = f"{type(error).__name__}: {error}"
        delay = self._backoff.delay(failures)
        log.warning("kubernetes: %s: %s; retrying in %.2fs", self.resource.plural, self.last_error, delay)
        self._count("kube_watch_restarts", reason="error")
        await asyncio.sleep(delay)

    async def _relist(self) -> None:
        # a 410 here (a continue token expired between pages) backs off and lists again from the start
        listed = await self._client.list_all(self.resource, self.namespace, self._page_size)
        fresh = {object_key(obj): stripped(obj) for obj in listed.get("items") or []}
        changed = fresh != self._cache
        for _ in self._cache.keys() - fresh.keys():  # gone while we were not watching
            self._count("kube_events", type="DELETED")
        self._cache = fresh
        self.resource_version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
        self.missing, self.last_error = False, None
        self._count("kube_relists")
        first = not self.synced.is_set()
        self.synced.set()
        if changed or first:
            self._on_change()

    async def _watch(self) -> None:
        try:
            async for event in self._client.watch(self.resource, self.resource_version, self.namespace,
                                                  self._watch_timeout):
                self._apply(event)
        except KubeApiError as error:
            if error.gone:
                raise Gone() from None
            raise

    def _apply(self, event: dict) -> None:
        kind, obj = event.get("type"), stripped(event["object"])
        if kind == "ERROR":
            error = KubeApiError.from_status(obj)
            if error.gone:
                raise Gone()
            raise error
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK") or not version:
            raise KubeApiError(200, "BadResponse", f"a watch event of {self.resource.plural}: type {kind!r}, "
                                                   f"resourceVersion {version!r}")
        self.resource_version = str(version)
        self._progress = True
        if kind == "BOOKMARK":
            return
        self._count("kube_events", type=kind)
        key = object_key(obj)
        if kind == "DELETED":
            if self._cache.pop(key, None) is None:
                return
        else:
            held = self._cache.get(key)
            if held is not None and (held.get("metadata") or {}).get("resourceVersion") == version:
                return  # this very version is already in
            self._cache[key] = obj
        self._on_change()
