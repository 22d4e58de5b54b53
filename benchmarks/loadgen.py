"""Building and running the C open-loop load generator (loadgen.c) for the fixed-rate figures.

It is compiled on the machine that runs the benchmark, into the results' build directory, so no
binary is ever committed. Percentiles are computed here from its raw per-request latencies, with
the one tested definition in stats.py; its own summary supplies counts and the send lag.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmarks import PACKAGE_DIR
from benchmarks.procs import pinned
from benchmarks.stats import percentiles

SOURCE = PACKAGE_DIR / "loadgen.c"


def build(build_dir: Path) -> Path:
    """Compile loadgen.c with the system cc unless an up-to-date binary is already there."""
    build_dir.mkdir(parents=True, exist_ok=True)
    binary = build_dir / "loadgen"
    if binary.exists() and binary.stat().st_mtime >= SOURCE.stat().st_mtime:
        return binary
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler (cc) to build the load generator")
    subprocess.run([cc, "-O2", "-Wall", "-o", str(binary), str(SOURCE), "-lm"], check=True)
    return binary


def run(binary: Path, port: int, rate: float, duration: float, warmup: float, host: str,
        cpus: str | None = None, connections: int = 16, path: str = "/", fifo: int = 0) -> dict:
    """One open-loop run against 127.0.0.1:port; returns counts, latency and send-lag percentiles (us)."""
    with tempfile.NamedTemporaryFile("r", suffix=".lat") as raw:
        command = [str(binary), "--port", str(port), "--rate", str(rate), "--duration", str(duration),
                   "--warmup", str(warmup), "--conns", str(connections), "--host", host, "--path", path,
                   "--raw", raw.name, "--fifo", str(fifo)]
        done = subprocess.run(pinned(command, cpus), capture_output=True, text=True,
                              timeout=duration + 30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr.strip()}")
        summary = json.loads(done.stdout)
        latencies = [float(line) for line in raw]
    summary["latency_us"] = percentiles(latencies) if latencies else None
    return summary
