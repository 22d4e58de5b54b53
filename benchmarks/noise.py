"""What else the machine did while a phase was measured, from /proc/stat and our own CPU time.

This machine is shared (builds, tests, other sessions), and CPU taken by other programs on the
proxies' core shows up as latency. For each phase we record the CPU that programs other than ours
used, and the hypervisor's steal time, so a noisy phase is visible in the output rather than
silently folded into a figure. We also record all busy time on the proxy core (processes plus
interrupt and softirq time, where loopback packet processing is accounted and which per-process
CPU time leaves out) per request, as an upper bound on the proxy's cost.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import procstat

TICK = 1.0 / procstat.CLOCK_TICKS


def cpu_times() -> dict[int, dict[str, float]]:
    """Per CPU: seconds of task time (user+nice+system), irq+softirq time, and steal."""
    found = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3].isdigit():
            name, *fields = line.split()
            v = [int(x) * TICK for x in fields]
            found[int(name[3:])] = {"task": v[0] + v[1] + v[2], "irq": v[5] + v[6], "steal": v[7]}
    return found


def _own_cpu() -> float:
    """This harness and its reaped children (load generators, wrk)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass(frozen=True)
class Sample:
    t: float
    proxy_cpu: float  # seconds, the proxy processes
    ours_cpu: float  # seconds, everything this run started (proxies, upstream, generators, harness)
    cpus: dict[int, dict[str, float]]


def sample(proxy_pids: list[int], other_pids: list[int]) -> Sample:
    proxy = procstat.total_cpu_seconds(proxy_pids)
    return Sample(time.monotonic(), proxy, proxy + procstat.total_cpu_seconds(other_pids) + _own_cpu(), cpu_times())


def between(a: Sample, b: Sample, proxy_cpus: set[int] | None, requests: int) -> dict[str, float | None]:
    wall = max(b.t - a.t, 1e-9)
    delta = {k: sum(b.cpus[c][k] - a.cpus[c][k] for c in b.cpus) for k in ("task", "irq", "steal")}
    core = None
    if proxy_cpus and requests > 0:
        busy = sum(b.cpus[c]["task"] + b.cpus[c]["irq"] - a.cpus[c]["task"] - a.cpus[c]["irq"] for c in proxy_cpus)
        core = busy / requests * 1e6
    return {
        "wall_s": wall,
        "other_cpu_pct": max(0.0, delta["task"] - (b.ours_cpu - a.ours_cpu)) / wall * 100,
        "steal_pct": delta["steal"] / wall * 100,
        "core_us_per_req": core,
    }


def parse_cpus(cpus: str | None) -> set[int] | None:
    return {int(c) for c in cpus.split(",")} if cpus else None
