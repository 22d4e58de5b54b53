"""The proxy's one random source: weighted destinations, retry jitter, balancers and fault
injection all draw from `RNG`, so a test can make a run reproducible with `--random-seed N`
(or PYMESH_RANDOM_SEED). Each worker seeds it when it starts (`seed`), so forked workers never
share a sequence unless a seed was given.
"""

from __future__ import annotations

import os
import random

RNG = random.Random()


def seed(value: int | None) -> None:
    """A fixed sequence for `value`; None draws a fresh seed from the OS."""
    RNG.seed(value)


class RandomHex:
    """OS-random hex digits for ids (request ids, trace and span ids: unique, not reproducible),
    drawn in batches (one getrandom call and one hex conversion per BATCH bytes, not per id) and
    dropped in a forked child so that workers never hand out the same ids."""

    BATCH = 4096

    def __init__(self) -> None:
        self.pool, self.at = b"", 0
        os.register_at_fork(after_in_child=self.forget)

    def forget(self) -> None:
        self.pool, self.at = b"", 0

    def take(self, digits: int) -> bytes:
        at = self.at
        if at + digits > len(self.pool):
            self.pool, at = os.urandom(self.BATCH).hex().encode(), 0
        self.at = at + digits
        return self.pool[at:at + digits]


HEX = RandomHex()
