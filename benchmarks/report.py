"""The human-readable side of a result: the tables (plain or markdown) and what to trust in them."""

from __future__ import annotations

TRUST = (
    "Trustworthy on this machine: CPU us/request, memory, max req/s where the proxy is the bottleneck "
    "(proxy CPU at max near 100% of its core) and added p50/p90; these repeat within a few percent "
    "(CPU, memory) or some tens of us (latency). Not trustworthy: p99 and above, which move between runs "
    "by milliseconds without real-time scheduling or while other programs load the machine (vCPU and "
    "scheduler delays; the send-lag, conn-wait and other-CPU columns show when a figure was disturbed), "
    "and max req/s of rows whose proxy is not saturated (then the load generator and upstream, sharing "
    "one core, are the limit)."
)


def cell(summary: dict | None, digits: int = 0, scale: float = 1.0) -> str:
    """'median [min-max]' over rounds (just the value when there was one round)."""
    if not summary:
        return "-"
    f = lambda v: f"{v * scale:,.{digits}f}"  # noqa: E731
    if summary.get("n", 1) <= 1 or summary["min"] == summary["max"]:
        return f(summary["median"])
    return f"{f(summary['median'])} [{f(summary['min'])}–{f(summary['max'])}]"


def render_table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *map(fmt, rows)])


def status_lines(result: dict, markdown: bool = False) -> str:
    """Rows that have no figures, each with its reason (unavailable or failed)."""
    bullet = "- " if markdown else ""
    return "\n".join(f"{bullet}{name}: {row['status']}" for name, row in result["rows"].items() if row["status"] != "ok")


def throughput_table(result: dict, markdown: bool = False) -> str:
    rates = result["settings"]["rates"]
    headers = ["row", "max req/s", "proxy CPU at max", "CPU us/req at max",
               *[f"CPU us/req @{r}/s" for r in rates], "core us/req at max", "RSS MB total", "RSS MB per process (max)"]
    rows = []
    for name, row in result["rows"].items():
        if row["status"] != "ok":
            continue
        s = row["summary"]
        rows.append([name, cell(s.get("max_rps")), cell(s.get("proxy_cpu_util_max"), 0, 100) + ("%" if s.get("proxy_cpu_util_max") else ""),
                     cell(s.get("cpu_us_per_req_max"), 1), *[cell(s.get(f"cpu_us_per_req_{r}"), 1) for r in rates],
                     cell(s.get("core_us_per_req_max"), 1) if s.get("cpu_us_per_req_max") else "-",
                     cell(s.get("rss_mb_total"), 1), cell(s.get("rss_mb_max_process"), 1)])
    return render_table(headers, rows, markdown)


def latency_table(result: dict, rate: int, markdown: bool = False) -> str:
    headers = ["row", "p50 us", "p90 us", "p99 us", "p99.9 us", "added p50", "added p90", "added p99",
               "send lag p99", "conn wait p99", "other CPU %", "errors"]
    rows = []
    for name, row in result["rows"].items():
        if row["status"] != "ok":
            continue
        s = row["summary"]
        direct = name == "direct"
        rows.append([name, *[cell(s.get(f"{p}_us_{rate}")) for p in ("p50", "p90", "p99", "p999")],
                     *["(baseline)" if direct else cell(s.get(f"added_{p}_us_{rate}")) for p in ("p50", "p90", "p99")],
                     cell(s.get(f"send_lag_p99_us_{rate}")), cell(s.get(f"conn_wait_p99_us_{rate}")),
                     cell(s.get(f"other_cpu_pct_{rate}")), cell(s.get(f"errors_{rate}"))])
    return render_table(headers, rows, markdown)


NOISY_PCT = 10.0  # other programs' CPU, % of one core, above which a run is flagged


def noise_line(result: dict) -> str:
    """How busy the machine was with other work during the measurements, with a warning if very."""
    worst = [r["summary"]["other_cpu_pct"]["max"] for r in result["rows"].values() if r["summary"].get("other_cpu_pct")]
    steal = [r["summary"]["steal_pct"]["max"] for r in result["rows"].values() if r["summary"].get("steal_pct")]
    if not worst:
        return ""
    line = (f"other programs' CPU during measurements: up to {max(worst):.0f}% of a core "
            f"(hypervisor steal up to {max(steal, default=0):.0f}%)")
    if max(worst) > NOISY_PCT:
        line += " -- WARNING: the machine was busy with other work; latency tails are not comparable"
    return line


def header(result: dict, markdown: bool = False) -> str:
    m, st = result["machine"], result["settings"]
    lines = [f"{result['date']}: {m['cores']} cores, {m['cpu_model']}, kernel {m['kernel']}",
             f"command: `{result['command']}`" if markdown else f"command: {result['command']}",
             f"rounds: {st['rounds']} (rows interleaved, order rotated each round; median [min–max] over rounds); "
             f"pinning: load+upstream on CPU {st['load_cpus']}, proxies on CPU {st['proxy_cpus']}; "
             f"cpu_dma_latency: {st['cpu_dma_latency']}; real-time scheduling: {st.get('realtime', 'off')}",
             noise_line(result)]
    return "\n".join(("- " if markdown else "") + line for line in lines if line)


def full_report(result: dict, markdown: bool = False) -> str:
    h = "### " if markdown else "== "
    parts = [header(result, markdown), "", f"{h}Throughput, CPU and memory (wrk -t1 -c{result['settings']['wrk_connections']}, "
             f"{result['settings']['wrk_duration']}s)", throughput_table(result, markdown)]
    for rate in result["settings"]["rates"]:
        parts += ["", f"{h}Latency at {rate} req/s, open loop (us, from each request's intended send time; "
                  "added = row minus direct in the same round)", latency_table(result, rate, markdown)]
    if any(row.get("load") == "h2c" for row in result["rows"].values()):
        parts += ["", f"h2c rows: {result['settings'].get('h2load', 'h2load')} for both phases instead of wrk and the "
                  "open-loop generator; their latency counts from each request's send, not its intended time"]
    missing = status_lines(result, markdown)
    if missing:
        parts += ["", f"{h}Rows without figures", missing]
    parts += ["", TRUST]
    return "\n".join(parts)
