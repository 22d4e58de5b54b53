"""The outlier detector as a pure state machine, on a fake clock: when a host is ejected, what
blocks it, when it comes back, and how its ejection count decays (Envoy's outlier_detection_impl)."""

from __future__ import annotations

import pytest

from pymesh.api.model import OutlierDetection
from pymesh.policy.outcome import Outcome
from pymesh.policy.outlier import OutlierDetector
from pymesh.telemetry.stats import OUTLIER_DETECTION_STATS

R = Outcome.RESPONSE
HOSTS = ("a:1", "b:1", "c:1")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def detector(hosts=HOSTS, previous=None, **settings):
    settings.setdefault("max_ejection_percent", 100)
    clock = previous._clock if previous else Clock()
    stats = previous._stats if previous else dict.fromkeys(OUTLIER_DETECTION_STATS, 0)
    return OutlierDetector(OutlierDetection(**settings), hosts, clock, stats, previous)


def stat(d, name):
    return d._stats["outlier_detection." + name]


def feed(d, key, n, outcome=R, status=500):
    return [d.record(key, outcome, status) for _ in range(n)]


def test_ejects_at_once_on_the_nth_consecutive_5xx():
    d = detector(consecutive_5xx=3)
    assert feed(d, "a:1", 2) == [None, None]
    assert d.ejected == set()
    assert d.record("a:1", R, 500) == "consecutive_5xx"
    assert d.ejected == {"a:1"}
    assert (stat(d, "ejections_enforced_total"), stat(d, "ejections_active"),
            stat(d, "ejections_enforced_consecutive_5xx"), stat(d, "ejections_detected_consecutive_5xx")) == (1, 1, 1, 1)


def test_a_success_in_between_starts_the_count_again():
    d = detector(consecutive_5xx=3)
    feed(d, "a:1", 2)
    d.record("a:1", R, 200)
    feed(d, "a:1", 2)
    assert d.ejected == set()
    d.record("a:1", R, 404)  # 4xx is a success for outlier detection
    feed(d, "a:1", 2)
    assert d.ejected == set()


def test_hosts_count_apart():
    d = detector(consecutive_5xx=2)
    d.record("a:1", R, 500)
    d.record("b:1", R, 500)
    assert d.ejected == set()
    d.record("b:1", R, 503)
    assert d.ejected == {"b:1"}


def test_zero_disables_consecutive_5xx():
    d = detector(consecutive_5xx=0)
    feed(d, "a:1", 50)
    assert d.ejected == set()


def test_istio_defaults_five_5xx_gateway_errors_off():
    d = detector()
    feed(d, "a:1", 4, status=503)
    assert d.ejected == set()
    assert d.record("a:1", R, 503) == "consecutive_5xx"


def test_gateway_errors_count_502_503_504_only():
    d = detector(consecutive_5xx=0, consecutive_gateway=2)
    d.record("a:1", R, 502)
    d.record("a:1", R, 500)  # a 5xx but not a gateway error: the gateway count starts again
    d.record("a:1", R, 504)
    assert d.ejected == set()
    assert d.record("a:1", R, 503) == "consecutive_gateway_failure"
    assert stat(d, "ejections_enforced_consecutive_gateway_failure") == 1


def test_gateway_ejection_wins_when_both_fire():
    d = detector(consecutive_5xx=2, consecutive_gateway=2)
    feed(d, "a:1", 2, status=503)
    assert d.ejected == {"a:1"}
    assert stat(d, "ejections_enforced_consecutive_gateway_failure") == 1
    assert stat(d, "ejections_detected_consecutive_5xx") == 0  # already ejected: not looked at


@pytest.mark.parametrize("outcome", [
    Outcome.CONNECT_FAILURE, Outcome.RESET, Outcome.STREAM_RESET, Outcome.REFUSED_STREAM, Outcome.TIMEOUT,
])
def test_local_failures_count_as_the_proxys_503_or_504_without_the_split(outcome):
    """Both 503 (connect failure, reset) and 504 (timeout) are gateway errors and 5xx."""
    d = detector(consecutive_5xx=0, consecutive_gateway=3)
    feed(d, "a:1", 3, outcome, None)
    assert d.ejected == {"a:1"}
    d5 = detector(consecutive_5xx=3)
    feed(d5, "a:1", 3, outcome, None)
    assert d5.ejected == {"a:1"}


