"""TCP probe for capture tests, run inside test pods (stdlib only).

    capture_probe.py serve PORT...   listen on each port (all addresses); print "ready" once all
                                     listen; answer every connection with one line
                                     "port=<port it reached> orig=<ip>:<port>" (SO_ORIGINAL_DST:
                                     the address the client dialled, before any REDIRECT;
                                     the local address where nothing was redirected)
    capture_probe.py call HOST PORT  connect, print the line the server sent
"""

import selectors
import socket
import struct
import sys

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h


def original_destination(conn: socket.socket) -> str:
    try:
        raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)  # struct sockaddr_in
    except FileNotFoundError:  # not tracked by conntrack (no nat in this namespace): not redirected
        return "%s:%d" % conn.getsockname()
    port, address = struct.unpack_from("!2xH4s", raw)
    return f"{socket.inet_ntoa(address)}:{port}"


def serve(ports: list[int]) -> None:
    selector = selectors.DefaultSelector()
    for port in ports:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", port))
        listener.listen(16)
        selector.register(listener, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            conn, _ = key.fileobj.accept()
            with conn:
                reply = f"port={conn.getsockname()[1]} orig={original_destination(conn)}"
                conn.sendall(reply.encode() + b"\n")
                print(reply, flush=True)


def call(host: str, port: int) -> None:
    with socket.create_connection((host, port), timeout=10) as conn:
        print(conn.makefile().readline().strip())


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "serve":
        serve([int(port) for port in args])
    else:
        call(args[0], int(args[1]))
