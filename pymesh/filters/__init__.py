"""Write a pymesh filter in plain Python: the API a `PythonFilter` resource's class is written against.

A filter is a subclass of `HttpFilter` overriding the hooks it needs. The proxy makes one instance
per filter resource per configuration snapshot (its `config` is shared by every request); what
belongs to one request goes on the `Stream` each hook receives::

    from pymesh.filters import HttpFilter, LocalReply

    class ApiKey(HttpFilter):
        def setup(self):
            self.denied = self.metrics.counter("denied")

        def on_request_head(self, stream):
            if stream.request_headers.get("x-api-key") != self.config["key"]:
                self.denied.inc()
                return LocalReply(401, "missing or wrong API key")

A hook returns one of:

    CONTINUE (None)    carry on with the next filter
    a LocalReply       answer the client now; nothing (more) goes upstream
    PAUSE              (request head only) stop here until `stream.resume()`, `stream.reply(...)`
                       or `stream.fail(error)`, called later, typically from a task the hook started: the proxy keeps the
                       request waiting without blocking its event loop

Data hooks may also return bytes, which replace the piece of body they were given (b"" drops it;
a filter that buffers returns b"" until `end` and then the whole). A body changed this way goes on
without a Content-Length.

Request hooks run in the chain's order (phase, then priority, highest first), response hooks in
the reverse order. Response hooks see the upstream's responses; the proxy's own answers (a
filter's LocalReply, no route, no healthy upstream, ...) do not pass through them. Hooks run on the proxy's event loop: a hook must not block (a hook that takes
longer than the blocking budget is reported by name); an exception in a hook fails that request
alone (failStrategy FAIL_CLOSE: a 500 with response flag PFE; FAIL_OPEN: the request goes on as if
the hook had returned CONTINUE), counted and logged. Data hooks cost a call per body piece, so they
run only for requests whose chain has a filter that overrides one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Union

from pymesh.filters.metrics import Counter, Gauge, Histogram, Metrics

__all__ = [
    "CONTINUE", "PAUSE", "HttpFilter", "LocalReply", "Stream", "Headers", "Connection", "Metrics", "Counter",
    "Gauge", "Histogram", "FilterSpec", "FilterMatch", "Result",
]

CONTINUE = None


class _Pause:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PAUSE"


PAUSE = _Pause()  # the request waits for stream.resume() / stream.reply()


@dataclass(frozen=True)
class LocalReply:
    """Answer the client from the proxy: `body` (str is UTF-8 encoded) with `headers` ((name,
    value) pairs or a mapping). To a gRPC call it becomes a gRPC error (`grpc_status`, or the
    status mapped from the HTTP status as Envoy maps it)."""

    status: int
    body: bytes | str = b""
    headers: Mapping[str, str] | tuple[tuple[str, str], ...] = ()
    grpc_status: int | None = None


Result = Union[None, LocalReply, _Pause]


class Headers:
    """A message's headers, to read and change in place. Names are case-insensitive (stored lower
    case); values are str (latin-1, as HTTP carries them). Repeated fields keep their order.
    Framing headers (content-length, transfer-encoding, connection) are the proxy's own: they are
    not shown and cannot be set."""

    __slots__ = ("_fields",)

    def __init__(self, fields: list[tuple[bytes, bytes]]) -> None:
        self._fields = fields  # the message's own list: changes apply to what is sent

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of `name`, or `default`."""
        key = name.lower().encode("latin-1")
        for field_name, value in self._fields:
            if field_name == key:
                return value.decode("latin-1")
        return default

    def get_all(self, name: str) -> list[str]:
        key = name.lower().encode("latin-1")
        return [v.decode("latin-1") for n, v in self._fields if n == key]

    def set(self, name: str, value: str) -> None:
        """Replace every `name` field with one `value`."""
        key, encoded = header_field(name, value)
        self._fields[:] = [(n, v) for n, v in self._fields if n != key]
        self._fields.append((key, encoded))

    def add(self, name: str, value: str) -> None:
        """Append one more `name` field."""
        self._fields.append(header_field(name, value))

    def remove(self, name: str) -> None:
        key = name.lower().encode("latin-1")
        self._fields[:] = [(n, v) for n, v in self._fields if n != key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """(name, value) pairs in order."""
        return ((n.decode("latin-1"), v.decode("latin-1")) for n, v in list(self._fields))

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"


_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection", b"host", b"keep-alive", b"upgrade",
                      b"te", b"trailer", b"proxy-connection"})


def header_field(name: str, value: str) -> tuple[bytes, bytes]:
    """A header as the proxy sends it; a name or value that could break framing is refused here,
    in the filter's hook, not on the wire."""
    key = name.lower().encode("latin-1")
    encoded = str(value).encode("latin-1")
    if not key or key.startswith(b":") or any(c in key for c in b" \t\r\n:") or key in _FRAMING:
        raise ValueError(f"a filter may not set header {name!r}")
    if any(c in encoded for c in b"\r\n\x00"):
        raise ValueError(f"header {name!r}: a value may not contain CR, LF or NUL")
    return key, encoded


