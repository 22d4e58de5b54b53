"""Which host a retry goes to: Envoy's retry host predicate and retry priority as Istio sets them.

- previous_hosts (Istio's default, `retryIgnorePreviousHosts`): a pick that lands on a host
  already tried is re-done, up to `HOST_SELECTION_RETRY_MAX_ATTEMPTS` times (Istio's
  host_selection_retry_max_attempts); after that the last pick stands, as Envoy's
  LoadBalancerBase::chooseHost does, so a one-host cluster still retries.
- previous_priorities (`retryRemoteLocalities`, update_frequency 2): from the second retry on,
  the priority levels (localities, pymesh.policy.priority) of the hosts tried are left out and
  the load goes to the remaining levels; the excluded set is recomputed every 2 attempts, and
  when no level would be left the original load applies again.

Pure: the balancer and the list of endpoints tried are passed in.
"""

from __future__ import annotations

from typing import Sequence

from pymesh.policy.priority import PriorityBalancer
from pymesh.routing.snapshot import Endpoint

HOST_SELECTION_RETRY_MAX_ATTEMPTS = 5  # Istio's RetryPolicy.host_selection_retry_max_attempts
PRIORITY_UPDATE_FREQUENCY = 2  # Istio's PreviousPrioritiesConfig.update_frequency


def excluded_priorities(tried: Sequence[Endpoint], update_frequency: int = PRIORITY_UPDATE_FREQUENCY) -> frozenset[int]:
    """Envoy's PreviousPrioritiesRetryPriority: the priorities of the hosts tried, as of the last
    multiple of `update_frequency` attempts (none before the first)."""
    counted = len(tried) - len(tried) % update_frequency
    return frozenset(ep.priority for ep in tried[:counted])


def retry_host(balancer, hash_key: bytes | None, tried: Sequence[Endpoint], avoid_previous: bool,
               remote_localities: bool) -> Endpoint | None:
    """The endpoint for a retry, after the endpoints in `tried` failed."""
    pick = balancer.pick
    if remote_localities and isinstance(balancer, PriorityBalancer):
        excluded = excluded_priorities(tried)
        if excluded and balancer.has_levels_besides(excluded):
            pick = lambda key: balancer.pick(key, excluded)  # noqa: E731 - a pick over the other levels
    if not avoid_previous:
        return pick(hash_key)
    keys = {ep.key for ep in tried}
    host = None
    for _ in range(HOST_SELECTION_RETRY_MAX_ATTEMPTS + 1):
        host = pick(hash_key)
        if host is None or host.key not in keys:
            return host
    return host
