"""One HTTP/2 request and its answer over a fresh TLS connection: how the proxy asks the control
server for its trust bundle and to sign its CSRs (small bodies, so no flow-control dance).

The caller gives the TLS context and says which server identity it expects: after the handshake
(which verified the chain against the context's roots) the server's SPIFFE URI SAN must be that
identity, else the answer is not read at all.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from pymesh.api import wire
from pymesh.security.identity import SpiffeId, peer_spiffe_id

READ_SIZE = 65536
TIMEOUT = 10.0


class UnaryError(Exception):
    """No usable answer: the connection, the TLS peer or the HTTP/2 exchange failed."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


async def request(host: str, port: int, context: ssl.SSLContext, server: SpiffeId | None, method: str, path: str,
                  headers: list[tuple[str, str]] = (), body: bytes = b"", timeout: float = TIMEOUT) -> Response:
    """`server` None: the peer is not checked (only for the unauthenticated trust bundle, which
    the caller checks against a pin)."""
    try:
        return await asyncio.wait_for(_request(host, port, context, server, method, path, headers, body), timeout)
    except asyncio.TimeoutError:
        raise UnaryError(f"{method} {path}: no answer within {timeout:.0f}s") from None
    except (OSError, ssl.SSLError, h2.exceptions.H2Error) as exc:
        raise UnaryError(f"{method} {path}: {exc}") from None


async def _request(host, port, context, server, method, path, headers, body) -> Response:
    reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
    try:
        if server is not None:
            peer = peer_spiffe_id(writer.get_extra_info("ssl_object").getpeercert(binary_form=True))
            if peer != server:
                raise UnaryError(f"the server at {host}:{port} is {peer.uri if peer else 'no SPIFFE identity'}, "
                                 f"not {server.uri}")
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        connection.initiate_connection()
        stream = connection.get_next_available_stream_id()
        connection.send_headers(stream, [(":method", method), (":path", path), (":scheme", "https"),
                                         (":authority", f"{host}:{port}"), *headers], end_stream=not body)
        size = connection.max_outbound_frame_size
        for start in range(0, len(body), size):  # bounded by wire.MAX_SIGN_BODY: within the first window
            connection.send_data(stream, body[start:start + size], end_stream=start + size >= len(body))
        writer.write(connection.data_to_send())
        status, answer = 0, bytearray()
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                raise UnaryError(f"{method} {path}: the server closed the connection")
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers).get(":status", "0"))
                elif isinstance(event, h2.events.DataReceived):
                    connection.acknowledge_received_data(event.flow_controlled_length, stream)
                    answer += event.data
                    if len(answer) > wire.MAX_SIGN_BODY:
                        raise UnaryError(f"{method} {path}: answer over {wire.MAX_SIGN_BODY} bytes")
                elif isinstance(event, h2.events.StreamEnded):
                    return Response(status, bytes(answer))
                elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    raise UnaryError(f"{method} {path}: the server ended the stream")
            writer.write(connection.data_to_send())
    finally:
        writer.close()
