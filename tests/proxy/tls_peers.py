"""TLS peers for the data-plane tests: a threaded TLS server that terminates TLS itself with a
certificate from tests/throwaway_ca.py and answers one HTTP/1.1 request per connection with
its own name, and a Python TLS client that verifies the server. The proxy in between never
holds any of these keys."""

from __future__ import annotations

import re
import socket
import ssl
from pathlib import Path

from proxy_harness import LOCALHOST, Server, SockReader
from throwaway_ca import ServerCert


class TlsServer(Server):
    """Terminates TLS with its certificate, reads one request head and answers
    "200 <name> sni=<server name>" (then closes), so a test sees which server a client reached
    and that the client's own SNI arrived untouched. `sni` lists the names it was asked for."""

    def __init__(self, name: str, cert: ServerCert) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert.cert, cert.key)
        self.context.set_alpn_protocols(["http/1.1"])
        self.sni: list[str | None] = []
        self.context.sni_callback = lambda sock, server_name, context: self._note_sni(server_name)
        super().__init__(name)

    def _note_sni(self, server_name: str | None) -> None:
        with self.cond:
            self.sni.append(server_name)
            self.cond.notify_all()

    def serve(self, sock: socket.socket, conn_id: int) -> None:
        sock.settimeout(10)
        with self.context.wrap_socket(sock, server_side=True) as tls:
            reader = SockReader(tls)
            reader.read_until(b"\r\n\r\n")
            with self.cond:
                server_name = self.sni[-1] if self.sni else None
            body = f"{self.name} sni={server_name}\n".encode()
            tls.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
            try:
                tls.unwrap()  # close_notify, so clients that insist on a clean TLS close are satisfied
            except (OSError, ValueError):
                pass  # the client closed first


def https_get(port: int, server_name: str | None, ca: Path, timeout: float = 10.0) -> str:
    """GET / over TLS to 127.0.0.1:`port` with SNI `server_name`, verifying the server's
    certificate for that name against `ca` (the proxy must not be able to fake it); the body."""
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = server_name is not None
    if server_name is None:
        context.verify_mode = ssl.CERT_REQUIRED  # still verified against the CA, only no name to check
    with socket.create_connection((LOCALHOST, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nhost: {server_name}\r\nconnection: close\r\n\r\n".encode())
            reader = SockReader(tls)
            head = reader.read_until(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(re.search(rb"content-length: (\d+)", head).group(1))
            return reader.read_exact(length).decode()
