"""Real ClientHellos, recorded by running a real TLS client against a socket the test listens
on (no TLS server answers: the client's first flight is all we keep). Nothing is committed as
binary: each test run records its own."""

from __future__ import annotations

import socket
import subprocess
import time

from pymesh.http.tls_hello import MAX_INPUT, NEED_MORE, inspect

RECORD_TIMEOUT = 10.0  # seconds for the client to connect and send its hello


def record(command: list[str]) -> bytes:
    """Run `command` with {port} filled in, accept its one connection, return the bytes it sent
    until its ClientHello is complete (bounded by MAX_INPUT and RECORD_TIMEOUT)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(RECORD_TIMEOUT)
        port = listener.getsockname()[1]
        client = subprocess.Popen([part.format(port=port) for part in command], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(RECORD_TIMEOUT)
                data = b""
                deadline = time.monotonic() + RECORD_TIMEOUT
                while inspect(data) is NEED_MORE and len(data) < MAX_INPUT and time.monotonic() < deadline:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                return data
        finally:
            client.kill()
            client.wait(timeout=10)


def openssl(*args: str) -> list[str]:
    return ["openssl", "s_client", "-connect", "127.0.0.1:{port}", *args]


def curl(name: str, *args: str) -> list[str]:
    return ["curl", "-sk", "--max-time", "5", "--resolve", f"{name}:{{port}}:127.0.0.1", *args,
            f"https://{name}:{{port}}/"]
