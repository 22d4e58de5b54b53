"""The client side of one mutation: send its bytes on a fresh connection, read what comes back
until the response to its last request, a close, or a quiet period, and say what it saw.

Responses are read with proxy_harness's lenient reader; the recording upstream names what it
parsed in `x-parsed` (token/role), so a response can be told from a proxy's own local reply.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

from corpus import Mutation
from proxy_harness import LOCALHOST, Eof, SockReader, read_response

QUIET = 1.0  # seconds without a byte after which the client gives up waiting
MAX_RESPONSES = 8  # more than any mutation can legitimately get back


@dataclass
class ClientView:
    statuses: list[int] = field(default_factory=list)
    parsed: list[str] = field(default_factory=list)  # x-parsed of each response ("" for a local reply)
    closed: bool = False  # the proxy closed (or reset) the connection
    timed_out: bool = False  # the proxy stayed silent for QUIET seconds
    error: str = ""  # what stopped the reading otherwise (unparsable response, send failure)
    echoed: bytes = b""  # tunnel bytes that came back after a 101
    ports: tuple[int, int] = (0, 0)  # (client's, proxy listener's): Envoy's access log shows both
    seconds: float = 0.0

    def describe(self) -> str:
        answers = ", ".join(f"{s}{' ' + p if p else ' (local)'}" for s, p in zip(self.statuses, self.parsed))
        ends = "closed" if self.closed else "silent" if self.timed_out else self.error or "client stopped"
        echo = f", {len(self.echoed)} tunnel bytes echoed" if self.echoed else ""
        return f"[{answers or 'no response'}{echo}] then {ends}"


def run(port: int, mutation: Mutation) -> ClientView:
    view = ClientView()
    started = time.monotonic()
    try:
        sock = socket.create_connection((LOCALHOST, port), timeout=QUIET)
    except OSError as error:
        view.error = f"connect: {error}"
        return view
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        view.ports = (sock.getsockname()[1], port)
        _exchange(sock, mutation, view)
    finally:
        sock.close()
        view.seconds = time.monotonic() - started
    return view


def _exchange(sock: socket.socket, mutation: Mutation, view: ClientView) -> None:
    try:
        sock.sendall(mutation.data)
    except OSError as error:  # the proxy closed early; what it answered may still be readable
        view.error = f"send: {type(error).__name__}"
    reader = SockReader(sock)
    last = f"{mutation.token}/{mutation.last_role}"
    try:
        for _ in range(MAX_RESPONSES):
            response = read_response(reader)
            view.statuses.append(response.status)
            parsed = response.header("x-parsed") or ""
            view.parsed.append(parsed)
            if response.status == 101:
                if mutation.tunnel:
                    view.echoed = reader.read_exact(len(mutation.tunnel))
                return
            if parsed == last:
                return
            if (response.header("connection") or "").lower() == "close":
                view.closed = True  # the proxy said so; waiting for its FIN would only add its linger time
                return
    except Eof:
        view.closed = True
    except ConnectionResetError:
        view.closed = True
    except socket.timeout:
        view.timed_out = True
    except (ValueError, IndexError, OSError) as error:
        view.error = f"{type(error).__name__}: {error}"