def test_split_local_origin_connect_failures_count_apart():
    d = detector(split_external_local_origin_errors=True, consecutive_local_origin=3, consecutive_5xx=2)
    feed(d, "a:1", 2, Outcome.CONNECT_FAILURE, None)
    assert d.ejected == set()
    assert d.record("a:1", Outcome.CONNECT_FAILURE, None) == "consecutive_local_origin_failure"
    assert stat(d, "ejections_enforced_consecutive_local_origin_failure") == 1


def test_split_local_failures_do_not_count_as_5xx():
    d = detector(split_external_local_origin_errors=True, consecutive_local_origin=100, consecutive_5xx=2)
    feed(d, "a:1", 10, Outcome.CONNECT_FAILURE, None)
    assert d.ejected == set()


@pytest.mark.parametrize("status", [200, 500])
def test_split_a_response_resets_local_origin_count(status):
    """Any response means the connection worked, even a 5xx (which counts as 5xx only)."""
    d = detector(split_external_local_origin_errors=True, consecutive_local_origin=2, consecutive_5xx=0)
    d.record("a:1", Outcome.CONNECT_FAILURE, None)
    d.record("a:1", R, status)
    d.record("a:1", Outcome.CONNECT_FAILURE, None)
    assert d.ejected == set()


def test_split_failures_after_connecting_never_add_up_past_one():
    """Envoy reports the connection's success before the reset or timeout."""
    d = detector(split_external_local_origin_errors=True, consecutive_local_origin=2)
    feed(d, "a:1", 5, Outcome.RESET, None)
    feed(d, "a:1", 5, Outcome.TIMEOUT, None)
    assert d.ejected == set()
    d.record("a:1", Outcome.TIMEOUT, None)
    assert d.record("a:1", Outcome.CONNECT_FAILURE, None) == "consecutive_local_origin_failure"
    one = detector(split_external_local_origin_errors=True, consecutive_local_origin=1)
    assert one.record("a:1", Outcome.RESET, None) == "consecutive_local_origin_failure"


def test_max_ejection_percent_blocks_and_counts_overflow():
    d = detector(consecutive_5xx=1, max_ejection_percent=34)
    d.record("a:1", R, 500)
    assert d.ejected == {"a:1"}
    assert d.record("b:1", R, 500) is None
    assert d.ejected == {"a:1"}
    assert stat(d, "ejections_overflow") == 1
    assert stat(d, "ejections_detected_consecutive_5xx") == 2


def test_default_ten_percent_ejects_nothing_among_three_hosts():
    """Envoy checks (ejected + 1) / hosts <= max% and Istio does not set always_eject_one_host."""
    d = detector(consecutive_5xx=1, max_ejection_percent=10)
    assert d.record("a:1", R, 500) is None
    assert d.ejected == set()
    assert stat(d, "ejections_overflow") == 1
    ten = detector(hosts=[f"h:{i}" for i in range(10)], consecutive_5xx=1, max_ejection_percent=10)
    ten.record("h:0", R, 500)
    ten.record("h:1", R, 500)
    assert ten.ejected == {"h:0"}


def test_counter_starts_again_after_an_overflow():
    d = detector(consecutive_5xx=2, max_ejection_percent=34)
    feed(d, "a:1", 2)
    feed(d, "b:1", 2)  # overflow
    d.sweep()
    d._clock.now += 30
    assert d.sweep() == ["a:1"]
    assert d.record("b:1", R, 500) is None  # its count restarted at the overflow
    assert d.record("b:1", R, 500) == "consecutive_5xx"


def test_an_ejected_host_returns_after_the_base_time_at_a_sweep():
    d = detector(consecutive_5xx=1, base_ejection_time=30, interval=10)
    d.record("a:1", R, 500)
    d._clock.now += 29.9
    assert d.sweep() == []
    d._clock.now += 0.1
    assert d.sweep() == ["a:1"]
    assert d.ejected == set()
    assert stat(d, "ejections_active") == 0


