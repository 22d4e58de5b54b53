"""An index from a request path's first segment to the routes that can match it.

A virtual host with many routes would otherwise try them one by one: matching the last of 1000
cost five times the first. Routes whose every match names a literal first segment (an exact uri,
or a uri prefix that ends its first segment, like "/api/") are filed under that segment; every
other route (regex, ignoreUriCase, short prefixes, no uri) is a candidate for every path. Each
segment's candidates keep the routes' order, so the first match is the same as without the index.
"""

from __future__ import annotations

from typing import Sequence

from pymesh.api import model

MIN_ROUTES = 16  # below this a plain walk is as fast as the lookup

ANY = None  # "this route may match any first segment"


def literal_segment(match: model.HTTPMatchRequest) -> str | None:
    """The first path segment every path this match accepts has, or None when it cannot be told."""
    uri = match.uri
    if uri is None or uri.kind == "regex" or match.ignore_uri_case or not uri.value.startswith("/"):
        return None
    end = uri.value.find("/", 1)
    if uri.kind == "exact":
        return uri.value[1:] if end == -1 else uri.value[1:end]
    return None if end == -1 else uri.value[1:end]  # "/ap" also matches "/apple": not literal


def route_segments(matches: Sequence[model.HTTPMatchRequest]) -> frozenset[str] | None:
    """The segments a route (its matches ORed) can match, or ANY."""
    if not matches:
        return ANY
    segments = set()
    for match in matches:
        segment = literal_segment(match)
        if segment is None:
            return ANY
        segments.add(segment)
    return frozenset(segments)


def build_index(entries: Sequence, segments: Sequence[frozenset[str] | None]) -> tuple[dict[str, tuple], tuple] | None:
    """({segment: candidate entries}, entries for any other segment), or None when not worth it."""
    if len(entries) < MIN_ROUTES:
        return None
    keys = set().union(*(s for s in segments if s is not ANY))
    if not keys:
        return None
    index = {
        key: tuple(entry for entry, segs in zip(entries, segments) if segs is ANY or key in segs)
        for key in keys
    }
    rest = tuple(entry for entry, segs in zip(entries, segments) if segs is ANY)
    return index, rest


def path_segment(path: str) -> str:
    """The first segment of a request path ("/api/v1" -> "api"); the query is already cut off."""
    end = path.find("/", 1)
    return path[1:] if end == -1 else path[1:end]
