"""PNG plots of a result: latency percentile curves per rate, and max req/s and CPU per request."""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.stats import POINTS  # noqa: E402

CURVE = [p for p in POINTS if p != "max"]  # percentiles on the x axis, as "nines"


def _ok_rows(result: dict) -> dict[str, dict]:
    return {n: r for n, r in result["rows"].items() if r["status"] == "ok" and r["rounds"]}


def latency_plot(result: dict, path: Path) -> Path:
    rates = result["settings"]["rates"]
    fig, axes = plt.subplots(1, len(rates), figsize=(6 * len(rates), 4.5), squeeze=False)
    xs = list(range(len(CURVE)))
    for ax, rate in zip(axes[0], rates):
        for name, row in _ok_rows(result).items():
            per_round = [rec["fixed"][str(rate)]["latency_us"] for rec in row["rounds"] if str(rate) in rec["fixed"]]
            ys = [statistics.median(lat[p] for lat in per_round) for p in CURVE]
            ax.plot(xs, ys, marker="o", label=name)
        ax.set_xticks(xs, [f"{POINTS[p]:g}" for p in CURVE])
        ax.set_yscale("log")
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (us, from intended send time)")
        ax.set_title(f"open loop, {rate} req/s (median over rounds)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _bars(ax, names: list[str], summaries: list[dict | None], title: str, ylabel: str) -> None:
    med = [s["median"] if s else 0 for s in summaries]
    low = [s["median"] - s["min"] if s else 0 for s in summaries]
    high = [s["max"] - s["median"] if s else 0 for s in summaries]
    ax.bar(names, med, yerr=[low, high], capsize=4, color="tab:blue")
    for i, s in enumerate(summaries):
        if s:
            ax.annotate(f"{s['median']:,.0f}" if s["median"] >= 100 else f"{s['median']:.1f}",
                        (i, s["median"]), ha="center", va="bottom", fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=30)


def throughput_plot(result: dict, path: Path) -> Path:
    rows = _ok_rows(result)
    names = list(rows)
    proxied = [n for n in names if rows[n]["summary"].get("cpu_us_per_req_max")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    _bars(axes[0], names, [rows[n]["summary"].get("max_rps") for n in names],
          "max req/s (wrk, closed loop; bars: min-max over rounds)", "req/s")
    _bars(axes[1], proxied, [rows[n]["summary"].get("cpu_us_per_req_max") for n in proxied],
          "proxy CPU per request at max load", "CPU us / request")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_all(result: dict, stem: Path) -> list[Path]:
    """Writes <stem>-latency.png and <stem>-throughput.png beside the result JSON."""
    return [latency_plot(result, stem.with_name(stem.name + "-latency.png")),
            throughput_plot(result, stem.with_name(stem.name + "-throughput.png"))]
