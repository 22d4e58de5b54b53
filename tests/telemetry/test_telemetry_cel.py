"""The CEL subset (pymesh.telemetry.cel): Istio's documented filter and tag expressions
evaluate as Envoy would, and anything else is refused by name."""

from __future__ import annotations

import pytest

from pymesh.telemetry import cel

ATTRS = {("response.code", None): 503, ("xds.cluster_name", None): "outbound|80||a", ("request.url_path", None): "/healthz",
         ("request.headers", "x-user"): "alice", ("destination.port", None): 9080, ("connection.mtls", None): True,
         ("request.host", None): "a.local", ("upstream_peer.labels", "app"): "reviews"}


def lookup(attribute, key):
    return ATTRS.get((attribute, key))


@pytest.mark.parametrize("expression, expected", [
    ("response.code >= 400", True),
    ("response.code == 200", False),
    ("response.code >= 400 || xds.cluster_name == 'BlackHoleCluster' || xds.cluster_name == 'PassthroughCluster'", True),
    ("response.code < 400 || xds.cluster_name == 'BlackHoleCluster'", False),
    ("!request.url_path.startsWith('/health')", False),
    ("connection.mtls && request.url_path.contains('/health')", True),
    ("has(request.headers['x-user'])", True),
    ("has(request.headers['x-none'])", False),
    ("request.headers['X-User'] == \"alice\"", True),
    ("(response.code == 503) && !(request.host == 'b.local')", True),
    ("request.method == 'GET'", False),  # absent: an error, and an error does not log
    ("request.method == 'GET' || response.code == 503", True),  # CEL's || forgives an erroring side
    ("request.url_path.matches('^/health')", True),
    ("response.code", False),  # not a boolean
])
def test_filters(expression, expected):
    assert cel.check(expression) is None
    assert cel.compile_filter(expression)(lookup) is expected


@pytest.mark.parametrize("expression, expected", [
    ("request.host", "a.local"),
    ("string(destination.port)", "9080"),
    ("request.headers['x-user']", "alice"),
    ("'literal'", "literal"),
    ("upstream_peer.labels['app'].value", "reviews"),
    ("request.method", None),
    ("response.code >= 500", "true"),
])
def test_values(expression, expected):
    assert cel.compile_value(expression)(lookup) == expected


@pytest.mark.parametrize("expression, message", [
    ("foo.bar == 1", "attribute foo.bar is not supported"),
    ("response.code >=", "the expression ends too soon"),
    ("response.code > 1 ? 1 : 2", "unexpected"),
    ("request.headers[x]", "needs a quoted key"),
    ("request.path.size()", "method size() is not supported"),
    ("timestamp('2020')", "function timestamp() is not supported"),
    ("", "the expression is empty"),
    ("(" * 40 + "true" + ")" * 40, "nested more than 32 deep"),
    ("!" * 40 + "true", "nested more than 32 deep"),
    ("request.path.matches(request.host)", "matches() takes a quoted pattern"),
    ("request.path.matches('(')", "matches(): "),
    ("request.path == 'a\\d'", "\\d is not an escape CEL has"),  # was read as 'ad'
    ("request.path == '\\U0010ffff' || request.path == '\\uD800'", "\\uD800 is not a Unicode code point"),
    ("response.code == 9223372036854775808", "beyond CEL's 64-bit int"),
])
def test_refused_with_the_expression_named(expression, message):
    problem = cel.check(expression)
    assert problem is not None and problem.startswith(f"expression {expression!r}: ") and message in problem


def test_a_long_expression_is_named_cut_and_so_is_a_long_name_in_it():
    long = "request.path == '" + "a" * 5000 + "'"
    assert cel.check(long) == f"expression {long[:120]!r}... (4898 more characters): longer than 4096 characters"
    assert cel.check("x" * 200).endswith(": attribute " + "x" * 40 + "... is not supported")


@pytest.mark.parametrize("literal, text", [
    (r"'a\nb'", "a\nb"), (r"'\t\r\a\b\f\v'", "\t\r\a\b\f\v"), (r"'\x41\101\u00e9\U0001F600'", "AAé\U0001F600"),
    (r"'\\ \' \" \` \?'", "\\ ' \" ` ?"), (r'"it\'s"', "it's"),
])
def test_string_literals_read_cels_escapes(literal, text):
    assert cel.compile_value(literal)(lookup) == text


@pytest.mark.parametrize("header, expected", [
    ("7", "7"), ("-7", "-7"), ("+7", "7"), ("-9223372036854775808", "-9223372036854775808"),
    (" 7 ", None), ("1_0", None), ("²", None), ("١٢", None), ("7.0", None), ("", None),
    ("9223372036854775808", None), ("9" * 5000, None),  # int() raised ValueError into the request
])
def test_int_of_a_string_is_cels(header, expected):
    value = cel.compile_value("int(request.headers['x'])")
    assert value(lambda attribute, key: header) == expected


HOSTILE = ["", "abc", "²", "9" * 5000, "\x00\udcff", "\ud800", "a" * 100_000, 0, -1, 2**70, True, None, 1.5]


@pytest.mark.parametrize("expression", [
    "int(request.headers['x']) > 5", "size(request.headers['x']) > 5", "string(request.headers['x']) == 'a'",
    "request.headers['x'].startsWith('a')", "request.headers['x'].contains(request.host)",
    "request.headers['x'].matches('^(a+)+$')", "request.headers['x'] < 3", "request.headers['x'] >= 'a'",
    "!request.headers['x']", "request.headers['x'] && true", "int(size(request.headers['x'])) == 1",
])
@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_no_value_of_any_type_raises_at_request_time(expression, value):
    def hostile(attribute, key):
        return value

    assert cel.compile_filter(expression)(hostile) in (True, False)
    assert cel.compile_value(expression)(hostile) is None or isinstance(cel.compile_value(expression)(hostile), str)


def test_attributes_used():
    assert cel.attributes_used("request.headers['X-A'] == 'b' && response.code > 1") == {
        ("request.headers", "x-a"), ("response.code", None)}
