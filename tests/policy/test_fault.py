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


def test_from_model_defaults_and_grpc_abort():
    policy = FaultPolicy.from_model(model.HTTPFaultInjection(
        delay=model.FaultDelay(fixed_delay=0.2), abort=model.FaultAbort(grpc_status=14, percentage=25.0)))
    assert (policy.delay, policy.delay_per_million) == (0.2, MILLION)  # no percentage: every request
    assert (policy.abort_status, policy.abort_grpc_status, policy.abort_per_million) == (200, 14, 250_000)
    assert policy.delay_for(0.99) == 0.2
    assert policy.aborts(0.24) and not policy.aborts(0.25)


def test_only_a_delay_never_aborts():
    policy = FaultPolicy.from_model(model.HTTPFaultInjection(delay=model.FaultDelay(1.0, percentage=10.0)))
    assert policy.delay_for(0.05) == 1.0 and policy.delay_for(0.5) is None
    assert not policy.aborts(0.0)
