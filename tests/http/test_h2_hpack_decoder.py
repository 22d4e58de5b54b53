"""pymesh's HPACK decoder against `hpack`'s, block by block: the same header list and the same
dynamic table for what `hpack`'s encoder writes under randomized settings (Huffman on and off,
never-indexed fields, table size updates, eviction), and a rejection by both for every
malformed block, handwritten or mutated at random."""

from __future__ import annotations

import random

import hpack
import pytest
from hpack import NeverIndexedHeaderTuple
from hpack.exceptions import HPACKDecodingError, OversizedHeaderListError

from pymesh.http.h2_hpack import Decoder

NAMES = [b":method", b":path", b":authority", b"accept", b"user-agent", b"x-request-id", b"cookie",
         b"x-custom-name", b"content-type", b"traceparent", b"x-longer-name-" + b"n" * 40]
BIG = 1 << 20


def plain(fields):
    return [(bytes(n), bytes(v)) for n, v in fields]


def reference_decoder(max_list: int, max_table: int) -> hpack.Decoder:
    decoder = hpack.Decoder(max_header_list_size=max_list)
    decoder.max_allowed_table_size = decoder.header_table_size = max_table
    return decoder


def table_of(decoder: hpack.Decoder) -> list:
    return list(decoder.header_table.dynamic_entries)  # newest first


def ours_table(decoder: Decoder) -> list:
    return list(reversed(decoder._entries))


def outcome(decode, block: bytes):
    """The header list, or which kind of error."""
    try:
        return plain(decode(block))
    except OversizedHeaderListError:
        return "oversized"
    except HPACKDecodingError:
        return "malformed"


def random_fields(rng: random.Random) -> list:
    fields = []
    for _ in range(rng.randrange(1, 12)):
        name = rng.choice(NAMES)
        value = rng.choice([b"", b"GET", b"/", b"%x" % rng.randrange(1 << 64), bytes(rng.randrange(32, 127) for _ in range(rng.choice([1, 20, 130, 600])))])
        fields.append(NeverIndexedHeaderTuple(name, value) if rng.random() < 0.1 else (name, value))
    return fields


@pytest.mark.parametrize("seed", range(6))
def test_same_fields_and_table_as_hpack(seed):
    rng = random.Random(seed)
    max_table = rng.choice([0, 256, 4096, 65536])
    encoder = hpack.Encoder()
    encoder.header_table_size = min(4096, max_table)
    ours, reference = Decoder(BIG, max_table), reference_decoder(BIG, max_table)
    kinds = set()
    for _ in range(600):
        if rng.random() < 0.05:
            encoder.header_table_size = min(rng.choice([0, 64, 300, 65536]), max_table)  # may exceed 4096
        block = encoder.encode(random_fields(rng), huffman=rng.random() < 0.5)
        kinds.update(byte & 0xF0 for byte in block[:1])
        expected = plain(reference.decode(block, raw=True))
        assert ours.fields(block) == expected
        assert ours_table(ours) == table_of(reference)
        assert ours.table_size == reference.header_table_size
    assert len(kinds) > 3  # indexed, literals of each kind, size updates were all seen


def test_eviction_keeps_newest_first_across_many_insertions():
    encoder = hpack.Encoder()
    encoder.header_table_size = 200
    ours, reference = Decoder(BIG, 200), reference_decoder(BIG, 200)
    for index in range(300):
        block = encoder.encode([(b"x-%d" % (index % 7), b"v" * (index % 90))])
        assert ours.fields(block) == plain(reference.decode(block, raw=True))
        assert ours_table(ours) == table_of(reference)
        assert ours._used <= 200


def test_header_list_limit_counts_as_rfc_9113():
    fields = [(b"x-a", b"v" * 100), (b"x-b", b"w" * 100)]
    block = hpack.Encoder().encode(fields)
    exact = sum(32 + len(n) + len(v) for n, v in fields)
    for limit, expected in ((exact, fields), (exact - 1, "oversized")):
        assert outcome(Decoder(limit, 4096).fields, block) == expected
        assert outcome(lambda b: reference_decoder(limit, 4096).decode(b, raw=True), block) == expected


MALFORMED = {
    "index 0": b"\x80",
    "index beyond the tables": b"\xbe",
    "multi-byte index beyond the tables": b"\xff\x7f",
    "literal name index beyond the tables": b"\x7f\x10\x01a",
    "truncated integer": b"\xff",
    "integer of 6 continuation bytes": b"\x3f\x80\x80\x80\x80\x80\x00",  # else a size update to 31
    "truncated name": b"\x40\x05ab",
    "truncated value": b"\x40\x01a\x05ab",
    "value length missing": b"\x40\x01a",
    "table size update after a field": b"\x82\x20",
    "table size update above the limit": b"\x3f\xe1\x7f",
    "Huffman padding of 8 bits": b"\x00\x01a\x82\x07\xff",
    "Huffman padding of zeros": b"\x00\x01a\x81\x00",
    "Huffman EOS": b"\x00\x01a\x84\xff\xff\xff\xff",
}


@pytest.mark.parametrize("case", MALFORMED, ids=str)
def test_both_reject_malformed_blocks(case):
    block = MALFORMED[case]
    assert outcome(lambda b: reference_decoder(BIG, 4096).decode(b, raw=True), block) == "malformed"
    assert outcome(Decoder(BIG, 4096).fields, block) == "malformed"


def test_multi_byte_integers_and_valid_huffman_padding():
    block = b"\x3f\xe1\x1f" + b"\x00\x7f\x01" + b"n" * 128 + b"\x00" + b"\x00\x01a\x81\x07"  # size 4096
    expected = [(b"n" * 128, b""), (b"a", b"0")]
    assert plain(reference_decoder(BIG, 4096).decode(block, raw=True)) == expected
    assert Decoder(BIG, 4096).fields(block) == expected


@pytest.mark.parametrize("seed", range(4))
def test_mutated_blocks_same_outcome_as_hpack(seed):
    """Bytes flipped, cut or inserted in valid blocks: accepted alike with the same table, or
    rejected alike (after the same priming block, so that dynamic indexes mean something)."""
    rng = random.Random(seed)
    encoder = hpack.Encoder()
    prime = encoder.encode(random_fields(rng), huffman=True)
    rejected = 0
    for _ in range(400):
        block = bytearray(encoder.encode(random_fields(rng), huffman=rng.random() < 0.5))
        for _ in range(rng.randrange(1, 4)):
            where = rng.randrange(len(block) + 1)
            action = rng.random()
            if action < 0.5 and where < len(block):
                block[where] = rng.randrange(256)
            elif action < 0.75:
                del block[where:]
            else:
                block[where:where] = bytes([rng.randrange(256)])
        block = bytes(block)
        ours, reference = Decoder(16384, 4096), reference_decoder(16384, 4096)
        ours.fields(prime)
        reference.decode(prime, raw=True)
        expected = outcome(lambda b: reference.decode(b, raw=True), block)
        assert outcome(ours.fields, block) == expected, block.hex()
        if expected in ("malformed", "oversized"):
            rejected += 1
        else:
            assert ours_table(ours) == table_of(reference)
    assert 50 < rejected < 400  # both outcomes were exercised
