"""Custom resources as the control server's second config source (a `store.Source`): one unit
per object, like a file. An object is validated on its own (pymesh.kube.custom_resources); an
invalid object, or an invalid update of a valid one, is rejected and the LAST GOOD version of
that object stays in force. Rejections are reported in `pymesh control status`, as a Warning
Event regarding the object, and in its status (Istio kinds: Istio's validation message and a
condition); the Gateway API's computed statuses are written to their objects.

Only what an object configures counts as a change (`configured`): a status-only update, ours
included, neither reloads nor writes again, so our own writes cannot loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable, Sequence

from pymesh.api import limits as input_limits, model
from pymesh.api.errors import ConfigError
from pymesh.api.limits import Limits
from pymesh.api.load import LoadResult
from pymesh.api.offload import OffloadFailed, run_in_child
from pymesh.api.resources import GATEWAY_API_GROUP
from pymesh.control.kube.informer import Informer
from pymesh.control.kube.status_writer import StatusWriter
from pymesh.control.store import settle
from pymesh.kube import config_status
from pymesh.kube.custom_resources import (
    CRDS, CUSTOM_RESOURCES, CustomResource, configured, crd_serves, load_object, source_name,
)
from pymesh.kube.resources import EVENTS, ResourceType
from pymesh.routing.gateway_api.conditions import ObjectStatus

log = logging.getLogger("pymesh.control.kube")

Key = tuple[str, str, str, str]  # API group, kind, namespace, name


@dataclass
class ObjectUnit:
    name: str  # "VirtualService default/reviews"
    resource: CustomResource
    served: ResourceType  # the version it was read at (and its status is written to)
    obj: dict  # the newest version seen (its status and resourceVersion current)
    configured: dict  # what it configures: a change of this is a change of the object
    good: model.MeshConfig | None = None
    errors: list[ConfigError] = field(default_factory=list)


class CustomResourceSource:
    """The objects of `caches` (informers, one per config kind) as units; `notify` is called
    when what they configure changed (the control server's watcher gathers bursts)."""

    def __init__(self, caches: Sequence[tuple[CustomResource, object]], notify: Callable[[], None],
                 limits: Limits = input_limits.DEFAULT, writer: StatusWriter | None = None,
                 client: object = None, instance: str = "", clock: Callable[[], float] = time.time):
        self._caches = list(caches)
        self._notify = notify
        self._limits = limits
        self._units: dict[Key, ObjectUnit] = {}
        self._seen: dict[Key, dict] = {}  # what each object configured when last looked at
        self._memo: dict[Key, tuple[object, dict]] = {}  # resourceVersion -> configured, per object
        self._reporter = _Reporter(writer, client, instance or socket.gethostname(), clock) if writer else None

    def on_change(self) -> None:
        """For the informers: notify only when an object's configuration changed."""
        current = {key: conf for key, (*_, conf) in self._current().items()}
        if current != self._seen:
            self._seen = current
            self._notify()

    def units(self) -> Iterable[ObjectUnit]:
        return [self._units[key] for key in sorted(self._units)]

    def resources(self) -> list[dict]:
        """For `pymesh control status`: each rejected object, by kind, namespace and name."""
        return [{"kind": unit.resource.kind.name, "group": key[0], "namespace": key[2], "name": key[3],
                 "errors": [str(e) for e in unit.errors]}
                for key, unit in sorted(self._units.items()) if unit.errors]

    def reload(self) -> list[tuple[str, list[ConfigError]]]:
        changed = self._changed()
        return self._apply(changed, [load_object(obj, self._limits) for *_, obj in changed])

    async def reload_isolated(self) -> list[tuple[str, list[ConfigError]]]:
        """`reload`, the changed objects loaded in one child process (each in its own if that fails)."""
        changed = self._changed()
        objects = [obj for *_, obj in changed]
        if not objects:
            return self._apply([], [])
        try:
            results = await run_in_child(_load_all, objects, self._limits, timeout=self._limits.load_timeout)
        except OffloadFailed:
            results = [await self._load_one(obj) for obj in objects]
        return self._apply(changed, results)

    async def _load_one(self, obj: dict) -> LoadResult:
        try:
            (result,) = await run_in_child(_load_all, [obj], self._limits, timeout=self._limits.load_timeout)
        except OffloadFailed as error:
            return LoadResult(model.MeshConfig(), [ConfigError(source_name(obj), 0, "", str(error))])
        return result

    def report_gateway_api(self, statuses: Iterable[ObjectStatus]) -> None:
        """Write the Gateway API statuses the translation computed to the objects read from here."""
        if self._reporter is None:
            return
        for status in statuses:
            unit = self._units.get((GATEWAY_API_GROUP, status.kind, status.namespace, status.name))
            if unit is not None and not unit.errors:  # else the status is its last good version's: left as is
                self._reporter.gateway_api(unit, status)

    def _current(self) -> dict[Key, tuple[CustomResource, ResourceType, dict, dict]]:
        """Every object in the caches (its kind and apiVersion filled in from its cache when the
        list left them out), with what it configures."""
        out = {}
        for resource, cache in self._caches:
            watched = cache.resource
            for obj in cache.objects():
                if not isinstance(obj, dict):
                    continue
                obj = {"apiVersion": watched.api_version, "kind": watched.kind, **obj}
                metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
                key = (resource.group, resource.kind.name, str(metadata.get("namespace") or ""),
                       str(metadata.get("name") or ""))
                out[key] = (resource, watched, obj, self._configured(key, obj, metadata.get("resourceVersion")))
        for key in self._memo.keys() - out.keys():
            del self._memo[key]
        return out

    def _configured(self, key: Key, obj: dict, version: object) -> dict:
        """`configured(obj)`, the same dict again while the object's resourceVersion is, so that
        comparing all objects after each watch event is mostly comparing references."""
        held = self._memo.get(key)
        if held is not None and version is not None and held[0] == version:
            return held[1]
        conf = configured(obj)
        self._memo[key] = (version, conf)
        return conf

    def _changed(self) -> list[tuple[Key, CustomResource, ResourceType, dict]]:
        """Forget deleted objects, refresh every unit's object; the new and changed ones."""
        current = self._current()
        self._seen = {key: conf for key, (*_, conf) in current.items()}
        for key in self._units.keys() - current.keys():
            log.info("%s: deleted", self._units.pop(key).name)
            if self._reporter is not None:
                self._reporter.forget(key)
        changed = []
        for key, (resource, served, obj, conf) in current.items():
            unit = self._units.get(key)
            if unit is not None and unit.configured == conf:
                unit.obj, unit.served = obj, served
            else:
                changed.append((key, resource, served, obj))
        return changed

    def _apply(self, changed: list[tuple[Key, CustomResource, ResourceType, dict]],
               results: list[LoadResult]) -> list[tuple[str, list[ConfigError]]]:
        rejected = []
        for (key, resource, served, obj), result in zip(changed, results):
            previous = self._units.get(key)
            name = source_name(obj)
            good, errors = settle(name, previous.good if previous else None, result)
            self._units[key] = ObjectUnit(name, resource, served, obj, configured(obj), good, errors)
            if errors:
                rejected.append((name, errors))
        if self._reporter is not None:
            for unit in self._units.values():
                self._reporter.validation(unit)
        return rejected


def _load_all(objects: list[dict], limits: Limits) -> list[LoadResult]:
    return [load_object(obj, limits) for obj in objects]


class _Reporter:
    """Per-object rejections and Gateway API statuses -> queued writes, each only when it would
    change what the object has (or what we last sent: the watch may not have shown it yet)."""

    def __init__(self, writer: StatusWriter, client, instance: str, clock: Callable[[], float]):
        self._writer, self._client, self._instance, self._clock = writer, client, instance, clock
        self._sent: dict[Key, dict] = {}  # the status last written to each object, without timestamps
        self._evented: dict[Key, tuple] = {}  # the errors of each object's last Event

    def validation(self, unit: ObjectUnit) -> None:
        key = _key(unit)
        errors = tuple(unit.errors)
        if errors and self._evented.get(key) != errors:
            self._evented[key] = errors
            event = config_status.rejection_event(unit.obj, errors, unit.good is not None, self._clock(),
                                                  self._instance)
            self._writer.offer(("event", key), f"an Event regarding {unit.name}",
                               self._unless_failed(self._evented, key, lambda: self._client.create(EVENTS, event)))
        elif not errors:
            self._evented.pop(key, None)
        if unit.resource.group != GATEWAY_API_GROUP:
            self._status(unit, config_status.istio_status(unit.obj, errors, unit.good is not None, self._clock()))

    def forget(self, key: Key) -> None:
        self._sent.pop(key, None)
        self._evented.pop(key, None)

    def gateway_api(self, unit: ObjectUnit, computed: ObjectStatus) -> None:
        self._status(unit, config_status.gateway_api_status(unit.obj, computed, self._clock()))

    def _status(self, unit: ObjectUnit, status: dict) -> None:
        key = _key(unit)
        current = unit.obj.get("status") if isinstance(unit.obj.get("status"), dict) else {}
        if status == current or _timeless(status) == self._sent.get(key):
            return
        self._sent[key] = _timeless(status)
        resource = unit.served
        namespace, name = key[2], key[3]
        # a JSON merge patch (what a CRD's status takes) deletes a field only when it is null
        patch = {"status": {**{k: None for k in current if k not in status}, **status}}
        self._writer.offer(("status", key), f"the status of {unit.name}", self._unless_failed(
            self._sent, key, lambda: self._client.patch(resource, name, patch, namespace or None, subresource="status")))

    @staticmethod
    def _unless_failed(memo: dict, key: Key, write: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        """`write`, forgetting that it was sent if it fails, so that the next update sends it again."""
        async def attempt() -> None:
            sent = memo.get(key)
            try:
                await write()
            except Exception:
                if memo.get(key) is sent:
                    memo.pop(key, None)
                raise
        return attempt


def _key(unit: ObjectUnit) -> Key:
    metadata = unit.obj.get("metadata") if isinstance(unit.obj.get("metadata"), dict) else {}
    return (unit.resource.group, unit.resource.kind.name, str(metadata.get("namespace") or ""),
            str(metadata.get("name") or ""))


def _timeless(value: object) -> object:
    """A status without its lastTransitionTimes, to compare two computed at different times."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if k != "lastTransitionTime"}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


class ServedVersion:
    """One config kind's ObjectCache at the newest version the API server serves: the newest is
    watched (the API server converts every stored object to it); while it is not served (a
    cluster with older CRDs), the next older one is tried, and so on. A version not served is
    asked for again slowly by its informer, so a CRD installed or upgraded later is picked up."""

    def __init__(self, kind: CustomResource, make: Callable[[ResourceType], Informer]):
        self.kind = kind
        self._make = make
        self.informers = [make(kind.versions[0])]
        self.synced = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def resource(self) -> ResourceType:
        return self._active().resource

    def _active(self) -> Informer:
        return next((i for i in self.informers if i.synced.is_set() and not i.missing), self.informers[0])

    def objects(self) -> list[dict]:
        active = self._active()
        return [] if active.missing else active.objects()

    def status(self) -> dict:
        active = self._active()
        return {**active.status(), "group": active.resource.group, "version": active.resource.version}

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"versions of {self.kind.kind.name}")

    async def _run(self) -> None:
        self.informers[0].start()
        for version in self.kind.versions[1:]:
            await self.informers[-1].synced.wait()
            if not self.informers[-1].missing:
                break
            self.informers.append(self._make(version))
            self.informers[-1].start()
        await self.informers[-1].synced.wait()
        self.synced.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for informer in self.informers:
            await informer.stop()

    @property
    def missing(self) -> bool:
        return self._active().missing

    async def retry(self) -> None:
        """Ask again now for the versions not served (their CRD was just installed or changed)."""
        for informer in self.informers:
            if informer.missing:
                await informer.stop()
                informer.start()


class CustomResources:
    """What `--kubernetes` adds for configuration: an informer on every config kind (a kind
    whose CRD is not installed is skipped and asked for again every `missing_retry` seconds, as
    Istio does), the source they feed, and the writer of statuses and Events."""

    def __init__(self, client, notify: Callable[[], None], limits: Limits = input_limits.DEFAULT,
                 missing_retry: float = 30.0, write_rate: float = 5.0, write_burst: int = 20, metrics=None):
        def informer(version: ResourceType) -> Informer:
            return Informer(client, version, self._on_change, metrics=metrics, missing_retry=missing_retry)

        self.writer = StatusWriter(write_rate, write_burst)
        self.kinds = [ServedVersion(kind, informer) for kind in CUSTOM_RESOURCES]
        self.source = CustomResourceSource([(kind.kind, kind) for kind in self.kinds], notify, limits,
                                           self.writer, client)
        self.crds = Informer(client, CRDS, self._crds_changed, metrics=metrics, missing_retry=missing_retry)
        self._writing: asyncio.Task | None = None
        self._retries: set[asyncio.Task] = set()

    def _on_change(self) -> None:
        self.source.on_change()

    def _crds_changed(self) -> None:
        """A kind not served whose CRD now serves it is asked for again at once, not in 30 s."""
        crds = self.crds.objects()
        for kind in self.kinds:
            if kind.missing and any(crd_serves(crd, kind.kind) for crd in crds):
                log.info("kubernetes: the CRD of %s.%s is installed; listing it", kind.resource.plural, kind.kind.group)
                task = asyncio.get_running_loop().create_task(kind.retry())
                self._retries.add(task)
                task.add_done_callback(self._retries.discard)

    async def start(self, sync_timeout: float = 30.0) -> None:
        """Start watching; return once every kind is listed (or missing), at most `sync_timeout`
        seconds, so the first configuration served is the cluster's, not an empty one."""
        for kind in self.kinds:
            kind.start()
        self.crds.start()  # not waited for: it only speeds up noticing CRDs installed later
        self._writing = asyncio.get_running_loop().create_task(self.writer.run(), name="kubernetes status writer")
        try:
            await asyncio.wait_for(asyncio.gather(*(k.synced.wait() for k in self.kinds)), sync_timeout)
        except asyncio.TimeoutError:
            waiting = [k.resource.plural for k in self.kinds if not k.synced.is_set()]
            log.error("kubernetes: %s not listed after %gs; serving without them until they are",
                      ", ".join(waiting), sync_timeout)

    async def stop(self) -> None:
        await self.crds.stop()
        for task in list(self._retries):
            task.cancel()
        await asyncio.gather(*self._retries, return_exceptions=True)
        for kind in self.kinds:
            await kind.stop()
        if self._writing is not None:
            self._writing.cancel()
            await asyncio.gather(self._writing, return_exceptions=True)

    def status(self) -> list[dict]:
        """Each kind's informer, for `pymesh control status`."""
        return [kind.status() for kind in self.kinds]