def test_errors_while_ejected_do_not_eject_again_and_counters_reset_on_return():
    d = detector(consecutive_5xx=3, base_ejection_time=1)
    feed(d, "a:1", 3)
    feed(d, "a:1", 5)  # answers of requests already in flight
    assert stat(d, "ejections_enforced_total") == 1
    d._clock.now += 1
    d.sweep()
    feed(d, "a:1", 2)
    assert d.ejected == set()
    d.record("a:1", R, 500)
    assert d.ejected == {"a:1"}


def test_ejection_time_grows_with_the_ejection_count():
    d = detector(consecutive_5xx=1, base_ejection_time=10, interval=100)
    d.record("a:1", R, 500)
    d._clock.now += 10
    assert d.sweep() == ["a:1"]
    d.record("a:1", R, 500)  # second ejection right away: 20 s
    d._clock.now += 19
    assert d.sweep() == []
    d._clock.now += 1
    assert d.sweep() == ["a:1"]
    assert d.hosts["a:1"].ejections == 2


def test_ejection_time_is_capped_at_max_ejection_time():
    d = detector(consecutive_5xx=1, base_ejection_time=100, interval=1000)  # max = 300 s
    for _ in range(6):
        d.record("a:1", R, 500)
        d._clock.now += 300
        assert d.sweep() == ["a:1"]
    assert d.hosts["a:1"].backoff == 4  # stops growing once past max + base


def test_base_above_300s_is_its_own_cap():
    assert OutlierDetection(base_ejection_time=600).max_ejection_time == 600
    assert OutlierDetection().max_ejection_time == 300


def test_ejection_count_decays_while_the_host_stays_healthy():
    d = detector(consecutive_5xx=1, base_ejection_time=10, interval=5)
    d.record("a:1", R, 500)
    d._clock.now += 10
    d.sweep()
    d.record("a:1", R, 500)
    d._clock.now += 20
    assert d.sweep() == ["a:1"]
    assert d.hosts["a:1"].backoff == 2
    d._clock.now += 4.9
    d.sweep()
    assert d.hosts["a:1"].backoff == 2  # not yet a whole interval back
    d._clock.now += 0.1
    d.sweep()
    assert d.hosts["a:1"].backoff == 1
    d._clock.now += 5
    d.sweep()
    d._clock.now += 5
    d.sweep()
    assert d.hosts["a:1"].backoff == 0
    d.record("a:1", R, 500)
    d._clock.now += 10
    assert d.sweep() == ["a:1"]  # back to the base time


def test_min_health_percent_panic():
    d = detector(consecutive_5xx=1, min_health_percent=50)
    d.record("a:1", R, 500)
    assert not d.in_panic()  # 2 of 3 healthy: 66%
    d.record("b:1", R, 500)
    assert d.in_panic()  # 33% < 50%
    assert not detector(min_health_percent=0).in_panic()


def test_unknown_host_is_ignored():
    d = detector(consecutive_5xx=1)
    assert d.record("z:9", R, 500) is None


def test_state_survives_a_replacement_for_hosts_that_persist():
    d = detector(consecutive_5xx=2)
    d.record("a:1", R, 500)
    feed(d, "b:1", 2)
    e = detector(hosts=("a:1", "b:1", "d:1"), previous=d, consecutive_5xx=2)
    assert e.ejected == {"b:1"}
    assert stat(e, "ejections_active") == 1
    assert e.record("a:1", R, 500) == "consecutive_5xx"  # its first error was kept
    assert d.record("b:1", R, 500) is None and d.ejected == set()  # the old one handed its hosts over
    d.close()
    assert stat(e, "ejections_active") == 2  # and no longer owns the gauge
    f = detector(hosts=("a:1", "d:1"), previous=e, consecutive_5xx=2)
    assert f.ejected == {"a:1"}
    assert stat(f, "ejections_active") == 1
    f.close()
    assert stat(f, "ejections_active") == 0
