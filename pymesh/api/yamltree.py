"""YAML documents as plain dicts and lists that remember their line numbers.

Validation must point at file:line for every field, which `yaml.safe_load` forgets. We compose
the node graph (safe: no tags are ever turned into arbitrary objects) and build `LineMap` /
`LineSeq` containers that carry the line of the container, of each key and of each item.
Scalars are built by PyYAML's SafeConstructor, so "8080" is an int and "yes" a bool, as in
Kubernetes. Unknown tags and duplicate keys are reported as problems, not raised. Input over a
limit (size, documents, nesting, aliases: `limits.py`) is refused before composing, so the
recursive builder below only ever sees shallow, bounded trees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from pymesh.api.errors import field_path, index_path
from pymesh.api.limits import DEFAULT, Limits, scan

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # same nodes, libyaml is just faster
_NULL_TAG = "tag:yaml.org,2002:null"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


class LineMap(dict):
    """A mapping; `line` is where it starts, `key_lines[key]` where each key is written."""

    __slots__ = ("line", "key_lines")

    def __init__(self, line: int = 0):
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}


class LineSeq(list):
    """A sequence; `line` is where it starts, `item_lines[i]` where item i starts."""

    __slots__ = ("line", "item_lines")

    def __init__(self, line: int = 0):
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


@dataclass(frozen=True)
class Problem:
    """Something wrong found while building the tree (duplicate key, unknown tag)."""

    line: int
    path: str
    message: str


@dataclass
class Document:
    root: Any  # LineMap, LineSeq or a scalar
    line: int
    problems: list[Problem] = field(default_factory=list)


class YAMLSyntaxError(Exception):
    """The text is not YAML; `line` is 1-based (0 when the parser gave no position)."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


def read_documents(text: str, limits: Limits = DEFAULT) -> list[Document]:
    """Every non-empty document in `text`, in order. Raises YAMLSyntaxError for bad syntax:
    after a syntax error the rest of the stream cannot be trusted, so no document is returned.
    Raises LimitExceeded when the text is over a limit, found by a linear scan of the parse
    events before any node is composed (see `limits`)."""
    try:
        scan(yaml.parse(text, Loader=_Loader), limits)
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or "invalid YAML"
        if exc.context:
            message = f"{message} ({exc.context})"
        raise YAMLSyntaxError(mark.line + 1 if mark else 0, f"invalid YAML: {message}") from None
    except yaml.YAMLError as exc:
        raise YAMLSyntaxError(0, f"invalid YAML: {exc}") from None
    documents = []
    for node in nodes:
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
            continue  # an empty document ("---" with nothing after it)
        builder = _Builder()
        root = builder.build(node, "")
        documents.append(Document(root, _line(node), builder.problems))
    return documents


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Builder:
    """Turns one composed document into LineMap/LineSeq/scalars, collecting problems."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._constructor = yaml.constructor.SafeConstructor()
        self._active: set[int] = set()  # nodes being built, to stop on recursive aliases

    def build(self, node: yaml.Node, path: str) -> Any:
        if id(node) in self._active:
            self.problems.append(Problem(_line(node), path, "recursive YAML alias is not allowed"))
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode) and node.tag == _MAP_TAG:
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ_TAG:
                return self._sequence(node, path)
            if isinstance(node, yaml.ScalarNode):
                return self._scalar(node, path)
            self.problems.append(Problem(_line(node), path, f"unsupported YAML tag {node.tag!r}"))
            return None
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: yaml.Node, path: str) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            self.problems.append(Problem(_line(node), path, f"unsupported YAML tag {node.tag!r}"))
        # what the resolver took for a number, date or boolean but its constructor cannot make:
        # 2024-02-30, an integer of over 4300 digits (Python's limit), !!int 'x', !!bool 'x'
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            kind = node.tag.rpartition(":")[2]
            shown = node.value if len(node.value) <= 40 else f"{node.value[:40]}... ({len(node.value)} characters)"
            self.problems.append(Problem(_line(node), path, f"{shown!r} is not a valid YAML {kind} (quote it for a string)"))
        return None

    def _mapping(self, node: yaml.MappingNode, path: str) -> LineMap:
        own = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
        self._constructor.flatten_mapping(node)  # resolve "<<": merged pairs come first
        merged = len(node.value) - own
        result = LineMap(_line(node))
        own_keys: set[Any] = set()
        for position, (key_node, value_node) in enumerate(node.value):
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(Problem(_line(key_node), path, "mapping keys must be plain strings"))
                continue
            key = self._scalar(key_node, path)
            if position >= merged:  # written here: may override a merged key, not repeat itself
                if key in own_keys:
                    first = result.key_lines[key]
                    problem = f"duplicate key {key!r} (first at line {first})"
                    self.problems.append(Problem(_line(key_node), path, problem))
                    continue
                own_keys.add(key)
            result.key_lines[key] = _line(key_node)
            result[key] = self.build(value_node, field_path(path, str(key)))
        return result

    def _sequence(self, node: yaml.SequenceNode, path: str) -> LineSeq:
        result = LineSeq(_line(node))
        for index, item in enumerate(node.value):
            result.item_lines.append(_line(item))
            result.append(self.build(item, index_path(path, index)))
        return result
