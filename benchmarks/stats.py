"""Percentiles and the median [min-max] summaries every figure is reported with.

Nearest-rank percentiles (the same definition the C load generator uses), so a reported p99 is
always a latency some request really had, never an interpolation between two.
"""

from __future__ import annotations

import math
import statistics
from typing import Iterable, Sequence

# The percentile points kept for every fixed-rate run (name -> percent).
POINTS = {"p50": 50.0, "p75": 75.0, "p90": 90.0, "p99": 99.0, "p999": 99.9, "p9999": 99.99, "max": 100.0}


def percentile(sorted_values: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must be within 0..100, got {percent}")
    rank = max(1, math.ceil(percent * len(sorted_values) / 100.0 - 1e-9))  # 99.9% of 1000 is 999, not 1000
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def percentiles(values: Iterable[float], points: dict[str, float] = POINTS) -> dict[str, float]:
    ordered = sorted(values)
    return {name: percentile(ordered, p) for name, p in points.items()}


def summarize(values: Iterable[float | None]) -> dict[str, float] | None:
    """Median, min and max over rounds; None values (a round that lacked the figure) are skipped."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return {"median": statistics.median(present), "min": min(present), "max": max(present), "n": len(present)}
