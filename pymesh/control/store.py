"""The configuration directory, file by file, with each file's last good version kept in force.

A file is loaded and validated on its own (`pymesh analyze`'s loader), so one bad edit rejects that
file only: its previous good resources stay in force and every other file still applies. The mesh
configuration is the union of every file's last good resources, in sorted file order (the order
`pymesh analyze DIR` reads them). A deleted file takes its resources with it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from pymesh.api import model
from pymesh.api.errors import ConfigError
from pymesh.api.load import _yaml_files, load_paths
from pymesh.api.resources import KINDS

log = logging.getLogger("pymesh.control.store")

COLLECTIONS = {kind.collection: kind.name for kind in KINDS.values() if kind.collection}
Stamp = tuple[int, int, int]  # mtime_ns, size, inode: a file changed when any differs


@dataclass
class FileState:
    stamp: Stamp
    good: model.MeshConfig | None = None  # the last version that validated; None: never did
    errors: list[ConfigError] = field(default_factory=list)  # of the current version


class ConfigStore:
    """`poll()` is cheap (stat calls) and says whether anything changed on disk; `reload()`
    reads the changed files and rebuilds `config`."""

    def __init__(self, directory: str):
        self.directory = directory
        self.config = model.MeshConfig()
        self.conflicts: list[ConfigError] = []  # resources defined in two files: the later is ignored
        self._files: dict[str, FileState] = {}
        self._seen: dict[str, Stamp] = {}
        self._missing = False

    def poll(self) -> bool:
        """Whether the directory differs from what was last loaded or polled."""
        stamps = self._scan()
        if stamps is None:
            return False
        changed = stamps != self._seen
        self._seen = stamps
        return changed

    def reload(self) -> list[tuple[str, list[ConfigError]]]:
        """Load changed, new and deleted files; returns the files newly rejected, with their errors."""
        stamps = self._scan()
        if stamps is None:
            return []
        self._seen = stamps
        rejected = []
        for path in list(self._files):
            if path not in stamps:
                log.info("%s: removed", path)
                del self._files[path]
        for path, stamp in stamps.items():
            state = self._files.get(path)
            if state is not None and state.stamp == stamp:
                continue
            state = self._files[path] = _load(path, stamp, state.good if state else None)
            if state.errors:
                rejected.append((path, state.errors))
        old = set(self.conflicts)
        self.config, self.conflicts = _union(self._files)
        for error in self.conflicts:
            if error not in old:
                log.error("%s", error)
        return rejected

    @property
    def rejected(self) -> list[tuple[str, list[ConfigError]]]:
        """Every file whose current version is rejected, and resources defined twice."""
        out = [(path, state.errors) for path, state in sorted(self._files.items()) if state.errors]
        by_file: dict[str, list[ConfigError]] = {}
        for error in self.conflicts:
            by_file.setdefault(error.file, []).append(error)
        return out + sorted(by_file.items())

    def _scan(self) -> dict[str, Stamp] | None:
        """None when the directory itself is gone: an unmounted volume or a directory being
        replaced must not read as "every resource was deleted"; the config in force stays."""
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


def _load(path: str, stamp: Stamp, previous: model.MeshConfig | None) -> FileState:
    result = load_paths([path])
    if not result.errors:
        log.info("%s: loaded %d resources", path, result.resource_count)
        return FileState(stamp, result.config)
    for error in result.errors:
        log.error("%s", error)
    kept = "its last good version stays in force" if previous is not None else "nothing from it applies"
    log.error("%s: rejected (%d errors); %s", path, len(result.errors), kept)
    return FileState(stamp, previous, list(result.errors))


def _union(files: dict[str, FileState]) -> tuple[model.MeshConfig, list[ConfigError]]:
    """Every file's good resources in sorted file order; a resource whose kind, namespace and
    name an earlier file already defines is left out and reported."""
    merged: dict[str, list] = {name: [] for name in COLLECTIONS}
    first: dict[tuple[str, str, str], model.Source] = {}
    conflicts = []
    for path in sorted(files):
        good = files[path].good
        if good is None:
            continue
        for collection, kind in COLLECTIONS.items():
            for resource in getattr(good, collection):
                meta = resource.metadata
                key = (kind, meta.namespace, meta.name)
                seen = first.setdefault(key, meta.source)
                if seen is not meta.source:
                    message = f"{kind} {meta.namespace}/{meta.name} is already defined at {seen.file}:{seen.line}; ignored"
                    conflicts.append(ConfigError(meta.source.file, meta.source.line, "metadata.name", message))
                    continue
                merged[collection].append(resource)
    return model.MeshConfig(**{name: tuple(items) for name, items in merged.items()}), conflicts
