"""The HPACK caches of pymesh.http.h2_hpack are invisible: over long randomized runs with repeats,
evictions and table resizes, every block means exactly what plain `hpack` makes of it."""

from __future__ import annotations

import random

import hpack

from pymesh.http.h2_hpack import VOLATILE, Decoder, Encoder

NAMES = [b"x-request-id", b"accept", b"user-agent", b"content-length", b"date", b"x-custom", b"traceparent",
         b"grpc-timeout", b"x-b3-traceid", b"cookie"]


def header_lists(seed: int, count: int):
    rng = random.Random(seed)
    repeated = [[(b":status", b"200")] + [(rng.choice(NAMES), b"v%d" % rng.randrange(5)) for _ in range(4)]
                for _ in range(6)]
    for _ in range(count):
        if rng.random() < 0.6:
            yield list(rng.choice(repeated))
        else:
            size = rng.choice([1, 10, 300, 2000])
            yield [(b":status", b"204")] + [(rng.choice(NAMES), b"%d" % rng.randrange(10**6) * (size // 6 + 1))
                                            for _ in range(rng.randrange(1, 6))]


def plain(fields):
    return [(bytes(n), bytes(v)) for n, v in fields]


def test_encoder_blocks_decode_as_plain_hpack_decodes_them():
    for seed in range(2):
        ours, reference = Encoder(), hpack.Decoder(max_header_list_size=1 << 20)
        rng = random.Random(seed)
        size = 4096
        for fields in header_lists(seed, 1500):
            resized = False
            if rng.random() < 0.01:  # the peer changes SETTINGS_HEADER_TABLE_SIZE
                resized = size != (size := rng.choice([0, 256, 4096]))
                ours.set_table_size(size)
            block = ours.encode(fields)
            if resized:  # RFC 7541 4.2: signalled at the start of the very next block
                assert block[0] & 0xE0 == 0x20
            decoded = plain(reference.decode(block, raw=True))
            assert sorted(decoded) == sorted(fields)
            assert decoded[0] == fields[0]  # the pseudo-header first
            stable = [f for f in fields if f[0] not in VOLATILE]
            assert [f for f in decoded if f[0] not in VOLATILE] == stable  # only volatile ones move


def test_decoder_reads_what_plain_hpack_reads():
    for seed in range(2):
        encoder = hpack.Encoder()
        ours = Decoder(1 << 20, 4096)
        reference = hpack.Decoder(max_header_list_size=1 << 20)
        rng = random.Random(seed)
        hits = 0
        for fields in header_lists(seed, 1500):
            if rng.random() < 0.01:
                encoder.header_table_size = rng.choice([0, 256, 4096])
            block = encoder.encode(fields)
            expected = plain(reference.decode(block, raw=True))
            first = ours.decode(block, plain, list)
            assert first == expected
            first.append((b"changed", b"by the caller"))  # the cache hands out copies
            hits += ours._cache.get((plain, block)) is not None
        assert hits > 100  # the cache was exercised


def test_path_goes_first_but_after_a_table_size_update():
    ours, reference = Encoder(), hpack.Decoder()
    fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/x"), (b"x-a", b"1")]
    for size in (100, 2000, 300, 4096):  # all but 100 need a multi-byte integer
        ours.set_table_size(size)
        block = ours.encode(fields)
        assert block[0] & 0xE0 == 0x20
        decoded = plain(reference.decode(block, raw=True))
        assert reference.header_table.maxsize == size
        assert decoded == [fields[3], *fields[:3], fields[4]]
