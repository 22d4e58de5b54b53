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
    ("request.path == '" + "a" * 5000 + "'", "longer than 4096 characters"),
    ("request.path.matches(request.host)", "matches() takes a quoted pattern"),
    ("request.path.matches('(')", "matches(): "),
])
def test_refused_with_the_expression_named(expression, message):
    problem = cel.check(expression)
    assert problem is not None and problem.startswith(f"expression {expression!r}: ") and message in problem


def test_attributes_used():
    assert cel.attributes_used("request.headers['X-A'] == 'b' && response.code > 1") == {
        ("request.headers", "x-a"), ("response.code", None)}
