"""HTTP/2 header lists <-> the protocol-neutral heads of pymesh.http.message (RFC 9113 8.2, 8.3).

Reading refuses what RFC 9113 calls malformed, as Envoy (nghttp2) does: pseudo-headers missing,
repeated, unknown, of the wrong message kind or after a regular field; field names with upper-case
or control characters; values with NUL, CR, LF or surrounding whitespace; connection-specific
fields (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade); `te` other than
`trailers`; a Content-Length that is not digits; a Host that disagrees with :authority. Each is
a stream error (`Malformed`), never a guess.

The heads carry the pseudo-headers as fields (method, path, authority, scheme, status) and
`raw_headers` without them, without Host (its value is `authority`), and with the cookie
crumbs HTTP/2 allows joined into one field (RFC 9113 8.2.3), so that an HTTP/1.1 side can
forward the list as it is.

Writing drops what HTTP/2 forbids from heads that came from HTTP/1.1 (the connection-specific
fields, Host, `te` other than `trailers`) and adds Content-Length from the head when known.
"""

from __future__ import annotations

import re

from pymesh.http.errors import ProtocolError
from pymesh.http.framing import content_length
from pymesh.http.message import Header, RequestHead, ResponseHead, UpstreamRequest
from pymesh.http.target import valid_authority

CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
_DROPPED_ON_WRITE = CONNECTION_SPECIFIC | {b"host", b"content-length"}
# RFC 9113 8.2.1: a field name is an RFC 9110 token, in lower case. Anything else (a colon in
# `x:a`, which an HTTP/1.1 upstream would read as the name `x`) makes the request malformed.
_LOWER_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+").fullmatch
_CONTROL = re.compile(rb"[\x00\r\n]").search
_WHITESPACE = (0x20, 0x09)
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
_SCHEMES = {b"http": "http", b"https": "https"}
# Names already checked once: most headers repeat on every request, a set lookup beats a regex.
# Never those whose values are checked each time, nor those a request reads apart.
_GOOD_NAMES: set[bytes] = set()
_CHECKED_EACH_TIME = frozenset({b"te", b"content-length", b"host", b"cookie"})
_GOOD_NAMES_MAX = 4096


class Malformed(Exception):
    """A header list RFC 9113 8.1.1 calls malformed: the stream is reset with PROTOCOL_ERROR."""


def _bad_value(value: bytes) -> bool:
    """NUL, CR, LF, or whitespace around it (RFC 9113 8.2.1); inlined in read_request's loop."""
    return bool(value) and (value[0] in _WHITESPACE or value[-1] in _WHITESPACE or _CONTROL(value) is not None)


def _regular(name: bytes, value: bytes, fields: list[Header], lengths: list[bytes]) -> None:
    """Check one regular field; collect it (Content-Length apart as well)."""
    if name not in _GOOD_NAMES:
        if _LOWER_TOKEN(name) is None:
            raise Malformed(f"invalid header name {name[:64]!r}")
        if name in CONNECTION_SPECIFIC:
            raise Malformed(f"connection-specific header {name.decode('latin-1')}")
        if name in _CHECKED_EACH_TIME:
            pass
        elif len(_GOOD_NAMES) < _GOOD_NAMES_MAX:
            _GOOD_NAMES.add(name)
    if _bad_value(value):
        raise Malformed(f"invalid value of {name.decode('latin-1')}")
    if name == b"te":
        if value.lower() != b"trailers":
            raise Malformed("te other than trailers")
    elif name == b"content-length":
        lengths.append(value)
    fields.append((name, value))


def _length(lengths: list[bytes]) -> int | None:
    if not lengths:
        return None
    try:
        return content_length(lengths)
    except ProtocolError as error:
        raise Malformed(error.reason) from None


