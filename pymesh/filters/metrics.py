"""A filter's own metrics: counters, gauges and histograms it declares by name (in `setup`).

Each metric is a list cell the proxy's metrics store owns (pymesh.telemetry.store), so counting is
a list increment on the request path and the values reach /metrics (every worker's, merged) as
`pymesh_filter_<name>` series labelled filter="<the filter's name>". Outside a proxy (a filter's
own unit tests) the cells are plain lists the test can read through `value`.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from typing import Callable

DEFAULT_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)  # Istio's ms scale, shortened
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# (kind, metric name, size) -> the cell; given by the proxy, or a dict of lists in tests
CellFactory = Callable[[str, str, int], list]


class Counter:
    __slots__ = ("_cell",)

    def __init__(self, cell: list) -> None:
        self._cell = cell

    def inc(self, amount: int | float = 1) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self._cell[0] += amount

    @property
    def value(self) -> int | float:
        return self._cell[0]


class Gauge:
    __slots__ = ("_cell",)

    def __init__(self, cell: list) -> None:
        self._cell = cell

    def set(self, value: int | float) -> None:
        self._cell[0] = value

    def inc(self, amount: int | float = 1) -> None:
        self._cell[0] += amount

    def dec(self, amount: int | float = 1) -> None:
        self._cell[0] -= amount

    @property
    def value(self) -> int | float:
        return self._cell[0]


class Histogram:
    """Observations in fixed buckets (upper bounds, ascending); the cell is the store's layout:
    non-cumulative bucket counts, the +Inf count, then the sum."""

    __slots__ = ("_cell", "buckets")

    def __init__(self, cell: list, buckets: tuple[float, ...]) -> None:
        self._cell = cell
        self.buckets = buckets

    def observe(self, value: int | float) -> None:
        cell = self._cell
        cell[bisect_left(self.buckets, value)] += 1
        cell[-1] += value

    @property
    def count(self) -> int:
        return sum(self._cell[:-1])


def _local_cells() -> CellFactory:
    cells: dict[tuple[str, str], list] = {}
    return lambda kind, name, size: cells.setdefault((kind, name), [0] * size)


class Metrics:
    """The metrics of one filter. Declaring a name twice returns the same metric (one kind per
    name); a name is [a-z_][a-z0-9_]*, at most 63 characters."""

    def __init__(self, cells: CellFactory | None = None) -> None:
        self._cells = cells or _local_cells()
        self._declared: dict[str, object] = {}

    def counter(self, name: str) -> Counter:
        return self._declare(name, Counter, lambda: Counter(self._cells("counter", name, 1)))

    def gauge(self, name: str) -> Gauge:
        return self._declare(name, Gauge, lambda: Gauge(self._cells("gauge", name, 1)))

    def histogram(self, name: str, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> Histogram:
        bounds = tuple(sorted(float(b) for b in buckets))
        return self._declare(name, Histogram,
                             lambda: Histogram(self._cells(_histogram_kind(bounds), name, len(bounds) + 2), bounds))

    def _declare(self, name: str, kind: type, make):
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"metric name {name!r}: use [a-z_][a-z0-9_]*, at most 63 characters")
        metric = self._declared.get(name)
        if metric is None:
            metric = self._declared[name] = make()
        elif not isinstance(metric, kind):
            raise ValueError(f"metric {name!r} is already declared as a {type(metric).__name__.lower()}")
        return metric


def _histogram_kind(bounds: tuple[float, ...]) -> str:
    """The kind string carries the buckets so /metrics can render them from the store alone."""
    return "histogram:" + ",".join(repr(b) for b in bounds)
