"""From per-round raw records to the flat figures the table, plots and budget read.

Every figure is first computed per round; added latency is a row's percentile minus the direct
row's percentile of the same round (so a slow round for everyone cancels out), and only then are
rounds summarized as median [min-max].
"""

from __future__ import annotations

from benchmarks.stats import summarize

LATENCY_POINTS = ("p50", "p90", "p99", "p999", "max")
ADDED_POINTS = ("p50", "p90", "p99", "p999")


def round_metrics(record: dict, direct: dict | None) -> dict[str, float | None]:
    """The flat figures of one row in one round; `direct` is the direct row's record of that round."""
    m: dict[str, float | None] = {}
    w = record.get("wrk") or {}
    m["max_rps"] = w.get("rps")
    m["cpu_us_per_req_max"] = w.get("cpu_us_per_req")
    m["proxy_cpu_util_max"] = w.get("proxy_cpu_util")
    m["errors_max"] = (w.get("non_2xx", 0) + w.get("socket_errors", 0)) if w else None
    m["core_us_per_req_max"] = (w.get("noise") or {}).get("core_us_per_req")
    for rate, fixed in record.get("fixed", {}).items():
        lat = fixed.get("latency_us") or {}
        for p in LATENCY_POINTS:
            m[f"{p}_us_{rate}"] = lat.get(p)
        base = ((direct or {}).get("fixed", {}).get(rate) or {}).get("latency_us")
        for p in ADDED_POINTS:
            m[f"added_{p}_us_{rate}"] = lat[p] - base[p] if base and p in lat else None
        m[f"cpu_us_per_req_{rate}"] = fixed.get("cpu_us_per_req")
        m[f"send_lag_p99_us_{rate}"] = (fixed.get("send_lag_us") or {}).get("p99")
        m[f"conn_wait_p99_us_{rate}"] = (fixed.get("conn_wait_us") or {}).get("p99")
        m[f"core_us_per_req_{rate}"] = (fixed.get("noise") or {}).get("core_us_per_req")
        m[f"other_cpu_pct_{rate}"] = (fixed.get("noise") or {}).get("other_cpu_pct")
        m[f"errors_{rate}"] = fixed.get("errors", 0) + fixed.get("incomplete", 0)
    windows = [f["noise"] for f in [w, *record.get("fixed", {}).values()] if f and f.get("noise")]
    m["other_cpu_pct"] = max((n["other_cpu_pct"] for n in windows), default=None)
    m["steal_pct"] = max((n["steal_pct"] for n in windows), default=None)
    mem = record.get("memory")
    if mem:
        m["rss_mb_total"] = mem["rss_kb_total"] / 1024
        m["rss_mb_max_process"] = max((p["rss_kb"] or 0) for p in mem["processes"]) / 1024 if mem["processes"] else None
    return m


def summarize_rows(rounds_by_row: dict[str, list[dict]]) -> dict[str, dict]:
    """Per row: the per-round flat metrics (added to each round as "metrics") and their summary."""
    direct_by_round = {r["round"]: r for r in rounds_by_row.get("direct", [])}
    summaries = {}
    for name, rounds in rounds_by_row.items():
        for record in rounds:
            record["metrics"] = round_metrics(record, direct_by_round.get(record["round"]))
        keys = dict.fromkeys(k for record in rounds for k in record["metrics"])
        summary = {k: summarize(record["metrics"].get(k) for record in rounds) for k in keys}
        summaries[name] = {k: v for k, v in summary.items() if v is not None}
    return summaries
