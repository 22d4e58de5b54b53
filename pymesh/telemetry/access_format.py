"""Envoy access-log formats for envoyFileAccessLog providers: Istio's default text line, a
`logFormat.text` of command operators, or `logFormat.labels` (JSON: key -> operator).

A format is compiled once into a list of pieces; a line is the pieces applied to one record
(`Record`, what the proxy knows of a finished request). Unset values print as Envoy does: "-"
in text, null in JSON; numeric operators are JSON numbers. Operators Envoy has that pymesh
cannot fill (CONNECTION_TERMINATION_DETAILS, UPSTREAM_LOCAL_ADDRESS, ...) are unset; an operator Envoy
does not have is refused when the mesh config is loaded (`check`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from json.encoder import c_encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, Callable, Mapping

from pymesh.telemetry.accesslog import Clock

# Istio's EnvoyTextLogFormat (pilot/pkg/model/telemetry_logging.go)
ISTIO_TEXT_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
    '%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% '
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" '
    '"%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% '
    '%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n'
)
# Istio's EnvoyJSONLogFormatIstio (accessLogEncoding: JSON without a format)
ISTIO_JSON_LABELS = (
    ("start_time", "%START_TIME%"), ("route_name", "%ROUTE_NAME%"), ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"), ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"), ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    ("connection_termination_details", "%CONNECTION_TERMINATION_DETAILS%"),
    ("bytes_received", "%BYTES_RECEIVED%"), ("bytes_sent", "%BYTES_SENT%"), ("duration", "%DURATION%"),
    ("upstream_service_time", "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"), ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"), ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"), ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    ("upstream_transport_failure_reason", "%UPSTREAM_TRANSPORT_FAILURE_REASON%"),
)


@dataclass
class Record:
    """One finished request or TCP connection, as the formats read it."""

    start_time: float
    method: str | None = None
    path: str | None = None
    authority: str | None = None
    protocol: str | None = None
    response_code: int = 0
    response_flags: str = "-"
    response_code_details: str | None = None
    bytes_received: int = 0
    bytes_sent: int = 0
    duration_ms: float = 0.0
    upstream_host: str | None = None
    upstream_cluster: str | None = None
    downstream_remote_address: str | None = None
    downstream_local_address: str | None = None
    requested_server_name: str | None = None
    route_name: str | None = None
    request_id: str | None = None
    attempt_count: int = 0
    peer_uri_san: str | None = None
    local_uri_san: str | None = None
    tls_version: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # the request headers formats name


Getter = Callable[[Record], Any]

_FIELDS: dict[str, Getter] = {
    "PROTOCOL": lambda r: r.protocol,
    "RESPONSE_CODE": lambda r: r.response_code,
    "RESPONSE_FLAGS": lambda r: r.response_flags or "-",
    "RESPONSE_CODE_DETAILS": lambda r: r.response_code_details,
    "BYTES_RECEIVED": lambda r: r.bytes_received,
    "BYTES_SENT": lambda r: r.bytes_sent,
    "DURATION": lambda r: int(r.duration_ms),
    "UPSTREAM_HOST": lambda r: r.upstream_host,
    "UPSTREAM_CLUSTER": lambda r: r.upstream_cluster,
    "UPSTREAM_CLUSTER_RAW": lambda r: r.upstream_cluster,
    "DOWNSTREAM_REMOTE_ADDRESS": lambda r: r.downstream_remote_address,
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": lambda r: _without_port(r.downstream_remote_address),
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS": lambda r: r.downstream_remote_address,
    "DOWNSTREAM_LOCAL_ADDRESS": lambda r: r.downstream_local_address,
    "REQUESTED_SERVER_NAME": lambda r: r.requested_server_name,
    "ROUTE_NAME": lambda r: r.route_name,
    "UPSTREAM_REQUEST_ATTEMPT_COUNT": lambda r: r.attempt_count,
    "DOWNSTREAM_PEER_URI_SAN": lambda r: r.peer_uri_san,
    "DOWNSTREAM_LOCAL_URI_SAN": lambda r: r.local_uri_san,
    "DOWNSTREAM_TLS_VERSION": lambda r: r.tls_version,
}
_NUMERIC = {"RESPONSE_CODE", "BYTES_RECEIVED", "BYTES_SENT", "DURATION", "UPSTREAM_REQUEST_ATTEMPT_COUNT"}
# Envoy operators pymesh has no value for: always unset
_UNSET = frozenset({
    "CONNECTION_TERMINATION_DETAILS", "UPSTREAM_TRANSPORT_FAILURE_REASON",
    "UPSTREAM_LOCAL_ADDRESS", "UPSTREAM_REMOTE_ADDRESS", "RESPONSE_DURATION", "REQUEST_DURATION",
    "RESPONSE_TX_DURATION", "UPSTREAM_WIRE_BYTES_SENT", "UPSTREAM_WIRE_BYTES_RECEIVED", "HOSTNAME",
    "UPSTREAM_TRANSPORT_FAILURE_REASON", "DOWNSTREAM_LOCAL_PORT", "CONNECTION_ID", "UPSTREAM_FILTER_STATE",
    "FILTER_STATE", "DYNAMIC_METADATA", "CEL", "METADATA", "ENVIRONMENT",
})
_HEADER_FIELDS: dict[str, Getter] = {
    ":method": lambda r: r.method, ":path": lambda r: r.path, ":authority": lambda r: r.authority,
    "host": lambda r: r.authority, "x-request-id": lambda r: r.request_id,
}
_clock = Clock().text  # START_TIME: strftime once a second
# bounded and possessive: `[^)]*` rescanned the rest of the text from every "%NAME(" (quadratic:
# 7 s for 48 KB of "%A(", hours for a 1 MiB file) and `\d+` let a 5000-digit limit reach int()
_OPERATOR = re.compile(r"%([A-Z_]{1,64}+)(?:\(([^)]{0,256}+)\))?(?::([0-9]{1,9}+))?%")


class FormatError(ValueError):
    pass


def check(text: str) -> str | None:
    """The problem with a format string, or None (for validation when loaded)."""
    try:
        _pieces(text)
    except FormatError as error:
        return str(error)
    return None


def headers_used(text: str) -> frozenset[str]:
    """The request headers (lower-case) a format reads beyond the record's own fields."""
    return frozenset(h for piece in _pieces(text) if isinstance(piece, _Op) for h in piece.headers)


