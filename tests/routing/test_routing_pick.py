"""Weighted destination choice with an injected random number."""

from __future__ import annotations

from collections import Counter

import pytest

from pymesh.routing.pick import pick_weighted
from pymesh.routing.snapshot import WeightedCluster


def clusters(*weights):
    return tuple(WeightedCluster(cluster=f"c{i}", weight=w) for i, w in enumerate(weights))


def spread(cs, total, n=1000):
    """How often each cluster is picked over an evenly spaced rand sequence in [0, 1)."""
    return Counter(pick_weighted(cs, total, (i + 0.5) / n).cluster for i in range(n))


@pytest.mark.parametrize(
    "weights,want",
    [
        ((90, 10), {"c0": 900, "c1": 100}),
        ((50, 25, 25), {"c0": 500, "c1": 250, "c2": 250}),
        ((0, 100), {"c1": 1000}),  # weight 0 gets nothing
        ((1, 3), {"c0": 250, "c1": 750}),
    ],
)
def test_proportional(weights, want):
    assert spread(clusters(*weights), sum(weights)) == want


def test_single_destination_takes_all_even_with_weight_zero():
    assert spread(clusters(0), 0) == {"c0": 1000}


def test_no_weights_split_evenly():
    assert spread(clusters(0, 0), 0) == {"c0": 500, "c1": 500}


@pytest.mark.parametrize("rand,want", [(0.0, "c0"), (0.8999, "c0"), (0.9, "c1"), (0.999999999, "c1")])
def test_band_edges(rand, want):
    assert pick_weighted(clusters(90, 10), 100, rand).cluster == want
