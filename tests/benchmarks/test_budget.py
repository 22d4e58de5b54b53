"""`python -m benchmarks check`: a synthetic result against the shipped and a tightened budget."""

import json
from types import SimpleNamespace

import pytest

from benchmarks import budget


def _row(**medians):
    return {"status": "ok", "summary": {k: {"median": v, "min": v, "max": v, "n": 3} for k, v in medians.items()}}


RESULT = {
    "rows": {
        "direct": _row(p90_us_1000=20.0),
        "pymesh-1hop": _row(cpu_us_per_req_max=60.0, added_p50_us_1000=100.0, added_p90_us_1000=150.0,
                            rss_mb_max_process=30.0, p90_us_1000=170.0),
        "pymesh-2hop": _row(added_p90_us_1000=350.0, p90_us_1000=370.0),
        "envoy-1hop": _row(cpu_us_per_req_max=40.0, added_p50_us_1000=80.0, added_p90_us_1000=120.0,
                           rss_mb_max_process=60.0),
        "envoy-2hop": _row(added_p90_us_1000=250.0),
    }
}


def _check(tmp_path, result, budget_text=None):
    result_path = tmp_path / "result.json"
    result_path.write_text(json.dumps(result))
    budget_path = None
    if budget_text is not None:
        budget_path = tmp_path / "budget.yaml"
        budget_path.write_text(budget_text)
    return budget.main(SimpleNamespace(result=str(result_path), budget=str(budget_path) if budget_path else None))


def test_shipped_budget_passes_a_normal_run(tmp_path, capsys):
    assert _check(tmp_path, RESULT) == 0
    assert "within budget" in capsys.readouterr().out


def test_tightened_budget_lists_each_breach_with_measured_and_limit(tmp_path, capsys):
    tight = """
checks:
  - {name: one-hop CPU per request, row: pymesh-1hop, metric: cpu_us_per_req_max, max: 50}
  - {name: one-hop CPU vs Envoy, row: pymesh-1hop, metric: cpu_us_per_req_max, vs: envoy-1hop, max_ratio: 1.2}
  - {name: RSS per worker, row: pymesh-1hop, metric: rss_mb_max_process, max: 40}
"""
    assert _check(tmp_path, RESULT, tight) == 1
    err = capsys.readouterr().err
    assert "2 breach(es)" in err
    assert "one-hop CPU per request: measured 60.00 > limit 50" in err
    assert "one-hop CPU vs Envoy: measured 1.50x > limit 1.2x" in err
    assert "RSS per worker" not in err


def test_min_bounds_and_missing_rows(tmp_path):
    result = {"rows": {"pymesh-1hop": {"status": "unavailable: not built", "summary": {}},
                       "direct": _row(max_rps=1000.0)}}
    outcomes = budget.check_result(result, [
        {"name": "absent", "row": "pymesh-1hop", "metric": "max_rps", "min": 1},
        {"name": "no reference", "row": "direct", "metric": "max_rps", "vs": "envoy-1hop", "max_ratio": 2},
        {"name": "floor", "row": "direct", "metric": "max_rps", "min": 2000},
    ])
    assert [o.verdict for o in outcomes] == ["BREACH", "skipped", "BREACH"]
    assert "unavailable" in outcomes[0].detail and "measured 1000.00 < limit 2000" in outcomes[2].detail


@pytest.mark.parametrize("text", [
    "checks: []",
    "checks: [{name: x, row: r, metric: m}]",
    "checks: [{name: x, row: r, metric: m, max: 1, min: 0}]",
    "checks: [{name: x, row: r, metric: m, max_ratio: 2}]",
    "checks: [{name: x, row: r, metric: m, max: 2, vs: direct}]",
])
def test_malformed_budgets_are_refused(tmp_path, text, capsys):
    assert _check(tmp_path, RESULT, text) == 2
    assert "check:" in capsys.readouterr().err
