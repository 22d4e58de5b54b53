import pytest

from pymesh.api import model
from pymesh.policy.hashkey import cookie_value, hash_key, query_value, stable_hash64

HEADER = model.ConsistentHash(http_header_name="X-User")
COOKIE = model.ConsistentHash(http_cookie="session")
SOURCE = model.ConsistentHash(use_source_ip=True)
QUERY = model.ConsistentHash(http_query_parameter_name="user")
NOTHING = model.ConsistentHash()


@pytest.mark.parametrize(
    "ch, headers, source_ip, query, expected",
    [
        (HEADER, {"x-user": "alice"}, "10.1.1.1", "", b"alice"),
        (HEADER, {"x-user": ""}, "10.1.1.1", "", b""),  # present but empty is still a key (Envoy)
        (HEADER, {"x-other": "alice"}, "10.1.1.1", "", None),
        (HEADER, {"x-user": "caf\u00e9"}, "", "", "caf\u00e9".encode()),
        (COOKIE, {"cookie": "session=abc"}, "", "", b"abc"),
        (COOKIE, {"cookie": "a=1; session=abc; b=2"}, "", "", b"abc"),
        (COOKIE, {"cookie": "a=1;session=\"q v\""}, "", "", b"q v"),  # quotes stripped
        (COOKIE, {"cookie": "a=1, session=abc"}, "", "", b"abc"),  # HTTP/2 cookies joined with ","
        (COOKIE, {"cookie": "a=1; xsession=abc; session2=x"}, "", "", None),
        (COOKIE, {"cookie": "session"}, "", "", None),  # no "=": not a pair
        (COOKIE, {"cookie": "session="}, "", "", b""),
        (COOKIE, {"cookie": "a=1"}, "", "", None),  # missing cookie
        (COOKIE, {}, "", "", None),  # no Cookie header
        (SOURCE, {}, "10.1.1.1", "", b"10.1.1.1"),
        (SOURCE, {}, "", "", None),
        (QUERY, {}, "", "user=bob&x=1", b"bob"),
        (QUERY, {}, "", "?x=1&user=bob", b"bob"),
        (QUERY, {}, "", "user=a%20b", b"a%20b"),  # raw, like Envoy
        (QUERY, {}, "", "user=1&user=2", b"1"),  # first value
        (QUERY, {}, "", "user", b""),
        (QUERY, {}, "", "username=bob", None),
        (QUERY, {}, "", "", None),
        (NOTHING, {"x-user": "alice"}, "10.1.1.1", "user=bob", None),
    ],
)
def test_hash_key(ch, headers, source_ip, query, expected):
    assert hash_key(ch, headers, source_ip, query) == expected


def test_cookie_and_query_helpers():
    assert cookie_value(" a = 1 ;b=2", "a") == "1"
    assert query_value("a=1&&b=2", "b") == "2"


def test_stable_hash_is_fixed_and_64_bit():
    # A constant: every worker process and every proxy must compute the same value.
    assert stable_hash64(b"alice") == 0x4DEAEC0CCE54DA89
    assert stable_hash64(b"alice") != stable_hash64(b"alicf")
