"""Starting the servers a benchmark needs and making sure every one of them is gone afterwards.

Each server runs in its own session (process group), pinned with taskset, with its output in a log
file; stop_all() signals whole groups, so a master's workers go too. It runs from try/finally in
the callers, from atexit, and on SIGTERM/SIGINT, so an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import atexit
import http.client
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


class StartError(RuntimeError):
    """A server did not start or did not become ready: the harness is broken, not a figure."""


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


_RUNNING: list[Proc] = []


def pinned(command: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *command] if cpus else command


def start(name: str, command: list[str], logdir: Path, cpus: str | None = None, env: dict | None = None) -> Proc:
    log = logdir / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            pinned(command, cpus), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env,
        )
    proc = Proc(name, popen, log)
    _RUNNING.append(proc)
    return proc


def adopt(name: str, popen: subprocess.Popen, log: Path) -> Proc:
    """Stop a process started elsewhere (in its own session) with the others: in stop_all()."""
    proc = Proc(name, popen, log)
    _RUNNING.append(proc)
    return proc


def stop(proc: Proc, grace: float = 5.0) -> None:
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.popen.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # workers left in the group after the leader exited
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc in _RUNNING:
        _RUNNING.remove(proc)


def stop_all() -> None:
    for proc in reversed(list(_RUNNING)):
        stop(proc, grace=2.0)


def _on_signal(signum, _frame):
    stop_all()
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    """Stop every started server at exit and on SIGTERM/SIGINT; called by the commands that start
    servers (not at import, so importing this module changes no signal handling)."""
    atexit.register(stop_all)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _on_signal)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http_status(port: int, path: str = "/", host: str | None = None, timeout: float = 1.0) -> int | None:
    """Status of one GET to 127.0.0.1:port, or None when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_ready(procs: list[Proc], port: int, path: str = "/", host: str | None = None, timeout: float = 20.0) -> None:
    """Wait until GET 127.0.0.1:port/path answers 200, failing early when a process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.popen.poll() is not None:
                tail = proc.log_tail()
                last = tail.splitlines()[-1] if tail else "no output"
                raise StartError(f"{proc.name} exited with {proc.popen.returncode}: {last}\n{tail}")
        if http_status(port, path, host) == 200:
            return
        time.sleep(0.05)
    tails = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in procs)
    raise StartError(f"127.0.0.1:{port}{path} not ready after {timeout:.0f}s\n{tails}")
