"""How an HTTP/1.1 message's body is delimited, decided from parsed header values, strictly.

A proxy and the server behind it must never disagree about where a message ends (request
smuggling, response splitting). So only one spelling of each framing fact is accepted, and every
other one is refused rather than guessed at (RFC 9112 6.1-6.3; the choices match Envoy's codec):

- Transfer-Encoding: exactly `chunked` (case-insensitive, optional whitespace around it), once.
  Any other coding, a list (`gzip, chunked`), or a repeated header is refused: the proxy would
  have to pass a coding through that it cannot check.
- Content-Length: ASCII digits only (no sign, no whitespace inside, no `_`), at most 18 of them;
  repeated or listed values must all be equal.
- Connection may not remove the headers that frame or route the message, or the ones the proxy
  itself writes. As Envoy: naming Host, X-Forwarded-For or X-Forwarded-Proto refuses the
  request (400); naming a framing or proxy-written header is ignored (`PROTECTED`); the other
  tokens name hop-by-hop headers, removed before forwarding.

Python's `int()` is never given raw bytes: it accepts `+5`, ` 5`, `5_0` and non-ASCII digits.
"""

from __future__ import annotations

from pymesh.http.errors import ProtocolError

_OWS = b" \t"
MAX_LENGTH_DIGITS = 18  # below 2**63: no overflow anywhere downstream
REFUSED = frozenset({b"host", b"x-forwarded-for", b"x-forwarded-proto"})
PROTECTED = frozenset(
    {
        b"content-length",
        b"transfer-encoding",
        b"upgrade",
        b"te",
        b"trailer",
        b"x-request-id",
        b"x-pymesh-peer",
    }
)


def content_length(values: list[bytes]) -> int:
    """The length all Content-Length values agree on, or ProtocolError(400)."""
    length = None
    for value in values:
        for part in value.split(b","):
            digits = part.strip(_OWS)
            if not digits or len(digits) > MAX_LENGTH_DIGITS or not digits.isdigit():
                raise ProtocolError(400, "bad request: invalid Content-Length")
            number = int(digits.decode("ascii"))
            if length is not None and number != length:
                raise ProtocolError(400, "bad request: conflicting Content-Length values")
            length = number
    if length is None:
        raise ProtocolError(400, "bad request: empty Content-Length")
    return length


def is_chunked(values: list[bytes], unsupported_status: int) -> bool:
    """True for exactly one `Transfer-Encoding: chunked`; ProtocolError for anything else
    (`unsupported_status` for a coding pymesh does not implement: 501 for requests)."""
    if len(values) != 1:
        raise ProtocolError(400, "bad request: repeated Transfer-Encoding")
    coding = values[0].strip(_OWS).lower()
    if coding != b"chunked":
        raise ProtocolError(unsupported_status, "unsupported Transfer-Encoding (only chunked is accepted)")
    return True


def connection_tokens(values: list[bytes]) -> frozenset[bytes]:
    """Header names the Connection values nominate as hop-by-hop, less the protected ones;
    ProtocolError(400) when one names a header that decides where the request goes."""
    tokens = set()
    for value in values:
        for token in value.split(b","):
            name = token.strip(_OWS).lower()
            if name in REFUSED:
                raise ProtocolError(400, f"bad request: Connection may not name {name.decode('latin-1')}")
            if name and name not in PROTECTED:
                tokens.add(name)
    return frozenset(tokens)
