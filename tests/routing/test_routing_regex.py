"""Route regexes: RE2 full matches over the request's bytes, linear whatever the pattern."""

from __future__ import annotations

import random

import pytest
import re2

from pymesh.api import model as m
from pymesh.routing.regex import full_matcher
from routing_helpers import Req, compile_, dest, http, se, vs

SVC = se("reviews.default.svc.cluster.local")

# (pattern, an input Python's `re` backtracks on for ever, an input that matches)
CATASTROPHIC = [
    ("(a+)+$", "a" * 5000 + "!", "a" * 5000),
    ("(a|aa)+", "a" * 5000 + "b", "a" * 5000),
    ("(x+x+)+y", "x" * 5000, "xxy"),
    (r"/(\w+/?)*x", "/" + "ab/" * 3000 + "y", "/ab/x"),
]


def route_for(match: m.HTTPMatchRequest):
    table = compile_([SVC], [vs("r", "reviews", http(dest("reviews"), match=[match], name="hit"))])
    return lambda req: table.captured_outbound[9080].route_table.match(req) is not None


@pytest.mark.parametrize("pattern, hostile, good", CATASTROPHIC, ids=[c[0] for c in CATASTROPHIC])
def test_catastrophic_patterns_answer_at_once(pattern, hostile, good):
    """With Python's `re` the hostile inputs take longer than the test timeout."""
    test = full_matcher(pattern)
    assert (test(hostile), test(good)) == (False, True)


def test_full_match_not_search():
    test = full_matcher(r"/item/\d+")
    assert [test(p) for p in ("/item/42", "/item/42/x", "x/item/42", "/item/")] == [True, False, False, False]


def test_dollar_is_the_end_of_the_text():
    """RE2's `$` does not match before a final newline, as Python's `re` does."""
    assert full_matcher("a$")("a") and not full_matcher("a$")("a\n")


def test_values_are_matched_as_their_wire_bytes():
    """A header sent as UTF-8 arrives latin-1-decoded; the regex sees the UTF-8 bytes, as Envoy's."""
    wire = "é".encode("utf-8").decode("latin-1")
    assert full_matcher("é")(wire) and full_matcher(".")(wire) and not full_matcher("..")(wire)
    hit = route_for(m.HTTPMatchRequest(headers={"x-name": m.StringMatch("regex", "caf.")}))
    assert hit(Req(headers={"x-name": "caf" + wire}))


def test_query_values_are_utf8_text():
    hit = route_for(m.HTTPMatchRequest(query_params={"q": m.StringMatch("regex", "caf.")}))
    assert hit(Req(path="/?q=caf%C3%A9")) and not hit(Req(path="/?q=cafe%C3%A9"))


def test_authority_regex_ignores_case_uri_regex_does_not():
    authority = route_for(m.HTTPMatchRequest(authority=m.StringMatch("regex", "reviews(:[0-9]+)?")))
    assert authority(Req(authority="Reviews:9080"))
    uri = route_for(m.HTTPMatchRequest(uri=m.StringMatch("regex", "/a.*"), ignore_uri_case=True))
    assert uri(Req(path="/abc")) and not uri(Req(path="/Abc"))


PATTERNS = [
    r"/api/v[0-9]+/.*", r"(?i)/API/[a-z]+", r".*\.js", r"[^/]*", r"(a+)+$", "/x\u00e9.*", "(?i)\u00e9",
    r"\pL+", r".", r"(?s).", r"/foo|/bar/.*", r"\C+", r"a|", r"^$",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_the_byte_range_check_never_changes_re2s_answer(pattern):
    """full_matcher turns values away by RE2's PossibleMatchRange before matching; over random
    values, latin-1 and UTF-8, its answer is always RE2's own full match."""
    test = full_matcher(pattern)
    reference = re2.compile(pattern.encode("utf-8"))
    rng = random.Random(pattern)
    alphabet = "/apijsxAPI.\u00e9\u00ff\x00\u00c3\u00a9019"
    for _ in range(3000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        assert test(value) is (reference.fullmatch(value.encode("latin-1")) is not None), value


def test_matching_never_logs(capfd):
    """RE2 logs to stderr when a value exhausts a regex's DFA cache, unless told not to: a client
    could otherwise write a log line per request."""
    rng = random.Random(1)
    value = "".join(rng.choice("ab") for _ in range(200_000))
    test = full_matcher("[ab]*a[ab]{20}")
    assert test(value[:-21] + "a" + value[-20:]) and not test(value[:-21] + "b" + value[-20:])
    assert capfd.readouterr().err == ""
