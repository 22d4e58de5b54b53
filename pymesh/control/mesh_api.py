"""The admin port's mesh page routes: GET /mesh (the page), /mesh/graph.json, /mesh/routes.json
?host=[&proxy=], /mesh/traces.json, /mesh/trace.json?id=, and Zipkin's POST /api/v2/spans and
GET /api/v2/trace/{id} (as /api/v2/trace?id=, the one path form this server routes)."""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Callable

from pymesh.api import model
from pymesh.api.wire import Node
from pymesh.control import graph, meshpage, routes_view, traces
from pymesh.control.admin import Answer, Route, json_body
from pymesh.control.scrape import Scraper

JSON = "application/json"
HTML = "text/html; charset=utf-8"
MAX_COMPILES = 20  # proxies tried for a service's routes (each is one compile of its view)


class MeshApi:
    def __init__(self, status: Callable[[], dict], config: Callable[[], tuple[str, model.MeshConfig]],
                 nodes: Callable[[], list[Node]], scraper: Scraper, store: traces.TraceStore):
        self._status = status
        self._config = config  # (version, the current generation's configuration)
        self._nodes = nodes
        self.scraper = scraper
        self.traces = store
        self._compiling = asyncio.Lock()

    def routes(self) -> dict[str, Route]:
        return {
            "/mesh": Route(lambda q, b: (200, HTML, meshpage.render(self._status(), self.services()))),
            "/mesh/graph.json": Route(self.graph),
            "/mesh/routes.json": Route(self.service_routes),
            "/mesh/traces.json": Route(lambda q, b: (200, JSON, json_body(self.traces.recent()))),
            "/mesh/trace.json": Route(self.trace),
            "/api/v2/trace": Route(self.trace),
            "/api/v2/spans": Route(self.spans, "POST", traces.MAX_BODY),
        }

    def services(self) -> list[tuple[str, str]]:
        _, config = self._config()
        return sorted({(host, entry.metadata.namespace) for entry in config.service_entries for host in entry.hosts})

    async def graph(self, query: str, body: bytes) -> Answer:
        await self.scraper.refresh()
        data = graph.build(self.services(), self._status()["proxies"], self.scraper.latest, self.scraper.previous)
        return 200, JSON, json_body(data)

    async def service_routes(self, query: str, body: bytes) -> Answer:
        """The first of the proxies' views that routes `host`. Each proxy tried is a compile of
        its snapshot (a third of a second for a few hundred services): they run in a thread, one
        request at a time, so the event loop keeps pushing meanwhile."""
        params = urllib.parse.parse_qs(query)
        host = params.get("host", [""])[0]
        wanted = params.get("proxy", [""])[0]
        if not host:
            return 400, "text/plain", b"host= names the service\n"
        nodes = self._nodes()
        if wanted:
            nodes = [n for n in nodes if n.id == wanted]
        else:  # the clients' sidecars first: they hold the service's routes
            nodes = sorted(nodes, key=lambda n: (n.kind != "sidecar", bool(n.addresses), n.id))[:MAX_COMPILES]
        if not nodes:
            return 404, "text/plain", b"no such proxy registered\n"
        version, config = self._config()  # read here: the loop changes them, the thread must not see it
        async with self._compiling:
            found = await asyncio.to_thread(_first_routing, config, version, host, nodes)
        return 200, JSON, json_body(found)

    def trace(self, query: str, body: bytes) -> Answer:
        spans = self.traces.trace(urllib.parse.parse_qs(query).get("id", [""])[0])
        if spans is None:
            return 404, "text/plain", b"no such trace\n"
        return 200, JSON, json_body(spans)

    def spans(self, query: str, body: bytes) -> Answer:
        try:
            self.traces.add(body)
        except traces.BadSpans as exc:
            return 400, "text/plain", f"{exc}\n".encode()
        return 202, "text/plain", b""


def _first_routing(config: model.MeshConfig, version: str, host: str, nodes: list[Node]) -> dict:
    views = (routes_view.service_routes(config, version, host, node) for node in nodes)
    first = next(views)
    return first if first["virtual_hosts"] else next((v for v in views if v["virtual_hosts"]), first)
