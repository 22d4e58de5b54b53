"""pymesh.http.tls_hello against real ClientHellos (openssl s_client and curl, recorded per run),
their fragmentations and truncations, and hostile bytes."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from pymesh.http.tls_hello import MAX_HELLO, MAX_INPUT, MAX_RECORDS, NEED_MORE, NOT_TLS, ClientHello, Malformed, inspect

from client_hellos import curl, openssl, record

pytestmark = pytest.mark.timeout(60)

TLS13, TLS12 = 0x0304, 0x0303


@pytest.fixture(scope="module")
def hellos() -> dict[str, bytes]:
    """One recorded first flight per client setup."""
    return {
        "openssl": record(openssl("-servername", "a.example.com", "-alpn", "h2,http/1.1")),
        "openssl-no-sni": record(openssl("-noservername")),
        "openssl-tls12": record(openssl("-servername", "b.example.com", "-tls1_2")),
        # long ALPN names make the hello longer than the 512-byte records the client is told to send
        "openssl-small-records": record(openssl("-servername", "frag.example.com", "-max_send_frag", "512",
                                                "-alpn", ",".join(c * 200 for c in "xyz"))),
        "curl": record(curl("api.example.com")),
        "curl-http1": record(curl("web.example.com", "--http1.1")),
    }


def hello(data: bytes) -> ClientHello:
    verdict = inspect(data)
    assert isinstance(verdict, ClientHello), verdict
    return verdict


# --- real clients ------------------------------------------------------------------------------


def test_openssl_hello(hellos):
    h = hello(hellos["openssl"])
    assert h.server_name == "a.example.com"
    assert h.alpn == ("h2", "http/1.1")
    assert h.legacy_version == TLS12 and TLS13 in h.supported_versions
    assert h.size == len(hellos["openssl"])  # the client waits for the server: nothing after the hello


def test_no_sni(hellos):
    assert hello(hellos["openssl-no-sni"]).server_name is None


def test_tls12_only_client(hellos):
    h = hello(hellos["openssl-tls12"])
    assert h.server_name == "b.example.com"
    assert TLS13 not in h.supported_versions


def test_hello_spread_over_records_by_the_client(hellos):
    data = hellos["openssl-small-records"]
    assert len(records(data)) > 1  # the client really fragmented it
    assert hello(data).server_name == "frag.example.com"


def test_curl_hello(hellos):
    h = hello(hellos["curl"])
    assert h.server_name == "api.example.com"
    assert h.alpn == ("h2", "http/1.1")
    assert hello(hellos["curl-http1"]).alpn == ("http/1.1",)


@pytest.mark.parametrize("first, size", [([2], 4000), ([1, 3, 4], 4000), ([], 40), ([], 100), ([5], 200)], ids=str)
def test_refragmented_hello(hellos, first, size):
    """The handshake message re-cut into records (ending at the `first` offsets, then `size`
    bytes each), even through its own 4-byte header, reads the same."""
    message = handshake_message(hellos["openssl"])
    data = as_records(message, size, first=first)
    assert len(records(data)) > 1
    assert hello(data) == replace(hello(hellos["openssl"]), size=len(data))


def test_every_prefix_needs_more_and_bytes_after_are_ignored(hellos):
    data = hellos["curl"]
    for cut in range(len(data)):
        assert inspect(data[:cut]) is NEED_MORE, cut
    assert hello(data + b"\x17\x03\x03\x00\x05early").size == len(data)


# --- not TLS -----------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n",
    b"PRI * HTTP/2.0\r\n",
    b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10",  # an SSLv2-format ClientHello
    b"\x15\x03\x03\x00\x02\x02\x28",  # an alert record first
    b"\x16\x02",  # "version 2.x"
    b"\x16\x03\x05",  # no TLS version 3.5
    b"SSH-2.0-OpenSSH_9\r\n",
    b"\x00",
])
def test_not_tls(data):
    assert inspect(data) is NOT_TLS


@pytest.mark.parametrize("data", [b"", b"\x16", b"\x16\x03", b"\x16\x03\x01\x02"])
def test_need_more(data):
    assert inspect(data) is NEED_MORE


# --- malformed ---------------------------------------------------------------------------------


def test_oversize_hello_is_refused_before_it_is_read(hellos):
    big = with_extension(handshake_message(hellos["openssl"]), 21, b"\x00" * MAX_HELLO)  # padding
    verdict = inspect(as_records(big, 16384)[:5 + 16384])  # the first record is enough to tell
    assert isinstance(verdict, Malformed) and verdict.oversize
    early = inspect(as_records(big, 16384)[:9])  # the message header alone says it is too large
    assert isinstance(early, Malformed) and early.oversize


def test_not_a_client_hello_is_told_from_its_header():
    verdict = inspect(b"\x16\x03\x03\x40\x00\x02\x00\x00\x46")
    assert isinstance(verdict, Malformed) and not verdict.oversize


def test_too_many_records(hellos):
    message = handshake_message(hellos["openssl"])
    data = as_records(message, 1)
    assert len(message) > MAX_RECORDS
    verdict = inspect(data)
    assert isinstance(verdict, Malformed) and verdict.oversize


def test_never_needs_more_than_max_input(hellos):
    padded = with_extension(handshake_message(hellos["openssl"]), 21, b"\x00" * (MAX_HELLO - 600))
    data = as_records(padded, 1024)
    assert MAX_HELLO - 1000 < len(data) <= MAX_INPUT
    assert hello(data).server_name == "a.example.com"


def _edit(name, change):
    return pytest.param(change, id=name)


def _sni(entries: bytes) -> bytes:
    return len(entries).to_bytes(2, "big") + entries


def _host(name: bytes, kind: int = 0) -> bytes:
    return bytes([kind]) + len(name).to_bytes(2, "big") + name


MALFORMED = [
    ("zero-length record", lambda m: b"\x16\x03\x01\x00\x00" + as_records(m, 16384)),
    ("alert inside the hello", lambda m: as_records(m[:10], 16384) + b"\x15\x03\x03\x00\x02\x02\x28"),
    ("record version 4.0 later", lambda m: as_records(m[:10], 16384) + b"\x16\x04\x00" + as_records(m[10:], 16384)[3:]),
    ("server hello", lambda m: as_records(b"\x02" + m[1:], 16384)),
    ("record past the hello", lambda m: as_records(m + b"\x00", 16384)),
    ("handshake length too short", lambda m: as_records(m[:1] + (len(m) - 10).to_bytes(3, "big") + m[4:-6], 16384)),
    ("duplicate extension", lambda m: as_records(with_extension(with_extension(m, 0x7777, b""), 0x7777, b""), 16384)),
    ("sni with a NUL", lambda m: as_records(replace_extension(m, 0, _sni(_host(b"a\x00.example.com"))), 16384)),
    ("sni with a trailing dot", lambda m: as_records(replace_extension(m, 0, _sni(_host(b"a.example.com."))), 16384)),
    ("sni not ascii", lambda m: as_records(replace_extension(m, 0, _sni(_host("é.example".encode()))), 16384)),
    ("sni empty name", lambda m: as_records(replace_extension(m, 0, _sni(_host(b""))), 16384)),
    ("sni too long", lambda m: as_records(replace_extension(m, 0, _sni(_host(b"a" * 256))), 16384)),
    ("sni unknown type", lambda m: as_records(replace_extension(m, 0, _sni(_host(b"a.example.com", 1))), 16384)),
    ("sni two names", lambda m: as_records(replace_extension(m, 0, _sni(_host(b"a.com") + _host(b"b.com"))), 16384)),
    ("sni list overruns", lambda m: as_records(replace_extension(m, 0, b"\x00\x20" + _host(b"a.com")), 16384)),
    ("sni empty list", lambda m: as_records(replace_extension(m, 0, b"\x00\x00"), 16384)),
    ("alpn empty name", lambda m: as_records(replace_extension(m, 16, b"\x00\x03\x02h2\x00"[:5] + b"\x00"), 16384)),
    ("alpn empty list", lambda m: as_records(replace_extension(m, 16, b"\x00\x00"), 16384)),
    ("supported_versions odd", lambda m: as_records(replace_extension(m, 43, b"\x03\x03\x04\x03"), 16384)),
    ("extension overruns", lambda m: as_records(_rebuild(m, _join(_split_extensions(m))[:-1]), 16384)),
    ("cipher_suites odd", lambda m: as_records(m[:4 + 34 + 1 + m[38]] + b"\x00\x01" + m[4 + 34 + 1 + m[38] + 2:], 16384)),
]


@pytest.mark.parametrize("change", [_edit(name, change) for name, change in MALFORMED])
def test_malformed(hellos, change):
    data = change(handshake_message(hellos["openssl"]))
    verdict = inspect(data)
    assert isinstance(verdict, Malformed), verdict
    assert not verdict.oversize and verdict.reason


def test_random_mutations_never_raise_and_verdicts_are_prefix_stable(hellos):
    """A light fuzz (the atheris target in tests/fuzz goes further): flips, cuts and splices of
    real hellos; once a prefix is decided, longer inputs get the same verdict."""
    rng = random.Random(11)
    seeds = list(hellos.values())
    for _ in range(400):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            action = rng.randrange(4)
            if action == 0:
                data[at] ^= 1 << rng.randrange(8)
            elif action == 1:
                del data[at:at + rng.randint(1, 8)]
            elif action == 2:
                data[at:at] = rng.randbytes(rng.randint(1, 8))
            else:
                data = data[:at]
        check_prefix_stable(bytes(data), rng)


def check_prefix_stable(data: bytes, rng: random.Random) -> None:
    final = inspect(data)
    for cut in sorted(rng.sample(range(len(data) + 1), min(8, len(data) + 1))):
        verdict = inspect(data[:cut])
        assert verdict is NEED_MORE or verdict == final, (cut, verdict, final)
    if len(data) >= MAX_INPUT:
        assert final is not NEED_MORE


# --- building variants of a real hello ---------------------------------------------------------


def records(data: bytes) -> list[bytes]:
    out, at = [], 0
    while at + 5 <= len(data):
        length = int.from_bytes(data[at + 3:at + 5], "big")
        out.append(data[at + 5:at + 5 + length])
        at += 5 + length
    return out


def handshake_message(data: bytes) -> bytes:
    """The ClientHello handshake message (header included) out of its records."""
    body = b"".join(records(data))
    return body[:4 + int.from_bytes(body[1:4], "big")]


def as_records(message: bytes, size: int, first: list[int] = ()) -> bytes:
    """`message` in handshake records: pieces ending at the `first` offsets, then `size` bytes each."""
    ends = [*first] + list(range((first[-1] if first else 0) + size, len(message), size)) + [len(message)]
    starts = [0] + ends[:-1]
    return b"".join(b"\x16\x03\x01" + (end - start).to_bytes(2, "big") + message[start:end]
                    for start, end in zip(starts, ends) if end > start)


def _extensions_at(message: bytes) -> int:
    at = 4 + 2 + 32
    at += 1 + message[at]
    at += 2 + int.from_bytes(message[at:at + 2], "big")
    at += 1 + message[at]
    return at


def _rebuild(message: bytes, extensions: bytes) -> bytes:
    at = _extensions_at(message)
    body = message[4:at] + len(extensions).to_bytes(2, "big") + extensions
    return message[:1] + len(body).to_bytes(3, "big") + body


def _split_extensions(message: bytes) -> list[tuple[int, bytes]]:
    at = _extensions_at(message)
    end = at + 2 + int.from_bytes(message[at:at + 2], "big")
    at += 2
    out = []
    while at < end:
        kind, length = int.from_bytes(message[at:at + 2], "big"), int.from_bytes(message[at + 2:at + 4], "big")
        out.append((kind, message[at + 4:at + 4 + length]))
        at += 4 + length
    return out


def _join(extensions: list[tuple[int, bytes]]) -> bytes:
    return b"".join(kind.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data for kind, data in extensions)


def with_extension(message: bytes, kind: int, data: bytes) -> bytes:
    return _rebuild(message, _join(_split_extensions(message) + [(kind, data)]))


def replace_extension(message: bytes, kind: int, data: bytes) -> bytes:
    extensions = _split_extensions(message)
    assert kind in {k for k, _ in extensions}
    return _rebuild(message, _join([(k, data if k == kind else d) for k, d in extensions]))
