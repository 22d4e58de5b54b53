"""Limits on configuration input, checked before anything is built from it.

Configuration is attacker-adjacent input (a GitOps repository, a ConfigMap anyone with edit
rights can change), and a YAML loader without limits is a denial of service: a 581-byte alias
bomb expands to a billion nodes, a few thousand `[` exhaust Python's recursion, a 50 MB file
takes a minute and gigabytes. So every load is bounded, in this order:

- size, by stat before a byte is read: 8 MiB per file, 32 MiB per load. A Kubernetes object is
  at most 1.5 MiB (etcd) and an API request body at most 3 MiB, so 8 MiB holds several of the
  largest possible resources;
- a linear pre-scan of the YAML events (libyaml's parser, no recursion, no nodes built), which
  stops at the first event over a limit: 10,000 documents per file; nesting 100 deep (Istio
  resources nest about 10 deep; go-yaml, Kubernetes' parser, stops at 10,000, which Python's
  recursion could not survive); 10,000 alias uses, and 400,000 nodes added by expanding them
  (go-yaml's budget for alias-driven decoding is about 400,000 operations), and 8 Mi characters
  of scalar text added by them (a 1 MB string aliased 2,000 times is a handful of nodes but 2 GB
  of header values once pushed or applied). The expansion is counted from each anchor's size, so
  a billion-laughs file is refused before it expands;
- time, where the load runs in a child process (`pymesh.api.offload`): 60 s.

Every limit can be changed with the `--config-*` flags `add_arguments` declares.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import yaml

MIB = 1 << 20
DEPTH_CEILING = 300  # the tree builder recurses; Python's default recursion limit fails near 500


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 8 * MIB
    max_total_bytes: int = 32 * MIB
    max_documents: int = 10_000
    max_depth: int = 100
    max_aliases: int = 10_000
    max_alias_nodes: int = 400_000
    max_alias_text: int = 8 * MIB  # characters of scalars added by aliases
    load_timeout: float = 60.0  # seconds, for loads in a child process
    # Not a size limit but a load option that travels with them: resources of kinds pymesh does
    # not implement, and Istio fields it ignores, are errors instead of "not applied" warnings.
    strict: bool = False


DEFAULT = Limits()


class LimitExceeded(Exception):
    """The input is over a limit; `line` is 1-based, 0 for the whole file."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


def size_text(n: int) -> str:
    """A byte count as people read it in an error ("52.4 MB", "8 MiB")."""
    if n % MIB == 0:
        return f"{n // MIB} MiB"
    return f"{n / MIB:.1f} MiB" if n >= MIB // 10 else f"{n} bytes"


def check_size(size: int, limit: int, what: str = "file") -> None:
    if size > limit:
        raise LimitExceeded(0, f"{what} is {size_text(size)}, over the {size_text(limit)} limit")


