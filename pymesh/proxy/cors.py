"""The CORS filter (Envoy's envoy.filters.http.cors, configured per route by Istio's corsPolicy);
the rules are in pymesh.routing.cors. A preflight from an allowed origin is answered here; an
actual request's CORS headers go on its response through the exchange's `response_header_ops`,
the response hook every filter may append to."""

from __future__ import annotations

from pymesh.policy import flags
from pymesh.proxy.local_reply import LocalReply


class Cors:
    def on_request(self, exchange, request) -> LocalReply | None:
        head = exchange.head
        origin = head.header(b"origin")
        if origin is None:
            return None
        cors = exchange.route.cors
        text = origin.decode("latin-1")
        preflight = head.method == "OPTIONS" and bool(head.header(b"access-control-request-method"))
        stats = exchange.runtime.telemetry.metrics.filter_stats(exchange.listener.name, "cors")
        if not cors.allows(text):
            stats["origin_invalid"] += 1
            if preflight and not cors.forward_unmatched_preflights:
                return LocalReply(200, flags.NONE)
            return None
        stats["origin_valid"] += 1
        if preflight:
            return LocalReply(200, flags.NONE, b"", cors.preflight_headers(origin))
        exchange.response_header_ops = exchange.response_header_ops + (cors.response_ops(text),)
        return None
