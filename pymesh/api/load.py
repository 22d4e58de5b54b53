"""Load mesh configuration from YAML files, directories or text.

Every problem in every file is collected in one pass (so `pymesh analyze` and the control server
can show them all); a resource with any problem is left out of the config instead of being half
applied. Warnings do not leave anything out: resources of kinds pymesh does not implement and Istio
fields it ignores are reported as not applied (errors under Limits.strict), next to Istio's own
validation warnings. `load_paths_strict` is the all-or-nothing form. Every load is bounded (`limits`): a
file over a size limit is refused by stat before it is read, and YAML over the document, nesting
or alias limits before it is composed; each is an error naming the file, the line and the limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from pymesh.api import model
from pymesh.api import limits as input_limits
from pymesh.api.errors import ConfigError, ConfigInvalid, ConfigWarning
from pymesh.api.limits import LimitExceeded, Limits
from pymesh.api.reader import Sink
from pymesh.api.resources import ALL_KINDS, ResourceKey, parse_document
from pymesh.api.yamltree import Document, LineMap, LineSeq, YAMLSyntaxError, read_documents

__all__ = ["ConfigError", "ConfigInvalid", "ConfigWarning", "LoadResult", "load_paths", "load_paths_strict", "load_text"]

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadResult:
    config: model.MeshConfig  # only the resources without errors
    errors: list[ConfigError]  # every error, in file order, then line order
    files: tuple[str, ...] = ()  # the files read, in the order read
    # problems that did not stop a resource from loading: kinds and fields pymesh does not apply
    # (errors instead under Limits.strict), and Istio's own warnings
    warnings: tuple[ConfigWarning, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def resource_count(self) -> int:
        return sum(len(getattr(self.config, kind.collection)) for kind in ALL_KINDS if kind.collection)

    def strict(self) -> model.MeshConfig:
        """The config, or ConfigInvalid carrying every error."""
        if self.errors:
            raise ConfigInvalid(self.errors)
        return self.config


def load_text(text: str, filename: str = "<memory>", limits: Limits = input_limits.DEFAULT) -> LoadResult:
    """Resources from one (multi-document) YAML text; `filename` is what errors name."""
    loader = _Loader(limits)
    if loader.admit(filename, len(text)):
        loader.add_text(text, filename)
    return loader.result()


def load_paths(paths: Sequence[str], limits: Limits = input_limits.DEFAULT) -> LoadResult:
    """Resources from files and directories (searched recursively for *.yaml and *.yml, in
    sorted order). A path that does not exist or cannot be read is an error, not an exception."""
    loader = _Loader(limits)
    for path in _expand(paths, loader.errors):
        loader.add_file(path)
    return loader.result()


def load_paths_strict(paths: Sequence[str], limits: Limits = input_limits.DEFAULT) -> model.MeshConfig:
    """Like load_paths, but all or nothing: raises ConfigInvalid listing every error."""
    return load_paths(paths, limits).strict()


class _Loader:
    """Accumulates resources and errors across files (resource names are unique across all)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.total_bytes = 0
        self.errors: list[ConfigError] = []
        self.warnings: list[ConfigWarning] = []
        self.files: list[str] = []
        self._resources: dict[str, list[Any]] = {k.collection: [] for k in ALL_KINDS if k.collection}
        self._seen: dict[ResourceKey, model.Source] = {}

    def add_file(self, path: str) -> None:
        try:
            with open(path, "rb") as stream:
                if not self.admit(path, os.fstat(stream.fileno()).st_size):
                    return
                data = stream.read(self.limits.max_file_bytes + 1)  # it may have grown since
        except OSError as exc:
            self.errors.append(ConfigError(path, 0, "", f"cannot read: {exc.strerror or exc}"))
            return
        if len(data) > self.limits.max_file_bytes:  # it grew after the stat
            limit = input_limits.size_text(self.limits.max_file_bytes)
            self.errors.append(ConfigError(path, 0, "", f"file grew past the {limit} limit while being read"))
            return
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            self.errors.append(ConfigError(path, 0, "", f"not UTF-8 text: {exc.reason} at byte {exc.start}"))
            return
        self.add_text(text, path)

    def admit(self, file: str, size: int) -> bool:
        """Whether a file of `size` bytes is within the per-file and total limits (else an error)."""
        try:
            input_limits.check_size(size, self.limits.max_file_bytes)
            total = self.total_bytes + size
            input_limits.check_size(total, self.limits.max_total_bytes, "the configuration with this file")
            self.total_bytes = total
        except LimitExceeded as exc:
            self.errors.append(ConfigError(file, 0, "", exc.message))
            return False
        return True

    def add_text(self, text: str, file: str) -> None:
        self.files.append(file)
        try:
            documents = read_documents(text, self.limits)
        except (YAMLSyntaxError, LimitExceeded) as exc:
            self.errors.append(ConfigError(file, exc.line, "", exc.message))
            return
        for document in _unlisted(documents):
            sink = Sink(file, strict=self.limits.strict)
            parsed = parse_document(document, sink, self._seen)
            self.errors.extend(sorted(sink.errors, key=lambda error: error.line))
            self.warnings.extend(sorted(sink.warnings, key=lambda warning: warning.line))
            if parsed is not None and not sink.errors:
                kind, resource = parsed
                self._resources[kind.collection].append(resource)

    def result(self) -> LoadResult:
        config = model.MeshConfig(**{name: tuple(items) for name, items in self._resources.items()})
        return LoadResult(config=config, errors=list(self.errors), files=tuple(self.files),
                          warnings=tuple(self.warnings))


def _unlisted(documents: list[Document]) -> Iterator[Document]:
    """Each document, and for a Kubernetes List (what `kubectl get vs,dr -o yaml` writes) each of
    its items, read as a document of its own."""
    for document in documents:
        root = document.root
        items = root.get("items") if isinstance(root, LineMap) else None
        if _root_kind(root) == ("v1", "List") and isinstance(items, LineSeq):
            problems = document.problems
            for item, line in zip(items, items.item_lines):
                yield Document(item, line, problems)
                problems = []
        else:
            yield document


def _root_kind(root: object) -> tuple[object, object]:
    return (root.get("apiVersion"), root.get("kind")) if isinstance(root, LineMap) else (None, None)


def _expand(paths: Sequence[str], errors: list[ConfigError]) -> Iterator[str]:
    """Files to read: files as given, directories walked; each file once."""
    seen: set[str] = set()
    for path in paths:
        if os.path.isdir(path):
            files = _yaml_files(path)
        elif os.path.exists(path):
            files = [path]
        else:
            errors.append(ConfigError(path, 0, "", "no such file or directory"))
            continue
        for file in files:
            real = os.path.realpath(file)
            if real not in seen:
                seen.add(real)
                yield file


def _yaml_files(directory: str) -> list[str]:
    """*.yaml/*.yml under `directory`, sorted. Hidden entries are skipped: they are editor
    and VCS files, and Kubernetes ConfigMap volumes keep a second copy of every file in
    hidden "..data" directories."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        found.extend(
            os.path.join(root, name)
            for name in files
            if name.endswith(YAML_SUFFIXES) and not name.startswith(".")
        )
    return sorted(found)
