"""Target `codec`: pymesh.http.h1's RequestReader and ResponseReader under several chunkings.

Every input is fed to a request reader and to two response readers (a body expected, and not, as
after HEAD: that one up to its first response's end), each whole, one byte at a time and cut at
the input's points. Invariants:
- `feed` never raises: a malformed input ends the event list with one ERROR event, and after it
  more bytes deliver no event;
- chunking-independence: every chunking gives the same events (adjacent DATA merged, an UPGRADE's
  tail counted with the bytes after it), or every chunking is refused (the status may differ:
  which limit or check fires first can depend on where a chunk ends), each run's events before
  the error a prefix of the longest run's; only a line limit may refuse in one chunking what
  another accepts;
- a head's framing facts: content_length is None or an int >= 0, never together with chunked;
- a message's DATA never exceeds its content_length and adds up to it at END; a request with
  neither length nor chunked, a HEAD response and a 1xx/204/304 have no body; trailers only
  after a chunked body; the body bytes never exceed the input.
"""

from __future__ import annotations

import dataclasses

from pymesh.http import h1

from .inputs import Input, InvariantBroken, bytewise, parse

_NO_BODY_STATUSES = (204, 304)
# Small limits, so that short fuzz inputs reach them (fields the codec does not have are skipped).
SMALL_LIMITS = {"max_request_line": 256, "max_header_bytes": 1024, "max_headers": 12}


def small_limits() -> h1.Limits:
    known = {f.name for f in dataclasses.fields(h1.Limits)}
    return h1.Limits(**{name: value for name, value in SMALL_LIMITS.items() if name in known})


def _request_reader():
    return h1.RequestReader(small_limits())


def _response_reader(expect_body: bool):
    def make():
        reader = h1.ResponseReader(small_limits())
        reader.expect_body = expect_body
        return reader
    return make


READERS = {
    "request": _request_reader,
    "response": _response_reader(True),
    "response-to-HEAD": _response_reader(False),
}


def facts(head) -> tuple:
    """Everything a head says, as comparable values (whatever fields the codec gives it)."""
    names = getattr(type(head), "__slots__", None) or sorted(vars(head))
    return tuple((name, _frozen(getattr(head, name, None))) for name in names if not name.startswith("_"))


def _frozen(value):
    return tuple(value) if isinstance(value, list) else value


def feed_all(make_reader, chunks: list[bytes]) -> tuple[list, h1.ProtocolError | None]:
    """The normalized events and the error (or None) of feeding `chunks` in order."""
    reader = make_reader()
    events: list = []
    for index, chunk in enumerate(chunks):
        got = _feed(reader, chunk)
        for position, (kind, value) in enumerate(got):
            if kind == h1.UPGRADE:  # the rest of the input belongs to the new protocol
                events.append(("upgrade", value + b"".join(chunks[index + 1 :])))
                return events, None
            if kind == h1.ERROR:
                if position != len(got) - 1:
                    raise InvariantBroken(f"events delivered after an ERROR event: {got[position + 1:]!r}")
                for rest in chunks[index + 1 :]:
                    if _feed(reader, rest):
                        raise InvariantBroken("events delivered after an ERROR event, in a later chunk")
                return events, value
            _append(events, kind, value)
            if kind == h1.END and reader_stops_at_end(reader):
                return events, None
    return events, None


def reader_stops_at_end(reader) -> bool:
    """After a head-only response the proxy drops the connection, never reading on (so the
    reader's view of any bytes after it is not part of its contract)."""
    return isinstance(reader, h1.ResponseReader) and not reader.expect_body


def _feed(reader, chunk: bytes) -> list:
    try:
        return reader.feed(chunk)
    except Exception as error:  # the oracle's point: errors are events, never exceptions
        raise InvariantBroken(f"feed raised {type(error).__name__}: {error}") from error


def _append(events: list, kind: int, value) -> None:
    if kind == h1.DATA:
        if events and events[-1][0] == "data":
            events[-1] = ("data", events[-1][1] + value)
        else:
            events.append(("data", bytes(value)))
    elif kind == h1.HEAD:
        events.append(("head", value))
    elif kind == h1.END:
        events.append(("end", tuple(value)))
    else:
        raise InvariantBroken(f"unknown event kind {kind!r}")


