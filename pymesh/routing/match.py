"""The compiled HTTP route table: everything decided at compile time, per request only matching.

A request costs one dict lookup for its authority (wildcards: one lookup per dot), then a walk over
that virtual host's routes calling small precompiled predicates (with many routes, only those
that can match the path's first segment: see segment_index). Regexes are compiled once, by RE2
(see regex); the query string is parsed only if some route of the virtual host needs it, and then
once per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable
from urllib.parse import parse_qsl

from pymesh.api import model
from pymesh.routing.hosts import split_authority
from pymesh.routing.regex import full_matcher
from pymesh.routing.segment_index import build_index, path_segment, route_segments
from pymesh.routing.snapshot import RequestView, Route

# predicate(request, path_without_query, lazy_query_or_None) -> truthy when it matches
Predicate = Callable[[RequestView, str, "LazyQuery | None"], object]
# (predicates ANDed, the uri prefix that matched or None)
Matcher = tuple[tuple[Predicate, ...], "str | None"]


class LazyQuery:
    """The query string, parsed on first use; the first value of a repeated name counts."""

    __slots__ = ("_raw", "_params")

    def __init__(self, raw: str):
        self._raw = raw
        self._params: dict[str, str] | None = None

    def get(self, name: str) -> str | None:
        params = self._params
        if params is None:
            params = {}
            for k, v in parse_qsl(self._raw, keep_blank_values=True):
                params.setdefault(k, v)
            self._params = params
        return params.get(name)


def string_matcher(
    sm: model.StringMatch, ignore_case: bool = False, encoding: str = "latin-1"
) -> Callable[[str], object]:
    """exact/prefix compare; regex: an RE2 full match of the value turned back into bytes with
    `encoding` (see routing.regex)."""
    value = sm.value
    if sm.kind == "regex":
        return full_matcher(value, ignore_case, encoding)
    if ignore_case:
        value = value.lower()
        if sm.kind == "exact":
            return lambda s: s.lower() == value
        if sm.kind == "prefix":
            return lambda s: s.lower().startswith(value)
    elif sm.kind == "exact":
        return lambda s: s == value
    elif sm.kind == "prefix":
        return lambda s: s.startswith(value)
    raise ValueError(f"unknown StringMatch kind {sm.kind!r}")


def _attr(name: str, test: Callable[[str], object]) -> Predicate:
    return lambda req, path, q: test(getattr(req, name))


# A match on a pseudo-header (Istio allows them) reads the request line's field; :status is
# never on a request, so it is never present.
_PSEUDO_ATTRIBUTES = {":method": "method", ":path": "path", ":authority": "authority", ":scheme": "scheme"}


def _header(name: str, test: Callable[[str], object], present: bool) -> Predicate:
    """present=True: the header exists and matches; False (withoutHeaders): it does not."""
    if name.startswith(":"):
        attribute = _PSEUDO_ATTRIBUTES.get(name)
        if attribute is None:
            return lambda req, path, q: not present
        return lambda req, path, q: bool(test(getattr(req, attribute))) is present

    def pred(req: RequestView, path: str, q: LazyQuery | None) -> bool:
        value = req.headers.get(name)
        return (value is not None and bool(test(value))) is present

    return pred


def _query(name: str, test: Callable[[str], object]) -> Predicate:
    def pred(req: RequestView, path: str, q: LazyQuery | None) -> bool:
        value = q.get(name)  # type: ignore[union-attr]  # set whenever a route needs it
        return value is not None and bool(test(value))

    return pred


def _source_labels(labels: dict[str, str]) -> Predicate:
    items = tuple(labels.items())
    return lambda req, path, q: all(req.source_labels.get(k) == v for k, v in items)


def compile_match(m: model.HTTPMatchRequest, port: int) -> Matcher | None:
    """Predicates for one match block on a listener port, or None when it names another port
    (a route table is per port, so `port` is decided here, not per request)."""
    if m.port is not None and m.port != port:
        return None
    preds: list[Predicate] = []
    prefix = None
    if m.uri is not None:
        # Istio: ignoreUriCase applies to exact and prefix, not regex
        test = string_matcher(m.uri, m.ignore_uri_case and m.uri.kind != "regex")
        preds.append(lambda req, path, q: test(path))
        if m.uri.kind == "prefix":
            prefix = m.uri.value
    if m.method is not None:
        preds.append(_attr("method", string_matcher(m.method)))
    if m.authority is not None:
        preds.append(_attr("authority", string_matcher(m.authority, ignore_case=True)))
    if m.scheme is not None:
        preds.append(_attr("scheme", string_matcher(m.scheme, ignore_case=True)))
    preds += [_header(n.lower(), string_matcher(sm), True) for n, sm in m.headers.items()]
    preds += [_header(n.lower(), string_matcher(sm), False) for n, sm in m.without_headers.items()]
    preds += [_query(n, string_matcher(sm, encoding="utf-8")) for n, sm in m.query_params.items()]
    if m.source_labels:
        preds.append(_source_labels(dict(m.source_labels)))
    return tuple(preds), prefix


@dataclass(frozen=True)
class CompiledRoute:
    route: Route
    matches: tuple[model.HTTPMatchRequest, ...]  # the source, for dumps
    matchers: tuple[Matcher, ...]  # ORed; empty matches everything
    needs_query: bool = False

    @classmethod
    def build(cls, route: Route, matches: tuple[model.HTTPMatchRequest, ...], port: int) -> CompiledRoute | None:
        """None when every match block names another port: the route cannot apply here."""
        compiled = [(m, c) for m in matches if (c := compile_match(m, port)) is not None]
        if matches and not compiled:
            return None
        return cls(
            route=route,
            matches=tuple(m for m, _ in compiled),
            matchers=tuple(c for _, c in compiled),
            needs_query=any(m.query_params for m, _ in compiled),
        )


@dataclass(frozen=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[CompiledRoute, ...]


# what a domain leads to: (virtual host, needs the query string, ((route, matchers), ...),
# the first-segment index of those entries or None (see segment_index))
_Slot = tuple[VirtualHost, bool, tuple[tuple[Route, tuple[Matcher, ...]], ...], "tuple[dict, tuple] | None"]


def _slot(vh: VirtualHost) -> _Slot:
    entries = tuple((r.route, r.matchers) for r in vh.routes)
    index = build_index(entries, [route_segments(r.matches) for r in vh.routes])
    return vh, any(r.needs_query for r in vh.routes), entries, index


class CompiledRouteTable:
    """RouteTable for one listener port (see pymesh.routing.snapshot.RouteTable)."""

    __slots__ = ("port", "virtual_hosts", "strip_any_port", "_exact", "_wild", "_any")

    def __init__(self, port: int, virtual_hosts: Iterable[VirtualHost], *, strip_any_port: bool = False):
        self.port = port
        # a gateway's: the authority's port, whatever it is, does not take part in the match
        # (Istio gives a gateway's virtual hosts the domains "host" and "host:*")
        self.strip_any_port = strip_any_port
        self.virtual_hosts = tuple(virtual_hosts)
        self._exact: dict[str, _Slot] = {}
        self._wild: dict[str, _Slot] = {}  # ".example.com" for "*.example.com"
        self._any: _Slot | None = None
        for vh in self.virtual_hosts:  # the first virtual host to claim a domain keeps it
            slot = _slot(vh)
            for domain in vh.domains:
                domain = domain.lower()
                if domain == "*":
                    self._any = self._any or slot
                elif domain.startswith("*."):
                    self._wild.setdefault(domain[1:], slot)
                else:
                    self._exact.setdefault(domain, slot)

    def _lookup(self, authority: str) -> _Slot | None:
        """Exact domain, then (the authority's port, if any, being this table's) the bare host and
        wildcards longest suffix first, then "*". An authority naming another port only reaches
        a domain spelled with that port, or "*" (unless the table strips any port)."""
        authority = authority.lower()
        slot = self._exact.get(authority)
        if slot is not None:
            return slot
        host, port = split_authority(authority)
        if port is None or port == self.port or self.strip_any_port:
            if port is not None:
                slot = self._exact.get(host)
                if slot is not None:
                    return slot
            if self._wild:
                dot = host.find(".", 1)
                while dot != -1:
                    slot = self._wild.get(host[dot:])
                    if slot is not None:
                        return slot
                    dot = host.find(".", dot + 1)
        return self._any

    def virtual_host(self, authority: str) -> VirtualHost | None:
        slot = self._lookup(authority)
        return slot[0] if slot else None

    def match(self, request: RequestView) -> tuple[Route, str | None] | None:
        slot = self._lookup(request.authority)
        if slot is None:
            return None
        _, needs_query, entries, index = slot
        path = request.path
        cut = path.find("?")
        query = None
        if needs_query:
            query = LazyQuery(path[cut + 1 :] if cut != -1 else "")
        if cut != -1:
            path = path[:cut]
        if index is not None:
            entries = index[0].get(path_segment(path), index[1])
        for route, matchers in entries:
            if not matchers:
                return route, None
            for preds, prefix in matchers:
                for pred in preds:
                    if not pred(request, path, query):
                        break
                else:
                    return route, prefix
        return None
