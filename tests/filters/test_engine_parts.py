"""The engine's compile-time parts, table-driven: which hooks a class overrides, which ports a
match selects, how chains_for places user filters among the built-in ones, local reply
conversion, and the filters' metrics text."""

import pytest

from pymesh.filters import FilterMatch, FilterSpec, HttpFilter, LocalReply, Metrics
from pymesh.policy import flags
from pymesh.proxy import filters as builtin
from pymesh.proxy import user_filters
from pymesh.routing import snapshot
from pymesh.telemetry import filter_metrics
from pymesh.telemetry.store import Store


class HeadOnly(HttpFilter):
    def on_request_head(self, stream):
        return None


class Bodies(HeadOnly):
    def on_response_data(self, stream, data, end):
        return data


def test_overridden_hooks_are_found_once_per_class_including_inherited_ones():
    assert user_filters.overridden(HttpFilter) == frozenset()
    assert user_filters.overridden(HeadOnly) == {"on_request_head"}
    assert user_filters.overridden(Bodies) == {"on_request_head", "on_response_data"}


@pytest.mark.parametrize("match, direction, expected", [
    ((), "inbound", None),
    ((FilterMatch("SERVER"),), "inbound", None),
    ((FilterMatch("SERVER"),), "outbound", False),
    ((FilterMatch("CLIENT", (80,)),), "outbound", frozenset({80})),
    ((FilterMatch("CLIENT", (80,)), FilterMatch("SERVER", (90,))), "inbound", frozenset({90})),
    ((FilterMatch("UNDEFINED", (1,)), FilterMatch("CLIENT_AND_SERVER")), "outbound", None),
])
def test_ports_for(match, direction, expected):
    assert user_filters.ports_for(FilterSpec("ns/f", "m:F", HeadOnly, match=match), direction) == expected


def _spec(name, phase="UNSPECIFIED_PHASE", priority=0):
    return FilterSpec(f"ns/{name}", "m:F", HeadOnly, phase=phase, priority=priority)


def _names(chain):
    out = []
    for f in chain:
        if isinstance(f, user_filters.Step):
            out.append(f.spec.name[3:])
        else:
            out.append(type(f).__name__)
    return out


def test_chains_place_user_filters_by_phase_and_priority_among_the_builtin_ones():
    specs = (_spec("u"), _spec("stats", "STATS"), _spec("z1", "AUTHZ", 1), _spec("n", "AUTHN"), _spec("z9", "AUTHZ", 9))
    user = user_filters.build({"inbound": specs}, Store())
    chains = builtin.chains_for(b"peer", None, None, jwt_authn=object(), authorizer=object(),
                                user={d: user_filters.chain_parts(user, d) for d in user})
    everything = snapshot.CORS | snapshot.FAULT | snapshot.RATE_LIMIT | snapshot.ROUTE_HEADERS
    assert _names(chains["inbound"][everything]) == [
        "Enter", "ProxyHeaders", "n", "object", "z9", "z1", "Authorization", "Cors", "FaultInjection",
        "LocalRateLimit", "stats", "u", "RouteHeaders"]
    # a direction without user filters is the built-in chain alone
    assert _names(chains["outbound"][0]) == ["ProxyHeaders"]


def test_without_user_filters_the_chains_are_the_builtin_ones():
    plain = builtin.chains_for(b"peer", None, None)
    empty = builtin.chains_for(b"peer", None, None, user={})
    assert [[_names(c) for c in chains] for chains in plain.values()] == \
        [[_names(c) for c in chains] for chains in empty.values()]


@pytest.mark.parametrize("reply, expected", [
    (LocalReply(401, "no key", {"www-authenticate": "Key"}), (401, b"no key", ((b"www-authenticate", b"Key"),))),
    (LocalReply(204, b"", [("x-a", "1")]), (204, b"", ((b"x-a", b"1"),))),
])
def test_local_replies_convert(reply, expected):
    converted = user_filters.convert_reply(reply)
    assert (converted.status, converted.body, converted.headers) == expected and converted.flags == flags.NONE


@pytest.mark.parametrize("reply", [LocalReply(99), LocalReply(600), LocalReply(200, "", {"content-length": "1"}),
                                   LocalReply(200, "", {"x": "a\r\nb"})])
def test_bad_local_replies_are_refused(reply):
    with pytest.raises(ValueError):
        user_filters.convert_reply(reply)


def test_a_filter_that_fails_setup_becomes_a_failing_step():
    class Broken(HttpFilter):
        def setup(self):
            raise RuntimeError("no")

    user = user_filters.build({"outbound": (FilterSpec("ns/b", "m:B", Broken),)}, Store())
    step = user["outbound"].steps[0]
    assert step.instance is None and step.call(None, "on_request_head") is user_filters._FAILED


def test_filter_metrics_render_as_prometheus_text():
    store = Store()
    metrics = Metrics(filter_metrics.cells_for(store, "ns/f"))
    metrics.counter("hits").inc(3)
    metrics.gauge("inflight").set(2)
    histogram = metrics.histogram("ms", (1, 10))
    for value in (0.5, 5, 50):
        histogram.observe(value)
    text = filter_metrics.exposition(store.families).decode()
    assert 'pymesh_filter_hits_total{filter="ns/f"} 3\n' in text
    assert "# TYPE pymesh_filter_inflight gauge\n" in text and 'pymesh_filter_inflight{filter="ns/f"} 2\n' in text
    assert 'pymesh_filter_ms_bucket{filter="ns/f",le="1"} 1\n' in text
    assert 'pymesh_filter_ms_bucket{filter="ns/f",le="10"} 2\n' in text
    assert 'pymesh_filter_ms_bucket{filter="ns/f",le="+Inf"} 3\n' in text
    assert 'pymesh_filter_ms_sum{filter="ns/f"} 55.5\n' in text


def test_a_stream_outliving_its_request_ignores_resume_reply_and_fail():
    class Gone:
        upstream_request = type("R", (), {"headers": []})()

    exchange = Gone()
    stream = user_filters.ProxyStream(exchange, None)
    del exchange  # the request ended and its exchange was freed
    stream.resume()
    stream.reply(403, "late")
    stream.fail(RuntimeError("late"))
    with pytest.raises(RuntimeError, match="ended"):
        stream.route_name
