"""The proxy's one random source: weighted destinations, retry jitter, balancers and fault
injection all draw from `RNG`, so a test can make a run reproducible with `--random-seed N`
(or PYMESH_RANDOM_SEED). Each worker seeds it when it starts (`seed`), so forked workers never
share a sequence unless a seed was given.
"""

from __future__ import annotations

import random

RNG = random.Random()


def seed(value: int | None) -> None:
    """A fixed sequence for `value`; None draws a fresh seed from the OS."""
    RNG.seed(value)
