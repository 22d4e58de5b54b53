"""What any client can make the control server hold, and the limits on it.

Before its hello a client is nobody (later: before its certificate is checked), so it gets
little: a small first message, a few bytes in all, a deadline to say hello, and a share of the
connections that one address may hold. After the hello a proxy still only sends ACKs and NACKs,
which are small, so its messages stay modest too. Every limit is a `pymesh control serve` flag
(`add_arguments`). The `Gate` counts connections, in total and per source address, without I/O.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass
from typing import Callable

KIB = 1024


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 1024  # in total
    max_connections_per_source: int = 64  # per client IP address (NAT puts many proxies behind one)
    max_streams: int = 2  # concurrent HTTP/2 streams per connection: a proxy uses one
    max_stream_opens: int = 100  # streams opened over a connection's life (rapid reset, CVE-2023-44487)
    max_hello_bytes: int = 64 * KIB  # the first message on a stream
    max_message_bytes: int = 256 * KIB  # every later one (ACK, NACK: the proxy truncates its errors)
    max_buffered_bytes: int = 256 * KIB  # partial messages of all a connection's streams together
    max_bytes_before_hello: int = 128 * KIB  # everything a connection sends before its first message
    max_header_list_bytes: int = 16 * KIB  # HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE
    initial_window: int = 65535  # HTTP/2 SETTINGS_INITIAL_WINDOW_SIZE (its default: we ACK data at once)
    hello_timeout: float = 10.0  # seconds from connect to the first complete message
    message_timeout: float = 30.0  # seconds a started message may take to complete


DEFAULT = ConnectionLimits()


class LogThrottle:
    """At most one log line per kind of event per `interval` seconds, saying how many were left
    out: a flood of refused connections must not become a flood of log lines."""

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self._last: dict[str, float] = {}
        self._skipped: Counter[str] = Counter()

    def allow(self, kind: str, now: float) -> int | None:
        """None: skip this line; else log it, adding that this many like it were skipped."""
        if now - self._last.get(kind, float("-inf")) < self.interval:
            self._skipped[kind] += 1
            return None
        self._last[kind] = now
        return self._skipped.pop(kind, 0)


class Gate:
    """Admits connections under the total and per-source caps, and counts why any was closed
    (`count(reason)`, a short fixed label such as "hello_timeout", for a metric)."""

    def __init__(self, limits: ConnectionLimits, count: Callable[[str], None] = lambda reason: None):
        self.limits = limits
        self.count = count
        self.throttle = LogThrottle()  # for the connections' limit warnings
        self.total = 0
        self._per_source: Counter[str] = Counter()

    def admit(self, source: str) -> str | None:
        """None when admitted (then `release(source)` once it closes), else why not."""
        if self.total >= self.limits.max_connections:
            self.count("too_many_connections")
            return f"too many connections (the limit is {self.limits.max_connections})"
        if self._per_source[source] >= self.limits.max_connections_per_source:
            self.count("too_many_from_source")
            return f"too many connections from {source} (the limit is {self.limits.max_connections_per_source})"
        self.total += 1
        self._per_source[source] += 1
        return None

    def release(self, source: str) -> None:
        self.total -= 1
        self._per_source[source] -= 1
        if self._per_source[source] <= 0:
            del self._per_source[source]

    def from_source(self, source: str) -> int:
        return self._per_source.get(source, 0)


# --- command-line flags of `pymesh control serve` -------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("limits on what proxies (and anyone who connects) can make the server hold")
    d = DEFAULT
    group.add_argument("--max-connections", type=_positive, default=d.max_connections, metavar="N",
                       help=f"open connections in total, said hello or not (default {d.max_connections})")
    group.add_argument("--max-connections-per-source", type=_positive, default=d.max_connections_per_source,
                       metavar="N", help=f"connections from one IP address (default {d.max_connections_per_source})")
    group.add_argument("--max-message-kb", type=_positive, default=d.max_message_bytes // KIB, metavar="KB",
                       help=f"largest message from a proxy after its hello (default {d.max_message_bytes // KIB}; "
                       f"a hello may have {d.max_hello_bytes // KIB})")
    group.add_argument("--hello-timeout", type=_seconds, default=d.hello_timeout, metavar="SECONDS",
                       help=f"time a new connection has to send its hello (default {d.hello_timeout:g})")
    group.add_argument("--message-timeout", type=_seconds, default=d.message_timeout, metavar="SECONDS",
                       help=f"time a started message may take to arrive whole (default {d.message_timeout:g})")


def from_args(args: argparse.Namespace) -> ConnectionLimits:
    message = args.max_message_kb * KIB
    return ConnectionLimits(
        max_connections=args.max_connections,
        max_connections_per_source=args.max_connections_per_source,
        max_message_bytes=message,
        max_buffered_bytes=max(message, DEFAULT.max_buffered_bytes),
        hello_timeout=args.hello_timeout,
        message_timeout=args.message_timeout,
    )


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value
