"""`pymesh run [proxy options] -- COMMAND`: the proxy starts first, the app runs once it is ready,
and when the app exits the proxy drains and `pymesh run` exits with the app's status.

No namespace needed: the proxy runs without capture on 127.0.0.1, on ports free at the time.
`pymesh run` gets a session of its own, so whatever it started (the proxy, the app) is found
afterwards by session id: nothing of it may outlive it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ports import free_ports  # tests/ports.py

RUN_TIMEOUT = 60.0




def session_members(session: int) -> list[str]:
    """Processes (pid and command line) still in `session`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session:  # after "(comm)": state ppid pgrp session
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                members.append(f"{entry.name}: {command}")
        except (OSError, IndexError, ValueError):
            continue  # gone while being read
    return members


@pytest.mark.parametrize("app, status", [
    ("exit 3", 3),
    # The app runs only once the proxy answers ready on its admin port.
    ("curl -sf --max-time 5 http://127.0.0.1:$ADMIN/ready >/dev/null || exit 99; exit 3", 3),
    ("kill -TERM $$", 128 + signal.SIGTERM),  # killed by a signal: the shell's convention
], ids=["exit-3", "proxy-ready-before-app", "killed-by-sigterm"])
def test_run_exits_with_the_apps_status_once_the_proxy_is_gone(tmp_path, app, status):
    config = tmp_path / "mesh.yaml"
    config.write_text("# no resources: the proxy only has to start, serve /ready and drain\n")
    admin, stats, health = free_ports(3)
    run = subprocess.Popen(
        [sys.executable, "-m", "pymesh", "run", "--config", str(config), "--admin-port", str(admin),
         "--stats-port", str(stats), "--health-port", str(health), "--access-log", "off", "--drain-timeout", "1",
         "--", "sh", "-c", app],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "ADMIN": str(admin)},
    )
    try:
        output, _ = run.communicate(timeout=RUN_TIMEOUT)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    leftovers = session_members(run.pid)
    for member in leftovers:  # tidy up before failing: never leave a proxy behind
        try:
            os.kill(int(member.split(":")[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass

    assert run.returncode == status, output.decode(errors="replace")
    assert not leftovers, f"still running after `pymesh run` exited: {leftovers}"
