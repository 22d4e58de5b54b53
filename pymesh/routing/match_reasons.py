"""Why a VirtualService match block does not match a request, in words (for `pymesh explain`).

The route table's predicates (routing/match.py) only say yes or no, and must stay that cheap; this
module re-reads the same `HTTPMatchRequest` with the same string matchers to say which condition
failed. It runs once per explained request, never on the request path.
"""

from __future__ import annotations

from typing import Mapping
from urllib.parse import parse_qsl

from pymesh.api import model
from pymesh.routing.match import string_matcher


def describe(sm: model.StringMatch) -> str:
    return f"{sm.kind} {sm.value!r}"


def _first_query_values(raw: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in parse_qsl(raw, keep_blank_values=True):
        out.setdefault(k, v)
    return out


def failures(m: model.HTTPMatchRequest, method: str, path: str, authority: str, scheme: str,
             headers: Mapping[str, str], source_labels: Mapping[str, str]) -> list[str]:
    """Every condition of `m` the request fails ([] when it matches). `path` includes the query."""
    bare, _, query = path.partition("?")
    out: list[str] = []
    if m.uri is not None:
        ignore = m.ignore_uri_case and m.uri.kind != "regex"
        if not string_matcher(m.uri, ignore)(bare):
            out.append(f"path {bare!r} does not match uri {describe(m.uri)}" + (" (ignoring case)" if ignore else ""))
    for name, sm, value, ignore in (("method", m.method, method, False), ("authority", m.authority, authority, True),
                                    ("scheme", m.scheme, scheme, True)):
        if sm is not None and not string_matcher(sm, ignore_case=ignore)(value):
            out.append(f"{name} {value!r} does not match {describe(sm)}")
    for name, sm in m.headers.items():
        value = headers.get(name.lower())
        if value is None:
            out.append(f"header {name.lower()} missing (wanted {describe(sm)})")
        elif not string_matcher(sm)(value):
            out.append(f"header {name.lower()}: {value!r} does not match {describe(sm)}")
    for name, sm in m.without_headers.items():
        value = headers.get(name.lower())
        if value is not None and string_matcher(sm)(value):
            out.append(f"header {name.lower()}: {value!r} matches withoutHeaders {describe(sm)}")
    if m.query_params:
        params = _first_query_values(query)
        for name, sm in m.query_params.items():
            value = params.get(name)
            if value is None:
                out.append(f"query parameter {name} missing (wanted {describe(sm)})")
            elif not string_matcher(sm, encoding="utf-8")(value):
                out.append(f"query parameter {name}: {value!r} does not match {describe(sm)}")
    wrong = {k: v for k, v in m.source_labels.items() if source_labels.get(k) != v}
    if wrong:
        out.append(f"sourceLabels {dict(m.source_labels)} do not select this workload")
    return out
