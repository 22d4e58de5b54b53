"""Access log: one JSON object per request or TCP connection, in Istio's JSON field names.

`log()` and `log_tcp()` only append a tuple (~0.3 µs). Formatting (~2 µs a line, ~21k
instructions: one %-template of the start time, the numbers, the request id and three cached
segments of fields that repeat, `_Segments`, escaped once per distinct combination) and writing
happen in `flush()`, which the proxy calls from a periodic loop callback and `log` calls once
`max_lines` are pending: the batch is joined once and cut into whole-line writes.

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
_NUMBERS = {"response_code", "bytes_received", "bytes_sent", "duration", "upstream_request_attempt_count"}  # integers (ms)
# A line: the start time, the numbers and the request id (which differ on every line) between
# three groups of fields that mostly repeat (`_Segments`).
_GROUPS = (FIELDS[1:7], FIELDS[10:14], FIELDS[15:])
assert FIELDS[7:10] == ("bytes_received", "bytes_sent", "duration") and FIELDS[14] == "request_id"
_TEMPLATE = ('{"start_time":"%s",%s,"bytes_received":%d,"bytes_sent":%d,"duration":%d,%s,"request_id":%s,%s}\n')
RECENT = 512  # flushed records kept for the admin port's /access_log lookup (`pymesh explain --request-id`)
_REQUEST_ID = FIELDS.index("request_id")
_MAX_BACKLOG = 4 << 20  # bytes kept when a non-blocking fd is full; beyond, lines are dropped
_STD_FDS = {"/dev/stdout": 1, "/dev/stderr": 2}
_NO_TLS = (None, None, None)
_MAX_SEGMENTS = 1024  # cached segment texts per group; beyond, the cache starts over
_MAX_CACHED = 512  # a longer segment (a huge path or user agent) is not kept: memory stays ~1 MB


class _Segments(dict):
    """The JSON text of a run of fields (`"method":"GET","authority":...`) by their values, made
    once per distinct combination: most fields repeat from request to request (method, authority,
    protocol, status, cluster, upstream host, user agent, route...), so a line costs three
    lookups and one %-template instead of an escape call and a %s per field."""

    def __init__(self, names: tuple[str, ...]):
        super().__init__()
        self._names = names

    def __missing__(self, values: tuple) -> str:
        if len(self) >= _MAX_SEGMENTS:  # a flood of distinct values (hostile paths, user agents)
            self.clear()
        text = ",".join(f'"{name}":{_json(name, value)}' for name, value in zip(self._names, values))
        if len(text) <= _MAX_CACHED:
            self[values] = text
        return text


def _json(name: str, value) -> str:
    if name in _NUMBERS:
        return "%d" % value
    return _escape(value) if value else "null"  # Envoy: unset -> null


class Clock:
    """RFC 3339 UTC with milliseconds; strftime once per second, not once per line. `text` is a
    plain method: a call through `__call__` costs several times more."""

    def __init__(self):
        self._second = -1
        self._prefix = ""

    def text(self, t: float) -> str:
        second = int(t)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((t - second) * 1000):03d}Z"


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
        self._clock = Clock().text
        self._heads, self._upstreams, self._tails = (_Segments(names) for names in _GROUPS)
        self._fd = -1
        self._own_fd = False
        if format == "off":
            self.log = self.log_tcp = _discard  # type: ignore[method-assign]
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

    def log(self, start_time: float, method: str, authority: str, path: str, protocol: str,
            response_code: int, response_flags: str, bytes_received: int, bytes_sent: int,
            duration_ms: float, upstream_host: str | None, upstream_cluster: str | None,
            x_forwarded_for: str | None, user_agent: str | None, request_id: str | None,
            route_name: str | None, downstream_remote_address: str, attempt_count: int = 0,
            requested_server_name: str | None = None, connection=None) -> None:
        """One HTTP request. start_time is epoch seconds (time.time()); empty/None -> null.
        `connection` (a ConnectionInfo) gives the mTLS fields when it was terminated here."""
        pending = self._pending
        tls = (connection.peer_identity, connection.local_identity, connection.tls_version) \
            if connection is not None and connection.tls else _NO_TLS
        pending.append((start_time, method, authority, path, protocol, response_code,
                        response_flags, bytes_received, bytes_sent, duration_ms, upstream_host,
                        upstream_cluster, x_forwarded_for, user_agent, request_id, route_name,
                        downstream_remote_address, attempt_count, requested_server_name) + tls)
        if len(pending) >= self.max_lines:
            self.flush()

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
        request_id = record[14]
        return _TEMPLATE % (self._clock(record[0]), self._heads[record[1:7]], record[7], record[8], record[9],
                            self._upstreams[record[10:14]], _escape(request_id) if request_id else "null",
                            self._tails[record[15:]])

    def find(self, request_id: str) -> list[dict]:
        """The recent records (kept or still pending) of this x-request-id, oldest first, as the
        JSON objects the log writes."""
        return [json.loads(self.format(r)) for r in (*self.recent, *self._pending) if r[_REQUEST_ID] == request_id]

    def flush(self) -> None:
        """Write all pending lines, whole, in writes of complete lines up to the chunk size."""
        records, self._pending = self._pending, []
        self.recent.extend(records)
        if self._fd < 0:
            return
        chunks, self._backlog = self._backlog, []
        if records:
            chunks.extend(_whole_lines("".join(map(self.format, records)).encode("ascii"), self._chunk))
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
