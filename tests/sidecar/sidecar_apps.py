"""The "apps" of the sidecar tests: plain programs that know nothing of the mesh.

Run inside a pod as an ordinary uid (not the proxy's), standard library only:

    sidecar_apps.py http NAME PORT [BIND]       HTTP server: GET answers JSON {"server": NAME,
                                                "headers": {...request headers, lower-case}}
    sidecar_apps.py banner NAME BIND PORT...    server-first TCP: on connect sends
                                                "HELLO from NAME\\n", then echoes one line
    sidecar_apps.py https NAME BIND PORT CERT KEY [CLIENT_CA]
                                                the same over TLS it terminates itself, with
                                                "sni": the name the client asked for; with
                                                CLIENT_CA it requires a client certificate from
                                                that CA and says its CN ("client")
    sidecar_apps.py redirect NAME PORT LOCATION HTTP server answering every GET 301 to
                                                LOCATION + path (as edition.cnn.com does over http)
    sidecar_apps.py call-banner HOST PORT LINE [TIMEOUT]
                                                client for `banner`: prints the banner and the echo

Servers print "ready" once every socket listens, so tests wait on that line, not on time.
"""

from __future__ import annotations

import http.server
import json
import socket
import socketserver
import ssl
import sys
import threading

IO_TIMEOUT = 10.0  # every blocking read in here ends; the tests' own deadlines are shorter


def serve_http(name: str, port: int, bind: str = "0.0.0.0", tls: ssl.SSLContext | None = None,
               redirect: str = "") -> None:
    """With `tls` the server terminates TLS itself, and the body also says which SNI it was asked
    for; with `redirect` every answer is a 301 to that URL prefix plus the request's path."""
    asked: dict[int, str | None] = {}  # id(SSLSocket) -> SNI, from the handshake callback
    if tls is not None:
        tls.sni_callback = lambda sock, server_name, context: asked.__setitem__(id(sock), server_name)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            answer = {"server": name, "headers": {k.lower(): v for k, v in self.headers.items()}}
            if tls is not None:
                answer["sni"] = asked.pop(id(self.connection), None)
                subject = dict(pair[0] for pair in (self.connection.getpeercert() or {}).get("subject", ()))
                answer["client"] = subject.get("commonName")
            body = json.dumps(answer).encode()
            self.send_response(301 if redirect else 200)
            if redirect:
                self.send_header("location", redirect + self.path)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            print(f"{name}: {self.command} {self.path} {self.headers.get('host')}", flush=True)

    server = http.server.ThreadingHTTPServer((bind, port), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


def tls_context(cert: str, key: str, client_ca: str = "") -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    if client_ca:  # like nginx's ssl_verify_client on
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def serve_banner(name: str, bind: str, ports: list[int]) -> None:
    class Handler(socketserver.StreamRequestHandler):
        timeout = IO_TIMEOUT

        def handle(self) -> None:
            self.wfile.write(f"HELLO from {name}\n".encode())  # the server speaks first
            self.wfile.flush()
            line = self.rfile.readline()
            self.wfile.write(b"ECHO " + line)
            print(f"{name}: port {self.server.server_address[1]} echoed {line!r}", flush=True)

    servers = []
    for port in ports:
        server = socketserver.ThreadingTCPServer((bind, port), Handler)
        server.daemon_threads = True
        servers.append(server)
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


def call_banner(host: str, port: int, line: str, timeout: float = IO_TIMEOUT) -> None:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        reader = sock.makefile("rb")
        banner = reader.readline()  # sent by the server before the client says anything
        sock.sendall(line.encode() + b"\n")
        echo = reader.readline()
    print(json.dumps({"banner": banner.decode(), "echo": echo.decode()}))


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "http":
        serve_http(args[0], int(args[1]), *args[2:3])
    elif command == "banner":
        serve_banner(args[0], args[1], [int(port) for port in args[2:]])
    elif command == "https":
        serve_http(args[0], int(args[2]), args[1], tls_context(*args[3:6]))
    elif command == "redirect":
        serve_http(args[0], int(args[1]), redirect=args[2])
    elif command == "call-banner":
        call_banner(args[0], int(args[1]), args[2], *map(float, args[3:4]))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
