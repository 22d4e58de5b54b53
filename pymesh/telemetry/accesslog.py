"""Access log: one JSON object per request or TCP connection, in Istio's JSON field names.

`add()` (and `log()`, `log_tcp()`) only append a tuple. Formatting (one cached %-template per
distinct combination of the fields that repeat, `_Templates`, filled with the five values that
change on every line) and writing happen in `flush()`, which the proxy calls from a periodic
loop callback and `add` calls once `max_lines` are pending: the batch is joined once and cut
into whole-line writes.

Several workers share one stdout (or one file). Lines stay whole because every `os.write`
carries complete lines only: on a pipe each write is at most PIPE_BUF (4096) bytes, which POSIX
makes atomic, so other workers' writes interleave only between lines; a regular file is opened
O_APPEND, where Linux appends each write whole, so chunks there may be larger (64 KiB). A single
line longer than PIPE_BUF (a huge path or user agent) is written alone and may interleave on a
pipe; Envoy does not truncate log fields, and neither do we.

TCP connections use the same fields, with the HTTP ones null (as Istio's shared format does).
"""

from __future__ import annotations

import json
import os
import select
import stat
import time
import weakref
from collections import deque
from json.encoder import c_encode_basestring_ascii as _escape  # type: ignore[attr-defined]
from urllib.parse import unquote

FIELDS = (
    "start_time",
    "method",
    "authority",
    "path",
    "protocol",
    "response_code",
    "response_flags",
    "bytes_received",
    "bytes_sent",
    "duration",
    "upstream_host",
    "upstream_cluster",
    "x_forwarded_for",
    "user_agent",
    "request_id",
    "route_name",
    "downstream_remote_address",
    "upstream_request_attempt_count",  # Envoy's %UPSTREAM_REQUEST_ATTEMPT_COUNT%: 0 = never sent
    "requested_server_name",  # Envoy's %REQUESTED_SERVER_NAME%: the SNI of a TLS connection
    # a terminated (mTLS) connection's identities and version, null for plaintext: Envoy's
    # %DOWNSTREAM_PEER_URI_SAN%, %DOWNSTREAM_LOCAL_URI_SAN%, %DOWNSTREAM_TLS_VERSION%
    "downstream_peer_uri_san",
    "downstream_local_uri_san",
    "downstream_tls_version",
)
_VARYING = ("start_time", "bytes_received", "bytes_sent", "duration", "request_id")  # new on every line
REPEATED = tuple(name for name in FIELDS if name not in _VARYING)  # mostly the same from line to line
_NUMBERS = {"response_code", "upstream_request_attempt_count"}  # integers
RECENT = 512  # flushed records kept for the admin port's /access_log lookup (`pymesh explain --request-id`)
_MAX_BACKLOG = 4 << 20  # bytes kept when a non-blocking fd is full; beyond, lines are dropped
_STD_FDS = {"/dev/stdout": 1, "/dev/stderr": 2}
_NO_TLS = (None, None, None)
_MAX_TEMPLATES = 1024  # cached line templates; beyond, the cache starts over
_MAX_CACHED = 1024  # a longer template (a huge path or user agent) is not kept: memory stays ~1 MB
_MILLIS = tuple(f"{n:03d}" for n in range(1000))  # a line's milliseconds, without a format spec per line
# where a line's changing values go: the JSON text before and after each
_SLOTS = {"start_time": ('"start_time":"', '"'), "bytes_received": ('"bytes_received":', ""),
          "bytes_sent": ('"bytes_sent":', ""), "duration": ('"duration":', ""), "request_id": ('"request_id":', "")}
assert tuple(name for name in FIELDS if name in _SLOTS) == _VARYING  # the order `AccessLog.format` fills them in


