"""Free TCP ports for the servers tests start, chosen below the kernel's ephemeral range.

A port found by binding to 0 comes from the ephemeral range, which is also where every outgoing
connection gets its local port: between the test picking it and the server binding it, a
client socket (even the proxy's own connection to its control server) can take it, and the
server fails with "address already in use". Ports below that range are never handed out that way.
"""

import os
import random
import socket

LOWEST = 10000
MAX_TRIES = 1000
# fixed ports of the examples (the quickstart's 15000, 15021, 15090, 15210...) and the benchmark
# rows (15000+, 18080, 19000+): never handed out, their tests may run beside others
RESERVED = (range(15000, 16000), range(18000, 20000))


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct ports nothing is bound to right now, outside the ephemeral range."""
    low, top = _worker_range(_ephemeral_start())
    chosen: list[int] = []
    for _ in range(MAX_TRIES):
        if len(chosen) == n:
            return chosen
        port = random.randrange(low, top)
        if port in chosen or any(port in r for r in RESERVED):
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        chosen.append(port)
    raise RuntimeError(f"found only {len(chosen)} of {n} free ports in {low}..{top}")


def _worker_range(top: int) -> tuple[int, int]:
    """This pytest-xdist worker's share of the ports: a port found free can still be taken before
    the test binds it, so two processes never draw from the same ones."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    span = (top - LOWEST) // max(count, 1)
    return LOWEST + index * span, LOWEST + (index + 1) * span


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]
