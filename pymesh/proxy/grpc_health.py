"""One gRPC health check (grpc.health.v1.Health/Check over h2c), as the kubelet's grpc probe
sends it: healthy when the answer is SERVING with grpc-status 0. Plaintext only, as the
kubelet's (it neither offers TLS nor authenticates). The messages are two-field protobufs,
written and read by hand: no generated code for 10 bytes.
"""

from __future__ import annotations

import asyncio

import h2.config
import h2.connection
import h2.events
import h2.exceptions

PATH = "/grpc.health.v1.Health/Check"
SERVING = 1
STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
MAX_ANSWER = 64 * 1024
READ_SIZE = 16 * 1024


def request_message(service: str) -> bytes:
    """HealthCheckRequest{service}, length-prefixed for gRPC (field 1, a string)."""
    raw = service.encode("utf-8")
    body = b"\x0a" + _varint(len(raw)) + raw if raw else b""
    return b"\x00" + len(body).to_bytes(4, "big") + body


def serving_status(frame: bytes) -> int:
    """HealthCheckResponse.status from one gRPC message (0 when absent, as proto3)."""
    if len(frame) < 5 or frame[0] != 0 or int.from_bytes(frame[1:5], "big") != len(frame) - 5:
        raise ValueError("not one uncompressed gRPC message")
    body, pos, status = frame[5:], 0, 0
    while pos < len(body):
        tag, pos = _read_varint(body, pos)
        if tag == 0x08:  # field 1, varint
            status, pos = _read_varint(body, pos)
        elif tag & 7 == 0:
            _, pos = _read_varint(body, pos)
        elif tag & 7 == 2:
            length, pos = _read_varint(body, pos)
            pos += length
        else:
            raise ValueError(f"unexpected protobuf wire type {tag & 7}")
    return status


async def check(host: str, port: int, service: str = "", local_addr: tuple[str, int] | None = None) -> str | None:
    """None when SERVING, else why not (the caller bounds the time); `local_addr` as
    pymesh.proxy.health_probe.check's."""
    target = f"grpc {host}:{port}{' ' + service if service else ''}"
    try:
        reader, writer = await asyncio.open_connection(host, port, local_addr=local_addr)
    except OSError as error:
        return f"{target}: {error.strerror or error}"
    try:
        return await _exchange(reader, writer, host, port, service, target)
    except (OSError, h2.exceptions.ProtocolError, ValueError) as error:
        return f"{target}: {error}"
    finally:
        writer.close()


async def _exchange(reader, writer, host: str, port: int, service: str, target: str) -> str | None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, [(":method", "POST"), (":scheme", "http"), (":path", PATH),
                               (":authority", f"{host}:{port}"), ("content-type", "application/grpc"),
                               ("te", "trailers"), ("user-agent", "pymesh-probe/1")])
    conn.send_data(stream, request_message(service), end_stream=True)
    writer.write(conn.data_to_send())
    body, headers = b"", {}
    while True:
        data = await reader.read(READ_SIZE)
        if not data:
            raise ValueError("connection closed before the answer ended")
        for event in conn.receive_data(data):
            if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)) and event.stream_id == stream:
                headers.update(dict(event.headers))
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, stream)
                if len(body) > MAX_ANSWER:
                    raise ValueError("answer too large")
            elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                raise ValueError(f"stream reset ({event.error_code})")
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                return _verdict(headers, body, target)
        writer.write(conn.data_to_send())


def _verdict(headers: dict, body: bytes, target: str) -> str | None:
    if headers.get(":status") != "200":
        return f"{target}: HTTP {headers.get(':status')}"
    if headers.get("grpc-status", "") != "0":
        return f"{target}: grpc-status {headers.get('grpc-status')} {headers.get('grpc-message', '')}".rstrip()
    status = serving_status(body)
    return None if status == SERVING else f"{target}: {STATUS_NAMES.get(status, status)}"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError("truncated protobuf varint")
