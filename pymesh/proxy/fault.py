"""The fault injection filter (Envoy's envoy.filters.http.fault, configured per route by Istio's
`fault`): delay, then abort, with flags DI and FI and Envoy's fault.* stats.

A delay is one loop timer and a PAUSE: no task, no CPU, and no buffer beyond what the exchange
keeps of the request anyway (its body waits in the replay buffer, the client paused at its high
water mark). The timer sits in the exchange's `route_timer` slot, which is free until the chain
ends (the route timeout starts after the filters, as Envoy's router starts it): `_finish`
cancels it, so a client that leaves during the delay leaves nothing behind.
"""

from __future__ import annotations

from pymesh.policy import flags
from pymesh.proxy.interfaces import PAUSE
from pymesh.proxy.local_reply import LocalReply

ABORT_BODY = b"fault filter abort"  # Envoy's


class FaultInjection:
    def __init__(self, rng) -> None:
        self.rng = rng  # pymesh.proxy.random_source.RNG, or a test's

    def on_request(self, exchange, request) -> LocalReply | object | None:
        delay = exchange.route.fault.delay_for(self.rng)
        if delay is None:
            return self._abort(exchange)
        _stats(exchange)["delays_injected"] += 1
        exchange.flags = flags.join(exchange.flags, flags.DI)
        exchange.route_timer = exchange.runtime.loop.call_later(delay, self._delayed, exchange)
        return PAUSE

    def _delayed(self, exchange) -> None:
        exchange.route_timer = None
        reply = self._abort(exchange)
        if reply is None:
            exchange.resume_filters()
        else:
            exchange.reply(reply)

    def _abort(self, exchange) -> LocalReply | None:
        fault = exchange.route.fault
        if not fault.aborts(self.rng):
            return None
        _stats(exchange)["aborts_injected"] += 1
        return LocalReply(fault.abort_status, flags.FI, ABORT_BODY, grpc_status=fault.abort_grpc_status)


def _stats(exchange) -> dict[str, int]:
    return exchange.runtime.telemetry.metrics.filter_stats(exchange.listener.name, "fault")
