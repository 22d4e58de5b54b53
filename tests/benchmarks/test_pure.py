"""The benchmark harness's pure parts: percentiles, per-round aggregation, configs, wrk parsing."""

from types import SimpleNamespace

import pytest
import yaml

from benchmarks import aggregate, configs, scalegen
from benchmarks.measure import hop_params
from benchmarks.rows import ROWS, UPSTREAM_PORT, select, shifted
from benchmarks.stats import percentile, percentiles, summarize
from benchmarks.wrk import parse as parse_wrk


@pytest.mark.parametrize(
    "values, percent, expected",
    [
        ([5], 50, 5),
        ([1, 2, 3, 4], 50, 2),  # nearest rank: ceil(0.5 * 4) = 2nd value, never an interpolation
        ([1, 2, 3, 4], 51, 3),
        (list(range(1, 101)), 99, 99),
        (list(range(1, 101)), 99.9, 100),
        (list(range(1, 1001)), 99.9, 999),
        ([1, 2, 3], 0, 1),
        ([1, 2, 3], 100, 3),
    ],
)
def test_percentile_nearest_rank(values, percent, expected):
    assert percentile(values, percent) == expected


def test_percentile_rejects_nothing_and_out_of_range():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_percentiles_sorts_first():
    found = percentiles([30, 10, 20, 40])
    assert found["p50"] == 20 and found["max"] == 40 and found["p90"] == 40


def test_summarize_median_min_max_skipping_missing_rounds():
    assert summarize([3, None, 1, 2]) == {"median": 2, "min": 1, "max": 3, "n": 3}
    assert summarize([4, 1]) == {"median": 2.5, "min": 1, "max": 4, "n": 2}
    assert summarize([None, None]) is None


def _record(round_index, p50, p90, rps=None, cpu=None, rss_kb=None):
    lat = {"p50": p50, "p90": p90, "p99": p90 * 2, "p999": p90 * 3, "max": p90 * 4}
    record = {"round": round_index, "fixed": {"1000": {"latency_us": lat, "errors": 0, "incomplete": 0,
                                                       "send_lag_us": {"p99": 1.0}, "cpu_us_per_req": cpu}}}
    if rps:
        record["wrk"] = {"rps": rps, "cpu_us_per_req": cpu, "proxy_cpu_util": 0.99, "non_2xx": 0, "socket_errors": 0}
    if rss_kb:
        record["memory"] = {"processes": [{"rss_kb": rss_kb, "pid": 1, "name": "p"}, {"rss_kb": 1024, "pid": 2, "name": "q"}],
                            "rss_kb_total": rss_kb + 1024}
    return record


def test_added_latency_is_against_direct_of_the_same_round():
    rounds = {
        "direct": [_record(0, 10, 20), _record(1, 50, 60)],  # round 1 is slow for everyone
        "proxy": [_record(1, 90, 100, rps=1000, cpu=40, rss_kb=20480), _record(0, 40, 70, rps=1200, cpu=50, rss_kb=10240)],
    }
    summary = aggregate.summarize_rows(rounds)
    added = summary["proxy"]["added_p50_us_1000"]
    assert (added["min"], added["max"], added["median"]) == (30, 40, 35)
    assert summary["proxy"]["added_p90_us_1000"]["median"] == 45  # (50 + 40) / 2
    assert summary["proxy"]["max_rps"] == {"median": 1100, "min": 1000, "max": 1200, "n": 2}
    assert summary["proxy"]["rss_mb_max_process"]["max"] == 20
    assert summary["proxy"]["rss_mb_total"]["min"] == 11
    assert summary["direct"]["added_p50_us_1000"]["median"] == 0
    assert "max_rps" not in summary["direct"]


def test_every_row_config_renders_without_missing_placeholders(tmp_path):
    bench = SimpleNamespace(workdir=tmp_path, port_offset=7)  # what hop_params reads of a run
    for row in ROWS:
        for hop in row.hops:
            text = configs.render(hop.peer.template, hop_params(bench, hop))
            assert "{{" not in text
            if hop.peer.template.endswith(".yaml"):
                assert list(yaml.safe_load_all(text))
    with pytest.raises(KeyError):
        configs.render("haproxy.cfg", {"workdir": "/tmp/x"})


def test_shifted_moves_only_ports():
    assert shifted({"listen_port": 1, "name": "x", "admin_port": 2}, 10) == {"listen_port": 11, "name": "x", "admin_port": 12}


def test_select_always_includes_direct_and_rejects_unknown_rows():
    assert [r.name for r in select("envoy-1hop")] == ["direct", "envoy-1hop"]
    with pytest.raises(ValueError):
        select("direct,nosuchrow")


def test_scale_configs_have_the_asked_for_services_and_routes():
    params = {"listen_port": 15080, "upstream_port": UPSTREAM_PORT}
    docs = list(yaml.safe_load_all(scalegen.services_config(3, params)))
    kinds = [d["kind"] for d in docs]
    assert kinds.count("ServiceEntry") == 4 and kinds.count("VirtualService") == 3 and "Sidecar" in kinds
    docs = list(yaml.safe_load_all(scalegen.routes_config(5, params)))
    routes = [d for d in docs if d["kind"] == "VirtualService"][0]["spec"]["http"]
    assert [r["match"][0]["uri"]["exact"] for r in routes] == [scalegen.route_path(i) for i in range(5)]


def test_wrk_output_parsing():
    out = """Running 5s test @ http://127.0.0.1:15080/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52ms  200.00us   5.00ms   90.00%
    Req/Sec    33.00k     1.00k   35.00k    80.00%
  164000 requests in 5.00s, 25.00MB read
  Non-2xx or 3xx responses: 12
Requests/sec:  32800.00
Transfer/sec:      5.00MB
"""
    parsed = parse_wrk(out)
    assert parsed["requests"] == 164000 and parsed["rps"] == 32800.0 and parsed["non_2xx"] == 12
    assert parsed["mean_latency_us"] == 1520.0 and parsed["duration_s"] == 5.0
    with pytest.raises(ValueError):
        parse_wrk("nonsense")
