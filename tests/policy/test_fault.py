"""FaultPolicy: Istio's percentages as parts per million, Envoy's draw, delay before abort."""

from __future__ import annotations

import pytest

from pymesh.api import model
from pymesh.policy.fault import MILLION, FaultPolicy, fires, per_million


@pytest.mark.parametrize("percent, numerator", [(100, MILLION), (50, 500_000), (0.0001, 1), (0, 0), (12.3456, 123_456)])
def test_percent_to_parts_per_million(percent, numerator):
    assert per_million(percent) == numerator


def test_the_draw_fires_below_the_numerator():
    assert fires(1, 0.0) and not fires(1, 1 / MILLION)  # 0.0001%: exactly one value in a million
    assert fires(MILLION, 0.999_999_9) and not fires(0, 0.0)


class Draw:
    """A random source that yields the given values, and counts the draws taken."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)
        self.taken = 0

    def random(self) -> float:
        self.taken += 1
        return self.values.pop(0)


def test_from_model_defaults_and_grpc_abort():
    policy = FaultPolicy.from_model(model.HTTPFaultInjection(
        delay=model.FaultDelay(fixed_delay=0.2), abort=model.FaultAbort(grpc_status=14, percentage=25.0)))
    assert (policy.delay, policy.delay_per_million) == (0.2, MILLION)  # no percentage: every request
    assert (policy.abort_status, policy.abort_grpc_status, policy.abort_per_million) == (200, 14, 250_000)
    assert policy.delay_for(Draw(0.99)) == 0.2
    assert policy.aborts(Draw(0.24)) and not policy.aborts(Draw(0.25))


def test_only_a_delay_never_aborts():
    policy = FaultPolicy.from_model(model.HTTPFaultInjection(delay=model.FaultDelay(1.0, percentage=10.0)))
    assert policy.delay_for(Draw(0.05)) == 1.0 and policy.delay_for(Draw(0.5)) is None
    assert not policy.aborts(Draw(0.0))


def test_a_part_at_zero_percent_takes_no_draw():
    """It can never fire, so it leaves the random sequence to the features that can."""
    policy = FaultPolicy.from_model(model.HTTPFaultInjection(
        delay=model.FaultDelay(1.0, percentage=0.0), abort=model.FaultAbort(http_status=503, percentage=0.0)))
    draw = Draw()
    assert policy.delay_for(draw) is None and not policy.aborts(draw)
    assert draw.taken == 0