class _Templates(dict):
    """A line's text around its five changing values (`_VARYING`: six pieces), by the values of
    its REPEATED fields, made once per distinct combination: most fields repeat from request to
    request (method, authority, path, status, cluster, upstream host, user agent, route...), so a
    line costs one lookup and one f-string of the changing values, not an escape call per field
    (nor a %-template, which would scan the whole line's text again)."""

    def __missing__(self, values: tuple) -> tuple[str, ...]:
        if len(self) >= _MAX_TEMPLATES:  # a flood of distinct values (hostile paths, user agents)
            self.clear()
        known = dict(zip(REPEATED, values))
        pieces, text = [], "{"
        for index, name in enumerate(FIELDS):
            separator = "," if index else ""
            if name in _SLOTS:
                before, after = _SLOTS[name]
                pieces.append(text + separator + before)
                text = after
            else:
                text += f'{separator}"{name}":{_json(name, known[name])}'
        pieces.append(text + "}\n")
        if sum(map(len, pieces)) <= _MAX_CACHED:
            self[values] = pieces = tuple(pieces)
        return pieces


def _json(name: str, value) -> str:
    if name in _NUMBERS:
        return "%d" % value
    if isinstance(value, bytes):  # a header's value, decoded only when its template is made
        value = value.decode("latin-1")
    return _escape(value) if value else "null"  # Envoy: unset -> null


class Clock:
    """RFC 3339 UTC with milliseconds; strftime once per second, not once per line. `text` is a
    plain method: a call through `__call__` costs several times more."""

    def __init__(self):
        self.second = -1
        self.prefix = ""

    def prefix_of(self, second: int) -> str:
        if second != self.second:
            self.second = second
            self.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return self.prefix

    def text(self, t: float) -> str:
        second = int(t)
        return f"{self.prefix_of(second)}.{int((t - second) * 1000):03d}Z"


