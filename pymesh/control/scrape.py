"""The proxies' Prometheus endpoints, read by the control server for its mesh page.

Each connected proxy says in its hello where its /stats/prometheus listens (Node.stats_address,
checked at admission to be its own host: loopback, a wildcard or one of its addresses), and the
server reads it there, as Prometheus's service discovery (scrape_targets.py) points Prometheus at
it, with a short timeout and a size cap; only Istio's request families are kept. Scrapes happen
on demand (a page or /mesh/graph.json asking) and at most once per `interval`; the previous round
is kept so the graph can show rates over the time between two rounds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from prometheus_client.parser import text_string_to_metric_families

from pymesh.api.wire import Node
from pymesh.control.scrape_targets import scrape_address

log = logging.getLogger("pymesh.control.scrape")

PATH = "/stats/prometheus"
MAX_BYTES = 4 * 1024 * 1024
TIMEOUT = 2.0
MAX_TARGETS = 200  # proxies scraped per round (the page is for a local mesh, not a fleet)
FAMILIES = frozenset({"istio_requests_total", "istio_request_duration_milliseconds"})

Sample = tuple[str, dict, float]  # (sample name, labels, value)


@dataclass(frozen=True)
class Round:
    at: float  # monotonic time of the round
    samples: tuple[Sample, ...]
    errors: tuple[tuple[str, str], ...]  # (node id, why its endpoint could not be read)


def target(node: Node) -> tuple[str, int] | None:
    address = scrape_address(node)
    if address is None:
        return None
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def parse(text: str) -> list[Sample]:
    """Istio's request samples from a Prometheus text exposition (other families are skipped)."""
    out = []
    for family in text_string_to_metric_families(text):
        if family.name in FAMILIES or family.name + "_total" in FAMILIES:
            out += [(s.name, dict(s.labels), s.value) for s in family.samples]
    return out


async def fetch(host: str, port: int, timeout: float = TIMEOUT) -> str:
    """GET PATH over HTTP/1.0 (the proxy closes after the answer), at most MAX_BYTES."""
    async def get() -> str:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {PATH} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
            data = await reader.read(MAX_BYTES + 1)
            chunks = [data]
            total = len(data)
            while data and total <= MAX_BYTES:
                data = await reader.read(MAX_BYTES + 1 - total)
                chunks.append(data)
                total += len(data)
        finally:
            writer.close()
        if total > MAX_BYTES:
            raise ValueError(f"more than {MAX_BYTES} bytes")
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].split()
        if len(status) < 2 or status[1] != b"200":
            raise ValueError(f"answered {head[:60]!r}")
        return body.decode("utf-8", "replace")

    return await asyncio.wait_for(get(), timeout)


class Scraper:
    """The latest two rounds, refreshed on demand at most once per `interval` seconds."""

    def __init__(self, nodes: Callable[[], Iterable[Node]], interval: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        self._nodes = nodes
        self.interval = interval
        self._clock = clock
        self.previous: Round | None = None
        self.latest: Round | None = None
        self._running: asyncio.Task | None = None

    async def refresh(self) -> None:
        if self.latest is not None and self._clock() - self.latest.at < self.interval:
            return
        if self._running is None or self._running.done():  # concurrent callers share one round
            self._running = asyncio.ensure_future(self._round())
        await asyncio.shield(self._running)

    async def _round(self) -> None:
        nodes = [n for n in self._nodes() if target(n) is not None][:MAX_TARGETS]
        results = await asyncio.gather(*(fetch(*target(n)) for n in nodes), return_exceptions=True)
        samples: list[Sample] = []
        errors = []
        for node, result in zip(nodes, results):
            if isinstance(result, BaseException):
                errors.append((node.id, f"{type(result).__name__}: {result}"[:200]))
                continue
            try:
                samples += parse(result)
            except ValueError as exc:
                errors.append((node.id, f"unparsable: {exc}"[:200]))
        self.previous, self.latest = self.latest, Round(self._clock(), tuple(samples), tuple(errors))
