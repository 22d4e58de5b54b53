import pytest


class FixedRandom:
    """A `random.Random` stand-in returning the given values in turn (cycling)."""

    def __init__(self, *values: float) -> None:
        self.values = values or (0.0,)
        self.i = 0

    def random(self) -> float:
        v = self.values[self.i % len(self.values)]
        self.i += 1
        return v


@pytest.fixture
def fixed_random():
    return FixedRandom
