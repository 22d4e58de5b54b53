"""A gRPC echo service on grpcio with raw-bytes messages (generic handlers, no generated stubs),
for tests that put real gRPC peers on both sides of the sidecars. Importable, and runnable as a
pod's app (tests/sidecar), standard grpcio only:

    grpc_echo.py serve PORT [FLAKY]       serve 0.0.0.0:PORT; /Flaky fails UNAVAILABLE FLAKY times;
                                          prints "ready"
    grpc_echo.py call HOST:PORT           every call kind once; prints one JSON line of results

Methods of pymesh.test.Echo: Unary (echo), ServerStream (n parts), ClientStream (join with +),
Bidi (upper-case each), Flaky (UNAVAILABLE `flaky` times, then "ok"), Missing (NOT_FOUND), Hang
(waits until released: a call for deadlines), Calls (how many times each method ran, as JSON).
"""

from __future__ import annotations

import json
import sys
import threading
from concurrent import futures

import grpc

SERVICE = "pymesh.test.Echo"


class EchoService:
    def __init__(self, flaky: int = 0) -> None:
        self.calls: dict[str, int] = {}
        self.flaky = flaky
        self.released = threading.Event()
        self.lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1

    def unary(self, request: bytes, context) -> bytes:
        self._count("Unary")
        return b"echo:" + request

    def flaky_call(self, request: bytes, context) -> bytes:
        self._count("Flaky")
        with self.lock:
            failing = self.flaky > 0
            self.flaky -= failing
        if failing:
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return b"ok"

    def missing(self, request: bytes, context) -> bytes:
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    def hang(self, request: bytes, context) -> bytes:
        self.released.wait(20)
        return b"late"

    def count_calls(self, request: bytes, context) -> bytes:
        with self.lock:
            return json.dumps(self.calls).encode()

    def server_stream(self, request: bytes, context):
        for i in range(int(request)):
            yield b"part-%d" % i

    def client_stream(self, requests, context) -> bytes:
        return b"+".join(requests)

    def bidi(self, requests, context):
        for message in requests:
            yield message.upper()

    def handler(self) -> grpc.GenericRpcHandler:
        unary = grpc.unary_unary_rpc_method_handler
        return grpc.method_handlers_generic_handler(SERVICE, {
            "Unary": unary(self.unary), "Flaky": unary(self.flaky_call), "Missing": unary(self.missing),
            "Hang": unary(self.hang), "Calls": unary(self.count_calls),
            "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi),
        })


def start_server(address: str, flaky: int = 0) -> tuple[grpc.Server, EchoService, int]:
    service = EchoService(flaky)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((service.handler(),))
    port = server.add_insecure_port(address)
    server.start()
    return server, service, port


def call_everything(target: str, timeout: float = 10.0) -> dict:
    """Each call kind once, a deadline that expires, the flaky call (retried by the mesh or not):
    what each returned, or the status it failed with."""
    results: dict[str, object] = {}
    with grpc.insecure_channel(target) as channel:
        def attempt(name: str, call) -> None:
            try:
                value = call()
                results[name] = [v.decode() for v in value] if isinstance(value, list) else value.decode()
            except grpc.RpcError as error:
                results[name] = f"error:{error.code().name}"
        attempt("unary", lambda: channel.unary_unary(f"/{SERVICE}/Unary")(b"hi", timeout=timeout))
        attempt("server_stream", lambda: list(channel.unary_stream(f"/{SERVICE}/ServerStream")(b"3", timeout=timeout)))
        attempt("client_stream", lambda: channel.stream_unary(f"/{SERVICE}/ClientStream")(iter([b"a", b"b"]), timeout=timeout))
        attempt("bidi", lambda: list(channel.stream_stream(f"/{SERVICE}/Bidi")(iter([b"x", b"y"]), timeout=timeout)))
        attempt("missing", lambda: channel.unary_unary(f"/{SERVICE}/Missing")(b"", timeout=timeout))
        attempt("deadline", lambda: channel.unary_unary(f"/{SERVICE}/Hang")(b"", timeout=0.5))
        attempt("flaky", lambda: channel.unary_unary(f"/{SERVICE}/Flaky")(b"", timeout=timeout))
        attempt("calls", lambda: channel.unary_unary(f"/{SERVICE}/Calls")(b"", timeout=timeout))
    return results


def main(argv: list[str]) -> None:
    if argv[0] == "serve":
        server, service, _ = start_server(f"0.0.0.0:{argv[1]}", int(argv[2]) if len(argv) > 2 else 0)
        print("ready", flush=True)
        try:
            server.wait_for_termination(timeout=300)  # bounded: the test bed stops it long before
        finally:
            service.released.set()
    elif argv[0] == "call":
        print(json.dumps(call_everything(argv[1])), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
