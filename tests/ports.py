"""Free TCP ports for the servers tests start, chosen below the kernel's ephemeral range.

A port found by binding to 0 comes from the ephemeral range, which is also where every outgoing
connection gets its local port: between the test picking it and the server binding it, a
client socket (even the proxy's own connection to its control server) can take it, and the
server fails with "address already in use". Ports below that range are never handed out that way.
"""

import random
import socket

LOWEST = 10000
MAX_TRIES = 1000


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct ports nothing is bound to right now, outside the ephemeral range."""
    top = _ephemeral_start()
    chosen: list[int] = []
    for _ in range(MAX_TRIES):
        if len(chosen) == n:
            return chosen
        port = random.randrange(LOWEST, top)
        if port in chosen:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        chosen.append(port)
    raise RuntimeError(f"found only {len(chosen)} of {n} free ports below {top}")


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]
