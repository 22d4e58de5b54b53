"""The load of the h2c and gRPC rows: nghttp2's h2load, several streams on each of a few connections
(h2c with prior knowledge), in place of loadgen.c and wrk, which speak only HTTP/1.1. A gRPC row's
request is a unary call: POST, application/grpc, `te: trailers`, one length-prefixed message.
h2load counts a 200 as success whatever the grpc-status trailer says.

Both phases give the figures the HTTP/1.1 tools give, under the same names: a fixed rate
(`--rps` per client; every request counted for CPU per request, latency percentiles from
h2load's per-request log without the warm-up) and the closed-loop maximum (`-D`). h2load
measures latency from when it sent a request, not from when it was due, and its `--rps` fires
every client on one timer: the h2c rows' latency is not comparable to the open-loop rows'.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile

from benchmarks.procs import pinned
from benchmarks.stats import percentiles

CLIENTS = 4
STREAMS = 10  # concurrent streams per connection
LOADS = ("h2c", "grpc")
GRPC_PATH = "/bench.Echo/Unary"
GRPC_MESSAGE = b"\x0a\x03abc"  # a protobuf with one 3-byte string field
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")


def grpc_frame(message: bytes) -> bytes:
    """gRPC's length-prefixed message: not compressed, 4-byte big-endian length."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def available() -> bool:
    return shutil.which("h2load") is not None


def parse(output: str) -> dict:
    """Counts and req/s from h2load's summary, under wrk's and loadgen's names."""
    finished = re.search(r"finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", output)
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                       r"(\d+) errored, (\d+) timeout", output)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output)
    if not finished or not counts or not codes:
        raise ValueError(f"unexpected h2load output:\n{output}")
    total, started, done, succeeded, failed, errored, timeout = map(int, counts.groups())
    non_2xx = int(codes.group(3)) + int(codes.group(4))
    return {"requests": done, "completed": done, "rps": float(finished.group(3)), "non_2xx": non_2xx,
            "socket_errors": errored + timeout, "errors": failed + errored + timeout + non_2xx,
            "incomplete": started - done}


def run(port: int, duration: float, host: str, cpus: str | None = None, rate: float | None = None,
        warmup: float = 0.0, path: str = "/", grpc: bool = False) -> dict:
    """One h2load run against 127.0.0.1:port for `duration` seconds: at `rate` req/s in all (with
    latency percentiles past `warmup`), or as fast as it goes; gRPC unary calls when `grpc`."""
    with tempfile.NamedTemporaryFile("r", suffix=".h2log") as log, tempfile.NamedTemporaryFile("wb") as body:
        command = ["h2load", "-c", str(CLIENTS), "-m", str(STREAMS), "-D", f"{round(duration * 1000)}ms",
                   "-H", f":authority: {host}", "--log-file", log.name,
                   f"http://127.0.0.1:{port}{GRPC_PATH if grpc else path}"]
        if grpc:
            body.write(grpc_frame(GRPC_MESSAGE))
            body.flush()
            command[-1:-1] = ["-d", body.name, *(arg for h in GRPC_HEADERS for arg in ("-H", h))]
        if rate:
            command[1:1] = ["--rps", f"{max(1, round(rate / CLIENTS))}"]
        done = subprocess.run(pinned(command, cpus), capture_output=True, text=True, timeout=duration + 30,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"h2load failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
        result = parse(done.stdout)
        if rate:
            rows = [line.split("\t") for line in log if line.strip()]
            start = min((int(r[0]) for r in rows), default=0) + warmup * 1e6
            latencies = [float(r[2]) for r in rows if int(r[0]) >= start]
            result["latency_us"] = percentiles(latencies) if latencies else None
    return result
