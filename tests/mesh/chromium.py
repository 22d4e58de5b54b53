"""Debian's headless Chromium as a test's browser: the DOM of a page after its scripts ran
(`--dump-dom` with a virtual time budget, so the page's fetches complete before the dump) and a
screenshot. Each run gets a new empty profile directory and is bounded in time; the flags are
those that keep it off the network (no background updates, sync, QUIC or first-run pages)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

BINARY = "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1280,1400")
TIMEOUT = 60.0


def require() -> None:
    if not os.access(BINARY, os.X_OK):
        pytest.skip(f"{BINARY} is not installed (setup.sh installs Debian's chromium)")


def _run(url: str, *args: str, budget_ms: int) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="pymesh-chromium-")
    try:
        return subprocess.run([BINARY, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                               *args, url], capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def dom(url: str, budget_ms: int = 4000) -> str:
    """The serialized DOM once the page's scripts had `budget_ms` of (virtual) time."""
    done = _run(url, "--dump-dom", budget_ms=budget_ms)
    assert done.returncode == 0 and done.stdout, f"chromium --dump-dom failed:\n{done.stderr.decode()[-3000:]}"
    return done.stdout.decode()


def screenshot(url: str, path: Path, budget_ms: int = 4000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    done = _run(url, f"--screenshot={path}", budget_ms=budget_ms)
    assert done.returncode == 0 and path.exists(), f"chromium --screenshot failed:\n{done.stderr.decode()[-3000:]}"
    return path


def artifact_dir(tmp_path: Path) -> Path:
    """$PYMESH_ARTIFACTS when set (CI keeps it), else the test's own temporary directory."""
    return Path(os.environ["PYMESH_ARTIFACTS"]) if os.environ.get("PYMESH_ARTIFACTS") else tmp_path
