"""What one client may hold of a sidecar: connections per listener, and deadlines it cannot
stretch for ever. The meanings and defaults are Envoy's (Istio's where Istio sets one):

- request headers timeout: from a request head's first byte to its last (Envoy's
  `request_headers_timeout`; Envoy leaves it off by default, its edge best practice is 10 s, and
  pymesh uses that). A client dripping its head is answered 408 and closed.
- idle timeout: a keep-alive connection with no request in flight is closed after it (Istio's
  default HTTP `idleTimeout`, 1 hour).
- stream idle timeout: a request on which nothing moved, in either direction, for this long ends
  (Envoy's 5 minutes): 408 if the client had not finished sending it, 504 if the upstream never
  answered, a reset if the response had started. Flag `SI`.
- connections per listener (per worker): overflow is refused at accept and counted
  (`downstream_cx_overflow`); by default half of the file-descriptor limit, which the proxy
  raises to its hard limit at start, since each client connection may need an upstream one.

Deadlines are checked by one sweep a tick over the open connections, not a timer per request:
the request path only copies a coarse clock (`Runtime.now`) into an attribute.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass, replace

log = logging.getLogger("pymesh.proxy")

FD_RESERVE = 64  # listeners, admin, log files, the control channel
MAX_TICK = 1.0


@dataclass(frozen=True)
class DownstreamLimits:
    request_headers_timeout: float = 10.0
    idle_timeout: float = 3600.0
    stream_idle_timeout: float = 300.0
    max_connections: int = 0  # per listener and worker; 0: derived from the fd limit

    def tick(self) -> float:
        """How often deadlines are checked: a quarter of the shortest one, at most a second."""
        timeouts = [t for t in (self.request_headers_timeout, self.idle_timeout, self.stream_idle_timeout) if t > 0]
        return min([MAX_TICK] + [t / 4 for t in timeouts])


def resolve(limits: DownstreamLimits) -> DownstreamLimits:
    """Raise this process's file-descriptor limit to its hard limit, and settle the connection
    limit on it when none was given; both are logged, so running out is never silent."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:
            log.warning("cannot raise the file-descriptor limit from %d to %d: %s", soft, hard, error)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    max_connections = limits.max_connections or max(16, (soft - FD_RESERVE) // 2)
    log.info("file-descriptor limit %d; at most %d connections per listener", soft, max_connections)
    return replace(limits, max_connections=max_connections)


class DeadlineSweeper:
    """Every tick: refresh the coarse clock (`clock.now`, a plain attribute the request path
    reads) and let each connection check its deadlines."""

    def __init__(self, loop: asyncio.AbstractEventLoop, clock, connections: set, limits: DownstreamLimits) -> None:
        self.loop = loop
        self.clock = clock
        self.connections = connections
        self.interval = limits.tick()
        clock.now = loop.time()
        self._timer = loop.call_later(self.interval, self._sweep)

    def _sweep(self) -> None:
        now = self.clock.now = self.loop.time()
        for connection in list(self.connections):
            connection.check_deadlines(now)
        self._timer = self.loop.call_later(self.interval, self._sweep)

    def close(self) -> None:
        self._timer.cancel()