def check_messages(name: str, events: list, input_length: int) -> None:
    """The framing invariants over one run's events."""
    head = None
    body = total = 0
    for kind, value in events:
        if kind == "head":
            head, body = value, 0
            length, chunked = head.content_length, head.streamed
            if length is not None and (type(length) is not int or length < 0):
                raise InvariantBroken(f"{name}: content_length {length!r}")
            if length is not None and chunked:
                raise InvariantBroken(f"{name}: both content_length {length} and chunked")
        elif kind == "data":
            if head is None:
                raise InvariantBroken(f"{name}: body bytes before any head")
            body += len(value)
            total += len(value)
            limit = _body_limit(name, head)
            if limit is not None and body > limit:
                raise InvariantBroken(f"{name}: {body} body bytes, the head allows {limit}")
        elif kind == "end":
            if head is None:
                raise InvariantBroken(f"{name}: END before any head")
            limit = _body_limit(name, head)
            if head.content_length is not None and limit == head.content_length and body != limit:
                raise InvariantBroken(f"{name}: END after {body} body bytes, content_length {limit}")
            if value and not head.streamed:
                raise InvariantBroken(f"{name}: trailers {value!r} after a body that was not chunked")
            head = None
    if total > input_length:
        raise InvariantBroken(f"{name}: {total} body bytes from a {input_length}-byte input")


def _body_limit(name: str, head) -> int | None:
    """The most body this message may have (None: no limit from its head)."""
    if name == "request":
        if head.streamed:
            return None
        return head.content_length or 0
    status = head.status
    if name == "response-to-HEAD" or 100 <= status < 200 or status in _NO_BODY_STATUSES:
        return 0
    return None if head.streamed else head.content_length


def _comparable(events: list) -> list:
    return [(kind, facts(value) if kind == "head" else value) for kind, value in events]


def _is_prefix(short: list, long: list) -> bool:
    if len(short) > len(long):
        return False
    for index, (a, b) in enumerate(zip(short, long)):
        if a == b:
            continue
        last = index == len(short) - 1
        return last and a[0] == b[0] == "data" and b[1].startswith(a[1])
    return True


def check_reader(name: str, data: Input) -> None:
    """One reader under three chunkings of the payload."""
    payload = data.payload
    runs = {}
    for label, cuts in (("whole", ()), ("bytewise", bytewise(payload)), ("cut", data.cuts)):
        events, error = feed_all(READERS[name], Input(payload, cuts, data.eof).chunks())
        check_messages(name, events, len(payload))
        runs[label] = (_comparable(events), error)
    errors = {label: error for label, (_, error) in runs.items()}
    if len({error is None for error in errors.values()}) > 1 and not _limit_met_early(runs):
        raise InvariantBroken(f"{name}: whether it is refused depends on chunking: {errors}")
    if all(error is None for error in errors.values()):
        first = runs["whole"][0]
        for label, (events, _) in runs.items():
            if events != first:
                raise InvariantBroken(f"{name}: events depend on chunking ({label} vs whole):\n{events}\n{first}")
        return
    longest = max((events for events, _ in runs.values()), key=len)
    for label, (events, _) in runs.items():
        if not _is_prefix(events, longest):
            raise InvariantBroken(f"{name}: events before the error depend on chunking ({label}):\n{events}\n{longest}")


def _limit_met_early(runs: dict) -> bool:
    """A line limit is measured on a line that spans reads: one chunking may refuse an over-long
    line that another reads in one piece and accepts (pymesh's documented limitation; memory and
    CPU stay bounded either way). Allowed when the refusals are line limits; the events must still
    agree (each run's a prefix of the longest)."""
    return all(error is None or error.status == 431 or "too long" in error.reason for _, error in runs.values())


def check(data: bytes) -> None:
    """The codec oracle for one fuzz input (raises InvariantBroken)."""
    parsed = parse(data)
    for name in READERS:
        check_reader(name, parsed)
