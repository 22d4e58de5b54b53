"""Weighted destination choice, with the random number passed in so tests are deterministic."""

from __future__ import annotations

from pymesh.routing.snapshot import WeightedCluster


def pick_weighted(clusters: tuple[WeightedCluster, ...], total_weight: int, rand: float) -> WeightedCluster:
    """The cluster whose cumulative weight band holds `rand * total_weight` (rand in [0, 1)).
    Weight-0 entries get nothing; when no weights are given at all (a single destination with
    weight 0, say) traffic is split evenly, which for one destination means all of it."""
    if len(clusters) == 1:
        return clusters[0]
    if total_weight <= 0:
        return clusters[min(int(rand * len(clusters)), len(clusters) - 1)]
    target = rand * total_weight
    acc = 0
    for wc in clusters:
        acc += wc.weight
        if target < acc:
            return wc
    return clusters[-1]  # rand rounding at the top edge
