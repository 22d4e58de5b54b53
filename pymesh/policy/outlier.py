"""Outlier detection for one cluster: Envoy's consecutive-error detectors as a pure state machine.

The owner feeds it each attempt's classified end (`record`) and calls `sweep` every interval;
the clock is injected. It follows Envoy's `outlier_detection_impl.cc`:

- A host is ejected the moment a consecutive counter reaches its threshold (not at the sweep),
  unless that would put more than max_ejection_percent of the hosts out: then it is counted as
  `ejections_overflow` and stays. Either way the counter that fired starts again from zero.
- 5xx responses count for consecutive5xxErrors; 502/503/504 also for consecutiveGatewayErrors.
  Without splitExternalLocalOriginErrors a local failure counts as the status the proxy answers
  with (timeout 504, connect failure or reset 503). With the split, local failures count only
  for consecutiveLocalOriginFailures, and any attempt that got a connection resets that counter
  first (Envoy reports the connection's success before the failure), so only back-to-back
  connect failures add up.
- `sweep` returns hosts whose ejection is over: base ejection time times the host's ejection
  count, capped at max ejection time. A host that stays healthy for a whole interval after its
  return has that count lowered by one at each sweep (Envoy's ejection-time backoff decay).
- Returned hosts start with every counter at zero.

Stats are Envoy's `cluster.<name>.outlier_detection.*`, counted into the cluster's stats dict.
"""

from __future__ import annotations

from typing import Callable, Iterable

from pymesh.api.model import OutlierDetection
from pymesh.policy.outcome import Outcome

CONSECUTIVE_5XX = "consecutive_5xx"
CONSECUTIVE_GATEWAY_FAILURE = "consecutive_gateway_failure"
CONSECUTIVE_LOCAL_ORIGIN_FAILURE = "consecutive_local_origin_failure"

PREFIX = "outlier_detection."  # the stat names are declared in pymesh.telemetry.stats
ACTIVE = PREFIX + "ejections_active"

_GATEWAY = frozenset((502, 503, 504))


class Host:
    """One host's counters and ejection history."""

    __slots__ = ("errors_5xx", "errors_gateway", "errors_local", "ejected_at", "backoff", "ejections", "returned_at")

    def __init__(self) -> None:
        self.errors_5xx = self.errors_gateway = self.errors_local = 0
        self.ejected_at: float | None = None  # None: not ejected
        self.backoff = 0  # multiplies the base ejection time; decays while healthy
        self.ejections = 0  # ever, for /clusters and the log
        self.returned_at: float | None = None

    def reset_counters(self) -> None:
        self.errors_5xx = self.errors_gateway = self.errors_local = 0


class OutlierDetector:
    """The hosts of one cluster (by "address:port" key) and which of them are ejected."""

    def __init__(self, settings: OutlierDetection, keys: Iterable[str], clock: Callable[[], float],
                 stats: dict[str, int], previous: OutlierDetector | None = None) -> None:
        """`previous`: the detector this one replaces (a config change); hosts in both keep
        their state, and `previous` is left with none (results that still reach it are dropped)."""
        self.settings = settings
        self._clock = clock
        self._stats = stats
        kept = previous._hand_over() if previous is not None else {}
        self.hosts: dict[str, Host] = {key: kept.get(key) or Host() for key in keys}
        self.ejected: set[str] = {key for key, host in self.hosts.items() if host.ejected_at is not None}
        stats[ACTIVE] = len(self.ejected)

    def _hand_over(self) -> dict[str, Host]:
        hosts, self.hosts, self.ejected = self.hosts, {}, set()
        self._stats = dict(self._stats)  # the live gauge is the successor's now
        return hosts

    def close(self) -> None:
        """This detector is gone (cluster removed or detection turned off): no host is ejected."""
        self._stats[ACTIVE] = 0

    def in_panic(self) -> bool:
        """Fewer healthy hosts than minHealthPercent: balance over all of them, ejected or not."""
        total = len(self.hosts)
        return total > 0 and 100 * (total - len(self.ejected)) < self.settings.min_health_percent * total

    # --- feed -------------------------------------------------------------------------------------

    def record(self, key: str, outcome: Outcome, status: int | None) -> str | None:
        """One attempt at `key` ended; the kind of the ejection it caused, or None."""
        host = self.hosts.get(key)
        if host is None:
            return None
        s = self.settings
        fired = []
        if s.split_external_local_origin_errors and outcome is not Outcome.RESPONSE:
            # Any attempt past connecting reported the connection's success first.
            host.errors_local = host.errors_local + 1 if outcome is Outcome.CONNECT_FAILURE else 1
            if host.errors_local == s.consecutive_local_origin:
                fired.append(CONSECUTIVE_LOCAL_ORIGIN_FAILURE)
        else:
            if outcome is Outcome.RESPONSE:
                host.errors_local = 0
                code = status or 0
            else:
                code = 504 if outcome is Outcome.TIMEOUT else 503
            if 500 <= code < 600:
                if code in _GATEWAY:
                    host.errors_gateway += 1
                    if host.errors_gateway == s.consecutive_gateway:
                        fired.append(CONSECUTIVE_GATEWAY_FAILURE)
                else:
                    host.errors_gateway = 0
                host.errors_5xx += 1
                if host.errors_5xx == s.consecutive_5xx:
                    fired.append(CONSECUTIVE_5XX)
            else:
                host.errors_5xx = host.errors_gateway = 0
        ejected = None
        for kind in fired:  # gateway before 5xx, as Envoy posts them
            if host.ejected_at is None and self._detected(key, host, kind):
                ejected = kind
        return ejected

    def _detected(self, key: str, host: Host, kind: str) -> bool:
        """Envoy's onConsecutiveErrorWorker + ejectHost: True when the host was ejected."""
        stats = self._stats
        stats[PREFIX + "ejections_detected_" + kind] += 1
        if kind == CONSECUTIVE_5XX:
            host.errors_5xx = 0
        elif kind == CONSECUTIVE_GATEWAY_FAILURE:
            host.errors_gateway = 0
        else:
            host.errors_local = 0
        if 100 * (len(self.ejected) + 1) > self.settings.max_ejection_percent * len(self.hosts):
            stats[PREFIX + "ejections_overflow"] += 1
            return False
        s = self.settings
        host.ejected_at = self._clock()
        host.ejections += 1
        if host.backoff * s.base_ejection_time < s.max_ejection_time + s.base_ejection_time:
            host.backoff += 1
        self.ejected.add(key)
        stats[ACTIVE] = len(self.ejected)
        stats[PREFIX + "ejections_enforced_total"] += 1
        stats[PREFIX + "ejections_enforced_" + kind] += 1
        return True

    # --- the interval sweep ---------------------------------------------------------------------

    def ejection_time(self, host: Host) -> float:
        s = self.settings
        return min(s.base_ejection_time * host.backoff, s.max_ejection_time)

    def sweep(self) -> list[str]:
        """Every interval: the hosts whose ejection is over (now returned), in key order."""
        now = self._clock()
        returned = []
        for key in sorted(self.ejected):
            host = self.hosts[key]
            if now - host.ejected_at >= self.ejection_time(host):
                host.ejected_at = None
                host.returned_at = now
                host.reset_counters()
                returned.append(key)
        self.ejected.difference_update(returned)
        self._stats[ACTIVE] = len(self.ejected)
        interval = self.settings.interval
        for host in self.hosts.values():
            if host.ejected_at is None and host.returned_at is not None and now - host.returned_at >= interval:
                if host.backoff:
                    host.backoff -= 1
        return returned
