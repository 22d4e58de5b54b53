"""The public filter API's pure parts: headers a hook changes, metrics it declares."""

import pytest

from pymesh.filters import PAUSE, FilterSpec, Headers, HttpFilter, LocalReply, Metrics


def test_headers_read_and_change_the_message_list():
    fields = [(b"a", b"1"), (b"b", b"2"), (b"a", b"3")]
    headers = Headers(fields)
    assert headers.get("A") == "1" and headers.get_all("a") == ["1", "3"] and headers.get("z") is None
    headers.set("a", "9")
    headers.add("c", "x")
    headers.remove("b")
    assert fields == [(b"a", b"9"), (b"c", b"x")]
    assert "C" in headers and list(headers) == [("a", "9"), ("c", "x")]


@pytest.mark.parametrize("name, value", [
    ("content-length", "1"), ("transfer-encoding", "chunked"), ("host", "x"), (":path", "/"),
    ("bad name", "v"), ("", "v"), ("ok", "a\r\nb: c"), ("ok", "nul\x00"),
])
def test_headers_refuse_what_would_break_framing(name, value):
    fields = []
    with pytest.raises(ValueError):
        Headers(fields).set(name, value)
    assert fields == []


def test_metrics_declared_by_name_once_per_kind():
    metrics = Metrics()
    counter = metrics.counter("hits")
    counter.inc()
    metrics.counter("hits").inc(2)
    assert counter.value == 3
    gauge = metrics.gauge("inflight")
    gauge.inc()
    gauge.dec(3)
    assert gauge.value == -2
    histogram = metrics.histogram("size", (10, 100))
    for value in (5, 50, 500):
        histogram.observe(value)
    assert histogram.count == 3
    with pytest.raises(ValueError):
        metrics.gauge("hits")
    with pytest.raises(ValueError):
        counter.inc(-1)


@pytest.mark.parametrize("name", ["Hits", "1x", "a-b", "x" * 64, ""])
def test_metric_names_are_prometheus_safe(name):
    with pytest.raises(ValueError):
        Metrics().counter(name)


def test_a_filter_gets_name_config_metrics_and_setup_runs():
    class Probe(HttpFilter):
        def setup(self):
            self.seen = self.metrics.counter("seen")

    probe = Probe("ns/probe", {"k": 1}, Metrics())
    assert probe.name == "ns/probe" and probe.config == {"k": 1} and probe.seen.value == 0
    assert probe.on_request_head(None) is None and repr(PAUSE) == "PAUSE"
    assert LocalReply(401).body == b""
    assert FilterSpec("ns/probe", "m:Probe", Probe) == FilterSpec("ns/probe", "m:Probe", HttpFilter)
