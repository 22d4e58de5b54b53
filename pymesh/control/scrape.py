"""The proxies' Prometheus endpoints, read by the control server for its mesh page.

Each connected proxy says in its hello where its /stats/prometheus listens (Node.stats_address,
checked at admission to be its own host: loopback, a wildcard or one of its addresses), and the
server reads it there, as Prometheus's service discovery (scrape_targets.py) points Prometheus at
it, with a short timeout and a size cap; only Istio's request families are kept. Scrapes happen
on demand (a page or /mesh/graph.json asking) and at most once per `interval`; the previous round
is kept so the graph can show rates over the time between two rounds. Parsing is slow Python (a
second or more for a big exposition): only the wanted families' lines reach the parser, and it
runs in a thread, so that the event loop keeps pushing configuration meanwhile. A value that is
not a finite number, or a bucket bound that is not one, makes the proxy's scrape unreadable (it
would break the graph's JSON or its arithmetic).
"""

from __future__ import annotations

import asyncio
import logging
import math
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
_LINES = tuple(f"{prefix}{name}" for name in ("istio_requests_total", "istio_request_duration_milliseconds")
               for prefix in ("", "# TYPE ", "# HELP "))  # what a wanted family's lines start with

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
    """Istio's request samples from a Prometheus text exposition (other families are skipped);
    ValueError when one is not a finite number or a bucket's bound is not a number."""
    wanted = "".join(line + "\n" for line in text.split("\n") if line.startswith(_LINES))
    out = []
    for family in text_string_to_metric_families(wanted):
        if family.name in FAMILIES or family.name + "_total" in FAMILIES:
            out += [_checked(s.name, dict(s.labels), s.value) for s in family.samples]
    return out


def _checked(name: str, labels: dict, value: float) -> Sample:
    if not math.isfinite(value):
        raise ValueError(f"{name}: {value} is not a finite number")
    if name.endswith("_bucket") and math.isnan(_bound(labels.get("le", "+Inf"))):
        raise ValueError(f"{name}: le={labels['le'][:40]!r} is not a number")
    return name, labels, value


def _bound(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


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
        samples, errors = await asyncio.to_thread(_read, [node.id for node in nodes], results)
        self.previous, self.latest = self.latest, Round(self._clock(), tuple(samples), tuple(errors))


def _read(ids: list[str], results: list) -> tuple[list[Sample], list[tuple[str, str]]]:
    """Every fetched exposition parsed (in a thread), and why the others could not be read."""
    samples: list[Sample] = []
    errors = []
    for node_id, result in zip(ids, results):
        if isinstance(result, BaseException):
            errors.append((node_id, f"{type(result).__name__}: {result}"[:200]))
            continue
        try:
            samples += parse(result)
        except ValueError as exc:
            errors.append((node_id, f"unparsable: {exc}"[:200]))
    return samples, errors
