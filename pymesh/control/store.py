"""The configuration directory, file by file, with each file's last good version kept in force.

A file is loaded and validated on its own (`pymesh analyze`'s loader), so one bad edit rejects that
file only: its previous good resources stay in force and every other file still applies. The mesh
configuration is the union of every file's last good resources, in sorted file order (the order
`pymesh analyze DIR` reads them). A deleted file takes its resources with it.

Files are loaded within the input limits (`pymesh.api.limits`); a file over one, or one whose
load runs out of time in its child process (`reload_isolated`, what the running server uses so
that a hostile file never stalls the event loop), is rejected like an invalid one, with the
error naming the file, the line and the limit.

Other sources of units (Kubernetes custom resources: one unit per object) plug in as `Source`s:
each keeps its own units' last good versions the same way, and the configuration is the union of
the files' and then every source's units.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from typing import Iterable, Protocol, Sequence

from pymesh.api import limits as input_limits, model
from pymesh.api.errors import ConfigError, ConfigInvalid
from pymesh.api.meshconfig import load_file as load_mesh_config
from pymesh.api.limits import LimitExceeded, Limits
from pymesh.api.load import LoadResult, _yaml_files, load_paths
from pymesh.api.offload import OffloadFailed, run_in_child
from pymesh.api.resources import ALL_KINDS, identity

log = logging.getLogger("pymesh.control.store")

COLLECTIONS = {kind.collection: kind.name for kind in ALL_KINDS if kind.collection}
Stamp = tuple[int, int, int]  # mtime_ns, size, inode: a file changed when any differs


@dataclass
class FileState:
    stamp: Stamp
    good: model.MeshConfig | None = None  # the last version that validated; None: never did
    errors: list[ConfigError] = field(default_factory=list)  # of the current version


class Unit(Protocol):
    """A piece of configuration validated on its own: a file, one custom resource."""

    good: model.MeshConfig | None  # its last good version; None: never was good
    errors: list[ConfigError]  # of its current version


class Source(Protocol):
    """A second source of units beside the directory. `reload` runs in-process (startup);
    `reload_isolated` loads off the event loop. Both return the units newly rejected."""

    def units(self) -> Iterable[Unit]: ...  # in a stable order: an earlier unit wins a name clash
    def reload(self) -> list[tuple[str, list[ConfigError]]]: ...
    async def reload_isolated(self) -> list[tuple[str, list[ConfigError]]]: ...


class ConfigStore:
    """`poll()` is cheap (stat calls) and says whether anything changed on disk; `reload()`
    reads the changed files and rebuilds `config`."""

    def __init__(self, directory: str | None, limits: Limits = input_limits.DEFAULT, mesh_config_path: str = "",
                 sources: Sequence[Source] = ()):
        self.directory = directory
        self.sources = tuple(sources)
        self.limits = limits
        # --mesh-config (istiod's mesh file): replaces any istio ConfigMap's; watched like the
        # directory, and a version that does not load leaves the last good one in force
        self.mesh_config_path = mesh_config_path
        self.mesh_config: model.IstioMeshConfig | None = None
        self._mesh_errors: list[ConfigError] = []
        self._mesh_stamp: tuple | None = None
        self.config = model.MeshConfig()
        self.conflicts: list[ConfigError] = []  # resources defined in two files: the later is ignored
        self._files: dict[str, FileState] = {}
        self._seen: dict[str, Stamp] = {}
        self._stamps: dict[str, Stamp] = {}  # of the files being loaded
        self._total = 0  # their size in bytes
        self._missing = False

    def add_source(self, source: Source) -> None:
        self.sources += (source,)

    def poll(self) -> bool:
        """Whether the directory differs from what was last loaded or polled."""
        stamps = self._scan()
        if stamps is None:
            return False
        changed = stamps != self._seen or (bool(self.mesh_config_path) and self._mesh_file_stamp() != self._mesh_stamp)
        self._seen = stamps
        return changed

    def _mesh_file_stamp(self) -> tuple | None:
        try:
            st = os.stat(self.mesh_config_path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _reload_mesh_config(self) -> None:
        if not self.mesh_config_path:
            return
        stamp = self._mesh_file_stamp()
        if stamp == self._mesh_stamp and (self.mesh_config is not None or self._mesh_errors):
            return
        self._mesh_stamp = stamp
        try:
            self.mesh_config = load_mesh_config(self.mesh_config_path)
            self._mesh_errors = []
        except ConfigInvalid as invalid:
            self._mesh_errors = list(invalid.errors)
        except OSError as error:
            self._mesh_errors = [ConfigError(self.mesh_config_path, 0, "", f"cannot read: {error.strerror or error}")]
        for error in self._mesh_errors:
            log.error("%s (the last good mesh config stays in force)", error)

    def reload(self) -> list[tuple[str, list[ConfigError]]]:
        """Load changed, new and deleted files in this process (at startup, before anything is
        served); returns the files newly rejected, with their errors."""
        self._reload_mesh_config()
        changed = self._changed()
        loaded = {path: self._over_total(path) or load_paths([path], self.limits) for path in changed}
        return self._apply(loaded, [unit for source in self.sources for unit in source.reload()])

    async def reload_isolated(self) -> list[tuple[str, list[ConfigError]]]:
        """`reload`, each changed file loaded in a child process under the time limit."""
        self._reload_mesh_config()
        changed = self._changed()
        loaded = {path: self._over_total(path) or await self._load_isolated(path) for path in changed}
        return self._apply(loaded, [unit for source in self.sources for unit in await source.reload_isolated()])

    async def _load_isolated(self, path: str) -> LoadResult:
        try:
            return await run_in_child(load_paths, [path], self.limits, timeout=self.limits.load_timeout)
        except OffloadFailed as error:
            return LoadResult(model.MeshConfig(), [ConfigError(path, 0, "", str(error))])

    def _changed(self) -> list[str]:
        """Forget deleted files; the files that are new or changed since they were loaded."""
        stamps = self._scan()
        if stamps is None:
            return []
        self._seen = stamps
        for path in list(self._files):
            if path not in stamps:
                log.info("%s: removed", path)
                del self._files[path]
        self._stamps = stamps
        # what would be read: a file over the per-file limit is refused on its own, unread
        self._total = sum(size for _, size, _ in stamps.values() if size <= self.limits.max_file_bytes)
        return [path for path, stamp in stamps.items() if path not in self._files or self._files[path].stamp != stamp]

    def _apply(self, loaded: dict[str, LoadResult], from_sources: list) -> list[tuple[str, list[ConfigError]]]:
        """Each loaded file's new state, then the union (with the sources' units, reloaded
        already: `from_sources` are the ones they newly rejected)."""
        rejected = []
        for path, result in loaded.items():
            previous = self._files.get(path)
            state = self._files[path] = _state(path, self._stamps[path], previous.good if previous else None, result)
            if state.errors:
                rejected.append((path, state.errors))
        old = set(self.conflicts)
        units = [self._files[path] for path in sorted(self._files)]
        self.config, self.conflicts = _union(units + [unit for source in self.sources for unit in source.units()])
        if self.mesh_config is not None:
            self.config = replace(self.config, mesh_configs=(self.mesh_config,))
        for error in self.conflicts:
            if error not in old:
                log.error("%s", error)
        return rejected + from_sources

    @property
    def rejected(self) -> list[tuple[str, list[ConfigError]]]:
        """Every file whose current version is rejected, and resources defined twice (the
        sources report their own units)."""
        out = [(path, state.errors) for path, state in sorted(self._files.items()) if state.errors]
        by_file: dict[str, list[ConfigError]] = {}
        for error in self.conflicts:
            by_file.setdefault(error.file, []).append(error)
        mesh = [(self.mesh_config_path, self._mesh_errors)] if self._mesh_errors else []
        return out + sorted(by_file.items()) + mesh

    def _over_total(self, path: str) -> LoadResult | None:
        """A changed file is not even read while the directory is over the total size limit."""
        try:
            input_limits.check_size(self._total, self.limits.max_total_bytes, "the configuration directory")
        except LimitExceeded as exc:
            return LoadResult(model.MeshConfig(), [ConfigError(path, 0, "", exc.message)])
        return None

    def _scan(self) -> dict[str, Stamp] | None:
        """None when the directory itself is gone: an unmounted volume or a directory being
        replaced must not read as "every resource was deleted"; the config in force stays."""
        if self.directory is None:  # no directory: other sources only (pymesh control serve --kubernetes)
            return {}
        if os.path.isdir(self.directory):
            self._missing = False
            return _scan(self.directory)
        if not self._missing:
            log.error("%s: not a directory (any more?); keeping the configuration in force", self.directory)
            self._missing = True
        return None


def _scan(directory: str) -> dict[str, Stamp]:
    stamps = {}
    for path in _yaml_files(directory):
        try:
            st = os.stat(path)
        except OSError:  # deleted between the walk and the stat
            continue
        stamps[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return stamps


def _state(path: str, stamp: Stamp, previous: model.MeshConfig | None, result: LoadResult) -> FileState:
    return FileState(stamp, *settle(path, previous, result))


def settle(name: str, previous: model.MeshConfig | None,
           result: LoadResult) -> tuple[model.MeshConfig | None, list[ConfigError]]:
    """A unit's new good version and errors after a load (logged): the new config if it
    loaded without errors, else the previous good one stays in force."""
    for warning in result.warnings:
        log.warning("%s", warning)
    if not result.errors:
        log.info("%s: loaded %d resources", name, result.resource_count)
        return result.config, []
    for error in result.errors:
        log.error("%s", error)
    kept = "its last good version stays in force" if previous is not None else "nothing from it applies"
    log.error("%s: rejected (%d errors); %s", name, len(result.errors), kept)
    return previous, list(result.errors)


def _union(units: Iterable[Unit]) -> tuple[model.MeshConfig, list[ConfigError]]:
    """Every unit's good resources in order; a resource whose kind, namespace and name an
    earlier unit already defines is left out and reported."""
    merged: dict[str, list] = {name: [] for name in COLLECTIONS}
    first: dict[tuple[str, str, str], model.Source] = {}
    conflicts = []
    for unit in units:
        good = unit.good
        if good is None:
            continue
        for collection, kind in COLLECTIONS.items():
            for resource in getattr(good, collection):
                namespace, name, source = identity(resource)
                key = (collection, namespace, name)  # Istio's Gateway and the Gateway API's are apart
                seen = first.setdefault(key, source)
                if seen is not source:
                    message = f"{kind} {namespace}/{name} is already defined at {seen.file}:{seen.line}; ignored"
                    conflicts.append(ConfigError(source.file, source.line, "metadata.name", message))
                    continue
                merged[collection].append(resource)
    return model.MeshConfig(**{name: tuple(items) for name, items in merged.items()}), conflicts
