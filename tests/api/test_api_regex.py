"""Regex fields are validated by RE2, as Istio and Envoy read them: RE2-only syntax loads, what RE2
refuses (backreferences, lookaround) is an error naming the line, the field and RE2's reason."""

from __future__ import annotations

import pytest

from pymesh.api.regex import MAX_LENGTH, MAX_PROGRAM_SIZE, RegexError, compile_regex
from test_api_validation import RE2_HINT, doc, problems


def vs_with(match: str) -> str:
    """A VirtualService whose one match block is `match` (a flow mapping), on line 9."""
    return doc("VirtualService", f"""\
        hosts: [r]
        http:
        - match:
          - {match}
          route:
          - destination: {{host: r}}
        """)


@pytest.mark.parametrize("pattern", [
    r"/v\pN+/\pL+",  # Unicode classes
    r"\Q/a.b\E.*",  # quoted literal
    r"/item/[0-9]+\z",  # \z is RE2's end of text (Python's `re` calls it \Z)
    r"(?P<id>[0-9]+)|(?<name>[a-z]+)",
    r"[[:alpha:]]+",
    r"(?U)a+b",  # ungreedy flag
])
def test_re2_only_syntax_is_accepted(pattern):
    assert problems(vs_with(f"uri: {{regex: '{pattern}'}}")) == []


@pytest.mark.parametrize("match, field, pattern, reason", [
    ("uri: {regex: '(a+)\\1'}", "uri.regex", r"(a+)\1", r"invalid escape sequence: \1"),
    ("uri: {regex: '/a(?=b)'}", "uri.regex", "/a(?=b)", "invalid perl operator: (?="),
    ("headers: {x-v: {regex: '(?<!v)1'}}", "headers[x-v].regex", "(?<!v)1", "invalid perl operator: (?<!"),
    ("authority: {regex: 'a\\Z'}", "authority.regex", r"a\Z", r"invalid escape sequence: \Z"),
    ("queryParams: {q: {regex: 'a{1001}'}}", "queryParams[q].regex", "a{1001}", "invalid repetition size: {1001}"),
])
def test_what_re2_refuses_is_an_error_with_its_reason(match, field, pattern, reason):
    [problem] = problems(vs_with(match))
    assert problem == f"9 spec.http[0].match[0].{field}: invalid regex {pattern!r}: {reason}" + RE2_HINT


def test_an_empty_regex_is_refused_as_istio_does():
    [problem] = problems(vs_with("uri: {regex: ''}"))
    assert problem.startswith("9 spec.http[0].match[0].uri.regex: invalid regex '': regex string match should not be empty")


def test_istio_length_limit():
    compile_regex("a" * MAX_LENGTH)
    with pytest.raises(RegexError, match="max length allowed is 1024"):
        compile_regex("a" * (MAX_LENGTH + 1))


def test_program_size_limit():
    """Short enough for the length limit, but RE2's program for it is over Istio's Envoy limit."""
    pattern = r"\pL{30}"
    assert len(pattern) < MAX_LENGTH
    with pytest.raises(RegexError, match=f"exceeds the maximum of {MAX_PROGRAM_SIZE}"):
        compile_regex(pattern)
    compile_regex(r"\pL{10}")