class AccessLog:
    def __init__(self, format: str = "json", path: str = "/dev/stdout", max_lines: int = 256):
        if format not in ("json", "off"):
            raise ValueError(f"access log format must be 'json' or 'off', not {format!r}")
        self.max_lines = max_lines
        self.dropped = 0  # lines lost because a non-blocking output stayed full
        self._pending: list[tuple] = []
        # the last RECENT records, kept at flush (not per request) so the request path pays nothing
        self.recent: deque[tuple] = deque(maxlen=RECENT)
        self._backlog: list[bytes] = []
        self._clock = Clock()
        self._templates = _Templates()
        self._fd = -1
        self._own_fd = False
        if format == "off":
            self.log = self.log_tcp = self.add = _discard  # type: ignore[method-assign]
            return
        self._fd = _STD_FDS.get(path, -1)
        if self._fd < 0:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._own_fd = True
        regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
        self._chunk = 65536 if regular else select.PIPE_BUF
        # Lines pending at fork would be written by the parent and by every child.
        ref = weakref.ref(self)
        os.register_at_fork(before=lambda: (s := ref()) is not None and s.flush(),
                            after_in_child=lambda: (s := ref()) is not None and s._pending.clear())

    def add(self, start_time: float, bytes_received: int, bytes_sent: int, duration_ms: float,
            request_id: str | None, repeated: tuple) -> None:
        """One line: the values that change on every line, and the REPEATED fields' values in
        their order (a header's value may stay bytes: decoded once per distinct value)."""
        pending = self._pending
        pending.append((start_time, bytes_received, bytes_sent, duration_ms, request_id, repeated))
        if len(pending) >= self.max_lines:
            self.flush()

    def log(self, start_time: float, method: str, authority: str, path: str, protocol: str,
            response_code: int, response_flags: str, bytes_received: int, bytes_sent: int,
            duration_ms: float, upstream_host: str | None, upstream_cluster: str | None,
            x_forwarded_for: str | None, user_agent: str | None, request_id: str | None,
            route_name: str | None, downstream_remote_address: str, attempt_count: int = 0,
            requested_server_name: str | None = None, connection=None) -> None:
        """One HTTP request. start_time is epoch seconds (time.time()); empty/None -> null.
        `connection` (a ConnectionInfo) gives the mTLS fields when it was terminated here."""
        tls = (connection.peer_identity, connection.local_identity, connection.tls_version) \
            if connection is not None and connection.tls else _NO_TLS
        self.add(start_time, bytes_received, bytes_sent, duration_ms, request_id,
                 (method, authority, path, protocol, response_code, response_flags, upstream_host, upstream_cluster,
                  x_forwarded_for, user_agent, route_name, downstream_remote_address, attempt_count,
                  requested_server_name) + tls)

    def log_tcp(self, start_time: float, upstream_host: str | None, upstream_cluster: str | None,
                downstream_remote_address: str, bytes_received: int, bytes_sent: int,
                duration_ms: float, response_flags: str, requested_server_name: str | None = None,
                connection=None) -> None:
        """One TCP connection, at close; bytes as seen from downstream."""
        self.log(start_time, None, None, None, None, 0, response_flags, bytes_received,
                 bytes_sent, duration_ms, upstream_host, upstream_cluster, None, None, None,
                 None, downstream_remote_address, 0, requested_server_name, connection)

    def format(self, record: tuple) -> str:
        """One line, pure ASCII (the JSON escaper writes \\uXXXX), so len() counts bytes."""
        return self.text((record,))

    def text(self, records) -> str:
        """The lines of `records`, in one loop with its lookups bound once: a method call per
        line would cost more than filling the line's template."""
        clock, templates, millis, escape = self._clock, self._templates, _MILLIS, _escape
        lines = []
        append = lines.append
        for start_time, received, sent, duration, request_id, repeated in records:
            second = int(start_time)
            prefix = clock.prefix if second == clock.second else clock.prefix_of(second)
            a, b, c, d, e, f = templates[repeated]
            request_id = escape(request_id) if request_id else "null"
            append(f"{a}{prefix}.{millis[int((start_time - second) * 1000)]}Z{b}{received}{c}{sent}{d}"
                   f"{int(duration)}{e}{request_id}{f}")
        return "".join(lines)

    def find(self, request_id: str) -> list[dict]:
        """The recent records (kept or still pending) of this x-request-id, oldest first, as the
        JSON objects the log writes."""
        return [json.loads(self.format(r)) for r in (*self.recent, *self._pending) if r[4] == request_id]

    def flush(self) -> None:
        """Write all pending lines, whole, in writes of complete lines up to the chunk size."""
        records, self._pending = self._pending, []
        self.recent.extend(records)
        if self._fd < 0:
            return
        chunks, self._backlog = self._backlog, []
        if records:
            chunks.extend(_whole_lines(self.text(records).encode("ascii"), self._chunk))
        for i, chunk in enumerate(chunks):
            written = self._write(chunk)
            if written < len(chunk):
                self._keep([chunk[written:]] + chunks[i + 1:])
                return

    def _write(self, data: bytes) -> int:
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except BlockingIOError:  # only with a non-blocking fd (someone else's pipe)
            pass
        return done

    def _keep(self, chunks: list[bytes]) -> None:
        """Keep what a full output did not take for the next flush: the partial line always
        (so lines stay whole), further chunks up to a bound; count the lines dropped."""
        size = 0
        for i, chunk in enumerate(chunks):
            if i and size + len(chunk) > _MAX_BACKLOG:
                self.dropped += chunk.count(b"\n")
                continue
            self._backlog.append(chunk)
            size += len(chunk)

    def close(self) -> None:
        self.flush()
        if self._own_fd:
            os.close(self._fd)
        self._fd = -1


def _whole_lines(data: bytes, size: int) -> list[bytes]:
    """`data` cut after newlines into pieces of at most `size` bytes; a line longer than `size`
    is a piece alone."""
    pieces, start = [], 0
    while len(data) - start > size:
        end = data.rfind(b"\n", start, start + size) + 1
        if end <= start:  # the first line alone is longer than size
            end = data.index(b"\n", start + size - 1) + 1
        pieces.append(data[start:end])
        start = end
    if start < len(data):
        pieces.append(data[start:])
    return pieces


def redact_query(path: str, names: frozenset[str]) -> str:
    """`path` with the values of the query parameters in `names` replaced by REDACTED: a JWT sent
    as `?access_token=...` is a credential, and the access log must not keep one."""
    target, mark, query = path.partition("?")
    if not mark:
        return path
    query, hash_mark, fragment = query.partition("#")
    pairs = [(name, eq, "REDACTED" if eq and unquote(name) in names else value)
             for name, eq, value in (pair.partition("=") for pair in query.split("&"))]
    return target + "?" + "&".join(n + e + v for n, e, v in pairs) + hash_mark + fragment


def _discard(*args, **kwargs) -> None:
    pass
