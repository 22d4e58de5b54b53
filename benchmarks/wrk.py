"""Maximum requests per second with wrk: closed loop, a fixed number of keep-alive connections."""

from __future__ import annotations

import re
import shutil
import subprocess

from benchmarks.procs import pinned

_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6}


def available() -> bool:
    return shutil.which("wrk") is not None


def parse(output: str) -> dict:
    """The figures wrk prints: requests, duration, req/s, errors, mean latency (us)."""
    found = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s)", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not found or not rps:
        raise ValueError(f"unexpected wrk output:\n{output}")
    latency = re.search(r"Latency\s+([\d.]+)(us|ms|s)", output)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {
        "requests": int(found.group(1)),
        "duration_s": float(found.group(2)) * _UNITS[found.group(3)] / 1e6,
        "rps": float(rps.group(1)),
        "mean_latency_us": float(latency.group(1)) * _UNITS[latency.group(2)] if latency else None,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(g) for g in socket_errors.groups()) if socket_errors else 0,
    }


def run(port: int, duration: float, host: str, connections: int = 50, cpus: str | None = None,
        path: str = "/") -> dict:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "-H", f"Host: {host}",
               f"http://127.0.0.1:{port}{path}"]
    done = subprocess.run(pinned(command, cpus), capture_output=True, text=True, timeout=duration + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return parse(done.stdout)
