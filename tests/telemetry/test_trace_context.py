"""Trace context parsing, sampling and the next hop's headers (pymesh.telemetry.trace_context),
table-driven from the W3C Trace Context and B3 specs and Envoy's request-id trace reasons."""

from __future__ import annotations

import pytest

from pymesh.telemetry import trace_context as tc

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize("value, expected", [
    (f"00-{TRACE}-{SPAN}-01", (TRACE, SPAN, True)),
    (f"00-{TRACE}-{SPAN}-00", (TRACE, SPAN, False)),
    (f"00-{TRACE}-{SPAN}-03", (TRACE, SPAN, True)),  # other flag bits do not matter
    (f"cc-{TRACE}-{SPAN}-01-what-the-future-holds", (TRACE, SPAN, True)),  # a later version's extra fields
    (f"00-{TRACE}-{SPAN}-01-extra", None),  # version 00 is exactly 55 characters
    (f"ff-{TRACE}-{SPAN}-01", None),  # version ff is invalid
    (f"00-{TRACE.upper()}-{SPAN}-01", None),  # upper-case hex
    (f"00-{'0' * 32}-{SPAN}-01", None),  # all-zero trace id
    (f"00-{TRACE}-{'0' * 16}-01", None),  # all-zero parent id
    (f"00-{TRACE[:-1]}-{SPAN}-01", None),  # short
    (f"00_{TRACE}-{SPAN}-01", None),
    (f"00-{TRACE}-{SPAN}-0g", None),
    ("garbage", None),
])
def test_traceparent(value, expected):
    assert tc.parse_traceparent(value.encode()) == expected


@pytest.mark.parametrize("value, expected", [
    (f"{TRACE}-{SPAN}-1-{'1' * 16}", (TRACE, SPAN, True, False, False)),
    (f"{TRACE}-{SPAN}", (TRACE, SPAN, None, False, False)),
    (f"{TRACE[16:]}-{SPAN}-0", (TRACE[16:].rjust(32, "0"), SPAN, False, False, True)),
    (f"{TRACE}-{SPAN}-d", (TRACE, SPAN, True, True, False)),
    ("0", ("", "", False, False, False)),  # a decision alone
    ("d", ("", "", True, True, False)),
    (f"{TRACE}-{SPAN}-x", None),
    (f"{TRACE}-short", None),
    ("", None),
])
def test_b3_single(value, expected):
    parsed = tc.parse_b3_single(value.encode())
    if expected is None:
        assert parsed is None
    else:
        assert (parsed.trace_id, parsed.span_id, parsed.sampled, parsed.debug, parsed.short_b3) == expected


@pytest.mark.parametrize("trace, span, sampled, flags, expected", [
    (TRACE, SPAN, "1", None, (TRACE, SPAN, True, False)),
    (TRACE, SPAN, "true", None, (TRACE, SPAN, True, False)),
    (TRACE, SPAN, "0", None, (TRACE, SPAN, False, False)),
    (TRACE, SPAN, None, "1", (TRACE, SPAN, True, True)),  # debug implies sampled
    (TRACE[16:], SPAN, None, None, (TRACE[16:].rjust(32, "0"), SPAN, None, False)),  # 64-bit id
    (None, None, "0", None, ("", "", False, False)),
    (TRACE, None, "1", None, None),  # a trace id needs a span id
    ("xyz", SPAN, "1", None, None),
    (None, None, None, None, None),
])
def test_b3_multi(trace, span, sampled, flags, expected):
    enc = lambda v: v.encode() if v is not None else None  # noqa: E731
    parsed = tc.parse_b3_multi(enc(trace), enc(span), enc(sampled), enc(flags))
    if expected is None:
        assert parsed is None
    else:
        assert (parsed.trace_id, parsed.span_id, parsed.sampled, parsed.debug) == expected


def _headers(**values):
    table = {k.replace("_", "-").encode(): v.encode() for k, v in values.items()}
    return table.get


def test_extract_prefers_w3c_and_notes_every_valid_format():
    found = tc.extract(_headers(traceparent=f"00-{TRACE}-{SPAN}-01", tracestate="congo=t61rcWkgMzE",
                                x_b3_traceid="a" * 16, x_b3_spanid="b" * 16))
    assert (found.trace_id, found.span_id, found.sampled) == (TRACE, SPAN, True)
    assert found.tracestate == b"congo=t61rcWkgMzE"
    assert found.formats == tc.W3C | tc.B3_MULTI