class _Op:
    __slots__ = ("value", "numeric", "headers")

    def __init__(self, get: Getter, numeric: bool, headers: tuple[str, ...], limit: int | None):
        self.numeric, self.headers = numeric, headers
        # the getter itself unless a limit cuts its strings: one call a value, not two
        self.value: Getter = get if limit is None else \
            (lambda r: v[:limit] if isinstance(v := get(r), str) else v)


def _pieces(text: str) -> list[str | _Op]:
    pieces: list[str | _Op] = []
    pos = 0
    for found in _OPERATOR.finditer(text):
        if found.start() > pos:
            pieces.append(text[pos:found.start()])
        pieces.append(_operator(found.group(1), found.group(2), found.group(3)))
        pos = found.end()
    if pos < len(text):
        pieces.append(text[pos:])
    return pieces


def _operator(name: str, argument: str | None, limit: str | None) -> _Op:
    size = int(limit) if limit else None
    if name == "START_TIME":
        return _Op(lambda r: _clock(r.start_time), False, (), size)
    if name in ("REQ", "RESP", "TRAILER", "RESPONSE_TRAILER"):
        if not argument:
            raise FormatError(f"%{name}(...)% needs a header name")
        if name != "REQ":
            return _Op(lambda r: None, False, (), size)
        names = tuple(h.strip().lower() for h in argument.split("?"))
        getters = [_HEADER_FIELDS.get(h) or _header_getter(h) for h in names]
        return _Op(getters[0] if len(getters) == 1 else _first(getters), False,
                   tuple(h for h in names if h not in _HEADER_FIELDS), size)
    if name in _FIELDS:
        return _Op(_FIELDS[name], name in _NUMERIC, (), size)
    if name in _UNSET:
        return _Op(lambda r: None, False, (), size)
    raise FormatError(f"unknown command operator %{name}%")


def _first(getters: list[Getter]) -> Getter:
    """REQ(A?B): A's value, else B's."""
    first, second = getters[0], getters[1:]

    def get(r: Record) -> Any:
        value = first(r)
        if value is None:
            for other in second:
                value = other(r)
                if value is not None:
                    break
        return value

    return get


def _header_getter(name: str) -> Getter:
    return lambda r: r.headers.get(name)


def _without_port(address: str | None) -> str | None:
    if not address or ":" not in address or address.count(":") > 1 and not address.startswith("["):
        return address
    return address.rsplit(":", 1)[0].strip("[]")


def _template(pieces: list[str | _Op]) -> tuple[str, list[_Op]]:
    """The pieces as one %-template (literal text with % doubled, %s per operator) and its operators."""
    return "".join(p.replace("%", "%%") if isinstance(p, str) else "%s" for p in pieces), \
        [p for p in pieces if isinstance(p, _Op)]


def text_formatter(text: str) -> Callable[[Record], str]:
    """A text format (Istio's default when `text` is empty); a line always ends in a newline."""
    pieces = _pieces(text or ISTIO_TEXT_FORMAT)
    if not text.endswith("\n") and text:
        pieces.append("\n")
    template, ops = _template(pieces)
    getters = [op.value for op in ops]

    def render(record: Record) -> str:
        return template % tuple(["-" if (v := get(record)) is None or v == "" else str(v) for get in getters])

    return render


def _json_value(pieces: list[str | _Op]) -> Getter:
    """One label's JSON value: one operator alone keeps its type (number, or string; unset is
    null), anything else is the text of its pieces as a JSON string."""
    if len(pieces) == 1 and isinstance(pieces[0], _Op):
        get = pieces[0].value
        if pieces[0].numeric:
            return lambda r: "null" if (v := get(r)) is None or v == "" else str(v)
        return lambda r: "null" if (v := get(r)) is None or v == "" else c_encode_basestring_ascii(str(v))
    template, ops = _template(pieces)
    getters = [op.value for op in ops]
    return lambda r: c_encode_basestring_ascii(
        template % tuple(["-" if (v := get(r)) is None else str(v) for get in getters]))


def json_formatter(labels: tuple[tuple[str, str], ...]) -> Callable[[Record], str]:
    """A JSON object per line: each label's operators, one operator alone keeps its type."""
    template = "{" + ",".join(c_encode_basestring_ascii(key).replace("%", "%%") + ":%s" for key, _ in labels) + "}\n"
    values = [_json_value(_pieces(value)) for _, value in labels]

    def render(record: Record) -> str:
        return template % tuple([value(record) for value in values])

    return render
