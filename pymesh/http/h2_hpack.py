"""HPACK for the data plane: `hpack`'s Encoder, and a lean decoder (RFC 7541) that takes from
`hpack` only its static table and Huffman decoding, with what repeats request after request done
once.

- The decoder is one loop over the block with the common case inline (a one-byte index; a
  literal reads its strings in one call each), plain tuples out, the dynamic table a list.
  `hpack`'s Decoder spent most of the codec's server-side time in per-field calls, memoryview
  slices and HeaderTuple objects; Huffman-coded strings that repeat are decoded once while a
  small cache holds them. It rejects what `hpack` rejects, with `hpack`'s exceptions:
  OversizedHeaderListError past the header list limit (sizes counted as RFC 9113 6.5.2 does),
  HPACKDecodingError (or its subclasses) for a malformed block; `tests/http/test_h2_hpack_decoder.py`
  holds it to that.

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
from hpack.exceptions import HPACKDecodingError, InvalidTableIndex, InvalidTableSizeError, OversizedHeaderListError
from hpack.huffman_table import decode_huffman
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
    The table only changes inside `decode`, which drops the cache when it does.

    `max_table_size` is our SETTINGS_HEADER_TABLE_SIZE: the table starts at it, and a size
    update above it is an error (RFC 7541 4.2, 6.3)."""

    def __init__(self, max_header_list_size: int, max_table_size: int) -> None:
        self.max_header_list_size = max_header_list_size
        self.max_table_size = max_table_size
        self.table_size = max_table_size  # the current maximum, as the peer's updates set it
        self._entries: list[tuple[bytes, bytes]] = []  # the dynamic table, newest last
        self._used = 0  # its size, RFC 7541 4.1
        self.generation = 0  # moves with every insertion and resize
        self._cache: dict[tuple, object] = {}
        self._generation = 0

    def decode(self, block: bytes, read, clone):
        """read(decoded header list); the decoding errors (see the module docstring) and read's
        propagate."""
        cache = self._cache
        key = (read, block)
        cached = cache.get(key)
        if cached is not None:
            return clone(cached)
        result = read(self.fields(block))
        if self.generation != self._generation:
            cache.clear()
            self._generation = self.generation
        elif len(cache) < _CACHE_ENTRIES and len(block) <= _CACHE_BLOCK_BYTES:
            cache[key] = clone(result)  # the caller may change its copy
        return result

    def fields(self, block: bytes) -> list[tuple[bytes, bytes]]:
        """The header list of one complete block (RFC 7541 6), the dynamic table updated."""
        fields: list[tuple[bytes, bytes]] = []
        limit = self.max_header_list_size
        listed = 0
        pos = 0
        end = len(block)
        while pos < end:
            byte = block[pos]
            pos += 1
            if byte & 0x80:  # 6.1 indexed field
                index = byte & 0x7F
                if index == 0x7F:
                    index, pos = _read_integer(block, pos, index)
                field = _STATIC[index] if 0 < index <= _STATIC_LENGTH else self._dynamic(index)
            elif (byte & 0xE0) == 0x20:  # 6.3 dynamic table size update
                if fields:
                    raise HPACKDecodingError("table size update after a field")
                size = byte & 0x1F
                if size == 0x1F:
                    size, pos = _read_integer(block, pos, size)
                if size > self.max_table_size:
                    raise InvalidTableSizeError("table size update above SETTINGS_HEADER_TABLE_SIZE")
                self._resize(size)
                continue
            else:  # 6.2 literals: with incremental indexing (01), without (0000), never indexed (0001)
                indexing = byte & 0x40
                index = byte & (0x3F if indexing else 0x0F)
                if index:
                    if index == (0x3F if indexing else 0x0F):
                        index, pos = _read_integer(block, pos, index)
                    name = _STATIC[index][0] if 0 < index <= _STATIC_LENGTH else self._dynamic(index)[0]
                else:
                    name, pos = _read_string(block, pos)
                value, pos = _read_string(block, pos)
                field = (name, value)
                if indexing:
                    self._add(field)
            fields.append(field)
            listed += 32 + len(field[0]) + len(field[1])
            if listed > limit:
                raise OversizedHeaderListError(f"a header list larger than {limit}")
        return fields

    def _dynamic(self, index: int) -> tuple[bytes, bytes]:
        entries = self._entries
        position = len(entries) + _STATIC_LENGTH - index  # index 62 is the newest: the last
        if index <= 0 or position < 0:
            raise InvalidTableIndex(f"invalid table index {index}")
        return entries[position]

    def _add(self, field: tuple[bytes, bytes]) -> None:
        """RFC 7541 4.4: an entry larger than the table empties it."""
        self.generation += 1
        size = 32 + len(field[0]) + len(field[1])
        entries = self._entries
        if size > self.table_size:
            entries.clear()
            self._used = 0
            return
        entries.append(field)
        self._used += size
        self._evict()

    def _resize(self, size: int) -> None:
        self.generation += 1
        self.table_size = size
        self._evict()

    def _evict(self) -> None:
        """RFC 7541 4.3, 4.4: oldest first, until the table fits."""
        entries = self._entries
        used = self._used
        limit = self.table_size
        oldest = 0
        while used > limit:
            name, value = entries[oldest]
            used -= 32 + len(name) + len(value)
            oldest += 1
        if oldest:
            del entries[:oldest]
        self._used = used


_STATIC = ((b"", b""), *HeaderTable.STATIC_TABLE)  # 1-based, as RFC 7541 Appendix A
_STATIC_LENGTH = len(HeaderTable.STATIC_TABLE)
_INTEGER_BYTES = 5  # continuation bytes at most, as `hpack` (RFC 7541 5.1 lets a decoder bound them)


def _read_integer(block: bytes, pos: int, value: int) -> tuple[int, int]:
    """RFC 7541 5.1 past a full prefix (`value`): the integer and the position after it."""
    shift = 0
    try:
        for count in range(_INTEGER_BYTES):
            byte = block[pos + count]
            value += (byte & 0x7F) << shift
            if byte < 0x80:
                return value, pos + count + 1
            shift += 7
    except IndexError:
        raise HPACKDecodingError("truncated integer") from None
    raise HPACKDecodingError("integer representation too long")


def _read_string(block: bytes, pos: int) -> tuple[bytes, int]:
    """RFC 7541 5.2: the string at `pos` (Huffman-decoded by `hpack`) and the position after it."""
    try:
        byte = block[pos]
    except IndexError:
        raise HPACKDecodingError("truncated block") from None
    length = byte & 0x7F
    pos += 1
    if length == 0x7F:
        length, pos = _read_integer(block, pos, length)
    end = pos + length
    if end > len(block):
        raise HPACKDecodingError("truncated string")
    if byte & 0x80:
        coded = block[pos:end]
        text = _HUFFMAN.get(coded)
        if text is None:
            text = decode_huffman(coded)  # raises on an invalid code: never cached
            if length <= _HUFFMAN_CACHED_BYTES:
                if len(_HUFFMAN) >= _HUFFMAN_ENTRIES:
                    _HUFFMAN.clear()
                _HUFFMAN[coded] = text
        return text, end
    return block[pos:end], end


# Huffman-coded strings repeat (paths, authorities, user agents of entries the peer's table
# evicted): decoded once while they stay in this small cache. Fresh ids fill it, and it empties.
_HUFFMAN: dict[bytes, bytes] = {}
_HUFFMAN_ENTRIES = 1024
_HUFFMAN_CACHED_BYTES = 128
