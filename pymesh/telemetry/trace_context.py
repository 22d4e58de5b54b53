"""Trace context propagation: reading the caller's trace from W3C Trace Context and B3
headers, the sampling decision, and the headers the next hop gets (pure, no I/O).

A proxy joins the caller's trace, never replaces it: the outbound request carries the same
trace id with this proxy's span as its parent, in every format the request came in, plus the
provider's own (Envoy's OpenTelemetry tracer writes W3C `traceparent`, its Zipkin tracer B3
multi-headers). `tracestate` passes on unchanged. A malformed header is ignored, as the W3C
spec asks: the request then starts a new trace.

The sampling decision follows Envoy's connection manager (`mutateTracingRequestHeader`,
`shouldTraceRequest`): the reason travels in x-request-id's UUID (its 15th character: `a`
random sampling, `b` x-client-trace-id, `9` forced, `4` none), so every hop of one request
agrees; a caller's explicit sampled flag (traceparent flags, x-b3-sampled, x-b3-flags debug)
is honoured over it, as Envoy's tracers take their parent's decision.
"""

from __future__ import annotations

from dataclasses import dataclass

W3C = 1
B3_MULTI = 2
B3_SINGLE = 4

# Envoy's trace reasons (source/common/request_id/uuid): the character at TRACE_BYTE_POSITION
TRACE_BYTE_POSITION = 14
NOT_TRACEABLE, SAMPLING, CLIENT, FORCED = "not_traceable", "random_sampling", "client_enabled", "service_forced"
_REASON_CHAR = {SAMPLING: "a", CLIENT: "b", FORCED: "9", NOT_TRACEABLE: "4"}
_CHAR_REASON = {v: k for k, v in _REASON_CHAR.items()}

TRACEPARENT, TRACESTATE = b"traceparent", b"tracestate"
B3, B3_TRACE, B3_SPAN, B3_PARENT, B3_SAMPLED, B3_FLAGS = (
    b"b3", b"x-b3-traceid", b"x-b3-spanid", b"x-b3-parentspanid", b"x-b3-sampled", b"x-b3-flags")
CLIENT_TRACE_ID, FORCE_TRACE = b"x-client-trace-id", b"x-envoy-force-trace"
# every header this module writes: the proxy replaces the caller's copies of them
WRITTEN = frozenset({TRACEPARENT, B3, B3_TRACE, B3_SPAN, B3_PARENT, B3_SAMPLED, B3_FLAGS})
# every header that matters to the decision: a request with none of them takes the short way
READ = WRITTEN | {TRACESTATE, CLIENT_TRACE_ID, FORCE_TRACE}
_HEX = frozenset(b"0123456789abcdef")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


@dataclass(slots=True)
class Incoming:
    """What the caller said about its trace. `trace_id` is 32 hex digits (a 64-bit B3 id is
    left-padded, and `short_b3` remembers to write it back as it came); `span_id` the caller's
    span, our parent ("" when only a sampling decision came); `sampled` None: no decision."""

    trace_id: str = ""
    span_id: str = ""
    sampled: bool | None = None
    debug: bool = False
    tracestate: bytes | None = None
    formats: int = 0
    short_b3: bool = False


def _hex(value: bytes, lengths: tuple[int, ...]) -> bool:
    return len(value) in lengths and _HEX.issuperset(value)


def parse_traceparent(value: bytes) -> tuple[str, str, bool] | None:
    """(trace id, parent id, sampled) of a valid traceparent, else None (W3C Trace Context
    level 1, section 3.2: version 00 is exactly 55 characters; a later version may append
    fields after a dash; version ff, all-zero ids and upper-case hex are invalid)."""
    value = value.strip(b" \t")
    if len(value) < 55 or (len(value) > 55 and (value[:2] == b"00" or value[55:56] != b"-")):
        return None
    version, trace_id, span_id, flags = value[:2], value[3:35], value[36:52], value[53:55]
    if value[2:3] != b"-" or value[35:36] != b"-" or value[52:53] != b"-":
        return None
    if version == b"ff" or not all(_hex(v, (n,)) for v, n in ((version, 2), (trace_id, 32), (span_id, 16), (flags, 2))):
        return None
    trace, span = trace_id.decode(), span_id.decode()
    if trace == _ZERO_TRACE or span == _ZERO_SPAN:
        return None
    return trace, span, bool(int(flags, 16) & 1)


