"""CPU time and resident memory of a set of processes, read from /proc.

CPU is the sum over every thread of /proc/<pid>/task/<tid>/schedstat (nanoseconds, exact); the
thread-group total in /proc/<pid>/stat (utime+stime, which also keeps threads that have exited)
is read as well and used instead when it is larger, so short-lived threads are not lost. Its
resolution is one clock tick (10 ms), too coarse alone for a few thousand requests.
"""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on; comm may hold spaces


def children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def process_tree(pids: list[int]) -> list[int]:
    """The given processes and all their descendants that are alive now."""
    seen: list[int] = []
    stack = list(pids)
    while stack:
        pid = stack.pop()
        if pid in seen or not Path(f"/proc/{pid}").exists():
            continue
        seen.append(pid)
        try:
            stack += children(pid)
        except OSError:
            pass
    return sorted(seen)


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by one process, all its threads, user plus system."""
    fields = _stat_fields(pid)
    from_stat = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)
    from_sched = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            from_sched += int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, IndexError, ValueError):
            pass
    return from_sched if from_sched + 2.0 / CLOCK_TICKS >= from_stat else from_stat


def total_cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass  # exited between listing and reading
    return total


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of one process, in KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"
