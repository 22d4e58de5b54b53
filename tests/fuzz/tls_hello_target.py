"""The `tls_hello` oracle: pymesh.http.tls_hello.inspect on arbitrary bytes.

Invariants: inspect never raises; its verdict is one of the four kinds; a decided prefix keeps
its verdict as bytes are added (so reading more can never change an answer already acted on);
and from MAX_INPUT bytes on it is always decided (the caller's buffer is bounded)."""

from __future__ import annotations

from pymesh.http.tls_hello import MAX_INPUT, NEED_MORE, NOT_TLS, ClientHello, Malformed, inspect

from .inputs import InvariantBroken

CUTS = 16  # prefixes checked per input, spread evenly


def check(data: bytes) -> None:
    final = inspect(data)
    if not (final is NEED_MORE or final is NOT_TLS or isinstance(final, (ClientHello, Malformed))):
        raise InvariantBroken(f"unexpected verdict {final!r}")
    if final is NEED_MORE and len(data) >= MAX_INPUT:
        raise InvariantBroken(f"still NEED_MORE after {len(data)} bytes (MAX_INPUT {MAX_INPUT})")
    step = max(1, len(data) // CUTS)
    for cut in range(0, len(data), step):
        verdict = inspect(data[:cut])
        if verdict is not NEED_MORE and verdict != final:
            raise InvariantBroken(f"prefix of {cut} bytes decided {verdict!r}, the whole input {final!r}")