def read_request(header_list) -> RequestHead:
    """A RequestHead from a decoded request header list; Malformed if RFC 9113 says so."""
    method = scheme = path = authority = None
    fields: list[Header] = []
    lengths: list[bytes] = []
    host = None
    cookies = None
    for name, value in header_list:
        if name in _GOOD_NAMES:  # the usual case, inline
            if value and (value[0] in _WHITESPACE or value[-1] in _WHITESPACE or _CONTROL(value)):
                raise Malformed(f"invalid value of {name.decode('latin-1')}")
            fields.append((name, value))
        elif name[:1] == b":":
            if fields or host is not None or cookies is not None:
                raise Malformed("pseudo-header after a regular header")
            if name == b":method" and method is None:
                method = value
            elif name == b":path" and path is None:
                path = value
            elif name == b":scheme" and scheme is None:
                scheme = value
            elif name == b":authority" and authority is None:
                authority = value
            else:
                raise Malformed(f"unexpected or repeated pseudo-header {name.decode('latin-1')}")
        elif name == b"host":
            if host is not None:
                raise Malformed("repeated host")
            host = value
        elif name == b"cookie":
            cookies = [value] if cookies is None else cookies + [value]
        else:
            _regular(name, value, fields, lengths)
    if method is None or not _TOKEN(method):
        raise Malformed("missing or invalid :method")
    if authority is not None and host is not None and host != authority:
        raise Malformed("host differs from :authority")
    authority = authority if authority is not None else host
    if authority is None or not valid_authority(authority):
        raise Malformed("missing or invalid :authority")
    if method == b"CONNECT":
        if scheme is not None or path is not None:
            raise Malformed("CONNECT with :scheme or :path")
        path_text, scheme_text = "", "http"
    else:
        if path is None or path[:1] != b"/":
            raise Malformed("missing :path or not an origin-form path")
        if _bad_value(path) or b" " in path:
            raise Malformed("invalid :path")
        scheme_text = _SCHEMES.get(scheme)
        if scheme_text is None:
            raise Malformed("missing or unsupported :scheme")
        path_text = path.decode("latin-1")
    if cookies is not None:
        for value in cookies:
            if _bad_value(value):
                raise Malformed("invalid value of cookie")
        fields.append((b"cookie", b"; ".join(cookies)))
    head = RequestHead(method.decode("latin-1"), path_text, fields, scheme=scheme_text, http_version="2")
    head.authority = authority.decode("latin-1")
    head.content_length = _length(lengths)
    return head


def read_response(header_list) -> ResponseHead:
    """A ResponseHead from a decoded response header list; Malformed if RFC 9113 says so."""
    status = None
    fields: list[Header] = []
    lengths: list[bytes] = []
    for name, value in header_list:
        if name[:1] == b":":
            if fields or name != b":status" or status is not None:
                raise Malformed(f"unexpected, repeated or late pseudo-header {name.decode('latin-1')}")
            status = value
        else:
            _regular(name, value, fields, lengths)
    if status is None or len(status) != 3 or not status.isdigit() or status[:1] == b"0":
        raise Malformed("missing or invalid :status")
    head = ResponseHead(int(status), fields, http_version="2")
    head.content_length = _length(lengths)
    return head


def read_trailers(header_list) -> list[Header]:
    """Trailer fields: regular fields only."""
    fields: list[Header] = []
    lengths: list[bytes] = []
    for name, value in header_list:
        if name[:1] == b":":
            raise Malformed("pseudo-header in trailers")
        _regular(name, value, fields, lengths)
    return fields


def clone_request(head: RequestHead) -> RequestHead:
    """A copy a caller may change (pymesh.http.h2_hpack caches what was read)."""
    copy = RequestHead(head.method, head.path, list(head.raw_headers), scheme=head.scheme, http_version="2")
    copy.authority = head.authority
    copy.content_length = head.content_length
    return copy


def clone_response(head: ResponseHead) -> ResponseHead:
    copy = ResponseHead(head.status, list(head.raw_headers), http_version="2")
    copy.content_length = head.content_length
    return copy


def _append_end_to_end(out: list[Header], raw_headers: list[Header]) -> None:
    for pair in raw_headers:
        name = pair[0]
        if name in _DROPPED_ON_WRITE or (name == b"te" and pair[1].lower() != b"trailers"):
            continue
        out.append(pair)


def request_fields(head: RequestHead | UpstreamRequest) -> list[Header]:
    """The header list that sends `head` as an HTTP/2 request: a RequestHead, or the
    UpstreamRequest the proxy's stream hands an upstream codec (no scheme there: http)."""
    if isinstance(head, UpstreamRequest):
        method, path, scheme, headers, length = head.method, head.target, "http", head.headers, head.length
    else:
        method, path, scheme, headers, length = head.method, head.path, head.scheme, head.raw_headers, head.content_length
    if method == "CONNECT":
        out = [(b":method", b"CONNECT"), (b":authority", head.authority.encode("latin-1"))]
    else:
        out = [
            (b":method", method.encode("latin-1")),
            (b":scheme", scheme.encode("latin-1")),
            (b":authority", head.authority.encode("latin-1")),
            (b":path", path.encode("latin-1")),
        ]
    _append_end_to_end(out, headers)
    if length is not None:
        out.append((b"content-length", b"%d" % length))
    return out


_STATUS = {code: b"%d" % code for code in range(100, 600)}


def response_fields(head: ResponseHead) -> list[Header]:
    """The header list that sends `head` as an HTTP/2 response."""
    out = [(b":status", _STATUS.get(head.status) or b"%d" % head.status)]
    _append_end_to_end(out, head.raw_headers)
    if head.content_length is not None:
        out.append((b"content-length", b"%d" % head.content_length))
    return out


def trailer_fields(trailers: list[Header]) -> list[Header]:
    out: list[Header] = []
    _append_end_to_end(out, trailers)
    return out
