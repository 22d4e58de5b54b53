"""Run a configuration load in a child process, with a time limit, without blocking the loop.

Parsing holds the GIL for as long as it takes (libyaml calls back into Python for every node),
so a thread would still stall the event loop that serves traffic; a forked child does not. The
child computes `fn(*args)`, pickles the result (which must be small and already validated: the
parent only unpickles it) into a pipe and exits; the parent reads the pipe from its event loop.
Over the time limit the child is killed and the load fails. The child also sets its own alarm
a second past the limit, so it ends even if the parent dies first.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
from typing import Any, Callable

READ_SIZE = 1 << 20


class OffloadFailed(Exception):
    """The child ran out of time, crashed, or raised; the message says which."""


async def run_in_child(fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
    """`fn(*args)` computed in a forked child; raises OffloadFailed instead of returning."""
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(fn, args, write_fd, timeout)
    os.close(write_fd)
    exit_fd = os.pidfd_open(pid)
    try:
        try:
            data = await asyncio.wait_for(_read_all(loop, read_fd), timeout)
        except asyncio.TimeoutError:
            data = None
            os.kill(pid, signal.SIGKILL)
        await _exited(loop, exit_fd)
        status = os.waitpid(pid, 0)[1]
    except BaseException:  # cancelled while waiting: the child must not outlive us
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(read_fd)
        os.close(exit_fd)
    if data is None:
        raise OffloadFailed(f"loading took longer than the {timeout:g} s limit; stopped")
    if status != 0 or not data:
        raise OffloadFailed(f"the loading process died ({_describe(status)})")
    ok, value = pickle.loads(data)
    if not ok:
        raise OffloadFailed(f"loading failed: {value}")
    return value


def _child(fn: Callable[..., Any], args: tuple, write_fd: int, timeout: float) -> None:
    """In the child: never returns. Signals go back to their defaults, so SIGTERM ends the child
    instead of being forwarded to the parent's loop through its inherited wakeup fd."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
            signal.signal(signum, signal.SIG_DFL)
        signal.setitimer(signal.ITIMER_REAL, timeout + 1.0)
        try:
            result = (True, fn(*args))
        except Exception as error:  # reported to the parent, which decides
            result = (False, f"{type(error).__name__}: {error}")
        data = memoryview(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        while data:
            data = data[os.write(write_fd, data):]
        code = 0
    finally:
        os._exit(code)


async def _read_all(loop: asyncio.AbstractEventLoop, fd: int) -> bytes:
    """Everything written to the pipe, until the child closes it (by exiting)."""
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    done = loop.create_future()

    def on_readable() -> None:
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        if chunk:
            chunks.append(chunk)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
    return b"".join(chunks)


async def _exited(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """Until the pidfd says the child exited (it has closed the pipe, or was killed)."""
    exited = loop.create_future()
    loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
    try:
        await exited
    finally:
        loop.remove_reader(fd)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