def _b3_sampled(value: bytes) -> tuple[bool | None, bool]:
    """(sampled, debug) of a B3 sampling state: 1/true, 0/false, d (debug); else no decision."""
    value = value.strip().lower()
    if value in (b"1", b"true"):
        return True, False
    if value in (b"0", b"false"):
        return False, False
    if value == b"d":
        return True, True
    return None, False


def _trace_id(value: bytes) -> tuple[str, bool] | None:
    value = value.strip().lower()
    if not _hex(value, (16, 32)) or set(value) == {ord("0")}:
        return None
    return value.decode().rjust(32, "0"), len(value) == 16


def parse_b3_single(value: bytes) -> Incoming | None:
    """`b3: {traceid}-{spanid}[-{sampling}[-{parentspanid}]]`, or a bare sampling state."""
    parts = value.strip().split(b"-")
    if len(parts) == 1:
        sampled, debug = _b3_sampled(parts[0])
        return Incoming(sampled=sampled, debug=debug, formats=B3_SINGLE) if sampled is not None else None
    if len(parts) > 4:
        return None
    trace = _trace_id(parts[0])
    span = parts[1].lower()
    if trace is None or not _hex(span, (16,)):
        return None
    sampled, debug = _b3_sampled(parts[2]) if len(parts) > 2 else (None, False)
    if len(parts) > 2 and sampled is None:
        return None
    return Incoming(trace[0], span.decode(), sampled, debug, formats=B3_SINGLE, short_b3=trace[1])


def parse_b3_multi(trace_id: bytes | None, span_id: bytes | None, sampled: bytes | None,
                   flags: bytes | None) -> Incoming | None:
    """x-b3-traceid (64 or 128 bit) with x-b3-spanid; x-b3-sampled; x-b3-flags: 1 is debug
    (sampled). A sampling state alone is a decision without a trace to join."""
    debug = flags is not None and flags.strip() == b"1"
    decision = True if debug else (_b3_sampled(sampled)[0] if sampled is not None else None)
    if trace_id is None:
        return Incoming(sampled=decision, debug=debug, formats=B3_MULTI) if decision is not None else None
    trace = _trace_id(trace_id)
    span = (span_id or b"").strip().lower()
    if trace is None or not _hex(span, (16,)):
        return None
    return Incoming(trace[0], span.decode(), decision, debug, formats=B3_MULTI, short_b3=trace[1])


def extract(header) -> Incoming | None:
    """The caller's trace from a request's headers (`header(name) -> bytes | None`), or None.
    W3C first, then single b3, then B3 multi-headers; each other valid format present is noted
    in `formats` so that the next hop gets it too."""
    found: Incoming | None = None
    formats = 0
    traceparent = header(TRACEPARENT)
    if traceparent is not None and (parsed := parse_traceparent(traceparent)) is not None:
        found = Incoming(parsed[0], parsed[1], parsed[2], tracestate=header(TRACESTATE), formats=W3C)
        formats |= W3C
    single = header(B3)
    if single is not None and (b3 := parse_b3_single(single)) is not None:
        formats |= B3_SINGLE
        found = found or b3
    multi = parse_b3_multi(header(B3_TRACE), header(B3_SPAN), header(B3_SAMPLED), header(B3_FLAGS))
    if multi is not None:
        formats |= B3_MULTI
        found = found or multi
    if found is not None:
        found.formats = formats
    return found


# --- sampling ----------------------------------------------------------------------------------


def trace_reason(request_id: str) -> str:
    """The reason a request id's UUID carries (Envoy's getTraceReason)."""
    if len(request_id) != 36:
        return NOT_TRACEABLE
    return _CHAR_REASON.get(request_id[TRACE_BYTE_POSITION], NOT_TRACEABLE)


