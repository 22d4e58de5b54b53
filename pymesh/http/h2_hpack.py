"""HPACK for the data plane: `hpack`'s Encoder and Decoder, with what repeats request after request
done once.

- Header blocks are cached while the dynamic table they were coded against is unchanged. A
  counter on the table moves with every insertion and resize; a block that moved it is never
  cached, and the whole cache is dropped when it moves. So a cached answer is always the one
  `hpack` would give: an identical block decodes, and an identical header list encodes, to the
  same thing under the same table. The caches are small and hold small blocks only.
- Values that change from request to request (what nghttp2 never indexes: :path, lengths,
  validators, locations, cookies set; and request and trace ids, dates, timeouts) are written as
  literals that never enter the table (RFC 7541 6.2.2), without Huffman coding: indexing them
  would only evict the entries that do repeat, and the peer decodes them without Huffman work.
  :path goes first, the others after the other fields; HTTP gives no meaning to the order of
  differently named fields, and pseudo-headers stay ahead of the regular ones.
"""

from __future__ import annotations

import hpack
from hpack.table import HeaderTable

VOLATILE = frozenset(
    {
        b":path", b"age", b"content-length", b"etag", b"if-modified-since", b"if-none-match",
        b"last-modified", b"location", b"set-cookie", b"date", b"x-request-id", b"traceparent",
        b"tracestate", b"x-b3-traceid", b"x-b3-spanid", b"x-b3-parentspanid",
        b"x-cloud-trace-context", b"x-amzn-trace-id", b"grpc-timeout", b"x-envoy-expected-rq-timeout-ms",
    }
)
_CACHE_ENTRIES = 32
_CACHE_BLOCK_BYTES = 512


class _Table(HeaderTable):
    """hpack's table, counting its changes."""

    generation = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.generation += 1
        super().add(name, value)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, value: int) -> None:
        self.generation += 1
        HeaderTable.maxsize.fset(self, value)


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 5.1."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _unindexed_name(name: bytes) -> bytes:
    """The start of a "literal without indexing" field (RFC 7541 6.2.2) for `name`."""
    static = HeaderTable.STATIC_TABLE_MAPPING.get(name)
    if static is not None:
        return _integer(static[0], 4, 0x00)
    return b"\x00" + _integer(len(name), 7, 0) + name


_NAME_PREFIX = {name: _unindexed_name(name) for name in VOLATILE}


class Encoder:
    def __init__(self) -> None:
        self._hpack = hpack.Encoder()
        self._table = self._hpack.header_table = _Table()
        self._cache: dict[tuple, bytes] = {}
        self._generation = 0

    def set_table_size(self, size: int) -> None:
        """The peer's SETTINGS_HEADER_TABLE_SIZE (already capped by the caller)."""
        self._hpack.header_table_size = size

    def encode(self, fields: list) -> bytes:
        stable = []
        head = tail = b""
        for pair in fields:
            name = pair[0]
            if name in VOLATILE:
                literal = _NAME_PREFIX[name] + _integer(len(pair[1]), 7, 0) + pair[1]
                if name == b":path":
                    head += literal
                else:
                    tail += literal
            else:
                stable.append(pair)
        table = self._table
        cache = self._cache
        if table.generation != self._generation:
            cache.clear()
            self._generation = table.generation
        key = tuple(stable)
        block = cache.get(key)
        if block is None:
            resized = table.resized  # the block will start with a size update: not reusable
            block = self._hpack.encode(stable)
            if table.generation != self._generation:
                cache.clear()
                self._generation = table.generation
            elif not resized and len(cache) < _CACHE_ENTRIES and len(block) <= _CACHE_BLOCK_BYTES:
                cache[key] = block
        if head and block[:1] and block[0] & 0xE0 == 0x20:  # a size update must stay first
            return _after_size_updates(block, head) + tail
        return head + block + tail if head or tail else block


def _after_size_updates(block: bytes, literal: bytes) -> bytes:
    """`literal` inserted after the dynamic table size updates that open `block` (RFC 7541 4.2)."""
    pos = 0
    while pos < len(block) and block[pos] & 0xE0 == 0x20:
        pos += 1
        if block[pos - 1] & 0x1F == 0x1F:  # a multi-byte integer: continuation bytes have the top bit
            while block[pos] & 0x80:
                pos += 1
            pos += 1
    return block[:pos] + literal + block[pos:]


class Decoder:
    """Decodes a block and reads it with `read` (see pymesh.http.h2_headers), caching the result
    of `read` for blocks that leave the table unchanged; `clone` gives each caller its own copy.
    The table only changes inside `decode`, which drops the cache when it does."""

    def __init__(self, max_header_list_size: int, max_table_size: int) -> None:
        self._hpack = hpack.Decoder(max_header_list_size=max_header_list_size)
        self._table = self._hpack.header_table = _Table()
        self._table.maxsize = max_table_size
        self._hpack.max_allowed_table_size = max_table_size
        self._cache: dict[tuple, object] = {}
        self._generation = self._table.generation

    def decode(self, block: bytes, read, clone):
        """read(decoded header list); hpack's exceptions and read's propagate."""
        table = self._table
        cache = self._cache
        key = (read, block)
        cached = cache.get(key)
        if cached is not None:
            return clone(cached)
        result = read(self._hpack.decode(block, raw=True))
        if table.generation != self._generation:
            cache.clear()
            self._generation = table.generation
        elif len(cache) < _CACHE_ENTRIES and len(block) <= _CACHE_BLOCK_BYTES:
            cache[key] = clone(result)  # the caller may change its copy
        return result
