"""OTLP over gRPC: one unary TraceService/Export call over a fresh plaintext HTTP/2 connection
(h2c, prior knowledge), which is what Istio's `opentelemetry` provider speaks when it has no
`http` block (a collector's port 4317).

The body is one gRPC message (an ExportTraceServiceRequest); it is sent as the peer's flow
control windows allow, and the call succeeds when the answer ends with grpc-status 0.
"""

from __future__ import annotations

import asyncio

import h2.config
import h2.connection
import h2.events
import h2.exceptions

PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
READ_SIZE = 65536
MAX_ANSWER = 1 << 20  # an ExportTraceServiceResponse is tiny; anything bigger is not one


class GrpcError(Exception):
    """The call did not succeed: the message says how (a status, grpc-status, the stream)."""


async def export(host: str, port: int, authority: str, message: bytes, metadata: bytes = b"") -> None:
    """One Export call; GrpcError or OSError when it failed. `metadata`: extra header lines
    ("name: value\\r\\n"), as the provider's headers are kept."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        connection.initiate_connection()
        stream = connection.get_next_available_stream_id()
        extra = [tuple(part.strip() for part in line.split(":", 1)) for line in metadata.decode("latin-1").split("\r\n")
                 if ":" in line]
        connection.send_headers(stream, [(":method", "POST"), (":scheme", "http"), (":path", PATH),
                                         (":authority", authority), ("content-type", "application/grpc"),
                                         ("te", "trailers"), *((n.lower(), v) for n, v in extra)])
        body = memoryview(b"\x00" + len(message).to_bytes(4, "big") + message)
        writer.write(connection.data_to_send())
        status = grpc_status = None
        answered = 0
        while True:
            body = _send_what_fits(connection, stream, body)
            writer.write(connection.data_to_send())
            await writer.drain()
            data = await reader.read(READ_SIZE)
            if not data:
                raise GrpcError("the collector closed the connection")
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    headers = dict(event.headers)
                    status = headers.get(":status")
                    grpc_status = headers.get("grpc-status", grpc_status)  # a trailers-only answer
                elif isinstance(event, h2.events.DataReceived):
                    answered += len(event.data)
                    connection.acknowledge_received_data(event.flow_controlled_length, stream)
                    if answered > MAX_ANSWER:
                        raise GrpcError("the answer is too big to be an ExportTraceServiceResponse")
                elif isinstance(event, h2.events.TrailersReceived):
                    grpc_status = dict(event.headers).get("grpc-status")
                elif isinstance(event, h2.events.StreamEnded):
                    if status != "200" or grpc_status != "0":
                        raise GrpcError(f"status {status}, grpc-status {grpc_status}")
                    return
                elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    raise GrpcError("the collector ended the stream")
    except h2.exceptions.H2Error as error:
        raise GrpcError(f"HTTP/2: {error}") from None
    finally:
        writer.close()


def _send_what_fits(connection, stream: int, body: memoryview) -> memoryview:
    """Send as much of the body as the windows allow; the rest waits for a WINDOW_UPDATE."""
    while body:
        room = min(connection.local_flow_control_window(stream), connection.max_outbound_frame_size, len(body))
        if room <= 0:
            return body
        connection.send_data(stream, bytes(body[:room]), end_stream=room == len(body))
        body = body[room:]
    return body