def scan(events, limits: Limits) -> None:
    """Walk YAML parse events once and raise LimitExceeded at the first one over a limit.

    Each anchor's expanded size (nodes) and height (nesting levels) are recorded when it ends, so
    an alias adds both without its subtree being built: an alias bomb is refused, and so is
    nesting made deep by aliases of aliases."""
    documents = aliases = expanded = nodes = text = expanded_text = 0
    anchors: dict[str, tuple[int, int, int]] = {}  # anchor -> (nodes, height, text) once expanded
    # per open collection: [anchor, node count at its start, tallest child, text at its start]
    open_nodes: list[list] = []
    for event in events:
        kind = type(event)
        if kind is yaml.ScalarEvent:
            nodes += 1
            text += len(event.value)
            if event.anchor is not None:
                anchors[event.anchor] = (1, 0, len(event.value))
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            nodes += 1
            if len(open_nodes) >= limits.max_depth:
                raise LimitExceeded(_line(event), f"YAML nesting deeper than {limits.max_depth}")
            open_nodes.append([event.anchor, nodes, 0, text])
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            anchor, start, tallest, text_start = open_nodes.pop()
            _child(open_nodes, tallest + 1)
            if anchor is not None:
                anchors[anchor] = (nodes - start + 1, tallest + 1, text - text_start)
        elif kind is yaml.AliasEvent:
            aliases += 1
            if aliases > limits.max_aliases:
                raise LimitExceeded(_line(event), f"YAML aliases exceed the limit of {limits.max_aliases}")
            size, height, chars = anchors.get(event.anchor, (1, 0, 0))  # an unknown anchor: a syntax error later
            nodes += size
            expanded += size
            text += chars
            expanded_text += chars
            if expanded > limits.max_alias_nodes:
                raise LimitExceeded(
                    _line(event), f"YAML aliases expand to more than {limits.max_alias_nodes} nodes (the limit)"
                )
            if expanded_text > limits.max_alias_text:
                raise LimitExceeded(
                    _line(event), f"YAML aliases expand to more than {size_text(limits.max_alias_text)} of text "
                    "(the limit)"
                )
            if len(open_nodes) + height > limits.max_depth:
                raise LimitExceeded(_line(event), f"YAML nesting deeper than {limits.max_depth} (through aliases)")
            _child(open_nodes, height)
        elif kind is yaml.DocumentStartEvent:
            documents += 1
            anchors.clear()  # anchors are per document
            if documents > limits.max_documents:
                raise LimitExceeded(_line(event), f"more than {limits.max_documents} YAML documents in one file")


def _child(open_nodes: list[list], height: int) -> None:
    """A child of this height ended inside the innermost open collection."""
    if open_nodes and height > open_nodes[-1][2]:
        open_nodes[-1][2] = height


def _line(event: yaml.Event) -> int:
    return event.start_mark.line + 1


# --- command-line flags: the same for `pymesh analyze`, `pymesh proxy` and the control server ---


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration limits")
    group.add_argument("--config-max-file-mb", type=float, default=DEFAULT.max_file_bytes / MIB, metavar="MB",
                       help=f"largest configuration file read (default {DEFAULT.max_file_bytes // MIB} MiB)")
    group.add_argument("--config-max-total-mb", type=float, default=DEFAULT.max_total_bytes / MIB, metavar="MB",
                       help=f"largest configuration read in total (default {DEFAULT.max_total_bytes // MIB} MiB)")
    group.add_argument("--config-max-depth", type=_depth, default=DEFAULT.max_depth, metavar="N",
                       help=f"deepest YAML nesting accepted (default {DEFAULT.max_depth}, at most {DEPTH_CEILING})")
    group.add_argument("--config-max-aliases", type=int, default=DEFAULT.max_aliases, metavar="N",
                       help=f"YAML alias uses per file (default {DEFAULT.max_aliases}; expanding them may add at "
                       f"most {DEFAULT.max_alias_nodes} nodes)")
    group.add_argument("--config-load-timeout", type=float, default=DEFAULT.load_timeout, metavar="SECONDS",
                       help=f"time a reload may take to read and check the configuration before it is "
                       f"stopped and rejected (default {DEFAULT.load_timeout:g})")
    parser.add_argument("--strict", action="store_true",
                        help="treat resources of kinds pymesh does not implement (EnvoyFilter, WasmPlugin, "
                        "Kubernetes objects, ...) and Istio fields that have no effect in pymesh as errors "
                        "instead of warnings")


def _depth(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= DEPTH_CEILING:
        raise argparse.ArgumentTypeError(f"expected a number from 1 to {DEPTH_CEILING}, got {text!r}")
    return int(text)


def from_args(args: argparse.Namespace) -> Limits:
    return Limits(
        max_file_bytes=int(args.config_max_file_mb * MIB),
        max_total_bytes=int(args.config_max_total_mb * MIB),
        max_depth=args.config_max_depth,
        max_aliases=args.config_max_aliases,
        load_timeout=args.config_load_timeout,
        strict=args.strict,
    )