def with_reason(request_id: str, reason: str) -> str:
    """The request id with `reason` written into it (Envoy's setTraceReason); an id that is not
    a UUID is left alone."""
    if len(request_id) != 36:
        return request_id
    return request_id[:TRACE_BYTE_POSITION] + _REASON_CHAR[reason] + request_id[TRACE_BYTE_POSITION + 1:]


class Sampler:
    """The sampling decision of one tracing policy (Envoy's mutateTracingRequestHeader), its
    threshold and draw compiled once: a traced proxy decides every request, sampled or not.

    The reason a hop before wrote into x-request-id is kept; else x-client-trace-id, then
    x-envoy-force-trace, then random sampling at `percent` per ten thousand, drawn from the
    request id's first 8 hex digits (Envoy's UUIDRequestIDExtension::getInteger, so every proxy
    samples the same requests) or from `random()` when use_request_id_for_trace_sampling is off
    or the id is no UUID."""

    __slots__ = ("threshold", "by_request_id")

    def __init__(self, percent: float, use_request_id: bool) -> None:
        self.threshold = round(percent * 100)
        self.by_request_id = use_request_id

    def reason(self, request_id: str, random, client_trace_id: bool = False, force_trace: bool = False) -> str:
        uuid = self.by_request_id and len(request_id) == 36
        if uuid:
            reason = _CHAR_REASON.get(request_id[TRACE_BYTE_POSITION], NOT_TRACEABLE)
            if reason != NOT_TRACEABLE:
                return reason
        if client_trace_id:
            return CLIENT
        if force_trace:
            return FORCED
        try:
            draw = int(request_id[:8], 16) % 10000 if uuid else int(random() * 10000)
        except ValueError:
            draw = int(random() * 10000)
        return SAMPLING if draw < self.threshold else NOT_TRACEABLE


def decide(request_id: str, client_trace_id: bool, force_trace: bool, percent: float, use_request_id: bool,
           random_value: float) -> str:
    """The trace reason of a request: `Sampler` for one request, `random_value` in [0, 1)."""
    return Sampler(percent, use_request_id).reason(request_id, lambda: random_value, client_trace_id, force_trace)


# --- the next hop's headers --------------------------------------------------------------------


def new_trace_headers(ids: bytes, sampled: bool, formats: int) -> list[tuple[bytes, bytes]]:
    """A new trace's headers from 32 random hex digits: the trace id, and its last 16 our span
    id (no parent). W3C alone, the common case of a traced proxy, takes no strings on the way."""
    if formats == W3C:
        return [(TRACEPARENT, b"00-%s-%s-%s" % (ids, ids[16:], b"01" if sampled else b"00"))]
    trace_id = ids.decode()
    return outbound_headers(trace_id, trace_id[16:], "", sampled, False, formats, False)


def outbound_headers(trace_id: str, span_id: str, parent_id: str, sampled: bool, debug: bool, formats: int,
                     short_b3: bool) -> list[tuple[bytes, bytes]]:
    """The headers that carry our span to the next hop, in each of `formats` (the caller's
    tracestate is not among them: it passes on as it came)."""
    if formats == W3C:  # the common case, kept short: it runs for most requests of a traced proxy
        return [(TRACEPARENT, ("00-%s-%s-%s" % (trace_id, span_id, "01" if sampled else "00")).encode())]
    out = []
    if formats & W3C:
        out.append((TRACEPARENT, b"00-%s-%s-%s" % (trace_id.encode(), span_id.encode(), b"01" if sampled else b"00")))
    b3_trace = (trace_id[16:] if short_b3 else trace_id).encode()
    state = b"d" if debug else (b"1" if sampled else b"0")
    if formats & B3_MULTI:
        out += [(B3_TRACE, b3_trace), (B3_SPAN, span_id.encode())]
        if parent_id:
            out.append((B3_PARENT, parent_id.encode()))
        out.append((B3_FLAGS, b"1") if debug else (B3_SAMPLED, state))
    if formats & B3_SINGLE:
        single = b"%s-%s-%s" % (b3_trace, span_id.encode(), state)
        out.append((B3, single + b"-" + parent_id.encode() if parent_id else single))
    return out
