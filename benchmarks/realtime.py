"""Real-time scheduling (SCHED_FIFO) for the fixed-rate phases, so other programs cannot delay them.

This machine is shared; a build or a test suite that lands on the proxies' or the load generator's
core delays a woken proxy by a scheduler slice (milliseconds), which then dominates p99. During the
open-loop phases the load generator runs at FIFO priority LOADGEN and every thread of the upstream
and of the row's proxies at SERVERS (higher, so a server's reply is never held behind the
generator's spin). The closed-loop wrk phase runs at normal priority: it saturates a core, and a
saturating real-time task would only meet the kernel's real-time throttling.
"""

from __future__ import annotations

import contextlib
import os

LOADGEN = 1
SERVERS = 2


def _threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def set_policy(pids: list[int], fifo: bool) -> None:
    policy, param = (os.SCHED_FIFO, os.sched_param(SERVERS)) if fifo else (os.SCHED_OTHER, os.sched_param(0))
    for pid in pids:
        for tid in _threads(pid):
            try:
                os.sched_setscheduler(tid, policy, param)
            except ProcessLookupError:
                pass


def available() -> str | None:
    """None when SCHED_FIFO can be set here, else why not."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        return None
    except (OSError, AttributeError) as exc:
        return str(exc)


@contextlib.contextmanager
def fifo(pids: list[int], enabled: bool):
    if not enabled:
        yield
        return
    set_policy(pids, True)
    try:
        yield
    finally:
        set_policy(pids, False)