class Connection:
    """What the downstream connection established (read-only): shared by its requests."""

    __slots__ = ("_info",)

    def __init__(self, info) -> None:
        self._info = info

    source_address = property(lambda self: self._info.source_ip, doc="the client's IP address")
    source_port = property(lambda self: self._info.source_port)
    local_port = property(lambda self: self._info.local_port, doc="the listener's port")
    original_destination = property(lambda self: self._info.original_destination,
                                    doc="(ip, port) a captured connection was going to, or None")
    tls = property(lambda self: self._info.tls, doc="TLS was terminated by this proxy")
    sni = property(lambda self: self._info.sni)
    alpn = property(lambda self: self._info.alpn)
    tls_version = property(lambda self: self._info.tls_version)
    peer_identity = property(lambda self: self._info.peer_identity,
                             doc="the verified mTLS peer's SPIFFE id (spiffe://td/ns/N/sa/S), or None")
    local_identity = property(lambda self: self._info.local_identity)


class Stream:
    """One request's view for the filters: made by the proxy, one per request, shared by the
    request's filters. `state` is for per-request values (key it by your filter's name)."""

    # set by the proxy; documented here for readers and type checkers
    method: str
    path: str  # the request target as it goes upstream (path and query); may be changed
    authority: str  # the host it goes to; may be changed
    request_headers: Headers
    response_status: int | None  # once a response head arrived
    response_headers: Headers | None  # in response hooks
    route_name: str
    cluster_name: str
    direction: str  # "inbound" | "outbound"
    listener_name: str
    http_version: str  # the client's: "1.1" or "2"
    request_id: str
    connection: Connection
    state: dict[str, Any]

    def resume(self) -> None:
        """Go on after a PAUSE (the chain continues with the next filter). Safe to call from
        any task, once; after the request ended (the client left) it does nothing."""
        raise NotImplementedError

    def reply(self, status: int, body: bytes | str = b"", headers=()) -> None:
        """Answer a paused request locally instead of resuming it. Safe from any task."""
        raise NotImplementedError

    def fail(self, error: Exception) -> None:
        """End a PAUSE as a failure (the external call it awaited failed): the resource's
        failStrategy decides, as if the paused hook had raised `error` (FAIL_CLOSE: 500 with flag
        PFE; FAIL_OPEN: the chain goes on), counted and logged alike. Safe from any task, once."""
        raise NotImplementedError


class HttpFilter:
    """Base class of a filter: override the hooks you need; the others cost nothing.

    `name` is the resource's (namespace/name), `config` its pluginConfig (read it, do not change
    it: it is shared), `metrics` the filter's own counters, gauges and histograms, exported with
    the proxy's metrics as pymesh_filter_<metric> labelled with filter="<name>".
    """

    def __init__(self, name: str, config: Mapping[str, Any], metrics: Metrics) -> None:
        self.name = name
        self.config = config
        self.metrics = metrics
        self.setup()

    def setup(self) -> None:
        """Called once per snapshot after construction: parse config, declare metrics. An
        exception here is logged, and every request through the filter then fails by its
        failStrategy (FAIL_CLOSE: 500, flag PFE; FAIL_OPEN: the request goes on without it)."""

    def on_request_head(self, stream: Stream) -> Result:
        """The request's head, before it goes upstream: read and change stream.request_headers,
        path, authority; route_name and cluster_name are already chosen."""
        return CONTINUE

    def on_request_data(self, stream: Stream, data: bytes, end: bool) -> bytes | Result:
        """A piece of the request body; `end` is True on the last call (data may then be b"")."""
        return CONTINUE

    def on_request_end(self, stream: Stream, trailers: Headers) -> Result:
        """The whole request has arrived; its trailers (often none) may be changed."""
        return CONTINUE

    def on_response_head(self, stream: Stream) -> Result:
        """The upstream's response head: read stream.response_status, change
        stream.response_headers. A LocalReply replaces the response."""
        return CONTINUE

    def on_response_data(self, stream: Stream, data: bytes, end: bool) -> bytes | None:
        """A piece of the response body; `end` is True on the last call (data may then be b"")."""
        return CONTINUE

    def on_response_end(self, stream: Stream, trailers: Headers) -> None:
        """The response has been sent on; trailers may still be changed. For logging, counting."""
        return CONTINUE


@dataclass(frozen=True)
class FilterMatch:
    """Istio's WasmPlugin TrafficSelector: which traffic a filter applies to. mode: "CLIENT"
    (outbound), "SERVER" (inbound) or "CLIENT_AND_SERVER"/"UNDEFINED" (both); ports: the
    listener's port, none meaning every port."""

    mode: str = "UNDEFINED"
    ports: tuple[int, ...] = ()


PHASES = ("AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE")  # Istio's PluginPhase
FAIL_CLOSE, FAIL_OPEN = "FAIL_CLOSE", "FAIL_OPEN"


@dataclass(frozen=True)
class FilterSpec:
    """One filter in a snapshot, compiled from a PythonFilter resource (pymesh.routing): what the
    proxy's engine needs to instantiate and place it. `filter_class` is the class already
    imported at compile time (an import failure rejected the snapshot before it got here);
    `module` is its import path ("package.module:Class", or the file it came from), for logs."""

    name: str  # "namespace/name"
    module: str
    filter_class: type = field(compare=False, repr=False, default=HttpFilter)
    config: Mapping[str, Any] = field(default_factory=dict, hash=False)
    phase: str = "UNSPECIFIED_PHASE"
    priority: int = 0
    fail_strategy: str = FAIL_CLOSE
    match: tuple[FilterMatch, ...] = ()  # any entry matching selects; empty: all traffic