def test_extract_a_malformed_traceparent_is_ignored():
    assert tc.extract(_headers(traceparent="00-nonsense", tracestate="a=b")) is None
    found = tc.extract(_headers(traceparent="00-nonsense", b3=f"{TRACE}-{SPAN}-1"))
    assert found.formats == tc.B3_SINGLE and found.tracestate is None


RID = "0123abcd-0000-4000-8000-000000000000"


@pytest.mark.parametrize("request_id, client, force, percent, use_rid, draw, expected", [
    (RID, True, False, 0.0, True, 0.99, tc.CLIENT),  # x-client-trace-id forces
    (RID, False, True, 0.0, True, 0.99, tc.FORCED),
    (RID.replace("-4000", "-a000"), False, False, 0.0, True, 0.99, tc.SAMPLING),  # a hop before sampled it
    (RID.replace("-4000", "-b000"), False, False, 0.0, True, 0.99, tc.CLIENT),
    (RID, False, False, 100.0, True, 0.99, tc.SAMPLING),
    (RID, False, False, 0.0, True, 0.0, tc.NOT_TRACEABLE),
    # the request id decides: 0x0123abcd % 10000 = 4957
    (RID, False, False, 49.57, True, 0.0, tc.NOT_TRACEABLE),
    (RID, False, False, 49.58, True, 0.99, tc.SAMPLING),
    # not using the request id: the random draw decides, and a reason in the id is not read
    (RID.replace("-4000", "-a000"), False, False, 50.0, False, 0.6, tc.NOT_TRACEABLE),
    (RID, False, False, 50.0, False, 0.4, tc.SAMPLING),
    ("not-a-uuid", False, False, 50.0, True, 0.4, tc.SAMPLING),
])
def test_decide(request_id, client, force, percent, use_rid, draw, expected):
    assert tc.decide(request_id, client, force, percent, use_rid, draw) == expected


def test_the_reason_is_written_into_the_request_id():
    marked = tc.with_reason(RID, tc.SAMPLING)
    assert marked[14] == "a" and marked[:14] == RID[:14] and marked[15:] == RID[15:]
    assert tc.trace_reason(marked) == tc.SAMPLING
    assert tc.trace_reason(tc.with_reason(marked, tc.NOT_TRACEABLE)) == tc.NOT_TRACEABLE
    assert tc.with_reason("short", tc.SAMPLING) == "short"


def test_outbound_headers_in_each_format():
    ours = "1" * 16
    headers = dict(tc.outbound_headers(TRACE, ours, SPAN, True, False, tc.W3C | tc.B3_MULTI | tc.B3_SINGLE, False))
    assert headers[b"traceparent"] == f"00-{TRACE}-{ours}-01".encode()
    assert headers[b"x-b3-traceid"] == TRACE.encode() and headers[b"x-b3-spanid"] == ours.encode()
    assert headers[b"x-b3-parentspanid"] == SPAN.encode() and headers[b"x-b3-sampled"] == b"1"
    assert headers[b"b3"] == f"{TRACE}-{ours}-1-{SPAN}".encode()
    short = dict(tc.outbound_headers(TRACE[16:].rjust(32, "0"), ours, "", False, False, tc.B3_MULTI, True))
    assert short == {b"x-b3-traceid": TRACE[16:].encode(), b"x-b3-spanid": ours.encode(), b"x-b3-sampled": b"0"}
    debug = dict(tc.outbound_headers(TRACE, ours, "", True, True, tc.B3_MULTI | tc.W3C, False))
    assert debug[b"x-b3-flags"] == b"1" and b"x-b3-sampled" not in debug
    assert debug[b"traceparent"].endswith(b"-01")


@pytest.mark.parametrize("value", [b"", b"-", b"---", b"\xff\xfe" * 40, b"0" * 10000, b"00-" + b"a" * 52,
                                   b"d-d-d-d-d", b"\x00", "00-\u00e9".encode(), b" , "])
def test_hostile_values_never_raise(value):
    for name in (tc.TRACEPARENT, tc.B3, tc.B3_TRACE, tc.B3_SAMPLED, tc.B3_FLAGS):
        found = tc.extract({name: value, tc.B3_SPAN: value}.get)
        assert found is None or len(found.trace_id) in (0, 32)
    assert tc.decide(value.decode("latin-1"), False, False, 50.0, True, 0.5) in (tc.SAMPLING, tc.NOT_TRACEABLE)
