"""Tables and growth lines of the control-plane benchmark (`python -m benchmarks control`)."""

from __future__ import annotations

from benchmarks.report import render_table

TARGET_PROXIES = 1000
TARGET_P99_MS = 1000.0

COLUMNS = [
    ("convergence_p50_ms", "conv p50 ms", "{:,.0f}"),
    ("convergence_p99_ms", "conv p99 ms", "{:,.0f}"),
    ("convergence_max_ms", "conv max ms", "{:,.0f}"),
    ("server_convergence_ms", "server conv ms", "{:,.0f}"),
    ("first_received_ms", "first push ms", "{:,.0f}"),
    ("rss_mb", "RSS MB", "{:,.1f}"),
    ("cpu_ms_per_push_all", "CPU ms/push-to-all", "{:,.0f}"),
    ("cpu_us_per_proxy_push", "CPU us/proxy push", "{:,.0f}"),
    ("clients_cpu_ms", "clients CPU ms", "{:,.0f}"),
]


def _cell(summary: dict | None, fmt: str, ranged: bool = True) -> str:
    if not summary:
        return "-"
    text = fmt.format(summary["median"])
    if ranged and summary["n"] > 1:
        text += f" [{fmt.format(summary['min'])}–{fmt.format(summary['max'])}]"
    return text


def case_line(case: dict) -> str:
    s = case["summary"]
    return (f"{case['name']}: {case['proxies']} proxies connected in {case['connect_s']:.1f}s; "
            f"convergence p99 {_cell(s['convergence_p99_ms'], '{:,.0f}')} ms over {len(case['changes'])} changes")


def table(result: dict, markdown: bool) -> str:
    headers = ["case", "proxies", "affected", "connect s", *[c[1] for c in COLUMNS], "peak RSS MB", "RSS KB/proxy"]
    rows = []
    for case in result["cases"]:
        rows.append([case["variant"], f"{case['proxies']:,}", f"{case['affected']:,}", f"{case['connect_s']:.1f}",
                     *[_cell(case["summary"].get(key), fmt) for key, _, fmt in COLUMNS],
                     f"{case['rss_mb_peak']:.0f}", f"{case['rss_kb_per_proxy']:.0f}"])
    return render_table(headers, rows, markdown)


def _ratio(values: list[float | None]) -> str:
    base = values[0]
    return ", ".join(f"{v / base:.2f}x" if base and v is not None else "-" for v in values)


def growth(result: dict) -> list[str]:
    cases = sorted((c for c in result["cases"] if c["variant"] == "all"), key=lambda c: c["proxies"])
    if len(cases) < 2:
        return []
    median = lambda c, key: (c["summary"].get(key) or {}).get("median")  # noqa: E731
    sizes = " -> ".join(f"{c['proxies']:,}" for c in cases)
    lines = [f"Growth with proxies ({sizes}, i.e. {_ratio([c['proxies'] for c in cases])}):"]
    for label, values in (
        ("connect time for all", [c["connect_s"] for c in cases]),
        ("convergence p50", [median(c, "convergence_p50_ms") for c in cases]),
        ("convergence p99", [median(c, "convergence_p99_ms") for c in cases]),
        ("convergence max", [median(c, "convergence_max_ms") for c in cases]),
        ("server CPU per push-to-all", [median(c, "cpu_ms_per_push_all") for c in cases]),
        ("server CPU per proxy push", [median(c, "cpu_us_per_proxy_push") for c in cases]),
        ("server RSS", [c["rss_mb_connected"] for c in cases]),
        ("RSS per proxy", [c["rss_kb_per_proxy"] for c in cases]),
    ):
        lines.append(f"  {label}: {_ratio(values)}")
    return lines


def target(result: dict) -> str | None:
    case = next((c for c in result["cases"] if c["variant"] == "all" and c["proxies"] == TARGET_PROXIES), None)
    if case is None:
        return None
    p99 = (case["summary"].get("convergence_p99_ms") or {}).get("median")
    if p99 is None:
        return None
    verdict = "met" if p99 < TARGET_P99_MS else "MISSED"
    return (f"Target (convergence p99 < {TARGET_P99_MS:.0f} ms with {TARGET_PROXIES} proxies): {verdict}, "
            f"median p99 {p99:,.0f} ms")


def render(result: dict, markdown: bool) -> str:
    lines = ["== Control server: one VirtualService changed, time until every affected proxy ACKed "
             "(from the file's rename; median [min-max] over changes)", table(result, markdown)]
    if markdown:
        lines[0] = f"**{lines[0][3:]}**\n"
        lines.append("")
    bullet = "- " if markdown else ""
    lines += [bullet + line.strip() if markdown and line.startswith("  ") else line for line in growth(result)]
    line = target(result)
    if line:
        lines.append(line)
    return "\n".join(lines)
