"""The fuzz input format both targets share, and the error an oracle raises.

An input is HTTP bytes (the payload) and how to deliver them: where to cut them into chunks and
whether the client half-closes afterwards. An input starting with b"@" says so itself on its first
line (at most 64 bytes): comma-separated tokens, numbers are cut points (modulo the payload's
length + 1) and `eof` asks for the half-close, e.g. b"@5,17,eof\\n". Without that line the whole
input is the payload and the chunking is derived from a hash of it, so seeds stay plain HTTP files
and every mutation of the payload also tries another chunking.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

MAX_SPEC = 64


class InvariantBroken(AssertionError):
    """An input made the code under test break an invariant; the message says which and how."""


@dataclass(frozen=True)
class Input:
    payload: bytes
    cuts: tuple[int, ...]
    eof: bool

    def chunks(self) -> list[bytes]:
        return split(self.payload, self.cuts)


def parse(data: bytes) -> Input:
    if data[:1] == b"@":
        end = data.find(b"\n", 0, MAX_SPEC)
        if end != -1:
            payload = data[end + 1 :]
            tokens = data[1:end].split(b",")
            cuts = tuple(int(t) % (len(payload) + 1) for t in tokens if t.strip().isdigit() and len(t) < 8)
            return Input(payload, tuple(sorted(set(cuts))), b"eof" in tokens)
    return Input(data, derived_cuts(data), bool(zlib.crc32(data) & 1))


def derived_cuts(payload: bytes) -> tuple[int, ...]:
    """Zero to three cut points, a pure function of the payload (replays are deterministic)."""
    if len(payload) < 2:
        return ()
    rng = random.Random(zlib.crc32(payload))
    return tuple(sorted(rng.sample(range(1, len(payload)), min(rng.randrange(4), len(payload) - 1))))


def split(payload: bytes, cuts) -> list[bytes]:
    """The payload cut at `cuts` (sorted offsets), without empty pieces."""
    pieces, start = [], 0
    for cut in (*cuts, len(payload)):
        if cut > start:
            pieces.append(payload[start:cut])
            start = cut
    return pieces


def bytewise(payload: bytes) -> tuple[int, ...]:
    """Cut points that deliver one byte at a time."""
    return tuple(range(1, len(payload)))
