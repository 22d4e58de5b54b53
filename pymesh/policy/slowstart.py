"""Envoy's slow start (Istio's `warmup`): a new endpoint's weight ramps up over a window.

Factor for an endpoint `age` seconds old in a window `w`: max(min_percent / 100,
(max(age, 1 ms) / w) ** (1 / aggression)), and 1 from the window's end on (Envoy's
`applySlowStartFactor`). Endpoints without a recorded creation time were there when the cluster
was first built and are never in slow start, as in Envoy.
"""

from __future__ import annotations

from typing import Callable, Mapping

from pymesh.api import model

MIN_AGE = 0.001  # Envoy counts a host at least 1 ms old
STEPS = 50  # weights are recomputed this many times per window (not per pick)
MIN_STEP = 0.01  # seconds


class SlowStart:
    __slots__ = ("window", "min_factor", "exponent", "born", "clock", "step")

    def __init__(self, warmup: model.Warmup, born: Mapping[str, float], clock: Callable[[], float]) -> None:
        self.window = warmup.duration
        self.min_factor = warmup.minimum_percent / 100.0
        self.exponent = 1.0 / warmup.aggression
        self.born = born  # endpoint key -> creation time (the clock's)
        self.clock = clock
        self.step = max(MIN_STEP, self.window / STEPS)

    def factor(self, key: str, now: float) -> float:
        """How much of its weight the endpoint gets at `now` (1.0 when warm)."""
        born = self.born.get(key)
        if born is None:
            return 1.0
        age = now - born
        if age >= self.window:
            return 1.0
        ramp = max(age, MIN_AGE) / self.window
        return max(self.min_factor, ramp if self.exponent == 1.0 else ramp ** self.exponent)
