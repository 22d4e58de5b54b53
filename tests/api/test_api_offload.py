"""Loads in a child process: the result comes back, and a child that raises, crashes, runs out of
time or is abandoned ends as OffloadFailed with nothing left running, while the event loop
stays free."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from pymesh.api.offload import OffloadFailed, run_in_child

pytestmark = pytest.mark.timeout(30)


def has_child() -> bool:
    """This process has a child (running or a zombie not yet reaped), from /proc."""
    me = str(os.getpid())
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        if stat.rsplit(") ", 1)[1].split()[1] == me:  # field 4, ppid, after "pid (comm) state"
            return True
    return False


def no_children() -> bool:
    """This process has no child left (running or zombie)."""
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def wait_for_file(path: str) -> str:
    """In the child: blocks until the parent's event loop has created `path` (bounded)."""
    for _ in range(2000):
        if os.path.exists(path):
            return "seen"
        time.sleep(0.005)
    return "never"


def boom() -> None:
    raise ValueError("bad value")


def crash() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would


def forever() -> None:
    while True:
        pass


def test_the_result_comes_back_while_the_loop_keeps_running(tmp_path: Path) -> None:
    """The child waits for a file that only a callback on the parent's loop creates: if waiting
    for the child blocked the loop, the child would never see it."""
    flag = str(tmp_path / "flag")

    async def main():
        asyncio.get_running_loop().call_later(0.05, lambda: Path(flag).touch())
        return await run_in_child(wait_for_file, flag, timeout=20)

    assert asyncio.run(main()) == "seen"
    assert no_children()


@pytest.mark.parametrize("fn, message", [
    (boom, "loading failed: ValueError: bad value"),
    (crash, "the loading process died (killed by SIGKILL)"),
    (forever, "loading took longer than the 0.2 s limit; stopped"),
])
def test_failures_are_reported_and_the_child_is_gone(fn, message: str) -> None:
    with pytest.raises(OffloadFailed) as info:
        asyncio.run(run_in_child(fn, timeout=0.2))
    assert str(info.value) == message
    assert no_children()


def test_cancelling_the_wait_kills_the_child() -> None:
    async def main():
        task = asyncio.ensure_future(run_in_child(forever, timeout=60))
        for _ in range(2000):  # until the child exists (bounded), so the cancel has one to kill
            await asyncio.sleep(0.005)
            if has_child():
                break
        assert has_child()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert no_children()
